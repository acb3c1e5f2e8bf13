// Package power switches payload power. The bus, and later the Payload
// Controller's PayloadPowerControl, go through one Power interface; each
// kind of bench plugs in its own implementation.
package power

import (
	"context"
	"fmt"
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

// Power switches one payload.
type Power interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	State(ctx context.Context) (State, error)
}

// Error is a power operation that failed.
type Error struct {
	Op    string // "on", "off", "state"
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
