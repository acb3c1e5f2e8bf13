// Package downlink moves files a payload queued for the ground into S3:
// it sweeps them off the payload into the bus's spool, then delivers each
// one whole under the documented key layout.
package downlink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/satbench/hil/harness/store"
)

// Source is a payload's filesystem as the sweep sees it; *remote.Client
// implements it.
type Source interface {
	ReadDir(ctx context.Context, dir string) ([]fs.FileInfo, error)
	Get(ctx context.Context, name string, w io.Writer) (int64, error)
	Remove(ctx context.Context, name string) error
}

// Item is one file on its way down.
type Item struct {
	Window string
	Board  string
	Source string // "outbox"
	Name   string // base name on the payload
	Spool  string // the bus-side copy
	Size   int64
	SHA256 string // hex
}

// Downlink delivers to one bucket for one satellite.
type Downlink struct {
	Store     store.Store
	Bucket    string
	Prefix    string // customer prefix, without slashes at either end
	Satellite string // e.g. FM1
	SpoolDir  string
	Now       func() time.Time // default time.Now
	seq       atomic.Int64
}

func (d *Downlink) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// OutboxKey is the object key of an outbox file delivered at t:
// <prefix>/<satellite>/downlink/YYYY/MM/DD/YYYYMMDDTHHMMSSZ_<base name>.
func OutboxKey(prefix, satellite string, t time.Time, name string) string {
	t = t.UTC()
	key := path.Join(satellite, "downlink", t.Format("2006/01/02"), t.Format("20060102T150405Z")+"_"+keySafe(name))
	if prefix != "" {
		key = prefix + "/" + key
	}
	return key
}

// keySafe keeps a base name inside its key: a slash, a control character
// or invalid UTF-8 would make a key that escapes the layout or that some
// S3 tools cannot print, so those bytes are percent-escaped (and so is %,
// to keep the escaping reversible). The timestamp prefix makes "." and ".."
// harmless.
func keySafe(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); {
		r, n := utf8.DecodeRuneInString(name[i:])
		if (r == utf8.RuneError && n == 1) || r == '/' || r == '%' || unicode.IsControl(r) {
			for _, c := range []byte(name[i : i+n]) {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		} else {
			b.WriteString(name[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Sweep copies every regular file in dir on the payload into the spool,
// checking each copy's length against the listing, then removes the
// original. A file that fails stays on the payload and the sweep goes on:
// the files spooled are returned with the failures joined in the error.
func (d *Downlink) Sweep(ctx context.Context, src Source, dir string, it Item) ([]Item, error) {
	fis, err := src.ReadDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("downlink: sweep %s: %w", dir, err)
	}
	if err := os.MkdirAll(d.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("downlink: spool: %w", err)
	}
	// In name order, so that sweeps and their logs are repeatable.
	slices.SortFunc(fis, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	var items []Item
	var errs []error
	for _, fi := range fis {
		if !fi.Mode().IsRegular() {
			continue
		}
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("downlink: sweep %s: %w", dir, context.Cause(ctx)))
			break
		}
		one := it
		one.Name = fi.Name()
		got, err := d.spool(ctx, src, path.Join(dir, fi.Name()), fi.Size(), one)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		items = append(items, got)
	}
	return items, errors.Join(errs...)
}

func (d *Downlink) spool(ctx context.Context, src Source, name string, size int64, it Item) (Item, error) {
	it.Spool = filepath.Join(d.SpoolDir, fmt.Sprintf("%s-%d", it.Window, d.seq.Add(1)))
	f, err := os.OpenFile(it.Spool, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return it, fmt.Errorf("downlink: spool %s: %w", name, err)
	}
	h := sha256.New()
	n, err := src.Get(ctx, name, io.MultiWriter(f, h))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, listed as %d (still being written?)", n, size)
	}
	if err != nil {
		os.Remove(it.Spool)
		return it, fmt.Errorf("downlink: sweep %s: %w", name, err)
	}
	it.Size, it.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	if err := src.Remove(ctx, name); err != nil {
		os.Remove(it.Spool)
		return it, fmt.Errorf("downlink: sweep %s: %w", name, err)
	}
	return it, nil
}

// Deliver puts a spooled item into S3, checks what landed, and drops the
// spool copy. The key's timestamp is the delivery time.
func (d *Downlink) Deliver(ctx context.Context, it Item) (store.Object, error) {
	f, err := os.Open(it.Spool)
	if err != nil {
		return store.Object{}, fmt.Errorf("downlink: deliver %s: %w", it.Name, err)
	}
	defer f.Close()
	key := OutboxKey(d.Prefix, d.Satellite, d.now(), it.Name)
	// Put checks that the object landed whole, with exactly it.Size bytes.
	obj, err := d.Store.Put(ctx, d.Bucket, key, f, it.Size, store.PutOptions{
		ContentType: "application/octet-stream",
		Metadata: map[string]string{
			"window-id": it.Window,
			"payload":   it.Board,
			"source":    it.Source,
			"sha256":    it.SHA256,
		},
	})
	if err != nil {
		return store.Object{}, fmt.Errorf("downlink: deliver %s: %w", it.Name, err)
	}
	if err := os.Remove(it.Spool); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return obj, fmt.Errorf("downlink: drop spool copy of %s: %w", it.Name, err)
	}
	return obj, nil
}
