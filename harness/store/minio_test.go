package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/harness/store/storetest"
	"github.com/satbench/hil/internal/testenv"
)

// shared is one MinIO server for the tests of this binary that only read
// and write objects; it starts on first use and stops in TestMain.
var shared struct {
	once sync.Once
	dir  string
	m    *store.MinIO
	err  error
}

func sharedMinIO(t *testing.T) *store.MinIO {
	t.Helper()
	testenv.RequireMinIO(t)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "hil-store-test-")
		if shared.err == nil {
			shared.m, shared.err = store.StartMinIO(context.Background(), filepath.Join(shared.dir, "minio"), nil)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.m != nil {
		if err := shared.m.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// forEachEndpoint runs f against a new embedded endpoint and against the
// shared MinIO server, so that the embedded one is held to MinIO's
// behaviour.
func forEachEndpoint(t *testing.T, f func(t *testing.T, cfg store.Config, s *store.S3)) {
	t.Run("embedded", func(t *testing.T) {
		e, s := storetest.StartEmbedded(t)
		f(t, e.Config(), s)
	})
	t.Run("minio", func(t *testing.T) {
		cfg := sharedMinIO(t).Config()
		s, err := store.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f(t, cfg, s)
	})
}

// TestMinIO runs the conformance checks against a real MinIO server, as
// TestEmbedded does against the embedded endpoint.
func TestMinIO(t *testing.T) {
	s, err := store.New(sharedMinIO(t).Config())
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, s, "hil-test")
}

// TestServer takes each kind of endpoint down and brings it back.
func TestServer(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		e, _ := storetest.StartEmbedded(t)
		storetest.RunServer(t, e, "hil-test")
	})
	t.Run("minio", func(t *testing.T) {
		storetest.RunServer(t, testenv.StartMinIO(t), "hil-test")
	})
}

// TestServerClosed: Start after Close fails, and Close is idempotent.
func TestServerClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) store.Server
	}{
		{"embedded", func(t *testing.T) store.Server { e, _ := storetest.StartEmbedded(t); return e }},
		{"minio", func(t *testing.T) store.Server { return testenv.StartMinIO(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t)
			if err := srv.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := srv.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			err := srv.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), "closed") {
				t.Errorf("Start after Close: %v, want an error saying it is closed", err)
			}
		})
	}
}

// TestMinIOVersion: the Makefile builds the version the code looks for.
func TestMinIOVersion(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^MINIO_VERSION\s*:?=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile sets no MINIO_VERSION")
	}
	if got := string(m[1]); got != store.MinIOVersion {
		t.Errorf("Makefile's MINIO_VERSION = %s, store.MinIOVersion = %s; make them the same", got, store.MinIOVersion)
	}
}

// TestFindMinIO checks where the binary is looked for, in order, and what
// the errors say.
func TestFindMinIO(t *testing.T) {
	dir := t.TempDir()
	exe := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := exe("env/minio")
	onPath := exe("path/minio")
	cached := exe("cache/hil/minio/" + store.MinIOVersion + "/minio")
	notExe := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name                string
		hilMinIO, path, xdg string
		want                string // the path found, or text in the error
		notInstalled        bool   // the error wraps ErrNoMinIO
	}{
		{"HIL_MINIO first", env, filepath.Dir(onPath), filepath.Join(dir, "cache"), env, false},
		{"then PATH", "", filepath.Dir(onPath), filepath.Join(dir, "cache"), onPath, false},
		{"then the cache", "", empty, filepath.Join(dir, "cache"), cached, false},
		{"none", "", empty, empty, "run `make minio`", true},
		{"HIL_MINIO missing", filepath.Join(dir, "nothing"), filepath.Dir(onPath), "", "HIL_MINIO=" + filepath.Join(dir, "nothing"), false},
		{"HIL_MINIO not executable", notExe, filepath.Dir(onPath), "", "not an executable file", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HIL_MINIO", tc.hilMinIO)
			t.Setenv("PATH", tc.path)
			t.Setenv("XDG_CACHE_HOME", tc.xdg)
			got, err := store.FindMinIO()
			if errors.Is(err, store.ErrNoMinIO) != tc.notInstalled {
				t.Errorf("FindMinIO error %v: wraps ErrNoMinIO = %t, want %t", err, !tc.notInstalled, tc.notInstalled)
			}
			switch {
			case err == nil && got != tc.want:
				t.Errorf("FindMinIO = %s, want %s", got, tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.want):
				t.Errorf("FindMinIO error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestStartMinIOFails: a binary that is not a MinIO server fails the start
// with its output in the error.
func TestStartMinIOFails(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "minio")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"no such server: $*\" >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HIL_MINIO", fake)
	dir := filepath.Join(t.TempDir(), "data")
	m, err := store.StartMinIO(t.Context(), dir, t.Logf)
	if err == nil {
		m.Close()
		t.Fatal("StartMinIO of a binary that exits succeeded")
	}
	for _, want := range []string{"exit status 3", "no such server: server " + dir, dir + ".log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// BenchmarkServerRestart stops and starts each kind of endpoint, and
// reports how long each half takes. A first start of MinIO formats its
// data directory; the figures are of restarts.
func BenchmarkServerRestart(b *testing.B) {
	for _, bc := range []struct {
		name  string
		start func(b *testing.B) store.Server
	}{
		{"embedded", func(b *testing.B) store.Server { e, _ := storetest.StartEmbedded(b); return e }},
		{"minio", func(b *testing.B) store.Server { return testenv.StartMinIO(b) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := bc.start(b)
			var stop, start time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := srv.Stop(b.Context()); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := srv.Start(b.Context()); err != nil {
					b.Fatal(err)
				}
				stop += t1.Sub(t0)
				start += time.Since(t1)
			}
			b.ReportMetric(stop.Seconds()*1000/float64(b.N), "stop-ms/op")
			b.ReportMetric(start.Seconds()*1000/float64(b.N), "start-ms/op")
		})
	}
}

// BenchmarkStartMinIO starts a MinIO server on a new data directory and
// closes it.
func BenchmarkStartMinIO(b *testing.B) {
	testenv.RequireMinIO(b)
	var start time.Duration
	for b.Loop() {
		t0 := time.Now()
		m, err := store.StartMinIO(b.Context(), filepath.Join(b.TempDir(), "minio"), nil)
		if err != nil {
			b.Fatal(err)
		}
		start += time.Since(t0)
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(start.Seconds()*1000/float64(b.N), "start-ms/op")
}

// TestMinIODiesWithItsParent runs StartMinIO in a child process, kills the
// child, and checks that the server goes with it: an idle connection held
// open to the server ends.
func TestMinIODiesWithItsParent(t *testing.T) {
	if os.Getenv("HIL_TEST_MINIO_PARENT") == "1" {
		m, err := store.StartMinIO(context.Background(), filepath.Join(os.Getenv("HIL_TEST_MINIO_DIR"), "minio"), nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("endpoint:", m.Endpoint())
		select {} // until killed
	}
	testenv.RequireMinIO(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMinIODiesWithItsParent$")
	cmd.Env = append(os.Environ(), "HIL_TEST_MINIO_PARENT=1", "HIL_TEST_MINIO_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	endpoint, ok := strings.CutPrefix(strings.TrimSpace(line), "endpoint: ")
	if !ok {
		t.Fatalf("child: %q, %v", line, err)
	}
	c, err := net.Dial("tcp", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard, not a measure

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// The kernel closes a dead process's sockets. (Its listener may close
	// a moment after this one, so dialing it now proves nothing.)
	if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("MinIO at %s still holds a connection after its parent was killed", endpoint)
	}
}
