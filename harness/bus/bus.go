// Package bus is the emulated satellite bus: it drives each window on a
// payload through the same states as in orbit, and records every step in
// one event log that steps and reports read.
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/oort"
	"github.com/satbench/hil/harness/pi"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/harness/signal"
	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/internal/netproxy"
)

// State is a window's state.
type State string

// The window states, in the order a window passes through them.
const (
	Scheduled   State = "scheduled"
	Powering    State = "powering"
	Booting     State = "booting"
	Uplinking   State = "uplinking"
	Configuring State = "configuring"
	Started     State = "started"
	Ending      State = "ending"
	Off         State = "off"
	Downlinking State = "downlinking"
	Delivered   State = "delivered"
	Aborted     State = "aborted"
)

// Window is one window the bus performs on a board.
type Window struct {
	ID       string
	User     string // the Tasking API user that created the window
	Board    string
	Start    time.Time
	Duration time.Duration
	Tasking  map[string]any // the window's Tasking API parameters
	Uplinks  []signal.Uplink
}

// End is when the window ends.
func (w *Window) End() time.Time { return w.Start.Add(w.Duration) }

// Result is how a window ended.
type Result struct {
	Window  string
	State   State // Delivered or Aborted
	Reason  string
	Objects []store.Object
}

// Board is a board as the bus drives it.
type Board struct {
	Config *bench.Board
	// Power switches the payload. Everything that switches it goes
	// through Power, which the bus supervises (see supervised).
	Power  power.Power
	Remote remote.Config
	// Console is the file the payload's console is captured in, if any;
	// its tail goes into the reason of a window that fails to boot.
	Console string
	// Link is the bus side of the payload's Ethernet on a bench with a
	// network; nil on loopback.
	Link netlab.Link

	power *supervised // Power
}

// Bus drives windows on the boards of one bench.
type Bus struct {
	Bench  *bench.Bench
	Log    *Log
	Store  store.Store
	Queue  *downlink.Queue // every file on its way down, from every window
	Boards map[string]*Board
	// StoreConfig is how the bus reaches the store (through StoreProxy
	// when there is one).
	StoreConfig store.Config
	// StoreServer is the S3 endpoint the bench runs itself (kinds embedded
	// and minio), which steps may stop and start; nil for kind s3.
	StoreServer store.Server
	// StoreProxy sits between the bus and a StoreServer, so that steps can
	// slow the endpoint down or cut it; nil for kind s3.
	StoreProxy *netproxy.Proxy
	// PI is the Payload Controller payload apps talk to; nil when no
	// board runs an app.
	PI *pi.Controller

	dial dialer // nil: this host's network (see openNetwork)

	mu        sync.Mutex
	running   map[string]*run // the window in progress on each board
	unremoved []downlink.Item // delivered staged files still on an off payload
	closers   []func() error  // what Open started, in order
	stopQueue func()          // ends the queue's Run and waits for it
}

