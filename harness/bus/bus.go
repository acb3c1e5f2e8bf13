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
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/harness/signal"
	"github.com/satbench/hil/harness/store"
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
	Power  power.Power
	Remote remote.Config
	// Console is the file the payload's console is captured in, if any;
	// its tail goes into the reason of a window that fails to boot.
	Console string
}

// Bus drives windows on the boards of one bench.
type Bus struct {
	Bench    *bench.Bench
	Log      *Log
	Store    store.Store
	Downlink *downlink.Downlink
	Boards   map[string]*Board

	mu      sync.Mutex
	running map[string]bool // boards with a window in progress
	closers []func() error  // what Open started, in order
}

// New builds a bus for b. The caller supplies the store and each board's
// Power (see the sim package for the sim bench).
func New(b *bench.Bench, st store.Store, spool string, powers map[string]power.Power) (*Bus, error) {
	bus := &Bus{
		Bench:   b,
		Log:     &Log{},
		Store:   st,
		Boards:  map[string]*Board{},
		running: map[string]bool{},
		Downlink: &downlink.Downlink{
			Store:     st,
			Bucket:    b.Store.Bucket,
			Prefix:    b.Store.Prefix,
			Satellite: b.Satellite,
			SpoolDir:  spool,
		},
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
		bus.Boards[bc.Name] = &Board{Config: bc, Power: p, Remote: rc}
	}
	return bus, nil
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
	if !r.bus.claim(w.Board) {
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
	if err := r.signal(ctx, c); err != nil {
		r.powerOff()
		return nil, err
	}
	if err := sleepUntil(ctx, w.End()); err != nil {
		r.powerOff()
		return nil, err
	}
	// What was swept is delivered even when the sweep failed for some
	// files: those left the payload and exist only in the spool.
	items, serr := r.end(ctx, c)
	objs, derr := r.downlink(ctx, items)
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

func (b *Bus) claim(board string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running[board] {
		return false
	}
	b.running[board] = true
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
	if s, ok := r.board.Power.(power.Stopper); ok {
		// A payload that dies while booting is reported at once.
		go func() {
			select {
			case <-s.Stopped():
				cancel()
			case <-bctx.Done():
			}
		}()
	}
	c, err := remote.Wait(bctx, r.board.Remote)
	if err != nil {
		if st, _ := r.board.Power.State(ctx); st == power.Off && ctx.Err() == nil {
			err = fmt.Errorf("payload went off while booting")
		}
		return nil, fmt.Errorf("%w%s", err, consoleTail(r.board.Console, 10))
	}
	if err := signal.CheckPrerequisites(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
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

// end sweeps the outbox, shuts the payload down and cuts power. The sweep
// comes before the shutdown: a halted payload serves no SFTP, and in orbit
// the files move to the bus's storage before the payload goes dark.
func (r *run) end(ctx context.Context, c *remote.Client) ([]downlink.Item, error) {
	r.state(Ending, "")
	items, err := r.bus.Downlink.Sweep(ctx, c, signal.OutboxDir,
		downlink.Item{Window: r.w.ID, Board: r.w.Board, Source: "outbox"})
	for _, it := range items {
		r.event(Event{Kind: KindDownlink, Name: "swept", Detail: fmt.Sprintf("%s (%d bytes, sha256 %s)", it.Name, it.Size, it.SHA256)})
	}
	if err != nil {
		r.event(Event{Kind: KindError, Name: "sweep failed", Detail: err.Error()})
	}
	// The payload halts while answering, so a dropped session is expected.
	serr := signal.Shutdown(ctx, c)
	r.event(Event{Kind: KindSignal, Name: "shutdown", Detail: errText(serr)})
	r.waitHalt(ctx)
	r.powerOff()
	r.state(Off, "")
	return items, err
}

// waitHalt gives the payload the shutdown grace time to stop by itself.
func (r *run) waitHalt(ctx context.Context) {
	grace := r.bus.Bench.Timing.ShutdownGrace.D()
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	s, ok := r.board.Power.(power.Stopper)
	if !ok {
		<-ctx.Done()
		return
	}
	select {
	case <-s.Stopped():
		r.event(Event{Kind: KindPower, Name: "halted"})
	case <-ctx.Done():
		r.event(Event{Kind: KindPower, Name: "still on", Detail: fmt.Sprintf("did not halt within shutdown_grace %v", grace)})
	}
}

func (r *run) downlink(ctx context.Context, items []downlink.Item) ([]store.Object, error) {
	r.state(Downlinking, fmt.Sprintf("%d files", len(items)))
	var objs []store.Object
	var errs []error
	for _, it := range items {
		obj, err := r.bus.Downlink.Deliver(ctx, it)
		if err != nil {
			r.event(Event{Kind: KindError, Name: "delivery failed", Detail: err.Error()})
			errs = append(errs, err)
			continue
		}
		objs = append(objs, obj)
		r.event(Event{Kind: KindDownlink, Name: "delivered", Detail: fmt.Sprintf("s3://%s/%s (%d bytes)", obj.Bucket, obj.Key, obj.Size)})
	}
	return objs, errors.Join(errs...)
}

// powerOff cuts power even when the window's context is gone.
func (r *run) powerOff() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
