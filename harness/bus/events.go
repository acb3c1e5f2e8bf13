package bus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Kind classifies an event.
type Kind string

const (
	KindState    Kind = "state"    // a window changed state
	KindPower    Kind = "power"    // power on/off
	KindSignal   Kind = "signal"   // a Signaling API action: config placed, configure, start, shutdown
	KindUplink   Kind = "uplink"   // a file placed on the payload
	KindDownlink Kind = "downlink" // a file swept or delivered
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
	Name   string // what happened, e.g. "configure", "swept", "delivered"
	Detail string // free text: a reason, a key, stderr
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
	mu      sync.Mutex
	events  []Event
	changed chan struct{} // closed and replaced on every append
	// OnAppend, if set, sees each event as it is appended (for progress output).
	OnAppend func(Event)
}

// Append adds e, stamping its sequence number and, if unset, its time.
func (l *Log) Append(e Event) Event {
	l.mu.Lock()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Seq = len(l.events)
	l.events = append(l.events, e)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	on := l.OnAppend
	l.mu.Unlock()
	if on != nil {
		on(e)
	}
	return e
}

// Events returns a copy of every event so far.
func (l *Log) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// Wait returns the first event, from the start of the log, for which match
// is true, waiting for it until ctx is done.
func (l *Log) Wait(ctx context.Context, match func(Event) bool) (Event, error) {
	next := 0
	for {
		l.mu.Lock()
		for ; next < len(l.events); next++ {
			if match(l.events[next]) {
				e := l.events[next]
				l.mu.Unlock()
				return e, nil
			}
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, context.Cause(ctx)
		}
	}
}