// New builds a bus for b, delivering to st, with its downlink queue
// journaled in queueDir (a queue left there by an earlier bus goes on).
// The caller supplies each board's Power.
func New(b *bench.Bench, st store.Store, queueDir string, powers map[string]power.Power) (*Bus, error) {
	bus := &Bus{
		Bench:   b,
		Log:     &Log{},
		Store:   st,
		Boards:  map[string]*Board{},
		running: map[string]*run{},
	}
	for _, bc := range b.Boards {
		rc, err := RemoteConfig(bc)
		if err != nil {
			return nil, err
		}
		p := powers[bc.Name]
		if p == nil {
			return nil, fmt.Errorf("bus: board %s (%s): no power given", bc.Name, bc.File)
		}
		sup := supervise(p)
		bus.Boards[bc.Name] = &Board{Config: bc, Power: sup, Remote: rc, power: sup}
	}
	dl := b.Downlink
	routes := map[string]downlink.Route{}
	for _, r := range dl.Routes {
		routes[r.Topic] = downlink.Route{Bucket: r.Bucket, Prefix: r.Prefix}
	}
	link := dl.Link
	q, err := downlink.Open(downlink.Config{
		Dir:       queueDir,
		Store:     st,
		Satellite: b.Satellite,
		Bucket:    b.Store.Bucket,
		Prefix:    b.Store.Prefix,
		Routes:    routes,
		Link: downlink.NewLink(downlink.LinkConfig{
			Rate: int64(link.Rate), Latency: link.Latency.D(), Loss: link.Loss, Budget: int64(link.Budget),
			Start: link.Contacts.Start.D(), Duration: link.Contacts.Duration.D(), Period: link.Contacts.Period.D(),
		}, time.Now()),
		Uploads:  dl.Uploads,
		RetryMin: dl.Retry.Min.D(),
		RetryMax: dl.Retry.Max.D(),
		Notify:   bus.queueEvent,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: bench %s: %w", b.File, err)
	}
	bus.Queue = q
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()
	bus.stopQueue = func() { cancel(); <-done; q.Close() }
	return bus, nil
}

// queueEvent records what the downlink queue did, in the event log.
func (b *Bus) queueEvent(e downlink.Event) {
	it := e.Item
	detail := it.Name
	switch {
	case e.Kind == downlink.EventDelivered:
		detail = fmt.Sprintf("%s: s3://%s/%s (%d bytes)", it.Name, e.Object.Bucket, e.Object.Key, e.Object.Size)
	case e.Err != nil:
		detail = fmt.Sprintf("%s: %s: %v", it.Name, e.Detail, e.Err)
	case e.Detail != "":
		detail = it.Name + ": " + e.Detail
	}
	if it.Source != downlink.SourceOutbox {
		detail = it.Source + " " + detail
	}
	ev := Event{Window: it.Window, Board: it.Board, Kind: KindDownlink, Name: e.Kind, Detail: detail, File: it.Name}
	if e.Kind == downlink.EventDelivered {
		ev.Object = "s3://" + e.Object.Bucket + "/" + e.Object.Key
	}
	b.Log.Append(ev)
	if e.Kind == downlink.EventDelivered && it.Source == downlink.SourceStage {
		go b.unstage(it) // the contract: deleted from the payload once downlinked
	}
}

// RemoteConfig reads the board's SSH key and pinned host key.
func RemoteConfig(bc *bench.Board) (remote.Config, error) {
	pem, err := os.ReadFile(bc.SSH.Key)
	if err != nil {
		return remote.Config{}, fmt.Errorf("bus: board %s: ssh.key: %w", bc.Name, err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return remote.Config{}, fmt.Errorf("bus: board %s: ssh.key %s: %w", bc.Name, bc.SSH.Key, err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(bc.SSH.HostKey))
	if err != nil {
		return remote.Config{}, fmt.Errorf("bus: board %s (%s): ssh.host_key: %w", bc.Name, bc.File, err)
	}
	return remote.Config{Address: bc.Address, User: bc.SSH.User, Signer: signer, HostKey: hk}, nil
}

// Run performs window w from start to end and returns how it ended. It
// blocks until the window is delivered or aborted; cancelling ctx aborts
// the window and cuts the payload's power.
func (b *Bus) Run(ctx context.Context, w Window) Result {
	r := &run{bus: b, w: w}
	r.state(Scheduled, fmt.Sprintf("start %s, %v", w.Start.UTC().Format(time.RFC3339), w.Duration))
	objs, err := r.do(ctx)
	if err != nil {
		reason := err.Error()
		if ctx.Err() != nil {
			reason = "canceled: " + reason
		}
		r.state(Aborted, reason)
		return Result{Window: w.ID, State: Aborted, Reason: reason, Objects: objs}
	}
	r.state(Delivered, fmt.Sprintf("%d objects", len(objs)))
	return Result{Window: w.ID, State: Delivered, Objects: objs}
}

// run is one window in progress.
type run struct {
	bus   *Bus
	w     Window
	board *Board
	sw    signal.Window

	mu     sync.Mutex
	staged []string // ids of the files the app staged during the window
}

func (r *run) addStaged(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.staged = append(r.staged, id)
}

func (r *run) event(e Event) {
	e.Window, e.Board = r.w.ID, r.w.Board
	r.bus.Log.Append(e)
}

func (r *run) state(s State, detail string) {
	r.event(Event{Kind: KindState, State: s, Detail: detail})
}

func (r *run) do(ctx context.Context) (objs []store.Object, err error) {
	w := &r.w
	// Everything that can be refused is refused before anything is sent.
	r.board = r.bus.Boards[w.Board]
	if r.board == nil {
		return nil, fmt.Errorf("window %s: no board %q on bench %s", w.ID, w.Board, r.bus.Bench.Name)
	}
	r.sw = signal.Window{ID: w.ID, User: w.User, End: w.End(), Tasking: w.Tasking, Uplinks: w.Uplinks}
	if err := r.sw.Check(); err != nil {
		return nil, err
	}
	if _, err := r.sw.ConfigJSON(); err != nil {
		return nil, err
	}
	if !r.bus.claim(r) {
		return nil, fmt.Errorf("board %s already has a window in progress", w.Board)
	}
	defer r.bus.release(w.Board)

	timing := r.bus.Bench.Timing
	if err := sleepUntil(ctx, w.Start.Add(-timing.PreBuffer.D())); err != nil {
		return nil, err
	}
	c, err := r.powerUp(ctx)
	if err != nil {
		r.powerOff()
		return nil, err
	}
	defer c.Close()
	// From power-up to the window's end, power lost aborts the window.
	wctx, abort := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); r.watch(wctx, abort) }()
	err = r.signal(wctx, c)
	if err == nil {
		err = sleepUntil(wctx, w.End())
	}
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		err = context.Cause(wctx) // the watch's reason, not what it interrupted
	}
	abort(nil)
	<-watched
	if err != nil {
		r.powerOff()
		return nil, err
	}
	// What was queued is delivered even when the sweep failed for some
	// files: those left the payload and exist only in the queue.
	ids, serr := r.end(ctx, c)
	objs, derr := r.downlink(ctx, ids)
	return objs, joinErrs(serr, derr)
}

