package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/satbench/hil/internal/waitlog"
)

// Kind classifies an event.
type Kind string

const (
	KindState    Kind = "state"    // a window changed state
	KindPower    Kind = "power"    // power on/off
	KindSignal   Kind = "signal"   // a Signaling API action: config placed, configure, start, shutdown
	KindUplink   Kind = "uplink"   // a file placed on the payload
	KindDownlink Kind = "downlink" // a file swept or delivered
	KindPI       Kind = "pi"       // a Payload Interface message, in or out, or what the controller did
	KindLink     Kind = "link"     // a payload's Ethernet cut or restored
	KindError    Kind = "error"
)

// Event is one thing the bus did or saw.
type Event struct {
	Seq    int
	Time   time.Time
	Window string
	Board  string
	Kind   Kind
	State  State  // for KindState
	Name   string // what happened, e.g. "configure", "queued", "delivered"
	Detail string // free text: a reason, a key, stderr
	File   string // for KindDownlink: the file's name on the payload
	Object string // for a delivery: s3://bucket/key
	Method string // for KindPI: the RPC, e.g. "PC_register"
	Corr   string // for KindPI: the message's correlation id, if it has one
}

func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s window=%s board=%s %s", e.Time.UTC().Format("15:04:05.000"), e.Window, e.Board, e.Kind)
	if e.State != "" {
		fmt.Fprintf(&b, " %s", e.State)
	}
	if e.Name != "" {
		fmt.Fprintf(&b, " %s", e.Name)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	return b.String()
}

// Log is the bus's event log: append-only, and waitable so that steps and
// the bus itself wait for events instead of sleeping.
type Log struct {
	log waitlog.Log[Event]
	// OnAppend, if set, sees each event as it is appended (for progress output).
	OnAppend func(Event)
}

// Append adds e, stamping its sequence number and, if unset, its time.
func (l *Log) Append(e Event) Event {
	e = l.log.AppendWith(func(seq int) Event {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		e.Seq = seq
		return e
	})
	if l.OnAppend != nil {
		l.OnAppend(e)
	}
	return e
}

// Events returns a copy of every event so far.
func (l *Log) Events() []Event { return l.log.All() }

// Wait returns the first event, from the start of the log, for which match
// is true, waiting for it until ctx is done.
func (l *Log) Wait(ctx context.Context, match func(Event) bool) (Event, error) {
	return l.log.Wait(ctx, match)
}
