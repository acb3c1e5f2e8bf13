package pi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/satbench/hil/harness/pi/antarispb"
)

// peer is one app: its registration, its callback client and everything
// running on its behalf.
type peer struct {
	c     *Controller
	app   App
	out   chan func(context.Context) // outgoing calls, in order of queueing
	stage chan struct{}              // StageFileDownload fetches running

	mu         sync.Mutex
	reg        bool
	failAction int32
	callback   string
	conn       *grpc.ClientConn
	client     pb.AntarisapiApplicationCallbackClient
	regCtx     context.Context // ends when the app unregisters
	regCancel  context.CancelFunc
	streams    map[string]*streamRun // "gnss", "eps"
	seqs       map[string]*sequence
	waiters    map[waitKey]chan int32
}

type sequence struct {
	id       string
	deadline time.Time
	timer    *time.Timer
}

// waitKey names an asynchronous response the controller waits for.
type waitKey struct {
	method string // "PC_response_health_check", "PC_response_shutdown"
	corr   int32
}

func newPeer(c *Controller, a App) *peer {
	return &peer{
		c: c, app: a,
		out:     make(chan func(context.Context), queueLen),
		stage:   make(chan struct{}, stagers),
		streams: map[string]*streamRun{},
		seqs:    map[string]*sequence{},
		waiters: map[waitKey]chan int32{},
	}
}

// start starts the senders, which make the queued calls until Close.
func (p *peer) start() {
	for range senders {
		p.c.wg.Go(func() {
			for {
				select {
				case f := <-p.out:
					f(p.c.ctx)
				case <-p.c.ctx.Done():
					return
				}
			}
		})
	}
}

func (p *peer) stop() {
	p.unregister()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
		p.conn, p.client = nil, nil
	}
}

func (p *peer) registered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reg
}

// register records a PC_register from addr and (re)starts the app's
// health checks. It returns the callback address.
func (p *peer) register(req *pb.ReqRegisterParams, addr net.Addr) (string, error) {
	callback := p.app.Callback
	if callback == "" {
		host, _, err := net.SplitHostPort(addr.String())
		if err != nil {
			return "", fmt.Errorf("no callback address configured and the caller's address %s has no host: %w", addr, err)
		}
		callback = net.JoinHostPort(host, DefaultCallbackPort)
	}
	creds := insecure.NewCredentials()
	if p.c.cfg.CallbackTLS != nil {
		creds = credentials.NewTLS(p.c.cfg.CallbackTLS)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A second register is an app that restarted. Ended under the same
	// lock as the new one starts: registers running at once must not
	// each start a health-check loop, one of them orphaned.
	p.unregisterLocked()
	if p.conn == nil || p.callback != callback {
		if p.conn != nil {
			p.conn.Close()
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
		if dial := p.c.cfg.Dial; dial != nil {
			opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return dial(ctx, "tcp", addr)
			}))
		}
		conn, err := grpc.NewClient(callback, opts...)
		if err != nil {
			return "", fmt.Errorf("callback address %s: %w", callback, err)
		}
		p.conn, p.client, p.callback = conn, pb.NewAntarisapiApplicationCallbackClient(conn), callback
	}
	p.reg, p.failAction = true, req.GetHealthCheckFailAction()
	p.regCtx, p.regCancel = context.WithCancel(p.c.ctx)
	ctx := p.regCtx
	p.c.wg.Go(func() { p.healthLoop(ctx) })
	return callback, nil
}

// unregister ends the app's registration and what runs for it. It
// reports whether the app was registered.
func (p *peer) unregister() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unregisterLocked()
}

func (p *peer) unregisterLocked() bool {
	was := p.reg
	p.reg = false
	if p.regCancel != nil {
		p.regCancel()
		p.regCancel = nil
	}
	for k, s := range p.streams {
		s.cancel()
		delete(p.streams, k)
	}
	for id, s := range p.seqs {
		s.timer.Stop()
		delete(p.seqs, id)
	}
	return was
}

