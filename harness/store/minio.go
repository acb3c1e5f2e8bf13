package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MinIOVersion is the MinIO server `make minio` builds and caches: a Go
// pseudo-version, as MinIO's module has no release tags. The Makefile's
// MINIO_VERSION is the same (a test checks).
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// ErrNoMinIO is what FindMinIO's error wraps when no MinIO server binary
// is installed at all, as opposed to one named by HIL_MINIO that is not
// usable.
var ErrNoMinIO = errors.New("MinIO server not installed")

// How long a MinIO server may take to answer ready, and to exit on
// SIGTERM before it is killed. It answers in about 0.5 s and stops in
// about 1.5 s; the bounds are for slow, loaded machines.
const (
	minioReadyTimeout = time.Minute
	minioStopTimeout  = 10 * time.Second
)

// MinIOCachePath returns where `make minio` installs MinIOVersion:
// ${XDG_CACHE_HOME:-$HOME/.cache}/hil/minio/<MinIOVersion>/minio.
func MinIOCachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "hil", "minio", MinIOVersion, "minio"), nil
}

// FindMinIO returns the MinIO server binary StartMinIO runs: $HIL_MINIO
// if set, else minio on PATH, else the one `make minio` caches. When
// there is none, the error wraps ErrNoMinIO and says how to get one.
func FindMinIO() (string, error) {
	if p := os.Getenv("HIL_MINIO"); p != "" {
		if err := isExecutable(p); err != nil {
			return "", fmt.Errorf("store: HIL_MINIO=%s: %v; want the path of a MinIO server binary, such as the one `make minio` builds", p, err)
		}
		return filepath.Abs(p)
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return filepath.Abs(p)
	}
	cache, err := MinIOCachePath()
	if err == nil && isExecutable(cache) == nil {
		return cache, nil
	}
	if err != nil {
		cache = fmt.Sprintf("${XDG_CACHE_HOME:-$HOME/.cache}/hil/minio/%s/minio (%v)", MinIOVersion, err)
	}
	return "", fmt.Errorf("store: %w: HIL_MINIO is not set, no minio is on PATH and none is at %s; run `make minio` to build MinIO %s there, or set HIL_MINIO to a minio binary",
		ErrNoMinIO, cache, MinIOVersion)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file (mode %v)", path, fi.Mode())
	}
	return nil
}

// MinIO is a MinIO server run by this process on loopback, with random
// root credentials, for tests and benches that want the real S3 server.
// Its output goes to a log file next to its data directory and, if
// given, to a log function. It is killed if this process dies.
type MinIO struct {
	bin     string
	dir     string // data
	certs   string // MinIO's certificate directory, which it creates
	logFile string
	console string // the web console's address, bound to loopback too
	cfg     Config
	out     *minioOutput

	mu       sync.Mutex // serializes Start, Stop and Close
	proc     *minioProc // nil while stopped
	closed   bool
	closeErr error
}

// minioProc is one run of the server.
type minioProc struct {
	cmd      *exec.Cmd
	stopping atomic.Bool   // Stop asked it to exit
	done     chan struct{} // closed once it has exited and its output is read
	err      error         // Wait's result, set before done is closed
}

// StartMinIO runs the MinIO server FindMinIO finds, storing objects under
// dir (created if missing; MinIO owns its content), listening on
// 127.0.0.1 at a free port, and returns once it answers ready. Its output
// goes to dir+".log", appended, and to logf if not nil, line by line; its
// certificate directory is dir+".certs". ctx bounds only the start; Close
// stops the server.
func StartMinIO(ctx context.Context, dir string, logf func(string, ...any)) (*MinIO, error) {
	if dir == "" {
		return nil, errors.New("store: start minio: data directory is empty")
	}
	bin, err := FindMinIO()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("store: start minio: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: start minio: data directory: %w", err)
	}
	logFile := dir + ".log"
	f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: start minio: log: %w", err)
	}
	m := &MinIO{
		bin:     bin,
		dir:     dir,
		certs:   dir + ".certs",
		logFile: logFile,
		cfg: Config{
			Region:    DefaultRegion,
			AccessKey: rand.Text()[:20], // MinIO takes 3 to 20 characters
			SecretKey: rand.Text(),      // and 8 to 40
		},
		out: &minioOutput{file: f, logf: logf},
	}
	// Another process may take a free port before MinIO binds it: try
	// again with others.
	for attempt := 1; ; attempt++ {
		addrs, err := freeAddrs(ctx, 2)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("store: start minio: %w", err)
		}
		m.cfg.Endpoint, m.console = addrs[0], addrs[1]
		inUse, err := m.run(ctx)
		if err == nil {
			return m, nil
		}
		if !inUse || attempt == 3 {
			f.Close()
			os.RemoveAll(m.certs)
			return nil, err
		}
	}
}