// joinErrs joins errors on one line, for a window's reason.
func joinErrs(errs ...error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

func (b *Bus) claim(r *run) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running[r.w.Board] != nil {
		return false
	}
	b.running[r.w.Board] = r
	return true
}

func (b *Bus) release(board string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.running, board)
}

// powerUp switches the payload on and waits for SSH to answer.
func (r *run) powerUp(ctx context.Context) (*remote.Client, error) {
	r.state(Powering, "")
	if err := r.board.Power.On(ctx); err != nil {
		return nil, err
	}
	r.event(Event{Kind: KindPower, Name: "on"})
	r.state(Booting, "waiting for SSH at "+r.board.Remote.Address)
	bootTimeout := r.board.Config.BootTimeout.D()
	bctx, cancel := context.WithTimeoutCause(ctx, bootTimeout,
		fmt.Errorf("no SSH within boot_timeout %v", bootTimeout))
	defer cancel()
	if stopped, ok := r.board.power.stopped(); ok {
		// A payload that dies while booting is reported at once.
		go func() {
			select {
			case <-stopped:
				cancel()
			case <-bctx.Done():
			}
		}()
	}
	c, err := remote.Wait(bctx, r.board.Remote)
	if err != nil {
		return nil, fmt.Errorf("%w%s", r.bootFailure(ctx, err), consoleTail(r.board.Console, 10))
	}
	if err := signal.CheckPrerequisites(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	go r.bus.retryUnstage(r.w.Board)
	return c, nil
}

// bootFailure explains why a payload switched on did not answer: power
// and payload disagree, and the power's own reading says which way.
func (r *run) bootFailure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	p := r.board.Power
	st, serr := p.State(ctx)
	switch {
	case serr != nil:
		return fmt.Errorf("%w; and the power cannot be read: %v", err, serr)
	case st == power.Off:
		return fmt.Errorf("payload went off while booting (%s reads off): %w", p, err)
	case st == power.On:
		return fmt.Errorf("%w, though %s reads on: is the payload wired to it, and powered?", err, p)
	}
	return fmt.Errorf("%w (%s cannot report its state: check that it powers the payload)", err, p)
}