// client returns the callback client and the registration's context, or
// an error if the app is not registered.
func (p *peer) registration() (pb.AntarisapiApplicationCallbackClient, context.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reg {
		return nil, nil, fmt.Errorf("the app on board %s is not registered", p.app.Board)
	}
	return p.client, p.regCtx, nil
}

type callFunc func(context.Context, pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error)

// call makes one PC->PA call with the contract's deadline and records it.
func (p *peer) call(ctx context.Context, method string, corr int32, hasCorr bool, detail string, f callFunc) (int32, error) {
	cl, _, err := p.registration()
	var code int32
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, p.c.cfg.CallTimeout)
		var r *pb.AntarisReturnType
		r, err = f(cctx, cl)
		cancel()
		code = int32(r.GetReturnCode())
	}
	p.c.emit(Event{Board: p.app.Board, Kind: EventOut, Method: method, Corr: corr, HasCorr: hasCorr, Code: code, Detail: detail, Err: err})
	return code, err
}

// respond queues an asynchronous PC->PA call and returns the code the
// request is answered with: success, or An_OUT_OF_RESOURCES if the app's
// queue is full.
func (p *peer) respond(method string, corr int32, detail string, f callFunc) pb.AntarisReturnCode {
	return p.respondThen(method, corr, detail, f, nil)
}

// respondThen is respond, running then (if not nil) once the call is
// made, whatever its outcome: the senders make queued calls in parallel,
// so what must follow the response waits for it.
func (p *peer) respondThen(method string, corr int32, detail string, f callFunc, then func()) pb.AntarisReturnCode {
	job := func(ctx context.Context) {
		p.call(ctx, method, corr, true, detail, f)
		if then != nil {
			then()
		}
	}
	select {
	case p.out <- job:
		return pb.AntarisReturnCode_An_SUCCESS
	default:
		p.c.stats.dropped.Add(1)
		p.c.emit(Event{Board: p.app.Board, Kind: EventDropped, Method: method, Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("%d calls to the app already queued; the request is answered An_OUT_OF_RESOURCES", queueLen)})
		return pb.AntarisReturnCode_An_OUT_OF_RESOURCES
	}
}

// expect registers interest in an asynchronous response; done removes it.
func (p *peer) expect(k waitKey) (ch <-chan int32, done func()) {
	c := make(chan int32, 1)
	p.mu.Lock()
	p.waiters[k] = c
	p.mu.Unlock()
	return c, func() {
		p.mu.Lock()
		delete(p.waiters, k)
		p.mu.Unlock()
	}
}

// deliver hands an asynchronous response to whoever waits for it, and
// reports whether anyone did.
func (p *peer) deliver(k waitKey, v int32) bool {
	p.mu.Lock()
	c := p.waiters[k]
	delete(p.waiters, k)
	p.mu.Unlock()
	if c == nil {
		return false
	}
	c <- v
	return true
}

// healthLoop checks the app every HealthInterval until ctx ends, and
// carries out its fail action after HealthFailures failures in a row.
func (p *peer) healthLoop(ctx context.Context) {
	cfg := &p.c.cfg
	t := time.NewTicker(cfg.HealthInterval)
	defer t.Stop()
	fails := 0
	for {
		var due time.Time
		select {
		case <-ctx.Done():
			return
		case due = <-t.C:
		}
		p.c.stats.healthChecks.Add(1)
		if time.Since(due) > cfg.HealthInterval/4 {
			p.c.stats.healthLate.Add(1)
		}
		why := p.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if why == "" {
			fails = 0
			continue
		}
		fails++
		p.c.stats.healthFailures.Add(1)
		p.c.emit(Event{Board: p.app.Board, Kind: EventHealthFailed, Detail: fmt.Sprintf("%d of %d in a row: %s", fails, cfg.HealthFailures, why)})
		if fails < cfg.HealthFailures {
			continue
		}
		fails = 0
		if p.unhealthy() {
			return
		}
	}
}

