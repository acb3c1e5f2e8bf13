// Package netproxy is a loopback TCP proxy that tests and features put
// between a client and an endpoint to make the endpoint unreachable or
// slow: it can cut every connection and turn new ones away, limit the
// rate and add latency, all while connections are open.
//
// Unshaped, it forwards with io.Copy between TCP connections, which is
// splice(2) on Linux: the bytes do not pass through this process's memory.
// Shaped (a rate or a delay), it copies chunks of up to 32 KiB.
package netproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections made to Addr to a target address.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // ended by Close, to abandon dials
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*conn]struct{}
	down   bool
	closed bool
	shape  *shape

	accepted, refused, throttled, delayed atomic.Int64
	onHold                                func(throttled bool) // for tests: a chunk is being held back

	wg sync.WaitGroup // the accept loop and every connection
}

// Stats counts what a proxy has done.
type Stats struct {
	Accepted  int64 // connections accepted and forwarded (or tried) to the target
	Refused   int64 // connections reset on arrival while down
	Open      int   // connections open now
	Throttled int64 // chunks held back by the rate limit
	Delayed   int64 // chunks held back by the delay
}

// Start listens on 127.0.0.1 at a free port and forwards every connection
// to target (host:port), dialled when the connection arrives: the target
// need not be up yet. A connection the target refuses is reset, so that
// through the proxy a stopped endpoint shows as "connection reset by
// peer", not "refused". ctx bounds only the start; Close stops the proxy.
func Start(ctx context.Context, target string) (*Proxy, error) {
	return start(ctx, target, nil)
}

func start(ctx context.Context, target string, onHold func(throttled bool)) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("netproxy: target %q is not host:port: %v", target, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netproxy: %w", err)
	}
	p := &Proxy{
		target: target,
		ln:     ln,
		conns:  make(map[*conn]struct{}),
		shape:  newShape(0, 0),
		onHold: onHold,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port the proxy listens on, for clients to use
// instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Down cuts every open connection, both sides with a reset, and until Up
// resets every new one as soon as it arrives. (The proxy keeps its port,
// so a client sees "connection reset" rather than "refused".)
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	conns := p.list()
	p.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
}

// Up forwards new connections again.
func (p *Proxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.down = false
	}
}

// SetRate limits the bytes forwarded per second in each direction, shared
// by all connections, as a link of that rate would; 0 lifts the limit. It
// applies at once, to open connections too, but for what a copier has
// already read (one read: up to 32 KiB, or 1 MiB when unshaped).
func (p *Proxy) SetRate(bytesPerSecond int64) {
	p.reshape(func(s *shape) *shape { return newShape(max(bytesPerSecond, 0), s.delay) })
}

// SetDelay holds every chunk forwarded, in either direction, for d before
// writing it on, so that a request and its response each take d longer;
// 0 removes the delay. Chunks are held one after another, so a delay also
// bounds the rate of a connection to one chunk (up to 32 KiB) per d. It
// applies as SetRate does.
func (p *Proxy) SetDelay(d time.Duration) {
	p.reshape(func(s *shape) *shape {
		n := *s
		n.delay = max(d, 0)
		n.changed = make(chan struct{})
		return &n
	})
}

// reshape replaces the shape and wakes every copier, so that it takes the
// new one up: a copier blocked in a read (or in splice) is woken by a read
// deadline in the past.
func (p *Proxy) reshape(f func(*shape) *shape) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.shape
	p.shape = f(old)
	close(old.changed)
	for c := range p.conns {
		c.client.SetReadDeadline(aLongTimeAgo)
		c.server.SetReadDeadline(aLongTimeAgo)
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// Stats returns the proxy's counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Accepted:  p.accepted.Load(),
		Refused:   p.refused.Load(),
		Open:      open,
		Throttled: p.throttled.Load(),
		Delayed:   p.delayed.Load(),
	}
}

// Close stops listening, cuts every connection and waits until every
// goroutine of the proxy has returned. Only the first call does anything.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed, p.down = true, true
	conns := p.list()
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		c.abort()
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("netproxy: close %s: %w", p.Addr(), err)
	}
	return nil
}

func (p *Proxy) list() []*conn {
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	return conns
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // such as too many open files: the client sees a reset or nothing
		}
		client := nc.(*net.TCPConn)
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			p.refused.Add(1)
			reset(client)
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1) // under mu, so not after Close's Wait began
		p.mu.Unlock()
		go p.forward(client)
	}
}

