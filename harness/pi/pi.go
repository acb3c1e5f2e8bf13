// Package pi is the bus's side of the SatOS Payload Interface: the Payload
// Controller (PC) that payload apps built on the SatOS Payload SDK register
// with and call over gRPC, and the client of each app's callback server.
//
// The controller follows the contract's rules: every RPC returns at once
// and its asynchronous response goes out later from another goroutine,
// correlation ids are echoed, PC->PA calls have a deadline, and nothing an
// app sends (or fails to answer) can block the controller: each app has a
// bounded queue of outgoing calls, and a request that finds it full is
// answered An_OUT_OF_RESOURCES. Every message in and out is an Event.
package pi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/satbench/hil/harness/orbit"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/harness/power"
)

// The contract's defaults.
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthFailures = 5
	DefaultCallTimeout    = 3 * time.Second
	// DefaultCallbackPort is the app's callback port when the bench gives
	// no callback address: the register call's peer IP and this port.
	DefaultCallbackPort = "50053"
	// OutboundDir is the payload directory StageFileDownload paths are
	// relative to.
	OutboundDir = "/opt/antaris/outbound"
)

// Limits the controller enforces on what apps send.
const (
	maxSequenceID     = 15  // bytes of a sequence id (the contract)
	maxSequenceParams = 127 // bytes of sequence params (the contract)
	minStreamPeriod   = 100 * time.Millisecond
	// queueLen bounds each app's outgoing calls not yet sent; senders
	// work through it, so a slow or vanished app holds at most this many.
	queueLen = 1024
	senders  = 4
	// stagers bounds the StageFileDownload fetches running for one app;
	// more wait in the outgoing queue's place, as An_OUT_OF_RESOURCES.
	stagers = 2
)

// App is a payload app the controller accepts: the one running on a board.
type App struct {
	Board string
	// Key is the app's 20-character auth key; its calls carry the cookie
	// Key + AppID as three digits (or the key alone, as some apps send).
	Key   string
	AppID int
	// Callback is host:port of the app's callback server; empty: the
	// register call's peer IP and DefaultCallbackPort.
	Callback string
	// Power is the board's power, which health_check_fail_action 1
	// cycles; nil: the fail action is reported but cannot be carried out.
	Power power.Power
	// OffTime is how long that cycle keeps the payload off; 0: 2s.
	OffTime time.Duration
}

// Cookie is the cookie the app's calls carry.
func (a App) Cookie() string { return fmt.Sprintf("%s%03d", a.Key, a.AppID) }

// StageRequest is a StageFileDownload the controller accepted: the file
// at Path on Board's payload is to be fetched and queued for downlink.
type StageRequest struct {
	Board    string
	Path     string // the payload path, inside OutboundDir; Rel is what the app sent
	Rel      string
	Priority pb.FilePriorities
	Band     pb.FileDlRadioType
	Corr     int32
}