// check runs one health check and returns "" if the app is healthy, else
// why not. Healthy is code 0 from PA_ProcessHealthCheck, or a
// PC_response_health_check with application_state 0 before the deadline.
func (p *peer) check(ctx context.Context) string {
	corr := p.c.nextCorr()
	resp, done := p.expect(waitKey{"PC_response_health_check", corr})
	defer done()
	deadline := time.NewTimer(p.c.cfg.CallTimeout)
	defer deadline.Stop()
	code, err := p.call(ctx, "PA_ProcessHealthCheck", corr, true, "", func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessHealthCheck(ctx, &pb.HealthCheckParams{CorrelationId: corr})
	})
	if err == nil && code == 0 {
		return ""
	}
	why := fmt.Sprintf("PA_ProcessHealthCheck answered %d", code)
	if err != nil {
		why = fmt.Sprintf("PA_ProcessHealthCheck failed: %v", err)
	}
	// A response already there counts even if the deadline is too (a
	// call that timed out): select would pick between them at random.
	select {
	case state := <-resp:
		return stateWhy(why, state)
	default:
	}
	select {
	case state := <-resp:
		return stateWhy(why, state)
	case <-deadline.C:
		return why + ", and no PC_response_health_check came"
	case <-ctx.Done():
		return why
	}
}

// stateWhy is "" if a PC_response_health_check's application_state is 0
// (healthy), else why the check failed.
func stateWhy(why string, state int32) string {
	if state == 0 {
		return ""
	}
	return fmt.Sprintf("%s, and PC_response_health_check gave application_state %d", why, state)
}

// unhealthy carries out the app's fail action. It reports whether the
// registration ended (the payload was power-cycled).
func (p *peer) unhealthy() bool {
	p.mu.Lock()
	action := p.failAction
	p.mu.Unlock()
	n := p.c.cfg.HealthFailures
	if action != 1 {
		p.c.emit(Event{Board: p.app.Board, Kind: EventUnhealthy, Detail: fmt.Sprintf("%d health checks failed in a row; logged only (health_check_fail_action %d)", n, action)})
		return false
	}
	if p.app.Power == nil {
		p.c.emit(Event{Board: p.app.Board, Kind: EventUnhealthy, Detail: fmt.Sprintf("%d health checks failed in a row; health_check_fail_action 1 asks for a power cycle, but the board's power is not known to the controller", n)})
		return false
	}
	p.c.emit(Event{Board: p.app.Board, Kind: EventUnhealthy, Detail: fmt.Sprintf("%d health checks failed in a row; power-cycling the payload (health_check_fail_action 1)", n)})
	// The cycle outlives this registration, which it ends, but not the
	// controller.
	p.c.wg.Go(func() {
		pctx, cancel := context.WithTimeout(p.c.ctx, 30*time.Second)
		defer cancel()
		p.c.Forget(p.app.Board, "power-cycled after failed health checks")
		off := p.app.OffTime
		if off <= 0 {
			off = 2 * time.Second
		}
		err := p.app.Power.Cycle(pctx, off)
		p.c.emit(Event{Board: p.app.Board, Kind: EventPowerCycled, Detail: errText(err)})
	})
	return true
}