// reset closes c with a TCP reset rather than an orderly close.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// forward dials the target for client and copies both ways until both
// sides are done or the connection is cut.
func (p *Proxy) forward(client *net.TCPConn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		reset(client)
		return
	}
	c := &conn{client: client, server: nc.(*net.TCPConn), done: make(chan struct{})}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.abort()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	var both sync.WaitGroup
	both.Go(func() { p.pipe(c, c.client, c.server) })
	p.pipe(c, c.server, c.client)
	both.Wait()
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// conn is a forwarded connection: the client's and the one to the target.
type conn struct {
	client, server *net.TCPConn
	once           sync.Once
	done           chan struct{} // closed when cut or closed
}

// abort cuts the connection: both sides get a reset.
func (c *conn) abort() {
	c.once.Do(func() {
		reset(c.client)
		reset(c.server)
		close(c.done)
	})
}

// close closes both sides in order, once both directions are done.
func (c *conn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
		close(c.done)
	})
}

// errReshaped says that the shape changed and copying must go on with the
// new one.
var errReshaped = errors.New("netproxy: shape changed")

// pipe copies src to dst until src ends, passing on its end as a half
// close, or until either fails, which cuts the connection.
func (p *Proxy) pipe(c *conn, src, dst *net.TCPConn) {
	for {
		// Clear a deadline set to wake us before looking at the shape: a
		// change after this sets the deadline again.
		src.SetReadDeadline(time.Time{})
		p.mu.Lock()
		s := p.shape
		p.mu.Unlock()
		var err error
		if s.rate == 0 && s.delay == 0 {
			_, err = io.Copy(dst, src) // splice(2)
		} else {
			err = p.copyShaped(c, src, dst, s)
		}
		switch {
		case err == nil:
			dst.CloseWrite()
			return
		case errors.Is(err, os.ErrDeadlineExceeded), err == errReshaped:
			continue
		default:
			c.abort()
			return
		}
	}
}

// copyShaped copies src to dst chunk by chunk, holding each chunk for the
// delay and until the rate allows it, until src ends (nil), the copy
// fails, or the shape changes (errReshaped or a deadline error).
func (p *Proxy) copyShaped(c *conn, src, dst *net.TCPConn, s *shape) error {
	b := s.toTarget
	if src == c.server {
		b = s.toClient
	}
	buf := make([]byte, s.chunk)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			held := p.hold(c, s, b, n)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if held != nil {
				return held
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// hold waits for the delay and for n bytes of rate. It returns
// errReshaped if the shape changes meanwhile, net.ErrClosed if the
// connection is cut; the chunk is then written on at once.
func (p *Proxy) hold(c *conn, s *shape, b *bucket, n int) error {
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-s.changed:
			return errReshaped
		case <-c.done:
			return net.ErrClosed
		}
	}
	if s.delay > 0 {
		p.delayed.Add(1)
		if p.onHold != nil {
			p.onHold(false)
		}
		if err := wait(s.delay); err != nil {
			return err
		}
	}
	if b != nil {
		if d := b.take(time.Now(), n); d > 0 {
			p.throttled.Add(1)
			if p.onHold != nil {
				p.onHold(true)
			}
			return wait(d)
		}
	}
	return nil
}

// shape is how the proxy forwards: replaced whole, never changed.
type shape struct {
	rate               int64 // bytes per second each way; 0: unlimited
	delay              time.Duration
	chunk              int     // bytes read and written at a time when shaped
	toTarget, toClient *bucket // nil when unlimited
	changed            chan struct{}
}

func newShape(rate int64, delay time.Duration) *shape {
	s := &shape{rate: rate, delay: delay, chunk: 32 << 10, changed: make(chan struct{})}
	if rate > 0 {
		// Small chunks keep a slow link smooth; the burst is a tenth of a
		// second of the rate, so timers firing late do not lose throughput.
		s.chunk = int(min(max(rate/16, 256), 32<<10))
		burst := max(int64(s.chunk), rate/10)
		s.toTarget = newBucket(rate, burst)
		s.toClient = newBucket(rate, burst)
	}
	return s
}

// bucket is a token bucket of bytes that can go into debt: a chunk larger
// than the tokens left is let through after a wait long enough to repay
// the debt, and those after it wait longer.
type bucket struct {
	rate, burst float64 // bytes per second, bytes

	mu     sync.Mutex
	tokens float64 // negative: debt
	last   time.Time
}

func newBucket(rate, burst int64) *bucket {
	return &bucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
}

// take spends n tokens at now and returns how long to wait before sending
// them: 0 if the bucket held them.
func (b *bucket) take(now time.Time, n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.last) {
		now = b.last // a caller that read the clock before another
	}
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}
