package downlink_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/fixtures/payload/payloadtest"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/harness/store"
)

// rig is a reference payload served in-process over real SSH, the bus's
// client to it, and an embedded S3 endpoint.
type rig struct {
	root string
	c    *remote.Client
	st   store.Store
	dl   *downlink.Downlink
}

func newRig(t testing.TB) *rig {
	t.Helper()
	p := payloadtest.Start(t, payloadtest.Options{})
	ctx := t.Context()
	c, err := remote.Wait(ctx, remote.Config{Address: p.Addr, User: "signaling", Signer: p.ClientKey, HostKey: p.HostKey.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dir := t.TempDir()
	e, err := store.StartEmbedded(ctx, filepath.Join(dir, "s3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	st, err := store.New(e.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx, "down"); err != nil {
		t.Fatal(err)
	}
	return &rig{root: p.Root, c: c, st: st, dl: &downlink.Downlink{
		Store: st, Bucket: "down", Prefix: "cust", Satellite: "FM1", SpoolDir: filepath.Join(dir, "spool"),
	}}
}

// put writes a payload outbox file of size bytes and returns its SHA-256.
func (r *rig) put(t testing.TB, name string, size int64) string {
	t.Helper()
	h := sha256.New()
	f, err := os.Create(filepath.Join(r.root, "outbox", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.MultiWriter(f, h), payload.Content(size, 3)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestSweepDeliver(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	want := map[string]string{
		"empty":      r.put(t, "empty", 0),
		"small.txt":  r.put(t, "small.txt", 100),
		"big.bin":    r.put(t, "big.bin", 17<<20), // above minio-go's multipart threshold
		"we ird\x01": r.put(t, "we ird\x01", 10),
	}
	os.Mkdir(filepath.Join(r.root, "outbox", "subdir"), 0o755) // not a file: left alone

	items, err := r.dl.Sweep(ctx, r.c, "/outbox", downlink.Item{Window: "5", Board: "ref", Source: "outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(want) {
		t.Fatalf("swept %d files, want %d: %+v", len(items), len(want), items)
	}
	left, _ := os.ReadDir(filepath.Join(r.root, "outbox"))
	if len(left) != 1 || left[0].Name() != "subdir" {
		t.Errorf("outbox after sweep holds %v, want only subdir", left)
	}
	for _, it := range items {
		if it.SHA256 != want[it.Name] {
			t.Errorf("%q spooled with sha256 %s, want %s", it.Name, it.SHA256, want[it.Name])
		}
		obj, err := r.dl.Deliver(ctx, it)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(obj.Key, "cust/FM1/downlink/") {
			t.Errorf("key %q outside the layout", obj.Key)
		}
		rc, err := r.st.Get(ctx, "down", obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, rc)
		rc.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != want[it.Name] {
			t.Errorf("s3 %s: sha256 %s, want %s", obj.Key, got, want[it.Name])
		}
		if obj.Metadata["window-id"] != "5" || obj.Metadata["sha256"] != want[it.Name] || obj.Metadata["source"] != "outbox" {
			t.Errorf("s3 %s: metadata %v", obj.Key, obj.Metadata)
		}
		if _, err := os.Stat(it.Spool); !os.IsNotExist(err) {
			t.Errorf("spool copy %s kept after delivery: %v", it.Spool, err)
		}
	}
}

// TestDeliverFailureKeepsSpool: a delivery that fails loses nothing; the
// spooled copy stays for a retry.
func TestDeliverFailureKeepsSpool(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.put(t, "keep.bin", 1000)
	items, err := r.dl.Sweep(ctx, r.c, "/outbox", downlink.Item{Window: "6", Source: "outbox"})
	if err != nil || len(items) != 1 {
		t.Fatalf("sweep: %v %v", items, err)
	}
	r.dl.Bucket = "no-such-bucket"
	if _, err := r.dl.Deliver(ctx, items[0]); err == nil || !strings.Contains(err.Error(), "keep.bin") {
		t.Fatalf("deliver to a missing bucket: %v, want an error naming the file", err)
	}
	if _, err := os.Stat(items[0].Spool); err != nil {
		t.Fatalf("spool copy lost after a failed delivery: %v", err)
	}
	r.dl.Bucket = "down"
	if _, err := r.dl.Deliver(ctx, items[0]); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

// BenchmarkSweepToS3 moves one 64 MiB outbox file from the payload (SFTP)
// into the embedded S3 endpoint, verified; MB/s is the sweep-to-S3 rate.
func BenchmarkSweepToS3(b *testing.B) {
	r := newRig(b)
	ctx := context.Background()
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		r.put(b, "capture.bin", size)
		b.StartTimer()
		t0 := time.Now()
		items, err := r.dl.Sweep(ctx, r.c, "/outbox", downlink.Item{Window: "1", Source: "outbox"})
		if err != nil || len(items) != 1 {
			b.Fatal(items, err)
		}
		b.ReportMetric(float64(size)/time.Since(t0).Seconds()/1e6, "sweep-MB/s")
		if _, err := r.dl.Deliver(ctx, items[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// failing is the real payload with one file that cannot be read.
type failing struct {
	downlink.Source
	name string
}

func (f failing) Get(ctx context.Context, name string, w io.Writer) (int64, error) {
	if name == f.name {
		return 0, errors.New("injected read failure")
	}
	return f.Source.Get(ctx, name, w)
}

// TestSweepGoesOn: a file that fails stays on the payload, named in the
// error, and every other file is still swept.
func TestSweepGoesOn(t *testing.T) {
	r := newRig(t)
	for _, name := range []string{"a", "b", "c"} {
		r.put(t, name, 10)
	}
	items, err := r.dl.Sweep(context.Background(), failing{r.c, "/outbox/b"}, "/outbox", downlink.Item{Window: "7", Source: "outbox"})
	if err == nil || !strings.Contains(err.Error(), "/outbox/b") || !strings.Contains(err.Error(), "injected read failure") {
		t.Errorf("sweep error %v, want one naming /outbox/b and its cause", err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.Name)
	}
	if strings.Join(got, ",") != "a,c" {
		t.Errorf("swept %v, want a and c", got)
	}
	left, _ := os.ReadDir(filepath.Join(r.root, "outbox"))
	if len(left) != 1 || left[0].Name() != "b" {
		t.Errorf("outbox holds %v, want only b (the file that failed)", left)
	}
}
