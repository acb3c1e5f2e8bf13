// Package downlink moves files a payload queued for the ground into S3:
// sources (the /outbox sweep, the OORT collector, StageFileDownload) hand
// files to one journaled queue; they cross a modelled space link, most
// urgent first, and each lands whole, exactly once, under the documented
// key layout.
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
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Source is a payload's filesystem as the sweep sees it; *remote.Client
// implements it.
type Source interface {
	ReadDir(ctx context.Context, dir string) ([]fs.FileInfo, error)
	Get(ctx context.Context, name string, w io.Writer) (int64, error)
	Remove(ctx context.Context, name string) error
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
// harmless. A name escaping to more than maxNameBytes is cut there, at a
// character boundary, and ends in "~" and 16 hex digits of its SHA-256,
// so that long names stay distinct: S3 servers that keep objects as files
// (MinIO, the embedded one) refuse key segments over 255 bytes.
func keySafe(name string) string {
	var b strings.Builder
	cut := 0 // length of b at the last character boundary within the limit
	for i := 0; i < len(name); {
		r, n := utf8.DecodeRuneInString(name[i:])
		if (r == utf8.RuneError && n == 1) || r == '/' || r == '%' || unicode.IsControl(r) {
			for _, c := range []byte(name[i : i+n]) {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		} else {
			b.WriteString(name[i : i+n])
		}
		if b.Len() <= maxNameBytes-17 {
			cut = b.Len()
		}
		i += n
	}
	if b.Len() <= maxNameBytes {
		return b.String()
	}
	sum := sha256.Sum256([]byte(name))
	return b.String()[:cut] + "~" + hex.EncodeToString(sum[:8])
}

// maxNameBytes bounds the name part of a key's last segment, which also
// holds the 17-byte timestamp: 17 + 200 stays well under 255.
const maxNameBytes = 200

// Sink takes the files a sweep pulls; *Queue is one.
type Sink interface {
	// Enqueue takes the file at data as it; an empty ID in the item
	// returned means the file was handed over before (see Queue.Enqueue).
	Enqueue(ctx context.Context, it Item, data string) (Item, error)
	// SourceRemoved says the payload's copy of it is gone.
	SourceRemoved(it Item) error
}

// Sweep pulls every regular file in dir on the payload into spool (a
// directory on the sink's filesystem, normally Queue.Incoming), checking
// each copy's length against the listing and hashing it on the way, and
// hands it to sink: the item it with Name, Path, ModTime, Size and SHA256
// set, and the local copy's path. Only once the sink took it is the
// original removed. Up to SweepPulls files are pulled at once, but the
// sink sees them one at a time, in name order, so that a sweep queues
// files in a repeatable order. A file that fails stays on the payload and
// the sweep goes on. Sweep returns the items queued, in name order, and
// the failures joined.
func Sweep(ctx context.Context, src Source, dir, spool string, it Item, sink Sink) ([]Item, error) {
	fis, err := src.ReadDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("downlink: sweep %s: %w", dir, err)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("downlink: spool: %w", err)
	}
	fis = slices.DeleteFunc(fis, func(fi fs.FileInfo) bool { return !fi.Mode().IsRegular() })
	slices.SortFunc(fis, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })

	type pulled struct {
		it    Item
		local string
		err   error
		slot  bool // holds a place in sem
	}
	results := make([]chan pulled, len(fis))
	for i := range results {
		results[i] = make(chan pulled, 1)
	}
	sem := make(chan struct{}, SweepPulls)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for i, fi := range fis {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] <- pulled{err: context.Cause(ctx)}
				continue
			}
			one := it
			one.Name, one.Path, one.ModTime = fi.Name(), path.Join(dir, fi.Name()), fi.ModTime()
			go func() {
				local, err := pull(ctx, src, spool, fi.Size(), &one)
				results[i] <- pulled{one, local, err, true}
			}()
		}
	}()
	var (
		mu      sync.Mutex
		errs    []error
		queued  []Item
		removes sync.WaitGroup
	)
	fail := func(name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, fmt.Errorf("downlink: sweep %s: %w", path.Join(dir, name), err))
	}
	for i := range fis {
		p := <-results[i]
		var q Item
		if p.err == nil {
			q, p.err = sink.Enqueue(ctx, p.it, p.local)
		}
		if p.local != "" {
			os.Remove(p.local) // the sink renamed it away if it took it
		}
		if p.slot {
			<-sem
		}
		if p.err != nil {
			fail(fis[i].Name(), p.err)
			continue
		}
		if q.ID != "" {
			queued = append(queued, q)
		}
		// Taken (or known to have been taken before): the original goes,
		// in the background, and even if the sweep is being cancelled.
		// If it cannot go (a cancel cuts the connection), the next sweep
		// finds it again and the sink knows it.
		removes.Go(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
			defer cancel()
			err := src.Remove(ctx, p.it.Path)
			if err == nil {
				err = sink.SourceRemoved(p.it)
			}
			if err != nil {
				fail(fis[i].Name(), fmt.Errorf("queued, but not removed from the payload: %w", err))
			}
		})
	}
	removes.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return queued, errors.Join(errs...)
}

// SweepPulls is how many files a sweep pulls at once.
const SweepPulls = 4

// pull copies the file into spool (Enqueue syncs it) and sets the item's size and
// SHA-256. It returns the local copy's path.
func pull(ctx context.Context, src Source, spool string, size int64, it *Item) (string, error) {
	f, err := os.CreateTemp(spool, "sweep-*")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := src.Get(ctx, it.Path, io.MultiWriter(f, h))
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, listed as %d (still being written?)", n, size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	it.Size, it.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return f.Name(), nil
}

// removeTimeout bounds the removal of a file already queued.
const removeTimeout = 10 * time.Second

// Pull pulls the one payload file at name into spool, checking its length
// against a stat and hashing it on the way, and hands it to sink like
// Sweep does. Unlike Sweep it leaves the original in place: a staged file
// is removed only once it is delivered.
func Pull(ctx context.Context, src StatSource, name, spool string, it Item, sink Sink) (Item, error) {
	fi, err := src.Stat(ctx, name)
	if err != nil {
		return Item{}, fmt.Errorf("downlink: pull %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return Item{}, fmt.Errorf("downlink: pull %s: not a regular file", name)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return Item{}, fmt.Errorf("downlink: spool: %w", err)
	}
	it.Name, it.Path, it.ModTime = path.Base(name), name, fi.ModTime()
	local, err := pull(ctx, src, spool, fi.Size(), &it)
	if err != nil {
		return Item{}, fmt.Errorf("downlink: pull %s: %w", name, err)
	}
	defer os.Remove(local) // the sink renamed it away if it took it
	q, err := sink.Enqueue(ctx, it, local)
	if err != nil {
		return Item{}, fmt.Errorf("downlink: pull %s: %w", name, err)
	}
	return q, nil
}

// StatSource is a Source that can also describe one file.
type StatSource interface {
	Source
	Stat(ctx context.Context, name string) (fs.FileInfo, error)
}
