package store_test

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/signer"
	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/harness/store/storetest"
)

func TestEmbedded(t *testing.T) {
	_, s := storetest.StartEmbedded(t)
	storetest.Run(t, s, "hil-test")
}

func TestNewConfig(t *testing.T) {
	const secret = "s3cr3t-never-printed"
	good := store.Config{Endpoint: "127.0.0.1:9000", AccessKey: "hil", SecretKey: secret}
	tests := []struct {
		name string
		edit func(*store.Config)
		want string // in the error
	}{
		{"empty endpoint", func(c *store.Config) { c.Endpoint = "" }, "Endpoint is empty"},
		{"scheme", func(c *store.Config) { c.Endpoint = "http://127.0.0.1:9000" }, "has a scheme"},
		{"no port", func(c *store.Config) { c.Endpoint = "127.0.0.1" }, "is not host:port"},
		{"no host", func(c *store.Config) { c.Endpoint = ":9000" }, "has no host"},
		{"port 0", func(c *store.Config) { c.Endpoint = "127.0.0.1:0" }, `port "0"`},
		{"port name", func(c *store.Config) { c.Endpoint = "minio:http" }, `port "http"`},
		{"port too big", func(c *store.Config) { c.Endpoint = "minio:70000" }, `port "70000"`},
		{"empty access key", func(c *store.Config) { c.AccessKey = "" }, "AccessKey is empty"},
		{"empty secret key", func(c *store.Config) { c.SecretKey = "" }, "SecretKey is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, err := store.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) error = %v, want one containing %q", cfg.Endpoint, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the secret key", err)
			}
		})
	}
	for _, ep := range []string{"127.0.0.1:9000", "minio.lab:443", "[::1]:9000"} {
		cfg := good
		cfg.Endpoint = ep
		if _, err := store.New(cfg); err != nil {
			t.Errorf("New with Endpoint %q: %v", ep, err)
		}
	}
}

func TestEmbeddedChecksSignatures(t *testing.T) {
	e, _ := storetest.StartEmbedded(t)
	for _, tc := range []struct {
		name string
		edit func(*store.Config)
	}{
		{"wrong secret", func(c *store.Config) { c.SecretKey += "x" }},
		{"wrong access key", func(c *store.Config) { c.AccessKey += "x" }},
		{"wrong region", func(c *store.Config) { c.Region = "eu-west-1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.Config()
			tc.edit(&cfg)
			s, err := store.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = s.EnsureBucket(t.Context(), "hil-test")
			if err == nil || store.IsNotFound(err) {
				t.Errorf("EnsureBucket with a bad key: %v, want access denied", err)
			}
		})
	}
	t.Run("unsigned", func(t *testing.T) {
		resp, err := http.Get("http://" + e.Endpoint() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("unsigned ListBuckets: status %d, want %d: %s", resp.StatusCode, http.StatusForbidden, body)
		}
	})
}

// TestEmbeddedChunkSignatures sends signed aws-chunked PUTs by hand and
// alters one byte in transit: the endpoint must refuse the body and store
// nothing, whichever chunk the byte is in.
func TestEmbeddedChunkSignatures(t *testing.T) {
	e, s := storetest.StartEmbedded(t)
	ctx := t.Context()
	const bucket = "hil-test"
	if err := s.EnsureBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: 3 chunks of data
	cfg := e.Config()
	for _, tc := range []struct {
		name   string
		flip   int // offset in the framed body, from the end if negative; 0 alters nothing
		status int
	}{
		{"intact", 0, http.StatusOK},
		{"first chunk", 100, http.StatusBadRequest},
		{"last chunk", -200, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "chunked/" + tc.name
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+cfg.Endpoint+"/"+bucket+"/"+key, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			req = signer.StreamingSignV4(req, cfg.AccessKey, cfg.SecretKey, "", cfg.Region, int64(len(data)), time.Now().UTC(), hasher{sha256.New()})
			if tc.flip != 0 {
				framed, err := io.ReadAll(req.Body)
				if err != nil {
					t.Fatal(err)
				}
				i := tc.flip
				if i < 0 {
					i += len(framed)
				}
				framed[i] ^= 1
				req.Body = io.NopCloser(bytes.NewReader(framed))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			_, err = s.Stat(ctx, bucket, key)
			if tc.status == http.StatusOK && err != nil {
				t.Errorf("Stat after an intact PUT: %v", err)
			}
			if tc.status != http.StatusOK && !store.IsNotFound(err) {
				t.Errorf("Stat after a refused PUT: %v, want not found", err)
			}
		})
	}
}

// hasher is the sha256 minio-go's signer wants.
type hasher struct{ hash.Hash }

func (hasher) Close() {}

