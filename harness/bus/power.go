package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/satbench/hil/fixtures/relaysim"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/qemu"
	"github.com/satbench/hil/harness/relay"
)

// supervised is a board's Power as the bus holds it. Every switch, by a
// window or by the Payload Controller (a health-check reboot,
// PayloadPowerControl), goes through it, so it knows what was last
// commanded, and a window's watch can tell a payload that lost power from
// one switched off on purpose.
type supervised struct {
	power.Power

	mu   sync.Mutex
	want power.State // last commanded and done; Unknown after a failure
	busy int         // switches in progress
	gen  uint64      // counts switches begun
}

func supervise(p power.Power) *supervised { return &supervised{Power: p} }

func (s *supervised) begin() {
	s.mu.Lock()
	s.busy++
	s.gen++
	s.mu.Unlock()
}

func (s *supervised) end(to power.State, err error) error {
	s.mu.Lock()
	s.busy--
	s.want = to
	if err != nil {
		s.want = power.Unknown
	}
	s.mu.Unlock()
	return err
}

func (s *supervised) On(ctx context.Context) error {
	s.begin()
	return s.end(power.On, s.Power.On(ctx))
}

func (s *supervised) Off(ctx context.Context) error {
	s.begin()
	return s.end(power.Off, s.Power.Off(ctx))
}

func (s *supervised) Cycle(ctx context.Context, off time.Duration) error {
	s.begin()
	return s.end(power.On, s.Power.Cycle(ctx, off))
}

// expectingOn reports whether the payload should be on now, with nothing
// switching it, and the switch count that the answer holds for.
func (s *supervised) expectingOn() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.want == power.On && s.busy == 0
}

// stillExpectingOn reports whether nothing was switched since gen.
func (s *supervised) stillExpectingOn(gen uint64) bool {
	g, ok := s.expectingOn()
	return ok && g == gen
}

// stopped returns the channel of a Power that sees its payload stop.
func (s *supervised) stopped() (<-chan struct{}, bool) {
	st, ok := s.Power.(power.Stopper)
	if !ok {
		return nil, false
	}
	return st.Stopped(), true
}

// watch reads the payload's power every interval while the window runs,
// and cancels the window with the reason when power is lost: it cannot be
// read twice in a row (a relay board unplugged, a PDU gone), or it reads
// off though nothing switched it off (a payload that died, a relay that
// dropped). It returns when ctx ends.
func (r *run) watch(ctx context.Context, abort context.CancelCauseFunc) {
	sup := r.board.power
	interval := r.board.Config.Power.Watch.D()
	t := time.NewTicker(interval)
	defer t.Stop()
	stopped, _ := sup.stopped()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			stopped = nil // closed for good; the reads take over
		case <-t.C:
		}
		gen, ok := sup.expectingOn()
		if !ok {
			failures = 0
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
		st, err := sup.State(rctx)
		cancel()
		if ctx.Err() != nil || !sup.stillExpectingOn(gen) {
			continue
		}
		switch {
		case err != nil:
			if failures++; failures < 2 {
				continue
			}
			r.event(Event{Kind: KindPower, Name: "lost", Detail: err.Error()})
			abort(fmt.Errorf("payload power lost mid-window: %w", err))
			return
		case st == power.Off:
			r.event(Event{Kind: KindPower, Name: "lost", Detail: sup.String() + " reads off"})
			abort(fmt.Errorf("payload power lost mid-window: %s reads off, and nothing switched it off%s", sup.String(), consoleTail(r.board.Console, 10)))
			return
		}
		failures = 0
	}
}

// wired is the power of a board on a simulated relay: the bus switches
// the relay with the real driver, through the simulator's tty, and the
// simulator's relay starts and kills the reference payload process. Like
// kind process, it sees the payload halt.
type wired struct {
	*relay.Channel
	proc *power.Process
	sim  *relaysim.Sim

	mu      sync.Mutex
	powered bool          // whether the relay powers the payload now
	err     error         // why the payload did not follow the relay, if it did not
	changed chan struct{} // closed and replaced when powered or err changes
}

// On switches the relay on and returns once the payload has power: the
// driver's write can return before the simulator has read it (an LCUS
// board never answers), and a Stopper must not report a payload off that
// is about to start.
func (w *wired) On(ctx context.Context) error {
	if err := w.Channel.On(ctx); err != nil {
		return err
	}
	return w.await(ctx, true)
}

// Off switches the relay off and returns once the payload has lost power.
func (w *wired) Off(ctx context.Context) error {
	if err := w.Channel.Off(ctx); err != nil {
		return err
	}
	return w.await(ctx, false)
}

func (w *wired) Cycle(ctx context.Context, off time.Duration) error {
	return power.OffOn(ctx, w, off)
}

func (w *wired) Stopped() <-chan struct{} { return w.proc.Stopped() }

var _ power.Stopper = (*wired)(nil)

// set records what the simulated relay now does to the payload, and err
// if the payload process did not follow.
func (w *wired) set(powered bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.powered, w.err = powered, err
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *wired) await(ctx context.Context, powered bool) error {
	for {
		w.mu.Lock()
		now, err, changed := w.powered, w.err, w.changed
		w.mu.Unlock()
		if err != nil {
			return &power.Error{Op: map[bool]string{true: "on", false: "off"}[powered], Power: w.String(), Err: err}
		}
		if now == powered {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			op := map[bool]string{true: "on", false: "off"}[powered]
			return &power.Error{Op: op, Power: w.String(), Err: fmt.Errorf("the simulated relay switched, but the payload did not follow: %w", context.Cause(ctx))}
		}
	}
}