// freeAddrs returns n loopback addresses with ports free just now.
func freeAddrs(ctx context.Context, n int) ([]string, error) {
	var lc net.ListenConfig
	var addrs []string
	for range n {
		ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Held open until all are chosen, so that they differ.
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// run starts the server and waits until it answers ready. inUse reports
// a failure to bind an address.
func (m *MinIO) run(ctx context.Context) (inUse bool, err error) {
	cmd := exec.Command(m.bin, "server", m.dir,
		"--address", m.cfg.Endpoint,
		"--console-address", m.console,
		"--certs-dir", m.certs)
	cmd.Env = minioEnv(m.cfg)
	cmd.Stdout, cmd.Stderr = m.out, m.out // one pipe, lines kept whole
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a ^C to the test's process group is ours to handle
		Pdeathsig: syscall.SIGKILL, // never outlive this process
	}
	cmd.WaitDelay = 5 * time.Second
	from := m.out.mark()
	if err := startPinned(cmd); err != nil {
		return false, fmt.Errorf("store: start minio %s: %w", m.bin, err)
	}
	p := &minioProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		m.out.flush()
		if !p.stopping.Load() {
			m.out.logLine(fmt.Sprintf("store: minio %s exited unasked: %v", m.cfg.Endpoint, p.err))
		}
		close(p.done)
	}()
	if err := m.waitReady(ctx, p); err != nil {
		p.stopping.Store(true)
		cmd.Process.Kill()
		<-p.done
		out := m.out.since(from)
		inUse := strings.Contains(out, "already in use")
		return inUse, fmt.Errorf("store: start minio %s on %s: %v; its output (all in %s) ends:\n%s", m.bin, m.cfg.Endpoint, err, m.logFile, out)
	}
	m.proc = p
	return false, nil
}

// waitReady asks the server's cluster probe until it says yes, the server
// exits, or the deadline passes. The readiness probe is no use: it answers
// 200 before the object layer is up (a header says "offline"), and a PUT
// then fails "Server not initialized yet", most often after a restart on
// existing data. The cluster probe answers 200 only once the object layer,
// bucket metadata and IAM are up and the drive has write quorum.
func (m *MinIO) waitReady(ctx context.Context, p *minioProc) error {
	ctx, cancel := context.WithTimeout(ctx, minioReadyTimeout)
	defer cancel()
	url := "http://" + m.cfg.Endpoint + "/minio/health/cluster"
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var last error
	pause := 5 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if ctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(pause)
		select {
		case <-p.done:
			t.Stop()
			return fmt.Errorf("it exited before it was ready: %v", p.err)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not ready: %w; last probe: %v", ctx.Err(), last)
		case <-t.C:
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// minioEnv is this process's environment without MinIO's settings, with
// the server's credentials and no update checks.
func minioEnv(cfg Config) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"MINIO_ROOT_USER="+cfg.AccessKey,
		"MINIO_ROOT_PASSWORD="+cfg.SecretKey,
		"MINIO_UPDATE=off",
	)
}

// spawner starts child processes from one OS thread that never exits.
// Linux sends Pdeathsig when the thread that forked the child exits, not
// the process, and the Go runtime ends a thread when a goroutine locked
// to it exits (as namespace code does on purpose).
var spawner struct {
	once sync.Once
	reqs chan func()
}

