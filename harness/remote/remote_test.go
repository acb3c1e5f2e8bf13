package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/fixtures/payload/payloadtest"
	"github.com/satbench/hil/harness/remote"
)

// countingListener counts the connections it accepts and closes the first
// drop of them at once, as a payload still booting would.
type countingListener struct {
	net.Listener
	drop     int64
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.accepted.Add(1) <= l.drop {
			c.Close()
			continue
		}
		return c, nil
	}
}

// rig is a reference payload served in-process over loopback SSH, behind
// a listener that counts connections.
type rig struct {
	*payloadtest.Payload
	ln *countingListener
}

// startPayload serves a payload until the test ends. The first drop
// connections are closed unanswered.
func startPayload(t *testing.T, drop int64) *rig {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: l, drop: drop}
	return &rig{Payload: payloadtest.Start(t, payloadtest.Options{Listener: ln}), ln: ln}
}

func (r *rig) config() remote.Config {
	return remote.Config{Address: r.Addr, User: "signaling", Signer: r.ClientKey, HostKey: r.HostKey.PublicKey()}
}

// dial opens a client closed at the end of the test.
func (r *rig) dial(t *testing.T) *remote.Client {
	t.Helper()
	c, err := remote.Dial(t.Context(), r.config())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hostNames lists the host directory of payload path dir.
func (r *rig) hostNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(r.Host(dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// isContextError says whether err came from a context ending rather than
// from the payload.
func isContextError(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func TestConnect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		drop    int64 // connections the payload closes unanswered first
		connect func(context.Context, remote.Config) (*remote.Client, error)
	}{
		{"Dial", 0, remote.Dial},
		{"Wait", 0, remote.Wait},
		{"Wait retries until the payload answers", 3, remote.Wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startPayload(t, tc.drop)
			ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
			defer cancel()
			c, err := tc.connect(ctx, r.config())
			if err != nil {
				t.Fatalf("connect with the pinned host key: %v", err)
			}
			defer c.Close()
			if got, want := r.ln.accepted.Load(), tc.drop+1; got != want {
				t.Errorf("payload accepted %d connections, want %d", got, want)
			}
			// The connection is logged in and usable.
			if err := c.Run(ctx, "/usr/bin/exit 0", nil); err != nil {
				t.Errorf("Run on the new client: %v", err)
			}
			r.Log.Wait(t, "login ok", `user="signaling"`)
		})
	}
}

// TestRefusedAtOnce: a wrong host key or a refused login cannot be fixed by
// retrying, so Wait returns it at once. Each Wait has a long deadline; it
// returning the payload's error and not a deadline error, after exactly
// one connection, shows it did not retry.
func TestRefusedAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, r *rig, cfg *remote.Config)
		check func(t *testing.T, r *rig, cfg remote.Config, err error)
	}{
		{
			name: "host key mismatch",
			setup: func(t *testing.T, r *rig, cfg *remote.Config) {
				cfg.HostKey = payloadtest.NewSigner(t).PublicKey()
			},
			check: func(t *testing.T, r *rig, cfg remote.Config, err error) {
				var hk *remote.HostKeyError
				if !errors.As(err, &hk) {
					t.Fatalf("got %v (%T), want a *remote.HostKeyError", err, err)
				}
				if hk.Address != r.Addr ||
					!bytes.Equal(hk.Got.Marshal(), r.HostKey.PublicKey().Marshal()) ||
					!bytes.Equal(hk.Want.Marshal(), cfg.HostKey.Marshal()) {
					t.Errorf("HostKeyError{%s, got %s, want %s}; want {%s, got %s, want %s}",
						hk.Address, ssh.FingerprintSHA256(hk.Got), ssh.FingerprintSHA256(hk.Want),
						r.Addr, ssh.FingerprintSHA256(r.HostKey.PublicKey()), ssh.FingerprintSHA256(cfg.HostKey))
				}
				msg := err.Error()
				for _, want := range []string{
					r.Addr,
					ssh.FingerprintSHA256(r.HostKey.PublicKey()), // what the payload presented
					ssh.FingerprintSHA256(cfg.HostKey),           // what the board pins
				} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not name %s", msg, want)
					}
				}
			},
		},
		{
			name: "key not authorized",
			setup: func(t *testing.T, r *rig, cfg *remote.Config) {
				cfg.Signer = payloadtest.NewSigner(t)
			},
			check: func(t *testing.T, r *rig, cfg remote.Config, err error) {
				if !strings.Contains(err.Error(), "unable to authenticate") || !strings.Contains(err.Error(), r.Addr) {
					t.Errorf("got %v, want an authentication failure naming %s", err, r.Addr)
				}
				r.Log.Wait(t, "login refused", ssh.FingerprintSHA256(cfg.Signer.PublicKey()), "key not authorized")
			},
		},
		{
			name: "user not allowed",
			setup: func(t *testing.T, r *rig, cfg *remote.Config) {
				cfg.User = "root"
			},
			check: func(t *testing.T, r *rig, cfg remote.Config, err error) {
				if !strings.Contains(err.Error(), "unable to authenticate") || !strings.Contains(err.Error(), "root@"+r.Addr) {
					t.Errorf("got %v, want an authentication failure naming root@%s", err, r.Addr)
				}
				r.Log.Wait(t, "login refused", `user="root"`, "user not allowed")
			},
		},
	} {
		for _, connect := range []struct {
			name string
			f    func(context.Context, remote.Config) (*remote.Client, error)
		}{{"Dial", remote.Dial}, {"Wait", remote.Wait}} {
			t.Run(tc.name+"/"+connect.name, func(t *testing.T) {
				r := startPayload(t, 0)
				cfg := r.config()
				tc.setup(t, r, &cfg)
				ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
				defer cancel()
				c, err := connect.f(ctx, cfg)
				if err == nil {
					c.Close()
					t.Fatal("connected; want a refusal")
				}
				if isContextError(err) || ctx.Err() != nil {
					t.Fatalf("got %v (context: %v); want the refusal at once, long before the deadline", err, ctx.Err())
				}
				if n := r.ln.accepted.Load(); n != 1 {
					t.Errorf("payload accepted %d connections; want 1, no retry", n)
				}
				tc.check(t, r, cfg, err)
			})
		}
	}
}

