package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// Embedded is an S3 endpoint served from this process over real HTTP on
// loopback, so that S3 talks to it exactly as to MinIO: the same requests,
// signatures and multipart uploads.
//
// It is gofakes3 (routing, XML, multipart protocol) on a backend that
// streams objects to files in a data directory, behind a checker of AWS
// Signature Version 4 that also decodes aws-chunked bodies. Memory does
// not grow with object size. As in S3, a single PUT's ETag is the MD5 of
// the data and a multipart upload's the MD5 of its parts' MD5s, here
// without the "-N" part count. Objects persist in the directory across
// restarts; multipart uploads in progress survive Stop and Start but not
// a new endpoint. One endpoint at a time may use a directory.
type Embedded struct {
	cfg     Config
	handler http.Handler
	logf    func(string, ...any)

	mu       sync.Mutex // serializes Start, Stop and Close
	run      *serving   // nil while stopped
	closed   bool
	closeErr error
}

// serving is one spell of serving, from a Start to a Stop.
type serving struct {
	srv  *http.Server
	done chan error // Serve's result

	mu   sync.Mutex
	reqs int           // requests in handlers
	idle chan struct{} // closed when reqs falls to 0; nil until waited on
}

// StartEmbedded serves an endpoint on 127.0.0.1 with a random port and
// random credentials, storing objects under dir (created if missing).
// ctx bounds only the start; Close stops the endpoint. logf, if not nil,
// receives server-side errors such as rejected signatures.
func StartEmbedded(ctx context.Context, dir string, logf func(string, ...any)) (*Embedded, error) {
	if dir == "" {
		return nil, errors.New("store: start embedded: data directory is empty")
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	be, err := newFSBackend(dir)
	if err != nil {
		return nil, fmt.Errorf("store: start embedded: data directory %s: %w", dir, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("store: start embedded: %w", err)
	}
	cfg := Config{
		Endpoint:  ln.Addr().String(),
		Region:    DefaultRegion,
		AccessKey: rand.Text(),
		SecretKey: rand.Text(),
	}
	fake := gofakes3.New(be,
		gofakes3.WithLogger(logger(logf)),
		gofakes3.WithHostBucket(false),
		gofakes3.WithAutoBucket(false),
	)
	e := &Embedded{
		cfg: cfg,
		handler: &sigV4{
			accessKey: cfg.AccessKey,
			secretKey: cfg.SecretKey,
			region:    cfg.Region,
			next:      fake.Server(),
			logf:      logf,
		},
		logf: logf,
	}
	e.serve(ln)
	return e, nil
}

// serve serves on ln until Stop or Close.
func (e *Embedded) serve(ln net.Listener) {
	sv := &serving{done: make(chan error, 1)}
	sv.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sv.begin()
			defer sv.end()
			e.handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          log.New(logWriter(e.logf), "store: embedded: ", 0),
	}
	e.run = sv
	go func() { sv.done <- sv.srv.Serve(ln) }()
}

func (sv *serving) begin() {
	sv.mu.Lock()
	sv.reqs++
	sv.mu.Unlock()
}

func (sv *serving) end() {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.reqs--
	if sv.reqs == 0 && sv.idle != nil {
		close(sv.idle)
		sv.idle = nil
	}
}

// wait waits until no handler runs.
func (sv *serving) wait(ctx context.Context) error {
	sv.mu.Lock()
	if sv.reqs == 0 {
		sv.mu.Unlock()
		return nil
	}
	if sv.idle == nil {
		sv.idle = make(chan struct{})
	}
	idle, n := sv.idle, sv.reqs
	sv.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d requests still in handlers: %w", n, ctx.Err())
	}
}

// Endpoint returns the host:port the endpoint listens on.
func (e *Embedded) Endpoint() string { return e.cfg.Endpoint }

// Config returns a configuration with which New reaches the endpoint.
func (e *Embedded) Config() Config { return e.cfg }

// Stop closes the listener and every connection at once, so that new
// connections are refused and requests in flight fail, and waits until
// their handlers have returned (until ctx is done at most: the endpoint is
// down either way). Objects and multipart uploads stay for Start.
func (e *Embedded) Stop(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	sv := e.run
	if sv == nil {
		return nil
	}
	e.run = nil
	err := sv.srv.Close()
	if serr := <-sv.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	err = errors.Join(err, sv.wait(ctx))
	if err != nil {
		return fmt.Errorf("store: stop embedded %s: %w", e.cfg.Endpoint, err)
	}
	return nil
}

// Start listens again on the same address, with the same data and
// credentials. It fails if another process has taken the port meanwhile,
// or after Close. A running endpoint is left alone.
func (e *Embedded) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("store: start embedded %s: closed", e.cfg.Endpoint)
	}
	if e.run != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("store: start embedded again on %s: %w", e.cfg.Endpoint, err)
	}
	e.serve(ln)
	return nil
}

// Close stops accepting connections and waits for requests in flight to
// finish, however long they take. Only the first call does anything.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.closeErr
	}
	e.closed = true
	sv := e.run
	if sv == nil {
		return nil
	}
	e.run = nil
	err := sv.srv.Shutdown(context.Background())
	if serr := <-sv.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		e.closeErr = fmt.Errorf("store: close embedded %s: %w", e.cfg.Endpoint, err)
	}
	return e.closeErr
}

// logger passes gofakes3's warnings and errors to logf; its info lines
// describe every request.
type logger func(string, ...any)

func (l logger) Print(level gofakes3.LogLevel, v ...any) {
	if level == gofakes3.LogErr || level == gofakes3.LogWarn {
		l("store: embedded: gofakes3 %s: %s", level, strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
	}
}

type logWriter func(string, ...any)

func (l logWriter) Write(p []byte) (int, error) {
	l("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