// signal uplinks, places the config, configures and starts the window.
func (r *run) signal(ctx context.Context, c *remote.Client) error {
	r.state(Uplinking, fmt.Sprintf("%d files", len(r.sw.Uplinks)))
	for _, u := range r.sw.Uplinks {
		if err := signal.PlaceUplink(ctx, c, &r.sw, u); err != nil {
			return err
		}
		r.event(Event{Kind: KindUplink, Name: "placed", Detail: signal.InboxPath(r.sw.User, u.Name)})
	}
	if err := signal.PlaceConfig(ctx, c, &r.sw); err != nil {
		return err
	}
	r.event(Event{Kind: KindSignal, Name: "config placed", Detail: signal.ConfigPath(r.sw.ID)})

	r.state(Configuring, r.sw.ConfigureCommand())
	err := signal.Configure(ctx, c, &r.sw, r.bus.Bench.Timing.ConfigureTimeout.D())
	var ee *remote.ExitError
	switch {
	case errors.As(err, &ee):
		r.event(Event{Kind: KindSignal, Name: "configure failed", Detail: fmt.Sprintf("exit %d: %s", ee.Status, ee.Stderr)})
		return fmt.Errorf("configure exited %d: %s", ee.Status, ee.Stderr)
	case errors.Is(err, signal.ErrConfigureTimeout):
		r.event(Event{Kind: KindSignal, Name: "configure failed", Detail: err.Error()})
		return fmt.Errorf("configure did not return within %v", r.bus.Bench.Timing.ConfigureTimeout.D())
	case err != nil:
		return err
	}
	r.event(Event{Kind: KindSignal, Name: "configured"})

	if err := sleepUntil(ctx, r.w.Start); err != nil {
		return err
	}
	if err := signal.Start(ctx, c, &r.sw); err != nil {
		return fmt.Errorf("start signal: %w", err)
	}
	r.event(Event{Kind: KindSignal, Name: "started", Detail: r.sw.StartCommand()})
	r.state(Started, "")
	return nil
}

// end hands the outbox and the OORT agent's files to the downlink queue,
// shuts the payload down and cuts power. Collection comes before the
// shutdown: a halted payload serves no SFTP, and in orbit the files move
// to the bus's storage before the payload goes dark. It returns the ids
// queued.
func (r *run) end(ctx context.Context, c *remote.Client) ([]string, error) {
	r.state(Ending, "")
	var ids []string
	items, err := downlink.Sweep(ctx, c, signal.OutboxDir, r.bus.Queue.Incoming(),
		downlink.Item{Window: r.w.ID, Board: r.w.Board, Source: downlink.SourceOutbox, TTL: r.bus.ttl()}, r.bus.Queue)
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	if err != nil {
		r.event(Event{Kind: KindError, Name: "sweep failed", Detail: err.Error()})
	}
	oids, cerr := r.collect(ctx, c)
	ids = append(ids, oids...)
	if cerr != nil {
		r.event(Event{Kind: KindError, Name: "oort collection failed", Detail: cerr.Error()})
		err = errors.Join(err, cerr)
	}
	if r.shutdownApp(ctx) {
		// The payload halts while answering, so a dropped session is expected.
		serr := signal.Shutdown(ctx, c)
		r.event(Event{Kind: KindSignal, Name: "shutdown", Detail: errText(serr)})
		r.waitHalt(ctx)
	}
	r.powerOff()
	r.state(Off, "")
	return ids, err
}

// shutdownApp asks the board's payload app, if one registered, to shut
// down within the shutdown grace time. It returns false if the app did
// not answer in time: the payload is then powered off at once, as the
// contract's Payload Controller does.
func (r *run) shutdownApp(ctx context.Context) bool {
	pc := r.bus.PI
	if pc == nil || !pc.Registered(r.w.Board) {
		return true
	}
	grace := r.bus.Bench.Timing.ShutdownGrace.D()
	err := pc.Shutdown(ctx, r.w.Board, grace)
	if err == nil {
		return true
	}
	r.event(Event{Kind: KindError, Name: "app shutdown unanswered", Detail: err.Error() + "; powering the payload off"})
	return false
}

// ttl is the TTL of outbox and staged files.
func (b *Bus) ttl() downlink.TTL {
	t := b.Bench.Downlink.TTL
	return downlink.TTL{Urgent: t.Urgent.D(), Bulk: t.Bulk.D(), Surplus: t.Surplus.D()}
}