// TestWaitGivesUp: while nothing answers SSH, Wait retries until its
// context ends and then says so, naming the address.
func TestWaitGivesUp(t *testing.T) {
	errAbort := errors.New("window aborted")
	for _, tc := range []struct {
		name string
		// start returns the address to wait on and a context that will
		// end; wantCause is what the error must wrap.
		start     func(t *testing.T) (string, context.Context)
		attempt   time.Duration // Config.AttemptTimeout
		wantCause error
	}{
		{
			name: "nothing listens",
			start: func(t *testing.T) (string, context.Context) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := l.Addr().String()
				l.Close() // connections are refused
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				t.Cleanup(cancel)
				return addr, ctx
			},
			attempt:   50 * time.Millisecond,
			wantCause: context.DeadlineExceeded,
		},
		{
			name: "nobody accepts",
			start: func(t *testing.T) (string, context.Context) {
				// The kernel completes the TCP handshake into the
				// backlog, but no SSH banner ever comes.
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				t.Cleanup(cancel)
				return l.Addr().String(), ctx
			},
			attempt:   50 * time.Millisecond,
			wantCause: context.DeadlineExceeded,
		},
		{
			name: "accepted but silent, cancelled with a cause",
			start: func(t *testing.T) (string, context.Context) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancelCause(t.Context())
				t.Cleanup(func() { cancel(nil) })
				conns := make(chan net.Conn, 64)
				go func() {
					first := true
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						conns <- c // held open, never written
						if first {
							// Cancel while the attempt is in its
							// handshake: Wait must not sit out the
							// attempt timeout.
							cancel(errAbort)
							first = false
						}
					}
				}()
				t.Cleanup(func() {
					l.Close()
					for {
						select {
						case c := <-conns:
							c.Close()
						default:
							return
						}
					}
				})
				return l.Addr().String(), ctx
			},
			attempt:   payloadtest.WaitLimit, // only the cancel can end the attempt
			wantCause: errAbort,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, ctx := tc.start(t)
			cfg := remote.Config{Address: addr, User: "signaling", Signer: payloadtest.NewSigner(t), HostKey: payloadtest.NewSigner(t).PublicKey(),
				AttemptTimeout: tc.attempt}
			res := make(chan error, 1)
			go func() {
				c, err := remote.Wait(ctx, cfg)
				if c != nil {
					c.Close()
				}
				res <- err
			}()
			var err error
			select {
			case err = <-res:
			case <-time.After(payloadtest.WaitLimit):
				t.Fatalf("Wait still running %v after its context ended", payloadtest.WaitLimit)
			}
			if ctx.Err() == nil {
				t.Fatalf("Wait returned %v before its context ended", err)
			}
			if !errors.Is(err, tc.wantCause) {
				t.Errorf("got %v, want an error wrapping %v", err, tc.wantCause)
			}
			if msg := fmt.Sprint(err); !strings.Contains(msg, addr) || !strings.Contains(msg, "did not answer SSH") {
				t.Errorf("error %q does not say that %s did not answer", msg, addr)
			}
		})
	}
}

