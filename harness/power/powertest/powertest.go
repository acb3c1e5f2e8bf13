// Package powertest is the conformance suite every power.Power runs: the
// local process of the sim bench, and later relays, QEMU and exec hooks.
// It checks the contract the bus relies on, through the interface alone.
//
// # The contract
//
//   - A fresh Power reports Off or Unknown; after Off it reports Off.
//   - After On returns nil, State reports On; after Off returns nil, State
//     reports Off.
//   - On and Off are idempotent: switching on what is on, or off what is
//     off, succeeds and changes nothing.
//   - Power cycles: On after Off works, any number of times.
//   - Cycle(off) leaves the payload on, whether it was on or off; a
//     Stopper's channel taken before the cycle is closed by then (the
//     payload really went off). A Cycle whose context ends once the
//     payload is off returns a *power.Error wrapping context.Canceled,
//     whose Op is "off" (cancelled while still switching off, such as
//     reading the relay back), "cycle" or "on".
//   - Calls from several goroutines at once are safe, and concurrent On
//     (or Off) calls all succeed.
//   - A failed operation returns a *power.Error whose Op is "on", "off" or
//     "state".
//   - A Power that is also a power.Stopper reports Stopped closed while
//     off and open while on, and the channel taken while on is closed
//     once Off returns.
//
// # Contexts
//
// An operation given a context that is already done (cancelled) may
// either do its work anyway or refuse. What Run asserts:
//
//   - On: if it returns nil, State reports On. If it returns an error,
//     the error wraps context.Canceled and power was not left on: State
//     reports Off.
//   - Off: if it returns nil, State reports Off. If it returns an error,
//     the error wraps context.Canceled; power may or may not be cut by
//     then (Off may cut power and give up waiting for it to drop), but an
//     Off that was off stays off, and a later Off with a live context
//     succeeds.
//   - State: if it returns an error, the error wraps context.Canceled;
//     if not, the state is the true one.
//
// Every case ends with an Off on a live context, which must succeed.
package powertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/satbench/hil/harness/power"
)

// opLimit bounds each operation. A real payload switches in well under a
// second; the margin is for loaded CI machines and the race detector.
// Reaching it is a failure, not a measurement.
const opLimit = 60 * time.Second

// Run checks the Power that newPower returns. newPower is called once per
// subtest and must return a fresh Power, switched off or in an unknown
// state, that is the only one driving its payload; it registers its own
// cleanup. Run also switches each Power off at the end of its subtest.
func Run(t *testing.T, newPower func(t *testing.T) power.Power) {
	s := suite{newPower: newPower}
	t.Run("Fresh", s.testFresh)
	t.Run("On", s.testOn)
	t.Run("OnTwice", s.testOnTwice)
	t.Run("Off", s.testOff)
	t.Run("OffTwice", s.testOffTwice)
	t.Run("OffOn", s.testOffOn)
	t.Run("Cycle", s.testCycle)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("DoneContext", s.testDoneContext)
}

type suite struct {
	newPower func(t *testing.T) power.Power
}

// fresh returns a new Power that is switched off when the subtest ends.
func (s suite) fresh(t *testing.T) power.Power {
	t.Helper()
	p := s.newPower(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opLimit)
		defer cancel()
		if err := p.Off(ctx); err != nil {
			t.Errorf("Off at the end of the test: %v", err)
		}
	})
	return p
}

// live is a context for one operation that is expected to succeed.
func live(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), opLimit)
	t.Cleanup(cancel)
	return ctx
}

// done is a context that is already cancelled.
func done() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func on(t *testing.T, p power.Power) {
	t.Helper()
	if err := p.On(live(t)); err != nil {
		t.Fatalf("On: %v", err)
	}
}

func off(t *testing.T, p power.Power) {
	t.Helper()
	if err := p.Off(live(t)); err != nil {
		t.Fatalf("Off: %v", err)
	}
}

func state(t *testing.T, p power.Power) power.State {
	t.Helper()
	st, err := p.State(live(t))
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	return st
}

func wantState(t *testing.T, p power.Power, want power.State, after string) {
	t.Helper()
	if got := state(t, p); got != want {
		t.Fatalf("State after %s = %v, want %v", after, got, want)
	}
	checkStopped(t, p, want, after)
}

// checkStopped checks a Stopper's Stopped channel against the state.
func checkStopped(t *testing.T, p power.Power, st power.State, after string) {
	t.Helper()
	s, ok := p.(power.Stopper)
	if !ok || st == power.Unknown {
		return
	}
	select {
	case <-s.Stopped():
		if st == power.On {
			t.Errorf("Stopped() is closed after %s, while State reports on", after)
		}
	default:
		if st == power.Off {
			t.Errorf("Stopped() is open after %s, while State reports off", after)
		}
	}
}

// checkError checks that a failed operation's error is a *power.Error for
// one of ops wrapping context.Canceled.
func checkError(t *testing.T, err error, ops ...string) {
	t.Helper()
	var pe *power.Error
	if !errors.As(err, &pe) || !slices.Contains(ops, pe.Op) || pe.Power == "" {
		t.Errorf("%s failed with %v (%T); want a *power.Error with Op %q naming the power", ops[0], err, err, ops)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%s with a cancelled context failed with %v; want it to wrap context.Canceled", ops[0], err)
	}
}

func (s suite) testFresh(t *testing.T) {
	p := s.fresh(t)
	if st := state(t, p); st != power.Off && st != power.Unknown {
		t.Fatalf("fresh State = %v, want off or unknown", st)
	}
	off(t, p)
	wantState(t, p, power.Off, "Off")
	off(t, p)
	wantState(t, p, power.Off, "a second Off")
}

func (s suite) testOn(t *testing.T) {
	p := s.fresh(t)
	on(t, p)
	wantState(t, p, power.On, "On")
}