func startPinned(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // and never unlocked
			for f := range spawner.reqs {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawner.reqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// Endpoint returns the host:port the server listens on.
func (m *MinIO) Endpoint() string { return m.cfg.Endpoint }

// Config returns a configuration with which New reaches the server.
func (m *MinIO) Config() Config { return m.cfg }

// LogFile returns the path of the file that collects the server's output.
func (m *MinIO) LogFile() string { return m.logFile }

// Stop sends the server SIGTERM and waits for it to exit, killing it if
// it has not within 10 s or by the time ctx is done. The endpoint is down
// when Stop returns, whatever the error, which reports a server that had
// exited unasked.
func (m *MinIO) Stop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stop(ctx)
}

func (m *MinIO) stop(ctx context.Context) error {
	p := m.proc
	if p == nil {
		return nil
	}
	m.proc = nil
	p.stopping.Store(true)
	select {
	case <-p.done:
		return fmt.Errorf("store: stop minio %s: it had exited: %v", m.cfg.Endpoint, p.err)
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(minioStopTimeout)
	defer t.Stop()
	var why string
	select {
	case <-p.done:
		return nil
	case <-t.C:
		why = fmt.Sprintf("still running %v after SIGTERM", minioStopTimeout)
	case <-ctx.Done():
		why = fmt.Sprintf("still running after SIGTERM when the stop's context ended (%v)", ctx.Err())
	}
	p.cmd.Process.Kill()
	<-p.done
	m.out.logLine(fmt.Sprintf("store: minio %s: %s: killed", m.cfg.Endpoint, why))
	return nil
}

// Start runs the server again on the same address, data directory and
// credentials, and returns once it answers ready. ctx bounds the start.
// A server that is running is left alone; one that exited unasked is
// started again.
func (m *MinIO) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("store: start minio %s: closed", m.cfg.Endpoint)
	}
	if m.proc != nil {
		select {
		case <-m.proc.done:
			m.proc = nil
		default:
			return nil
		}
	}
	_, err := m.run(ctx)
	return err
}

// Close stops the server as Stop does and closes its log. The data
// directory and the log stay. Only the first call does anything.
func (m *MinIO) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.closeErr
	}
	m.closed = true
	err := m.stop(context.Background())
	m.closeErr = errors.Join(err, m.out.close(), os.RemoveAll(m.certs))
	return m.closeErr
}

// minioOutput takes the server's output: it appends it to the log file,
// passes it to logf line by line, and keeps the last lines for errors.
type minioOutput struct {
	mu    sync.Mutex
	file  *os.File // nil once closed
	logf  func(string, ...any)
	part  []byte   // a line not yet ended
	tail  []string // the last tailLines lines
	lines int      // lines so far
}

const tailLines = 30

func (o *minioOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file != nil {
		o.file.Write(p) // a full disk must not block the server
	}
	o.part = append(o.part, p...)
	for {
		i := bytes.IndexByte(o.part, '\n')
		if i < 0 {
			break
		}
		o.line("minio: " + string(o.part[:i]))
		o.part = o.part[i+1:]
	}
	if len(o.part) > 64<<10 {
		o.line("minio: " + string(o.part))
		o.part = nil
	}
	return len(p), nil
}

// line keeps a line for since and passes it to logf.
func (o *minioOutput) line(s string) {
	s = strings.TrimRight(s, " \t\r")
	o.lines++
	o.tail = append(o.tail, s)
	if len(o.tail) > tailLines {
		o.tail = o.tail[len(o.tail)-tailLines:]
	}
	if o.logf != nil {
		o.logf("%s", s)
	}
}

// logLine adds a line of ours, about the server, to its output.
func (o *minioOutput) logLine(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file != nil {
		fmt.Fprintln(o.file, s)
	}
	o.line(s)
}

func (o *minioOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.part) > 0 {
		o.line("minio: " + string(o.part))
		o.part = nil
	}
}

// mark returns a position for since.
func (o *minioOutput) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lines
}

// since returns the lines written after mark, at most the last tailLines,
// indented.
func (o *minioOutput) since(mark int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(o.lines-mark, len(o.tail))
	if n == 0 {
		return "\t(nothing)"
	}
	return "\t" + strings.Join(o.tail[len(o.tail)-n:], "\n\t")
}

func (o *minioOutput) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file == nil {
		return nil
	}
	err := o.file.Close()
	o.file = nil
	return err
}
