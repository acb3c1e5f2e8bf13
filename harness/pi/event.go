package pi

import (
	"fmt"
	"strings"
	"time"
)

// Event is one thing the controller saw or did.
type Event struct {
	Time  time.Time
	Board string // "" when the caller could not be told (a refused cookie)
	Kind  string // EventIn, EventOut or one of the other kinds below
	// Method is the RPC of an EventIn or EventOut, e.g. "PC_register".
	Method string
	Corr   int32 // the message's correlation id; HasCorr says if it has one
	// HasCorr is false for messages without one (PC_sequence_done).
	HasCorr bool
	// Code is the return code: what the controller answered (EventIn) or
	// what the app answered (EventOut).
	Code   int32
	Detail string // the message's fields, or what happened
	Err    error  // an EventOut that failed: the app did not answer
}

// Event kinds.
const (
	EventIn           = "in"  // a PA->PC call, and what the controller answered
	EventOut          = "out" // a PC->PA call, and what the app answered
	EventRegistered   = "registered"
	EventUnregistered = "unregistered" // power went off: the app is gone
	EventRefused      = "refused"      // a call or connection refused: wrong cookie, plaintext on TLS
	EventInvalid      = "invalid"      // a request with a malformed or out-of-range field
	EventDropped      = "dropped"      // the app's outgoing queue was full
	EventHealthFailed = "health check failed"
	EventUnhealthy    = "unhealthy" // HealthFailures checks failed in a row
	EventPowerCycled  = "power-cycled"
	EventPower        = "power" // PayloadPowerControl switched power
	EventSequenceDone = "sequence done"
	EventOverran      = "sequence overran"
	EventShutdown     = "shutdown answered"
	EventStaged       = "staged"
	EventStageFailed  = "stage failed"
)

func (e Event) String() string {
	head := e.Kind
	if e.Method != "" {
		head += " " + e.Method
	}
	if t := e.Text(); t != "" {
		return head + " " + t
	}
	return head
}

// Text is the event without its kind and method: the correlation id, the
// code or error, and the detail.
func (e Event) Text() string {
	var parts []string
	if e.HasCorr {
		parts = append(parts, fmt.Sprintf("corr=%d", e.Corr))
	}
	if e.Kind == EventIn || e.Kind == EventOut {
		if e.Err != nil {
			parts = append(parts, fmt.Sprintf("error=%v", e.Err))
		} else {
			parts = append(parts, fmt.Sprintf("code=%d", e.Code))
		}
	}
	s := strings.Join(parts, " ")
	if e.Detail != "" {
		if s != "" {
			s += ": "
		}
		s += e.Detail
	}
	return s
}