// errStartedByBench is StandalonePower's error for a board whose payload
// the bench starts itself.
var errStartedByBench = errors.New("its payload is one the bench starts for a run (the reference payload process, or a QEMU machine) and exists only during it; outside a run there is nothing to switch (boards on a relay board or exec commands can be switched)")

// StandalonePower returns the power of a board that can be switched
// outside a run, as hil power does: power kinds relay (a real board) and
// exec. A relay exchange waits up to wait for a port another run holds;
// onWait, if set, hears when it has to.
func StandalonePower(bc *bench.Board, wait time.Duration, onWait func(holder string)) (power.Power, error) {
	if bc.Power.StartsPayload() {
		return nil, fmt.Errorf("board %s (%s): %w", bc.Name, bc.File, errStartedByBench)
	}
	p, err := standalonePower(bc, map[relay.Port]*relay.Board{}, wait, onWait)
	if err != nil {
		return nil, fmt.Errorf("board %s (%s): %w", bc.Name, bc.File, err)
	}
	return p, nil
}

func standalonePower(bc *bench.Board, relays map[relay.Port]*relay.Board, wait time.Duration, onWait func(string)) (power.Power, error) {
	switch pw := bc.Power; pw.Kind {
	case "exec":
		return &power.Exec{Name: bc.Name, OnCommand: pw.Exec.On, OffCommand: pw.Exec.Off,
			StatusCommand: pw.Exec.Status, Timeout: pw.Exec.Timeout.D()}, nil
	case "relay":
		cfg := relayConfig(bc, "")
		cfg.Wait, cfg.OnWait = wait, onWait
		return openRelay(bc, relays, cfg)
	}
	return nil, fmt.Errorf("power.kind %q is not process, relay or exec", bc.Power.Kind)
}

// relayConfig is the driver's configuration of a board's relay; port, if
// not empty, is the port of its simulator.
func relayConfig(bc *bench.Board, port string) relay.Config {
	r := bc.Power.Relay
	p := relay.Port{Path: r.Port, Serial: r.Serial}
	if port != "" {
		p = relay.Port{Path: port}
	}
	return relay.Config{
		Protocol: r.Protocol,
		Port:     p,
		Channels: r.Channels,
		Gap:      r.Gap.D(),
		Timeout:  r.Timeout.D(),
		// What another run waiting for the port is told.
		Holder: fmt.Sprintf("%s, board %s of %s", strings.Join(os.Args, " "), bc.Name, bc.File),
	}
}

// openRelay opens the relay channel of a board on a real relay board.
// boards holds the relay boards opened so far, by port, so that payloads
// on one board share its driver (and an LCUS board's tracked state).
func openRelay(bc *bench.Board, boards map[relay.Port]*relay.Board, cfg relay.Config) (*relay.Channel, error) {
	rb := boards[cfg.Port]
	if rb == nil {
		var err error
		if rb, err = relay.Open(cfg); err != nil {
			return nil, err
		}
		boards[cfg.Port] = rb
	}
	return &relay.Channel{Board: rb, Channel: bc.Power.Relay.Channel, Invert: bc.Power.Relay.Invert, Name: bc.Name}, nil
}

// simulateRelay starts the simulated relay board of bc, its channel wired
// to proc, the reference payload. Its port is dir/relay, a link to the
// pty that goes when the board is unplugged, as /dev/serial/by-path does.
func simulateRelay(bc *bench.Board, proc *power.Process, dir string) (*wired, error) {
	r := bc.Power.Relay
	w := &wired{proc: proc, changed: make(chan struct{})}
	// The relay at rest: normally-closed wiring powers the payload.
	follow := func(energised bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		powered := energised != r.Invert
		var err error
		if powered {
			err = proc.On(ctx)
		} else {
			err = proc.Off(ctx)
		}
		w.set(powered, err)
	}
	follow(false)
	sim, err := relaysim.Start(relaysim.Config{
		Protocol: r.Protocol,
		Channels: r.Channels,
		Link:     filepath.Join(dir, "relay"),
		// Called in order, from one goroutine.
		OnChange: func(ch int, on bool) {
			if ch == r.Channel {
				follow(on)
			}
		},
	})
	if err != nil {
		proc.Off(context.Background())
		return nil, err
	}
	ch, err := openRelay(bc, map[relay.Port]*relay.Board{}, relayConfig(bc, sim.Port()))
	if err != nil {
		sim.Close()
		proc.Off(context.Background())
		return nil, err
	}
	w.Channel, w.sim = ch, sim
	return w, nil
}

// Sim returns the simulated relay board of a board whose power is one,
// for steps that unplug it or read the bytes it received.
func (b *Board) Sim() *relaysim.Sim {
	if w, ok := b.power.Power.(*wired); ok {
		return w.sim
	}
	return nil
}

// Machine returns the QEMU machine that powers the board's payload, or
// nil if it is not a QEMU payload. Switching it directly, past the bus,
// is how a test makes the payload lose power.
func (b *Board) Machine() *qemu.Machine {
	m, _ := b.power.Power.(*qemu.Machine)
	return m
}