// Config configures a Controller. Its zero value (plus Apps) serves
// plaintext on :50051 with the contract's timings.
type Config struct {
	// Listener, if set, is served; else Listen ("" = ":50051").
	Listener net.Listener
	Listen   string
	// TLS, if set, is served: apps must dial with TLS (SSL_FLAG=1). A
	// plaintext connection is refused with an event.
	TLS *tls.Config
	// CallbackTLS, if set, is used to dial the apps' callback servers.
	CallbackTLS *tls.Config
	// Dial opens connections to the apps' callback servers; nil: a
	// net.Dialer. A bench with a network of its own dials from inside it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	Apps []App
	// Hardware maps PayloadPowerControl's hw_id to the power it switches.
	Hardware map[int32]power.Power
	// Orbit is the position source of GetCurrentLocation and the GNSS
	// ephemeris stream.
	Orbit orbit.Circular
	// HealthInterval (default 5s), HealthFailures (default 5) and
	// CallTimeout (default 3s) are the contract's health-check timing.
	HealthInterval time.Duration
	HealthFailures int
	CallTimeout    time.Duration
	// DeadlineUnit is the unit of StartSequence's scheduled_deadline on
	// the wire: time.Second (default, epoch seconds) or time.Millisecond.
	DeadlineUnit time.Duration
	// Stage fetches a staged file and queues it for downlink; it may take
	// long. Nil: StageFileDownload answers An_NOT_IMPLEMENTED.
	Stage func(ctx context.Context, r StageRequest) error
	// Notify sees every event; it must not block for long.
	Notify func(Event)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Controller is a running Payload Controller.
type Controller struct {
	cfg   Config
	ln    net.Listener
	srv   *grpc.Server
	peers map[string]*peer // by board
	keys  map[string]*peer // by auth key
	corr  atomic.Uint32
	stats stats

	powerMu  sync.Mutex
	powering map[int32]bool // hw ids being switched

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	served chan error
	wg     sync.WaitGroup // goroutines other than Serve's
}

// Start starts a controller serving cfg's apps.
func Start(cfg Config) (*Controller, error) {
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.HealthFailures <= 0 {
		cfg.HealthFailures = DefaultHealthFailures
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.DeadlineUnit != time.Millisecond {
		cfg.DeadlineUnit = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Notify == nil {
		cfg.Notify = func(Event) {}
	}
	if err := cfg.Orbit.Check(); err != nil {
		return nil, fmt.Errorf("pi: orbit: %w", err)
	}
	c := &Controller{cfg: cfg, peers: map[string]*peer{}, keys: map[string]*peer{}, served: make(chan error, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, a := range cfg.Apps {
		if len(a.Key) != 20 {
			return nil, fmt.Errorf("pi: board %s: auth key is %d characters, want 20", a.Board, len(a.Key))
		}
		if a.AppID < 0 || a.AppID > 999 {
			return nil, fmt.Errorf("pi: board %s: app id %d, want 0..999", a.Board, a.AppID)
		}
		if c.peers[a.Board] != nil || c.keys[a.Key] != nil {
			return nil, fmt.Errorf("pi: board %s: listed twice, or its key is another board's", a.Board)
		}
		p := newPeer(c, a)
		c.peers[a.Board], c.keys[a.Key] = p, p
	}
	ln := cfg.Listener
	if ln == nil {
		addr := cfg.Listen
		if addr == "" {
			addr = ":50051"
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			c.cancel()
			return nil, fmt.Errorf("pi: listen on %s: %w", addr, err)
		}
	}
	// Close's Stop waits for handlers, which return at once: a handler
	// still running after Stop could register an app (a callback
	// connection, a health-check loop) behind Close's back.
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(c.intercept), grpc.WaitForHandlers(true)}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
		ln = &tlsOnly{Listener: ln, c: c}
	}
	c.ln = ln
	c.srv = grpc.NewServer(opts...)
	pb.RegisterAntarisapiPayloadControllerServer(c.srv, &service{c: c})
	for _, p := range c.peers {
		p.start()
	}
	go func() { c.served <- c.srv.Serve(ln) }()
	return c, nil
}

// Addr is the address the controller serves on.
func (c *Controller) Addr() net.Addr { return c.ln.Addr() }

// Close stops serving, ends every app's health checks, streams and queued
// calls, and waits for them.
func (c *Controller) Close() error {
	c.cancel()
	c.srv.Stop()
	err := <-c.served
	c.served <- err
	for _, p := range c.peers {
		p.stop()
	}
	c.wg.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// nextCorr is the next PC-generated correlation id, within 0..65535.
func (c *Controller) nextCorr() int32 { return int32(c.corr.Add(1) & 0xffff) }

func (c *Controller) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = c.cfg.Now()
	}
	c.cfg.Notify(e)
}

func (c *Controller) peer(board string) (*peer, error) {
	p := c.peers[board]
	if p == nil {
		return nil, fmt.Errorf("pi: board %s runs no payload app on this bench", board)
	}
	return p, nil
}

// Registered reports whether board's app has registered since its power
// last went off.
func (c *Controller) Registered(board string) bool {
	p := c.peers[board]
	return p != nil && p.registered()
}

// Forget drops board's registration, health checks and streams: its
// power went off, so its app is gone until it registers again.
func (c *Controller) Forget(board, reason string) {
	if p := c.peers[board]; p != nil && p.unregister() {
		c.emit(Event{Board: board, Kind: EventUnregistered, Detail: reason})
	}
}

// Stats are counts since the controller started, for benchmarks.
type Stats struct {
	HealthChecks   int64 // health checks sent
	HealthFailures int64 // of which failed (error, timeout, non-zero code)
	HealthLate     int64 // sent more than a quarter interval after they were due
	Calls          int64 // PA->PC calls served
	Dropped        int64 // answered An_OUT_OF_RESOURCES: the app's queue was full
}

type stats struct {
	healthChecks, healthFailures, healthLate, calls, dropped atomic.Int64
}

// Stats returns the counts so far.
func (c *Controller) Stats() Stats {
	s := &c.stats
	return Stats{s.healthChecks.Load(), s.healthFailures.Load(), s.healthLate.Load(), s.calls.Load(), s.dropped.Load()}
}

// tlsOnly refuses, with an event, a connection whose first byte is not a
// TLS handshake record: an app dialing a TLS bench in plaintext would
// otherwise see only a vague transport error, and the bench nothing.
type tlsOnly struct {
	net.Listener
	c *Controller
}

func (l *tlsOnly) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstByte{Conn: conn, c: l.c}, nil
}

type firstByte struct {
	net.Conn
	c       *Controller
	checked bool
}

const tlsHandshakeRecord = 0x16

func (f *firstByte) Read(b []byte) (int, error) {
	n, err := f.Conn.Read(b)
	if !f.checked && n > 0 {
		f.checked = true
		if b[0] != tlsHandshakeRecord {
			f.c.emit(Event{Kind: EventRefused, Detail: fmt.Sprintf(
				"plaintext connection from %s refused: this bench serves the Payload Interface over TLS (payload_interface.tls); the app needs SSL_FLAG=1 and the bench's CA in /opt/antaris/sdk/server.crt",
				f.RemoteAddr())})
			f.Conn.Close()
			return 0, errors.New("pi: plaintext connection on a TLS listener")
		}
	}
	return n, err
}
