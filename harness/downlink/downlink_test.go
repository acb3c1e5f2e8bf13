package downlink_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/fixtures/payload/payloadtest"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/harness/store/storetest"
	"github.com/satbench/hil/internal/waitlog"
)

// rig is a reference payload served in-process over real SSH, the bus's
// client to it, an embedded S3 endpoint and a queue delivering to it.
type rig struct {
	root string
	c    *remote.Client
	st   store.Store
	q    *downlink.Queue
	dir  string
	cfg  remote.Config
	log  *waitlog.Log[downlink.Event]
}

func newRig(t testing.TB) *rig {
	t.Helper()
	p := payloadtest.Start(t, payloadtest.Options{})
	ctx := t.Context()
	cfg := remote.Config{Address: p.Addr, User: "signaling", Signer: p.ClientKey, HostKey: p.HostKey.PublicKey()}
	c, err := remote.Wait(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dir := t.TempDir()
	_, st := storetest.StartEmbedded(t, "down")
	r := &rig{root: p.Root, c: c, st: st, dir: dir, cfg: cfg}
	r.open(t, downlink.Config{})
	return r
}

// open opens the rig's queue with cfg over the defaults, and runs it
// until the test ends.
func (r *rig) open(t testing.TB, cfg downlink.Config) {
	t.Helper()
	r.log = &waitlog.Log[downlink.Event]{}
	cfg.Dir, cfg.Store, cfg.Satellite = filepath.Join(r.dir, "queue"), r.st, "FM1"
	cfg.Bucket, cfg.Prefix = cmp.Or(cfg.Bucket, "down"), cmp.Or(cfg.Prefix, "cust")
	cfg.Notify = func(e downlink.Event) { r.log.Append(e) }
	q, err := downlink.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		q.Close()
	})
	r.q = q
}

// sweep sweeps /outbox into the queue and returns the ids queued.
func (r *rig) sweep(t testing.TB, src downlink.Source, window string) ([]string, error) {
	t.Helper()
	items, err := downlink.Sweep(t.Context(), src, "/outbox", r.q.Incoming(),
		downlink.Item{Window: window, Board: "ref", Source: downlink.SourceOutbox}, r.q)
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids, err
}

