package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/satbench/hil/harness/power"
)

// Channel is one relay of a Board powering a payload.
type Channel struct {
	Board   *Board
	Channel int    // in the protocol's numbering: numato from 0, others from 1
	Invert  bool   // normally-closed wiring: the relay energised cuts power
	Name    string // the payload board's name, for errors
}

var _ power.Power = (*Channel)(nil)

// String names the relay, e.g. "numato relay on /dev/serial/by-path/...
// channel 3 (board cam)".
func (c *Channel) String() string {
	if c.Board == nil {
		return fmt.Sprintf("relay channel %d (board %s, no relay board)", c.Channel, c.Name)
	}
	s := fmt.Sprintf("%s relay on %s channel %d", c.Board.proto.name, c.Board.cfg.Port, c.Channel)
	switch {
	case c.Name != "" && c.Invert:
		s += " (board " + c.Name + ", wired normally closed)"
	case c.Name != "":
		s += " (board " + c.Name + ")"
	case c.Invert:
		s += " (wired normally closed)"
	}
	return s
}

// On powers the payload, and on a board with read-back checks that the
// relay reads as switched.
func (c *Channel) On(ctx context.Context) error { return c.switchTo(ctx, "on", true) }

// Off cuts the payload's power, and on a board with read-back checks that
// the relay reads as switched.
func (c *Channel) Off(ctx context.Context) error { return c.switchTo(ctx, "off", false) }

func (c *Channel) switchTo(ctx context.Context, op string, on bool) error {
	b := c.Board
	if b == nil {
		return c.fail(op, errors.New("no relay board"))
	}
	err := b.hold(ctx, func() error {
		energise := on != c.Invert
		if err := b.set(ctx, c.Channel, energise); err != nil {
			return err
		}
		if !b.CanReadBack() {
			return nil
		}
		// Boards lose commands (a board browning out, a frame eaten by the
		// USB adapter): only what the board reports counts.
		got, _, err := b.get(ctx, c.Channel)
		if err != nil {
			return &afterSwitch{fmt.Errorf("switched %s, but not read back: %w", op, err)}
		}
		if got != energise {
			return &afterSwitch{fmt.Errorf("reads %s after switching %s", onOff(got != c.Invert), op)}
		}
		return nil
	})
	if err != nil {
		return c.fail(op, err)
	}
	return nil
}

// afterSwitch is an error from the read-back after a switch, whose text
// says what was switched.
type afterSwitch struct{ err error }

func (e *afterSwitch) Error() string { return e.err.Error() }
func (e *afterSwitch) Unwrap() error { return e.err }

// State reads the payload's power from the relay: Unknown on a board
// without read-back whose relay this process has not switched.
func (c *Channel) State(ctx context.Context) (power.State, error) {
	if c.Board == nil {
		return power.Unknown, c.fail("state", errors.New("no relay board"))
	}
	var energised, known bool
	err := c.Board.hold(ctx, func() (err error) {
		energised, known, err = c.Board.get(ctx, c.Channel)
		return err
	})
	if err != nil {
		return power.Unknown, c.fail("state", err)
	}
	switch {
	case !known:
		return power.Unknown, nil
	case energised != c.Invert:
		return power.On, nil
	}
	return power.Off, nil
}

// Cycle switches the payload off, waits off, and switches it on. Every
// error it returns is for Op "cycle", also when switching off or on
// failed: the caller asked for a cycle.
func (c *Channel) Cycle(ctx context.Context, off time.Duration) error {
	err := power.OffOn(ctx, c, off)
	var pe *power.Error
	if errors.As(err, &pe) && pe.Op != "cycle" {
		var as *afterSwitch
		if errors.As(pe.Err, &as) {
			return c.fail("cycle", pe.Err)
		}
		step := "switching off"
		if pe.Op == "on" {
			step = "off, but switching on again"
		}
		return c.fail("cycle", fmt.Errorf("%s: %w", step, pe.Err))
	}
	return err
}

func (c *Channel) fail(op string, err error) error {
	return &power.Error{Op: op, Power: c.String(), Err: err}
}