// TestSlowHandshake: a payload that sends its banner at once and then
// takes longer than the attempt timeout for key exchange and login (an
// emulated CPU under load) is connected, not cut off: the attempt timeout
// covers only the wait for the banner.
func TestSlowHandshake(t *testing.T) {
	r := startPayload(t, 0)
	const attempt = 25 * time.Millisecond
	px := newLaggingProxy(t, r.Addr, 4*attempt)
	cfg := r.config()
	cfg.Address = px.addr
	cfg.AttemptTimeout = attempt
	ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
	defer cancel()
	start := time.Now()
	c, err := remote.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial through a slow handshake: %v", err)
	}
	defer c.Close()
	if took := time.Since(start); took < 2*attempt {
		t.Fatalf("handshake took %v; the proxy did not slow it past the %v attempt timeout", took, attempt)
	}
	if _, err := c.Stat(ctx, "/outbox"); err != nil {
		t.Errorf("SFTP on the new client: %v", err)
	}
}

// TestConfigRefused: a Config missing a required field is refused by Dial
// and by Wait at once, without a connection.
func TestConfigRefused(t *testing.T) {
	r := startPayload(t, 0)
	for _, tc := range []struct {
		name  string
		clear func(*remote.Config)
	}{
		{"no Address", func(c *remote.Config) { c.Address = "" }},
		{"no User", func(c *remote.Config) { c.User = "" }},
		{"no Signer", func(c *remote.Config) { c.Signer = nil }},
		{"no HostKey", func(c *remote.Config) { c.HostKey = nil }},
		{"zero Config", func(c *remote.Config) { *c = remote.Config{} }},
	} {
		for _, connect := range []struct {
			name string
			f    func(context.Context, remote.Config) (*remote.Client, error)
		}{{"Dial", remote.Dial}, {"Wait", remote.Wait}} {
			t.Run(tc.name+"/"+connect.name, func(t *testing.T) {
				cfg := r.config()
				tc.clear(&cfg)
				ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
				defer cancel()
				c, err := connect.f(ctx, cfg)
				if err == nil {
					c.Close()
					t.Fatal("connected with an incomplete Config")
				}
				if isContextError(err) || ctx.Err() != nil {
					t.Fatalf("got %v (context: %v); want the Config refused at once", err, ctx.Err())
				}
				if !strings.Contains(err.Error(), "config needs Address, User, Signer and HostKey") {
					t.Errorf("got %v, want it to list the required fields", err)
				}
			})
		}
	}
	if n := r.ln.accepted.Load(); n != 0 {
		t.Errorf("payload accepted %d connections for incomplete Configs, want 0", n)
	}
}