// wait waits for the items to be delivered and returns their objects.
func (r *rig) wait(t testing.TB, ids []string) []store.Object {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	evs, err := r.q.Wait(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	var objs []store.Object
	for _, e := range evs {
		if e.Kind != downlink.EventDelivered {
			t.Fatalf("%s: %s %s", e.Item.Name, e.Kind, e.Detail)
		}
		objs = append(objs, e.Object)
	}
	return objs
}

// sha256Of reads an object back and hashes it.
func (r *rig) sha256Of(t testing.TB, bucket, key string) string {
	t.Helper()
	sum, err := store.SHA256(t.Context(), r.st, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// put writes a payload outbox file of size bytes and returns its SHA-256.
func (r *rig) put(t testing.TB, name string, size int64) string {
	t.Helper()
	h := sha256.New()
	f, err := os.Create(filepath.Join(r.root, "outbox", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.MultiWriter(f, h), mkfile.Content(size, 3)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestSweepDeliver(t *testing.T) {
	r := newRig(t)
	want := map[string]string{
		"empty":      r.put(t, "empty", 0),
		"small.txt":  r.put(t, "small.txt", 100),
		"big.bin":    r.put(t, "big.bin", 17<<20), // above minio-go's multipart threshold
		"we ird\x01": r.put(t, "we ird\x01", 10),
	}
	os.Mkdir(filepath.Join(r.root, "outbox", "subdir"), 0o755) // not a file: left alone

	ids, err := r.sweep(t, r.c, "5")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(want) {
		t.Fatalf("queued %d files, want %d", len(ids), len(want))
	}
	left, _ := os.ReadDir(filepath.Join(r.root, "outbox"))
	if len(left) != 1 || left[0].Name() != "subdir" {
		t.Errorf("outbox after sweep holds %v, want only subdir", left)
	}
	objs := r.wait(t, ids)
	for _, obj := range objs {
		name := obj.Key[strings.LastIndex(obj.Key, "Z_")+2:]
		if name == "we ird%01" {
			name = "we ird\x01"
		}
		if !strings.HasPrefix(obj.Key, "cust/FM1/downlink/") {
			t.Errorf("key %q outside the layout", obj.Key)
		}
		if got := r.sha256Of(t, "down", obj.Key); got != want[name] {
			t.Errorf("s3 %s: sha256 %s, want %s", obj.Key, got, want[name])
		}
		if obj.Metadata["window-id"] != "5" || obj.Metadata["sha256"] != want[name] || obj.Metadata["source"] != "outbox" || obj.Metadata["payload"] != "ref" {
			t.Errorf("s3 %s: metadata %v", obj.Key, obj.Metadata)
		}
		if wantType := map[bool]string{true: "text/plain; charset=utf-8", false: "application/octet-stream"}[name == "small.txt"]; obj.ContentType != wantType {
			t.Errorf("s3 %s: content type %q, want %q", obj.Key, obj.ContentType, wantType)
		}
	}
	if p := r.q.Pending(); len(p) != 0 {
		t.Errorf("queue still holds %v after delivery", p)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.dir, "queue", "items")); len(ents) != 0 {
		t.Errorf("journal still holds %d files after delivery", len(ents))
	}
}

// TestRetryUntilDelivered: an upload that fails (here the bucket does not
// exist yet) loses nothing and is retried with backoff until it lands,
// once, under the key fixed for it.
func TestRetryUntilDelivered(t *testing.T) {
	r := newRig(t)
	r.open(t, downlink.Config{Bucket: "later", RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	sum := r.put(t, "keep.bin", 1000)
	ids, err := r.sweep(t, r.c, "6")
	if err != nil || len(ids) != 1 {
		t.Fatalf("sweep: %v %v", ids, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	e, err := r.log.Wait(ctx, func(e downlink.Event) bool { return e.Kind == downlink.EventRetry })
	if err != nil || e.Err == nil || !strings.Contains(e.Err.Error(), "bucket") {
		t.Fatalf("retry event %+v (%v), want one with the failure's cause", e, err)
	}
	if err := r.st.EnsureBucket(ctx, "later"); err != nil {
		t.Fatal(err)
	}
	objs := r.wait(t, ids)
	if got := r.sha256Of(t, "later", objs[0].Key); got != sum {
		t.Errorf("delivered sha256 %s, want %s", got, sum)
	}
	all, err := r.st.List(ctx, "later", "")
	if err != nil || len(all) != 1 {
		t.Errorf("bucket holds %v (%v), want exactly one object", all, err)
	}
}

// BenchmarkSweepToS3 moves one 64 MiB outbox file from the payload (SFTP)
// through the queue into the embedded S3 endpoint, verified; MB/s is the
// sweep-to-S3 rate.
func BenchmarkSweepToS3(b *testing.B) {
	r := newRig(b)
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		r.put(b, "capture.bin", size)
		b.StartTimer()
		t0 := time.Now()
		ids, err := r.sweep(b, r.c, "1")
		if err != nil || len(ids) != 1 {
			b.Fatal(ids, err)
		}
		b.ReportMetric(float64(size)/time.Since(t0).Seconds()/1e6, "sweep-MB/s")
		r.wait(b, ids)
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
	ids, err := r.sweep(t, failing{r.c, "/outbox/b"}, "7")
	if err == nil || !strings.Contains(err.Error(), "/outbox/b") || !strings.Contains(err.Error(), "injected read failure") {
		t.Errorf("sweep error %v, want one naming /outbox/b and its cause", err)
	}
	// From the log: the queue may have delivered them already.
	var got []string
	for _, e := range r.log.All() {
		if e.Kind == downlink.EventQueued {
			got = append(got, e.Item.Name)
		}
	}
	if strings.Join(got, ",") != "a,c" || len(ids) != 2 {
		t.Errorf("queued %v, want a and c", got)
	}
	left, _ := os.ReadDir(filepath.Join(r.root, "outbox"))
	if len(left) != 1 || left[0].Name() != "b" {
		t.Errorf("outbox holds %v, want only b (the file that failed)", left)
	}
}

// TestSweepCanceled: a sweep cancelled part way returns (it does not hang
// on the pulls in flight); files it did not queue stay on the payload, and
// a file it queued but could not delete there (the cancel cuts the
// connection) is not queued again by the next window's sweep, which
// deletes it.
func TestSweepCanceled(t *testing.T) {
	r := newRig(t)
	for i := range 10 {
		r.put(t, fmt.Sprintf("f%02d", i), 1000)
	}
	ctx, cancel := context.WithCancel(t.Context())
	sink := &cancelAfter{Queue: r.q, n: 2, cancel: cancel}
	items, err := downlink.Sweep(ctx, r.c, "/outbox", r.q.Incoming(), downlink.Item{Window: "8", Board: "ref", Source: downlink.SourceOutbox}, sink)
	var queued []string
	for _, it := range items {
		queued = append(queued, it.Name)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("sweep error %v, want context.Canceled", err)
	}
	if strings.Join(queued, ",") != "f00,f01" {
		t.Errorf("queued %v, want f00 and f01, in order", queued)
	}
	if ents, _ := os.ReadDir(r.q.Incoming()); len(ents) != 0 {
		t.Errorf("spool holds %d files after the sweep", len(ents))
	}

	c, err := remote.Dial(t.Context(), r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.c = c
	ids, err := r.sweep(t, c, "9")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 8 {
		t.Errorf("the next sweep queued %d files, want the 8 not queued before", len(ids))
	}
	if left, _ := os.ReadDir(filepath.Join(r.root, "outbox")); len(left) != 0 {
		t.Errorf("outbox holds %d files after the second sweep, want none", len(left))
	}
}

// cancelAfter is the queue, cancelling the sweep once n files are queued.
type cancelAfter struct {
	*downlink.Queue
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Enqueue(ctx context.Context, it downlink.Item, data string) (downlink.Item, error) {
	it, err := c.Queue.Enqueue(ctx, it, data)
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return it, err
}

// A file the payload writes again, the same bytes under the same name, is
// a new file once the first was deleted at the payload: it goes down again.
func TestSameFileAgain(t *testing.T) {
	r := newRig(t)
	var ids []string
	for i := range 3 {
		r.put(t, "status.txt", 100)
		os.Chtimes(filepath.Join(r.root, "outbox", "status.txt"), time.Unix(1e9, 0), time.Unix(1e9, 0))
		got, err := r.sweep(t, r.c, fmt.Sprint(i))
		if err != nil || len(got) != 1 {
			t.Fatalf("sweep %d queued %v (%v), want status.txt", i, got, err)
		}
		ids = append(ids, got...)
	}
	if objs := r.wait(t, ids); len(objs) != 3 {
		t.Errorf("delivered %d objects, want 3", len(objs))
	}
}