// startSequence records the sequence, then asks the app to start it.
func (p *peer) startSequence(ctx context.Context, id, params string, deadline time.Time) error {
	if _, _, err := p.registration(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.seqs[id] != nil {
		p.mu.Unlock()
		return fmt.Errorf("pi: sequence %q is already running on board %s", id, p.app.Board)
	}
	s := &sequence{id: id, deadline: deadline}
	s.timer = time.AfterFunc(time.Until(deadline), func() {
		p.c.emit(Event{Board: p.app.Board, Kind: EventOverran, Detail: fmt.Sprintf("sequence %s still running at its deadline %s", id, deadline.UTC().Format(time.RFC3339Nano))})
	})
	// Recorded before the call: the app may report done before it returns.
	p.seqs[id] = s
	p.mu.Unlock()
	corr := p.c.nextCorr()
	wire := deadline.UnixMilli()
	if p.c.cfg.DeadlineUnit == time.Second {
		wire = deadline.Unix()
	}
	code, err := p.call(ctx, "PA_StartSequence", corr, true, fmt.Sprintf("sequence_id=%q sequence_params=%q scheduled_deadline=%d", id, params, wire),
		func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
			return cl.PA_StartSequence(ctx, &pb.StartSequenceParams{CorrelationId: corr, SequenceId: id, SequenceParams: params, ScheduledDeadline: wire})
		})
	if err == nil && code != 0 {
		err = &CodeError{Op: "PA_StartSequence " + id, Code: pb.AntarisReturnCode(code)}
	}
	if err != nil {
		p.mu.Lock()
		if p.seqs[id] == s {
			s.timer.Stop()
			delete(p.seqs, id)
		}
		p.mu.Unlock()
		return err
	}
	return nil
}

// sequenceDone ends a sequence the app reports done, returning false if
// the bus had not started it.
func (p *peer) sequenceDone(id string) bool {
	p.mu.Lock()
	s := p.seqs[id]
	delete(p.seqs, id)
	p.mu.Unlock()
	if s == nil {
		return false
	}
	s.timer.Stop()
	now := p.c.cfg.Now()
	detail := fmt.Sprintf("sequence %s done %v before its deadline", id, s.deadline.Sub(now).Round(time.Millisecond))
	if now.After(s.deadline) {
		detail = fmt.Sprintf("sequence %s done %v after its deadline (overran)", id, now.Sub(s.deadline).Round(time.Millisecond))
	}
	p.c.emit(Event{Board: p.app.Board, Kind: EventSequenceDone, Detail: detail})
	return true
}

// stream starts (replacing) the periodic stream named kind: once the
// start response went out (after is closed), send runs every period until
// the registration ends or the stream is stopped; period 0 sends once.
func (p *peer) stream(kind string, period time.Duration, after <-chan struct{}, send func()) {
	p.mu.Lock()
	if old := p.streams[kind]; old != nil {
		old.cancel()
	}
	ctx, cancel := context.WithCancel(p.regCtx)
	run := &streamRun{cancel: cancel}
	p.streams[kind] = run
	p.mu.Unlock()
	p.c.wg.Go(func() {
		select {
		case <-after:
		case <-ctx.Done():
			return
		}
		if period == 0 {
			// Sent once, it is over: a stop from now on finds nothing
			// running.
			p.mu.Lock()
			if p.streams[kind] == run {
				delete(p.streams, kind)
			}
			p.mu.Unlock()
			send()
			return
		}
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				send()
			}
		}
	})
}

// stopStream stops the stream named kind, reporting whether one ran.
func (p *peer) stopStream(kind string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.streams[kind]
	delete(p.streams, kind)
	if s != nil {
		s.cancel()
	}
	return s != nil
}

// streamRun is one running stream.
type streamRun struct{ cancel context.CancelFunc }

// CodeError is an app's non-zero answer to a PC->PA call.
type CodeError struct {
	Op   string
	Code pb.AntarisReturnCode
}

func (e *CodeError) Error() string {
	what := map[pb.AntarisReturnCode]string{
		pb.AntarisReturnCode_An_GENERIC_FAILURE:  "generic failure (already running?)",
		pb.AntarisReturnCode_An_INVALID_PARAMS:   "invalid params",
		pb.AntarisReturnCode_An_INVALID_SEQUENCE: "unknown sequence",
		pb.AntarisReturnCode_An_NOT_IMPLEMENTED:  "not implemented",
	}[e.Code]
	if what == "" {
		what = e.Code.String()
	}
	return fmt.Sprintf("%s: the app answered %d (%s)", e.Op, int32(e.Code), what)
}

// ErrNoShutdownAnswer is a shutdown the app did not answer in time.
var ErrNoShutdownAnswer = errors.New("no PC_response_shutdown within the grace time")

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
