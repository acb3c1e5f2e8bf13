// Package storetest checks that a store.Store keeps what it is given, byte
// for byte. The same checks run against the embedded endpoint and against
// a real S3 server such as MinIO.
package storetest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/satbench/hil/harness/store"
)

const MiB = 1 << 20

// Run checks s in bucket, creating the bucket if need be. It writes under
// a new random prefix and deletes nothing, so it can share a bucket with
// other runs. It puts about 150 MiB in all.
func Run(t *testing.T, s store.Store, bucket string) {
	if err := s.EnsureBucket(t.Context(), bucket); err != nil {
		t.Fatal(err)
	}
	// Twice: it must be idempotent.
	if err := s.EnsureBucket(t.Context(), bucket); err != nil {
		t.Fatalf("second EnsureBucket: %v", err)
	}
	prefix := "storetest/" + rand.Text() + "/"
	t.Logf("writing under s3://%s/%s", bucket, prefix)

	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, s, bucket, prefix+"roundtrip/") })
	t.Run("Metadata", func(t *testing.T) { testMetadata(t, s, bucket, prefix+"metadata/") })
	t.Run("List", func(t *testing.T) { testList(t, s, bucket, prefix+"list/") })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, s, bucket, prefix+"missing/") })
	t.Run("FailedPut", func(t *testing.T) { testFailedPut(t, s, bucket, prefix+"failed/") })
}

// payload returns size pseudo-random bytes, the same for the same seed,
// generated as they are read.
func payload(seed uint64, size int64) io.Reader {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	return io.LimitReader(mrand.NewChaCha8(key), size)
}

func testRoundTrip(t *testing.T, s store.Store, bucket, prefix string) {
	// minio-go switches to a multipart upload above 16 MiB: both sides of
	// the switch, and objects of several parts, must come back intact.
	sizes := []struct {
		name string
		size int64
	}{
		{"0", 0},
		{"1", 1},
		{"5MiB", 5 * MiB},
		{"16MiB", 16 * MiB},
		{"16MiB+1", 16*MiB + 1},
		{"40MiB", 40 * MiB},
	}
	for i, tc := range sizes {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			key := prefix + tc.name
			put := sha256.New()
			o, err := s.Put(ctx, bucket, key, io.TeeReader(payload(uint64(i), tc.size), put), tc.size, store.PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if o.Bucket != bucket || o.Key != key || o.Size != tc.size || o.ETag == "" {
				t.Errorf("Put returned %+v, want bucket %q, key %q, size %d and an ETag", o, bucket, key, tc.size)
			}

			r, err := s.Get(ctx, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := sha256.New()
			n, err := io.Copy(got, r)
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			if n != tc.size || !bytes.Equal(got.Sum(nil), put.Sum(nil)) {
				t.Errorf("read back %d bytes, SHA-256 %x; put %d bytes, SHA-256 %x", n, got.Sum(nil), tc.size, put.Sum(nil))
			}
		})
	}
}