// TestEmbeddedLeavesNoParts checks that failed uploads leave no temporary
// files once the endpoint has finished with them.
func TestEmbeddedLeavesNoParts(t *testing.T) {
	dir := t.TempDir()
	e, s := storetest.StartEmbeddedIn(t, dir)
	ctx := t.Context()
	if err := s.EnsureBucket(ctx, "hil-test"); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{5 << 20, 40 << 20} {
		r := io.MultiReader(io.LimitReader(zeros{}, size/2), failing{})
		if _, err := s.Put(ctx, "hil-test", "failed", r, size, store.PutOptions{}); err == nil {
			t.Fatalf("Put of %d bytes from a failing reader succeeded", size)
		}
	}
	// Close waits for the requests in flight.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"tmp", "uploads"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range ents {
			t.Errorf("left behind: %s", filepath.Join(sub, ent.Name()))
		}
	}
}

// TestEmbeddedRestart checks that objects outlive the endpoint.
func TestEmbeddedRestart(t *testing.T) {
	dir := t.TempDir()
	e, s := storetest.StartEmbeddedIn(t, dir)
	ctx := t.Context()
	if err := s.EnsureBucket(ctx, "hil-test"); err != nil {
		t.Fatal(err)
	}
	put, err := s.Put(ctx, "hil-test", "pass/1", strings.NewReader("frame"), 5, store.PutOptions{Metadata: map[string]string{"pass": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	_, s = storetest.StartEmbeddedIn(t, dir)
	got, err := s.Stat(ctx, "hil-test", "pass/1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ETag != put.ETag || got.Size != 5 || got.Metadata["pass"] != "1" {
		t.Errorf("after restart: %+v, want %+v", got, put)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

// minioClient returns a bare minio-go client of an endpoint, for what
// Store does not do: parallel part uploads, small list pages, delimiters.
func minioClient(t *testing.T, cfg store.Config) *minio.Client {
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Region: cfg.Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestParallelParts uploads the parts of one object at once, as minio-go
// does from an io.ReaderAt such as a file.
func TestParallelParts(t *testing.T) { forEachEndpoint(t, testParallelParts) }

func testParallelParts(t *testing.T, cfg store.Config, s *store.S3) {
	ctx := t.Context()
	if err := s.EnsureBucket(ctx, "hil-test"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 70<<20+3) // 5 parts of 16 MiB
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	_, err := minioClient(t, cfg).PutObject(ctx, "hil-test", "parallel", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{NumThreads: 4})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, "hil-test", "parallel")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("read back SHA-256 %x, want %x", h.Sum(nil), want)
	}
}

// TestListPages lists in pages of one and two keys, with and without a
// delimiter.
func TestListPages(t *testing.T) { forEachEndpoint(t, testListPages) }

func testListPages(t *testing.T, cfg store.Config, s *store.S3) {
	ctx := t.Context()
	if err := s.EnsureBucket(ctx, "list-pages"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"c/d", "a/2", "b", "a/1", "a/3/x", "d"} {
		if _, err := s.Put(ctx, "list-pages", k, strings.NewReader(k), int64(len(k)), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c := minioClient(t, cfg)
	for _, tc := range []struct {
		opts minio.ListObjectsOptions
		want []string
	}{
		{minio.ListObjectsOptions{Recursive: true, MaxKeys: 2}, []string{"a/1", "a/2", "a/3/x", "b", "c/d", "d"}},
		{minio.ListObjectsOptions{Recursive: false, MaxKeys: 1}, []string{"a/", "b", "c/", "d"}},
		{minio.ListObjectsOptions{Prefix: "a/", MaxKeys: 1}, []string{"a/1", "a/2", "a/3/"}},
		{minio.ListObjectsOptions{Recursive: true, StartAfter: "a/3/x"}, []string{"b", "c/d", "d"}},
	} {
		var got []string
		for o := range c.ListObjects(ctx, "list-pages", tc.opts) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			got = append(got, o.Key)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListObjects(%+v) = %q, want %q", tc.opts, got, tc.want)
		}
	}
}

// TestPutFile: a file goes up through io.ReaderAt (parts in parallel) from
// its current offset, and a file whose length disagrees with size is
// refused before anything is sent.
func TestPutFile(t *testing.T) { forEachEndpoint(t, testPutFile) }

func testPutFile(t *testing.T, _ store.Config, s *store.S3) {
	ctx := t.Context()
	if err := s.EnsureBucket(ctx, "files"); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), (33<<20)/16) // 33 MiB: three parts
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		offset int64
		size   int64
		want   string // error substring; empty: ok
	}{
		{"whole", 0, int64(len(data)), ""},
		{"from an offset", 5, int64(len(data)) - 5, ""},
		{"size too small", 0, int64(len(data)) - 1, "want"},
		{"size too large", 0, int64(len(data)) + 1, "want"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Seek(tt.offset, io.SeekStart)
			key := "k/" + strings.ReplaceAll(tt.name, " ", "-")
			_, err = s.Put(ctx, "files", key, f, tt.size, store.PutOptions{})
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Put: %v, want an error containing %q", err, tt.want)
				}
				if _, err := s.Stat(ctx, "files", key); !store.IsNotFound(err) {
					t.Errorf("a refused Put left an object: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rc, err := s.Get(ctx, "files", key)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if sha256.Sum256(got) != sha256.Sum256(data[tt.offset:]) {
				t.Errorf("object differs from the file from offset %d (%d bytes back)", tt.offset, len(got))
			}
		})
	}
}