// collect pulls the OORT agent's complete pairs, if the board runs one,
// and queues each that matches its meta, returning the ids queued. A pair
// that does not is reported and left on the payload.
func (r *run) collect(ctx context.Context, c *remote.Client) ([]string, error) {
	addr := r.board.Config.OORT.Address
	if addr == "" {
		return nil, nil
	}
	col := &oort.Collector{Agent: "http://" + addr, Topics: r.bus.Bench.Downlink.Topics, SpoolDir: r.bus.Queue.Incoming(), HTTP: r.bus.HTTPClient()}
	info, err := col.Info(ctx)
	if err != nil {
		return nil, err
	}
	files := c
	if u := info.Sysinfo.Username; u != "" && u != r.board.Remote.User {
		// The collector logs in as the agent's user.
		rc := r.board.Remote
		rc.User = u
		if files, err = remote.Dial(ctx, rc); err != nil {
			return nil, fmt.Errorf("oort: log in as the agent's user %s: %w", u, err)
		}
		defer files.Close()
	}
	var ids []string
	rep, err := col.Collect(ctx, info, files, func(ctx context.Context, p oort.Pulled) error {
		ttl := p.Meta.SendOptions.TTLParams
		it, err := r.bus.Queue.Enqueue(ctx, downlink.Item{
			Source: downlink.SourceOORT, Window: r.w.ID, Board: r.w.Board,
			Name: oortName(p.Meta), Path: p.Meta.FileInfo.Path, Topic: p.Meta.Topic, UUID: p.Meta.FileInfo.ID,
			Size: p.Size, SHA256: p.SHA256, Meta: p.Meta.SendOptions.Tags,
			TTL: downlink.TTL{Urgent: ttlSeconds(ttl.Urgent), Bulk: ttlSeconds(ttl.Bulk), Surplus: ttlSeconds(ttl.Surplus)},
		}, p.Data)
		if err == nil && it.ID != "" {
			ids = append(ids, it.ID)
		}
		return err
	})
	for _, id := range rep.Accepted {
		r.event(Event{Kind: KindDownlink, Name: "oort collected", Detail: id})
	}
	for _, rj := range rep.Rejected {
		r.event(Event{Kind: KindError, Name: "oort pair rejected", Detail: fmt.Sprintf("%s: %s (kept on the payload, not delivered)", rj.UUID, rj.Reason)})
	}
	for _, id := range rep.Pending {
		r.event(Event{Kind: KindDownlink, Name: "oort pair incomplete", Detail: id + " (left for the next collection)"})
	}
	return ids, err
}

// ttlSeconds reads a TTL from a payload's meta: negative is 0 (the stage
// is skipped), and anything over a century is a century, so that no
// value can overflow into an instant expiry.
func ttlSeconds(n int64) time.Duration {
	const century = 100 * 365 * 24 * 3600
	return time.Duration(min(max(n, 0), century)) * time.Second
}

// oortName is the base name an OORT file lands under: its original name,
// else its id.
func oortName(m oort.Meta) string {
	if name := path.Base(m.FileInfo.Path); name != "" && name != "/" && name != "." {
		return name
	}
	return m.FileInfo.ID
}

// waitHalt gives the payload the shutdown grace time to stop by itself.
func (r *run) waitHalt(ctx context.Context) {
	grace := r.bus.Bench.Timing.ShutdownGrace.D()
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	stopped, ok := r.board.power.stopped()
	if !ok {
		<-ctx.Done()
		return
	}
	select {
	case <-stopped:
		r.event(Event{Kind: KindPower, Name: "halted"})
	case <-ctx.Done():
		r.event(Event{Kind: KindPower, Name: "still on", Detail: fmt.Sprintf("did not halt within shutdown_grace %v", grace)})
	}
}

func (r *run) downlink(ctx context.Context, ids []string) ([]store.Object, error) {
	r.mu.Lock()
	ids = append(ids, r.staged...)
	r.mu.Unlock()
	r.state(Downlinking, fmt.Sprintf("%d files", len(ids)))
	evs, err := r.bus.Queue.Wait(ctx, ids)
	var objs []store.Object
	var errs []error
	for _, e := range evs {
		if e.Kind == downlink.EventDelivered {
			objs = append(objs, e.Object)
		} else {
			errs = append(errs, fmt.Errorf("%s %s: %s", e.Item.Name, e.Kind, e.Detail))
		}
	}
	return objs, errors.Join(append(errs, err)...)
}

// powerOff cuts power even when the window's context is gone.
func (r *run) powerOff() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.bus.PI != nil {
		r.bus.PI.Forget(r.w.Board, "the payload's power is off")
	}
	err := r.board.Power.Off(ctx)
	r.event(Event{Kind: KindPower, Name: "off", Detail: errText(err)})
}

// consoleTail returns the last n lines of the console file, for a reason.
func consoleTail(name string, n int) string {
	b, err := os.ReadFile(name)
	if name == "" || err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "; console tail:\n" + strings.Join(lines, "\n")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// FreeLoopbackPort returns a loopback address with a port free right now,
// for boards whose address has port 0.
func FreeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
