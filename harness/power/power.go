// Package power switches payload power. The bus, and later the Payload
// Controller's PayloadPowerControl, go through one Power interface; each
// kind of bench plugs in its own implementation.
package power

import (
	"context"
	"fmt"
	"time"
)

// State is a payload's power state.
type State int

const (
	Unknown State = iota
	Off
	On
)

func (s State) String() string {
	switch s {
	case Off:
		return "off"
	case On:
		return "on"
	}
	return "unknown"
}

// Power switches one payload. Its String names what is switched, for
// errors and events ("process refpayload", "numato relay /dev/... channel 3").
type Power interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	State(ctx context.Context) (State, error)
	// Cycle switches the payload off, keeps it off for off, then switches
	// it on: a reboot by power. A payload that is off is switched on.
	Cycle(ctx context.Context, off time.Duration) error
	String() string
}

// OffOn is Cycle done with the Power's own Off and On; implementations
// without a native cycle use it as their Cycle method. Callers call
// Cycle.
func OffOn(ctx context.Context, p Power, off time.Duration) error {
	if err := p.Off(ctx); err != nil {
		return err
	}
	t := time.NewTimer(off)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return &Error{Op: "cycle", Power: p.String(), Err: fmt.Errorf("off, not switched on again: %w", context.Cause(ctx))}
	}
	return p.On(ctx)
}

// Error is a power operation that failed.
type Error struct {
	Op    string // "on", "off", "state", "cycle"
	Power string // what was switched, e.g. "process refpayload"
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("power %s %s: %v", e.Op, e.Power, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Stopper is a Power that sees the payload turn itself off, as a local
// process does when it halts. Without it the bus waits out the whole
// shutdown grace time before cutting power, as in orbit.
type Stopper interface {
	Power
	// Stopped returns a channel closed once the payload is off.
	Stopped() <-chan struct{}
}