func TestRun(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	long := strings.Repeat("x", 70<<10)
	for _, tc := range []struct {
		name       string
		cmd        string
		wantStdout string
		wantStatus int // 0: Run returns nil
		wantStderr string
	}{
		{"exit 0", "/usr/bin/exit 0", "", 0, ""},
		{"stdout captured", "/usr/bin/exit 0 hello world 2>&1", "hello world\n", 0, ""},
		{"stderr kept off stdout", "/usr/bin/exit 0 quiet", "", 0, ""},
		{"non-zero exit", "/usr/bin/exit 3 boom", "", 3, "boom"},
		{"stderr trimmed", `/usr/bin/exit 4 "  spaced  out  "`, "", 4, "spaced  out"},
		{"no stderr", "/usr/bin/exit 5", "", 5, ""},
		{"stderr capped at 64 KiB", "/usr/bin/exit 1 " + long, "", 1, long[:64<<10]},
		{"missing program", "/usr/bin/nope", "", 127, "payload: /usr/bin/nope: not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := c.Run(t.Context(), tc.cmd, &stdout)
			if got := stdout.String(); got != tc.wantStdout {
				t.Errorf("stdout %q, want %q", got, tc.wantStdout)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Run: %v, want nil", err)
				}
				return
			}
			var ee *remote.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Run: %v (%T), want a *remote.ExitError", err, err)
			}
			if ee.Cmd != tc.cmd || ee.Status != tc.wantStatus || ee.Stderr != tc.wantStderr {
				t.Errorf("ExitError{Cmd %.40q, Status %d, Stderr %.80q (%d bytes)}, want {%.40q, %d, %.80q (%d bytes)}",
					ee.Cmd, ee.Status, ee.Stderr, len(ee.Stderr), tc.cmd, tc.wantStatus, tc.wantStderr, len(tc.wantStderr))
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("exited %d", tc.wantStatus)) || !strings.Contains(msg, tc.wantStderr) {
				t.Errorf("error %.120q does not give status %d and stderr", msg, tc.wantStatus)
			}
		})
	}
}

// TestRunCancelled: cancelling Run's context ends the wait at once with
// the cause, ends the command on the payload, and leaves the connection
// usable.
func TestRunCancelled(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	const cmd = "/usr/bin/sleep 1h"
	errAbort := errors.New("window aborted")
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	res := make(chan error, 1)
	go func() { res <- c.Run(ctx, cmd, nil) }()
	r.Log.Wait(t, "exec user=signaling", fmt.Sprintf("cmd=%q", cmd)) // the payload runs it
	cancel(errAbort)
	select {
	case err := <-res:
		if !errors.Is(err, errAbort) || !strings.Contains(err.Error(), cmd) || !strings.Contains(err.Error(), r.Addr) {
			t.Errorf("Run: %v; want an error naming %s and %q, wrapping %v", err, r.Addr, cmd, errAbort)
		}
	case <-time.After(payloadtest.WaitLimit):
		t.Fatalf("Run of %q still running %v after its context was cancelled", cmd, payloadtest.WaitLimit)
	}
	// Closing the session ended the program (143: as if by SIGTERM).
	r.Log.Wait(t, "exec end", fmt.Sprintf("cmd=%q", cmd), "exit=143")
	if err := c.Run(t.Context(), "/usr/bin/exit 0", nil); err != nil {
		t.Errorf("Run after a cancelled Run: %v; the connection should survive", err)
	}
}

// unsized hides any Len or Size method, so that the SFTP client cannot
// know the length and writes sequentially.
type unsized struct{ io.Reader }

// failing returns the bytes of r and then err instead of io.EOF.
type failing struct {
	r   io.Reader
	err error
}

func (f *failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = f.err
	}
	return n, err
}

// sizedFailing claims size bytes, which makes the SFTP client write
// concurrently, and fails before that.
type sizedFailing struct {
	failing
	size int64
}

func (s *sizedFailing) Size() int64 { return s.size }

func content(size int64, seed uint64) []byte {
	b, err := io.ReadAll(mkfile.Content(size, seed))
	if err != nil {
		panic(err)
	}
	return b
}

