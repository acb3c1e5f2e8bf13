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
// restarts; multipart uploads in progress do not. One endpoint at a time
// may use a directory.
type Embedded struct {
	cfg  Config
	srv  *http.Server
	done chan error // Serve's result

	closeOnce sync.Once
	closeErr  error
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
		srv: &http.Server{
			Handler: &sigV4{
				accessKey: cfg.AccessKey,
				secretKey: cfg.SecretKey,
				region:    cfg.Region,
				next:      fake.Server(),
				logf:      logf,
			},
			ReadHeaderTimeout: time.Minute,
			ErrorLog:          log.New(logWriter(logf), "store: embedded: ", 0),
		},
		done: make(chan error, 1),
	}
	go func() { e.done <- e.srv.Serve(ln) }()
	return e, nil
}

// Endpoint returns the host:port the endpoint listens on.
func (e *Embedded) Endpoint() string { return e.cfg.Endpoint }

// Config returns a configuration with which New reaches the endpoint.
func (e *Embedded) Config() Config { return e.cfg }

// Close stops accepting connections and waits for requests in flight to
// finish, however long they take. Only the first call does anything.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		err := e.srv.Shutdown(context.Background())
		if serr := <-e.done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		if err != nil {
			e.closeErr = fmt.Errorf("store: close embedded %s: %w", e.cfg.Endpoint, err)
		}
	})
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