func testMetadata(t *testing.T, s store.Store, bucket, prefix string) {
	ctx := t.Context()
	tests := []struct {
		name     string
		opts     store.PutOptions
		wantType string
		wantMeta map[string]string
	}{
		{"defaults", store.PutOptions{}, "application/octet-stream", map[string]string{}},
		{
			"set",
			store.PutOptions{
				ContentType: "application/x-ccsds-packet",
				Metadata:    map[string]string{"Sat-Id": "HIL-1", "pass": "0042", "sha256": strings.Repeat("ab", 32)},
			},
			"application/x-ccsds-packet",
			// Keys come back lower-case.
			map[string]string{"sat-id": "HIL-1", "pass": "0042", "sha256": strings.Repeat("ab", 32)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := prefix + tc.name
			put, err := s.Put(ctx, bucket, key, strings.NewReader("telemetry"), 9, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Stat(ctx, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []store.Object{put, st} {
				if o.ContentType != tc.wantType {
					t.Errorf("ContentType = %q, want %q", o.ContentType, tc.wantType)
				}
				if !maps.Equal(o.Metadata, tc.wantMeta) {
					t.Errorf("Metadata = %v, want %v", o.Metadata, tc.wantMeta)
				}
				if o.Size != 9 || o.LastModified.IsZero() {
					t.Errorf("Size = %d, LastModified = %v; want 9 and a time", o.Size, o.LastModified)
				}
			}
		})
	}
}

func testList(t *testing.T, s store.Store, bucket, prefix string) {
	ctx := t.Context()
	// Put out of order, with "directories" and a sibling that shares the
	// prefix's text but not the prefix.
	keys := []string{"b", "a/2", "c/d/e", "a/1", "a/10"}
	for _, k := range keys {
		if _, err := s.Put(ctx, bucket, prefix+k, strings.NewReader(k), int64(len(k)), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sibling := strings.TrimSuffix(prefix, "/") + "x"
	if _, err := s.Put(ctx, bucket, sibling, strings.NewReader("x"), 1, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		prefix string
		want   []string
	}{
		{prefix, []string{"a/1", "a/10", "a/2", "b", "c/d/e"}},
		{prefix + "a/", []string{"a/1", "a/10", "a/2"}},
		{prefix + "c", []string{"c/d/e"}},
		{prefix + "none/", nil},
	}
	for _, tc := range tests {
		objs, err := s.List(ctx, bucket, tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range objs {
			k := strings.TrimPrefix(o.Key, prefix)
			got = append(got, k)
			if o.Bucket != bucket || o.Size != int64(len(k)) || o.ETag == "" {
				t.Errorf("List(%q): %+v, want bucket %q, size %d and an ETag", tc.prefix, o, bucket, len(k))
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func testNotFound(t *testing.T, s store.Store, bucket, prefix string) {
	ctx := t.Context()
	key := prefix + "nothing"
	where := fmt.Sprintf("s3://%s/%s", bucket, key)
	_, err := s.Stat(ctx, bucket, key)
	if !store.IsNotFound(err) || !strings.Contains(fmt.Sprint(err), where) {
		t.Errorf("Stat of a missing key: %v; want a not-found error naming %s", err, where)
	}
	r, err := s.Get(ctx, bucket, key)
	if err == nil {
		r.Close()
	}
	if !store.IsNotFound(err) || !strings.Contains(fmt.Sprint(err), where) {
		t.Errorf("Get of a missing key: %v; want a not-found error naming %s", err, where)
	}
	if _, err := s.Stat(ctx, bucket+"-missing", key); !store.IsNotFound(err) {
		t.Errorf("Stat in a missing bucket: %v; want a not-found error", err)
	}
}

var errDownlink = errors.New("downlink lost")

func testFailedPut(t *testing.T, s store.Store, bucket, prefix string) {
	// A failure in the first part or after some parts have landed; a reader
	// that errs, one that ends early, and one with more than it should.
	tests := []struct {
		name   string
		size   int64
		give   int64 // bytes before the failure
		errors bool  // fail with an error rather than end early
	}{
		{"error/single", 5 * MiB, 2 * MiB, true},
		{"error/multipart", 40 * MiB, 20 * MiB, true},
		{"short/single", 5 * MiB, 3 * MiB, false},
		{"short/multipart", 40 * MiB, 20 * MiB, false},
		{"long/empty", 0, 1, false},
		{"long/single", 5 * MiB, 5*MiB + 1, false},
		{"long/multipart", 40 * MiB, 40*MiB + 1, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			key := prefix + tc.name
			r := payload(uint64(100+i), tc.give)
			if tc.errors {
				r = io.MultiReader(r, errReader{})
			}
			if o, err := s.Put(ctx, bucket, key, r, tc.size, store.PutOptions{}); err == nil {
				t.Fatalf("Put of a failing reader succeeded: %+v", o)
			}
			if _, err := s.Stat(ctx, bucket, key); !store.IsNotFound(err) {
				t.Errorf("after a failed Put, Stat: %v; want not found", err)
			}
		})
	}
	objs, err := s.List(t.Context(), bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Errorf("after failed Puts, List(%q) = %+v, want nothing", prefix, objs)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errDownlink }

// RunServer checks that srv can be taken down and brought back. While it
// is stopped its address refuses connections and a Put fails at once; a
// Put in flight when it stops fails and leaves nothing; once started
// again, a client made before the stop works as before and finds every
// object. It writes under a new random prefix in bucket and leaves srv
// running.
func RunServer(t *testing.T, srv store.Server, bucket string) {
	ctx := t.Context()
	cfg := srv.Config()
	s, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	prefix := "servertest/" + rand.Text() + "/"
	t.Logf("writing under s3://%s/%s", bucket, prefix)
	before := putSum(t, s, bucket, prefix+"before", 0, 3*MiB)

	if err := srv.Start(ctx); err != nil {
		t.Fatalf("Start while running: %v", err)
	}
	if _, err := s.Stat(ctx, bucket, prefix+"before"); err != nil {
		t.Fatalf("after Start while running: %v", err)
	}

	// A Put in flight when the endpoint stops: the reader holds back the
	// rest of the object until Stop has returned.
	cut := &holdingReader{r: payload(1, 5*MiB), give: 2 * MiB, held: make(chan struct{}), release: make(chan struct{})}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, bucket, prefix+"cut", cut, 5*MiB, store.PutOptions{})
		putErr <- err
	}()
	select {
	case <-cut.held:
	case err := <-putErr:
		t.Fatalf("Put ended before it was cut: %v", err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	close(cut.release)
	if err := <-putErr; err == nil {
		t.Errorf("a Put in flight across Stop succeeded")
	}

	if err := srv.Stop(ctx); err != nil {
		t.Errorf("Stop while stopped: %v", err)
	}
	down := func(s *store.S3) error {
		_, err := s.Put(ctx, bucket, prefix+"down", strings.NewReader("down"), 4, store.PutOptions{})
		return err
	}
	// The first client may still hold connections the stop cut, and a Put
	// (not retried: its body is a stream) then fails on one of those. A new
	// client must be refused.
	if err := down(s); err == nil {
		t.Errorf("Put while stopped succeeded")
	}
	fresh, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := down(fresh); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Put while stopped: %v; want connection refused", err)
	}
	if c, err := net.Dial("tcp", cfg.Endpoint); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dialing %s while stopped: %v; want connection refused", cfg.Endpoint, err)
	}

	if err := srv.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := srv.Config(); got != cfg {
		t.Errorf("Config after Start = %+v, want %+v as before", got, cfg)
	}
	// The first client, unchanged, works again.
	after := putSum(t, s, bucket, prefix+"after", 2, 1*MiB)
	for key, sum := range map[string][]byte{"before": before, "after": after} {
		if got := getSum(t, s, bucket, prefix+key); !bytes.Equal(got, sum) {
			t.Errorf("%s: read back SHA-256 %x, put %x", key, got, sum)
		}
	}
	for _, key := range []string{"cut", "down"} {
		if _, err := s.Stat(ctx, bucket, prefix+key); !store.IsNotFound(err) {
			t.Errorf("Stat of %s after Start: %v; want not found", key, err)
		}
	}
	objs, err := s.List(ctx, bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, strings.TrimPrefix(o.Key, prefix))
	}
	if want := []string{"after", "before"}; !slices.Equal(keys, want) {
		t.Errorf("List after Start = %q, want %q", keys, want)
	}
}

// putSum puts size bytes of payload(seed) at key and returns their SHA-256.
func putSum(t *testing.T, s store.Store, bucket, key string, seed uint64, size int64) []byte {
	t.Helper()
	h := sha256.New()
	if _, err := s.Put(t.Context(), bucket, key, io.TeeReader(payload(seed, size), h), size, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// getSum returns the SHA-256 of the object at key.
func getSum(t *testing.T, s store.Store, bucket, key string) []byte {
	t.Helper()
	sum, err := store.SHA256(t.Context(), s, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := hex.DecodeString(sum)
	return b
}

// StartEmbedded starts an embedded endpoint with its data in a temporary
// directory, and a client to it holding the given buckets; both end with
// the test.
func StartEmbedded(t testing.TB, buckets ...string) (*store.Embedded, *store.S3) {
	t.Helper()
	return StartEmbeddedIn(t, t.TempDir(), buckets...)
}

// StartEmbeddedIn is StartEmbedded with its data in dir, for tests that
// start an endpoint again on the same data.
func StartEmbeddedIn(t testing.TB, dir string, buckets ...string) (*store.Embedded, *store.S3) {
	t.Helper()
	e, err := store.StartEmbedded(t.Context(), dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	s, err := store.New(e.Config())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range buckets {
		if err := s.EnsureBucket(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	return e, s
}

// holdingReader passes on give bytes of r, then closes held and waits for
// release before passing on the rest.
type holdingReader struct {
	r       io.Reader
	give    int64
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *holdingReader) Read(p []byte) (int, error) {
	if h.give == 0 {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
		return h.r.Read(p)
	}
	p = p[:min(int64(len(p)), h.give)]
	n, err := h.r.Read(p)
	h.give -= int64(n)
	return n, err
}