func TestPut(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	for i, tc := range []struct {
		name     string
		path     string
		size     int64
		mode     fs.FileMode
		existing bool // a file is already there, with other content and mode
		unsized  bool
	}{
		{"empty", "/outbox/empty", 0, 0o644, false, false},
		{"parents created", "/a/b/c/d.bin", 100, 0o600, false, false},
		{"executable", "/usr/local/bin/tool", 5000, 0o755, false, false},
		{"large, concurrent writes", "/outbox/large.bin", 3<<20 + 17, 0o640, false, false},
		{"large, unknown length", "/outbox/stream.bin", 1<<20 + 3, 0o644, false, true},
		{"replaces an existing file", "/outbox/replace.txt", 1000, 0o640, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := content(tc.size, uint64(i))
			if tc.existing {
				if err := os.MkdirAll(filepath.Dir(r.Host(tc.path)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(r.Host(tc.path), []byte("old content, longer than nothing"), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			var src io.Reader = bytes.NewReader(want)
			if tc.unsized {
				src = unsized{src}
			}
			if err := c.Put(t.Context(), tc.path, src, tc.mode); err != nil {
				t.Fatalf("Put: %v", err)
			}
			got, err := os.ReadFile(r.Host(tc.path))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s holds %d bytes, not the %d put", tc.path, len(got), len(want))
			}
			fi, err := os.Stat(r.Host(tc.path))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.mode {
				t.Errorf("%s has mode %v, want %v", tc.path, fi.Mode(), tc.mode)
			}
			dir, base := filepath.Split(tc.path)
			if names := r.hostNames(t, dir); !slices.Contains(names, base) || slices.ContainsFunc(names, isPartial) {
				t.Errorf("directory %s holds %q; want %s and no partial file", dir, names, base)
			}
		})
	}
}

func isPartial(name string) bool { return strings.HasPrefix(name, ".hil-partial-") }

// TestPutReaderFails: a Put whose reader fails leaves no partial file, and
// either no file or the previous one intact.
func TestPutReaderFails(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	errBroken := errors.New("uplink source broke")
	for i, tc := range []struct {
		name     string
		reader   func(data []byte) io.Reader
		existing bool
	}{
		{"at once", func([]byte) io.Reader { return &failing{strings.NewReader(""), errBroken} }, false},
		{"midway, unknown length", func(d []byte) io.Reader { return &failing{bytes.NewReader(d[:300<<10]), errBroken} }, false},
		{"midway, concurrent writes", func(d []byte) io.Reader {
			return &sizedFailing{failing{bytes.NewReader(d[:300<<10]), errBroken}, int64(len(d))}
		}, false},
		{"midway, over an existing file", func(d []byte) io.Reader { return &failing{bytes.NewReader(d[:300<<10]), errBroken} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fmt.Sprintf("/uplink/%d", i)
			name := dir + "/app.bin"
			old := []byte("the version before")
			if tc.existing {
				if err := os.MkdirAll(r.Host(dir), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(r.Host(name), old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := c.Put(t.Context(), name, tc.reader(content(1<<20, 9)), 0o755)
			if !errors.Is(err, errBroken) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Put: %v; want an error naming %s and wrapping %v", err, name, errBroken)
			}
			if names := r.hostNames(t, dir); slices.ContainsFunc(names, isPartial) {
				t.Errorf("partial file left behind: %s holds %q", dir, names)
			}
			got, herr := os.ReadFile(r.Host(name))
			switch {
			case tc.existing && !bytes.Equal(got, old):
				t.Errorf("%s now holds %d bytes (%v); want the previous file intact", name, len(got), herr)
			case !tc.existing && !errors.Is(herr, fs.ErrNotExist):
				t.Errorf("%s exists after a failed Put (%d bytes, %v)", name, len(got), herr)
			}
			// The client agrees, and is still usable.
			_, err = c.Stat(t.Context(), name)
			if tc.existing && err != nil || !tc.existing && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after a failed Put: %v", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	ctx := t.Context()
	data := content(300<<10+5, 4)
	if err := c.Put(ctx, "/outbox/rt/x.bin", bytes.NewReader(data), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "/outbox/rt/y.txt", strings.NewReader("why"), 0o600); err != nil {
		t.Fatal(err)
	}

	fi, err := c.Stat(ctx, "/outbox/rt/x.bin")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name() != "x.bin" || fi.Size() != int64(len(data)) || fi.Mode() != 0o640 || fi.IsDir() {
		t.Errorf("Stat: %s %d %v dir=%v; want x.bin %d -rw-r----- file", fi.Name(), fi.Size(), fi.Mode(), fi.IsDir(), len(data))
	}
	if fi, err := c.Stat(ctx, "/outbox/rt"); err != nil || !fi.IsDir() {
		t.Errorf("Stat of the directory: %v, %v; want a directory", fi, err)
	}

	got, err := c.ReadFile(ctx, "/outbox/rt/x.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadFile: %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	var buf bytes.Buffer
	n, err := c.Get(ctx, "/outbox/rt/y.txt", &buf)
	if err != nil || n != 3 || buf.String() != "why" {
		t.Errorf("Get: %d %q %v; want 3 \"why\"", n, buf.String(), err)
	}

	list := func() []string {
		t.Helper()
		fis, err := c.ReadDir(ctx, "/outbox/rt")
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		var names []string
		for _, fi := range fis {
			names = append(names, fi.Name())
		}
		slices.Sort(names)
		return names
	}
	if names := list(); !slices.Equal(names, []string{"x.bin", "y.txt"}) {
		t.Errorf("ReadDir: %q, want [x.bin y.txt]", names)
	}

	if err := c.Remove(ctx, "/outbox/rt/x.bin"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := c.Stat(ctx, "/outbox/rt/x.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after Remove: %v, want not exist", err)
	}
	if _, err := os.Stat(r.Host("/outbox/rt/x.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("host file after Remove: %v, want gone", err)
	}
	if names := list(); !slices.Equal(names, []string{"y.txt"}) {
		t.Errorf("ReadDir after Remove: %q, want [y.txt]", names)
	}
}

// TestNotExist: SFTP errors for a missing file satisfy fs.ErrNotExist and
// name the path.
func TestNotExist(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	for _, tc := range []struct {
		op   string
		path string
		f    func(ctx context.Context, p string) error
	}{
		{"Get", "/outbox/missing.bin", func(ctx context.Context, p string) error {
			_, err := c.Get(ctx, p, io.Discard)
			return err
		}},
		{"ReadFile", "/outbox/missing.bin", func(ctx context.Context, p string) error {
			_, err := c.ReadFile(ctx, p)
			return err
		}},
		{"ReadDir", "/no/such/dir", func(ctx context.Context, p string) error {
			_, err := c.ReadDir(ctx, p)
			return err
		}},
		{"Stat", "/outbox/missing.bin", func(ctx context.Context, p string) error {
			_, err := c.Stat(ctx, p)
			return err
		}},
		{"Stat in a missing directory", "/no/such/dir/f", func(ctx context.Context, p string) error {
			_, err := c.Stat(ctx, p)
			return err
		}},
		{"Remove", "/outbox/missing.bin", func(ctx context.Context, p string) error { return c.Remove(ctx, p) }},
	} {
		t.Run(tc.op, func(t *testing.T) {
			err := tc.f(t.Context(), tc.path)
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s %s: %v; want errors.Is(err, fs.ErrNotExist)", tc.op, tc.path, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.path) {
				t.Errorf("%s: error %q does not name %s", tc.op, err, tc.path)
			}
		})
	}
}

// TestSFTPContextDone: an SFTP operation whose context is done fails with
// the cause; it closes the connection, since SFTP calls cannot be
// abandoned one by one.
func TestSFTPContextDone(t *testing.T) {
	r := startPayload(t, 0)
	c := r.dial(t)
	errAbort := errors.New("window aborted")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errAbort)
	if _, err := c.Stat(ctx, "/outbox"); !errors.Is(err, errAbort) || !strings.Contains(err.Error(), r.Addr) {
		t.Errorf("Stat with a cancelled context: %v; want an error naming %s, wrapping %v", err, r.Addr, errAbort)
	}
	if err := c.Run(t.Context(), "/usr/bin/exit 0", nil); err == nil {
		t.Error("Run after an aborted SFTP call succeeded; want the connection closed")
	}
}

// linkProxy relays TCP connections to a payload until it is frozen; from
// then on it drops everything without closing anything, as a radio link or
// a wedged network path does.
type linkProxy struct {
	addr       string
	frozen     chan struct{}
	freezeOnce sync.Once
	// lag holds each read from the payload but its first for this long:
	// a payload whose banner comes at once and whose key exchange is slow.
	lag time.Duration
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	return newLaggingProxy(t, target, 0)
}

func newLaggingProxy(t *testing.T, target string, lag time.Duration) *linkProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &linkProxy{addr: l.Addr().String(), frozen: make(chan struct{}), lag: lag}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, a, b)
			mu.Unlock()
			go px.relay(b, a, 0)
			go px.relay(a, b, px.lag)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return px
}

func (px *linkProxy) freeze() { px.freezeOnce.Do(func() { close(px.frozen) }) }

// relay copies src to dst, holding each read but the first for lag; once
// frozen it reads and drops.
func (px *linkProxy) relay(dst, src net.Conn, lag time.Duration) {
	buf := make([]byte, 32<<10)
	for first := true; ; first = false {
		n, err := src.Read(buf)
		if !first && lag > 0 {
			time.Sleep(lag) // the modelled slowness, not a wait for an event
		}
		select {
		case <-px.frozen:
			if err != nil {
				return
			}
			continue
		default:
		}
		if err != nil {
			dst.Close()
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestDeadLink: on a link that stops carrying data without closing, every
// operation still ends with its context, with the cause.
func TestDeadLink(t *testing.T) {
	r := startPayload(t, 0)
	errLinkDown := errors.New("no answer over the link")
	for _, tc := range []struct {
		name string
		warm bool // an SFTP call has already opened the SFTP session
		op   func(ctx context.Context, c *remote.Client) error
	}{
		{"Run", false, func(ctx context.Context, c *remote.Client) error {
			return c.Run(ctx, "/usr/bin/exit 0", nil)
		}},
		{"first SFTP call", false, func(ctx context.Context, c *remote.Client) error {
			_, err := c.Stat(ctx, "/outbox")
			return err
		}},
		{"Stat", true, func(ctx context.Context, c *remote.Client) error {
			_, err := c.Stat(ctx, "/outbox")
			return err
		}},
		{"Put", true, func(ctx context.Context, c *remote.Client) error {
			return c.Put(ctx, "/outbox/x", strings.NewReader("x"), 0o644)
		}},
		{"Get", true, func(ctx context.Context, c *remote.Client) error {
			_, err := c.Get(ctx, "/usr/bin/sleep", io.Discard)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := newLinkProxy(t, r.Addr)
			cfg := r.config()
			cfg.Address = px.addr
			c, err := remote.Dial(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.warm {
				if _, err := c.Stat(t.Context(), "/"); err != nil {
					t.Fatal(err)
				}
			}
			px.freeze()
			ctx, cancel := context.WithTimeoutCause(t.Context(), 200*time.Millisecond, errLinkDown)
			defer cancel()
			res := make(chan error, 1)
			go func() { res <- tc.op(ctx, c) }()
			select {
			case err := <-res:
				if !errors.Is(err, errLinkDown) || !strings.Contains(err.Error(), px.addr) {
					t.Errorf("%s on a dead link: %v; want an error naming %s, wrapping %v", tc.name, err, px.addr, errLinkDown)
				}
			case <-time.After(payloadtest.WaitLimit):
				t.Fatalf("%s on a dead link still blocked %v after its context ended", tc.name, payloadtest.WaitLimit)
			}
		})
	}
}