func (s suite) testOnTwice(t *testing.T) {
	p := s.fresh(t)
	on(t, p)
	on(t, p)
	wantState(t, p, power.On, "a second On")
}

func (s suite) testOff(t *testing.T) {
	p := s.fresh(t)
	on(t, p)
	var stopped <-chan struct{}
	if sp, ok := p.(power.Stopper); ok {
		stopped = sp.Stopped()
	}
	off(t, p)
	wantState(t, p, power.Off, "On, Off")
	if stopped != nil {
		select {
		case <-stopped:
		default:
			t.Error("the Stopped() channel taken while on is still open after Off returned")
		}
	}
}

func (s suite) testOffTwice(t *testing.T) {
	p := s.fresh(t)
	on(t, p)
	off(t, p)
	off(t, p)
	wantState(t, p, power.Off, "On, Off, Off")
}

func (s suite) testOffOn(t *testing.T) {
	p := s.fresh(t)
	for i := range 3 {
		on(t, p)
		wantState(t, p, power.On, fmt.Sprintf("On in cycle %d", i+1))
		off(t, p)
		wantState(t, p, power.Off, fmt.Sprintf("Off in cycle %d", i+1))
	}
}

// cycleOff is the off time of a Cycle: long enough to be seen as a real
// off by every implementation, short for the suite.
const cycleOff = 50 * time.Millisecond

func (s suite) testCycle(t *testing.T) {
	t.Run("FromOff", func(t *testing.T) {
		p := s.fresh(t)
		off(t, p)
		if err := p.Cycle(live(t), cycleOff); err != nil {
			t.Fatalf("Cycle from off: %v", err)
		}
		wantState(t, p, power.On, "Cycle from off")
	})
	t.Run("FromOn", func(t *testing.T) {
		p := s.fresh(t)
		on(t, p)
		var stopped <-chan struct{}
		if sp, ok := p.(power.Stopper); ok {
			stopped = sp.Stopped()
		}
		for i := range 2 {
			if err := p.Cycle(live(t), cycleOff); err != nil {
				t.Fatalf("Cycle %d from on: %v", i+1, err)
			}
			wantState(t, p, power.On, fmt.Sprintf("Cycle %d from on", i+1))
		}
		if stopped != nil {
			select {
			case <-stopped:
			default:
				t.Error("the Stopped() channel taken before the Cycle is still open: the payload never went off")
			}
		}
	})
	t.Run("CancelledWhileOff", func(t *testing.T) {
		p := s.fresh(t)
		on(t, p)
		// Long enough that only the context can end the off time.
		ctx, cancel := context.WithTimeout(t.Context(), opLimit)
		errc := make(chan error, 1)
		go func() { errc <- p.Cycle(ctx, time.Hour) }()
		waitState(t, p, power.Off)
		cancel()
		err := <-errc
		if err == nil {
			t.Fatal("Cycle with an hour off returned nil after its context was cancelled")
		}
		checkError(t, err, "off", "cycle", "on")
		off(t, p)
	})
}

// waitState polls State until it reports want: the suite's only view of
// a Cycle in progress is through the interface.
func waitState(t *testing.T, p power.Power, want power.State) {
	t.Helper()
	ctx := live(t)
	for {
		if st, err := p.State(ctx); err == nil && st == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("State never reported %v", want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// testConcurrent switches from several goroutines at once, as the bus's
// window and a Ctrl-C handler may; -race checks the implementation.
func (s suite) testConcurrent(t *testing.T) {
	p := s.fresh(t)
	const n = 8
	all := func(op string, f func(context.Context) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), opLimit)
				defer cancel()
				if errs[i] = f(ctx); errs[i] == nil {
					_, errs[i] = p.State(ctx)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("%d concurrent %s: %v", n, op, err)
		}
	}
	all("On", p.On)
	wantState(t, p, power.On, "concurrent On")
	all("Off", p.Off)
	wantState(t, p, power.Off, "concurrent Off")
}

func (s suite) testDoneContext(t *testing.T) {
	t.Run("On", func(t *testing.T) {
		p := s.fresh(t)
		off(t, p)
		if err := p.On(done()); err != nil {
			checkError(t, err, "on")
			wantState(t, p, power.Off, "On with a cancelled context failed")
		} else {
			wantState(t, p, power.On, "On with a cancelled context succeeded")
		}
		off(t, p)
		wantState(t, p, power.Off, "Off")
	})
	t.Run("OffWhileOn", func(t *testing.T) {
		p := s.fresh(t)
		on(t, p)
		if err := p.Off(done()); err != nil {
			checkError(t, err, "off")
			t.Logf("Off with a cancelled context: %v", err)
		} else {
			wantState(t, p, power.Off, "Off with a cancelled context succeeded")
		}
		off(t, p)
		wantState(t, p, power.Off, "Off with a live context")
		on(t, p) // still usable
		wantState(t, p, power.On, "On after the cancelled Off")
	})
	t.Run("OffWhileOff", func(t *testing.T) {
		p := s.fresh(t)
		off(t, p)
		if err := p.Off(done()); err != nil {
			checkError(t, err, "off")
		}
		wantState(t, p, power.Off, "Off with a cancelled context, while off")
	})
	t.Run("State", func(t *testing.T) {
		p := s.fresh(t)
		on(t, p)
		if st, err := p.State(done()); err != nil {
			checkError(t, err, "state")
		} else if st != power.On {
			t.Errorf("State with a cancelled context = %v while on, want on (or an error)", st)
		}
		off(t, p)
		if st, err := p.State(done()); err != nil {
			checkError(t, err, "state")
		} else if st != power.Off {
			t.Errorf("State with a cancelled context = %v while off, want off (or an error)", st)
		}
	})
}
