// Package netlab builds a bench's payload Ethernet out of Linux network
// namespaces: a Lab is one namespace (the bus namespace) holding a bridge
// with the bus's address, and payloads attach to that bridge by a tap (a
// QEMU payload, which gets the tap's file descriptor), by a veth pair
// whose other end is in a namespace of the payload's own (a process
// payload, started inside it), or by the host's NIC a real board is cabled
// to, which the lab borrows.
//
// The calling process stays in its namespace: its sockets to the payloads
// are made inside the bus namespace (Lab.Dial, Lab.Listen), and a socket
// keeps the namespace it was made in. Nothing in the host's namespace is
// created or changed, but for a NIC the bench names, which is moved out
// and back: every link, address, route and qdisc is made by a thread that
// has entered one of the lab's namespaces, and that thread is thrown away
// afterwards rather than switched back.
//
// Everything but Shape and NotOnHost needs Linux and root.
package netlab

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Prefix starts the name of every namespace a Lab makes, so that
// Leftovers can tell them from others.
const Prefix = "hil-"

// ErrNeedRoot is what the error of Create and Available wraps when the
// process lacks the privileges to build a lab.
var ErrNeedRoot = errors.New("netlab: needs root")

// needRootError is an ErrNeedRoot saying, in one line, what needed it.
type needRootError struct{ what string }

func (e *needRootError) Error() string {
	return "netlab: " + e.what + " needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root or use the sim bench"
}

func (e *needRootError) Unwrap() error { return ErrNeedRoot }

// Shape is what a link does to the traffic crossing it, in each direction
// separately: bus to payload and payload to bus are both shaped with all of
// it, so a round trip sees 2*Delay and each direction loses Loss of its
// packets. The zero Shape leaves a link as fast as the host.
type Shape struct {
	Rate   int64         // bit/s; 0 = unlimited
	Delay  time.Duration // one way, added in each direction: the RTT grows by 2*Delay
	Jitter time.Duration // random variation of Delay, in each direction
	Loss   float64       // fraction of packets dropped in each direction, 0 <= Loss < 1
}

// IsZero reports whether s shapes nothing.
func (s Shape) IsZero() bool { return s == Shape{} }

// String returns s as "rate 1Mbit/s delay 50ms jitter 5ms loss 1%", with
// only the parts that are set, or "none".
func (s Shape) String() string {
	if s.IsZero() {
		return "none"
	}
	var parts []string
	if s.Rate != 0 {
		parts = append(parts, "rate "+formatRate(s.Rate))
	}
	if s.Delay != 0 {
		parts = append(parts, "delay "+s.Delay.String())
	}
	if s.Jitter != 0 {
		parts = append(parts, "jitter "+s.Jitter.String())
	}
	if s.Loss != 0 {
		// As float32, so that 0.07 shows as 7%, not 7.000000000000001%.
		parts = append(parts, "loss "+strconv.FormatFloat(s.Loss*100, 'f', -1, 32)+"%")
	}
	return strings.Join(parts, " ")
}

// check reports what makes s unusable, if anything.
func (s Shape) check() error {
	switch {
	case s.Rate < 0:
		return fmt.Errorf("shape %s: negative rate", s)
	case s.Delay < 0:
		return fmt.Errorf("shape %s: negative delay", s)
	case s.Jitter < 0:
		return fmt.Errorf("shape %s: negative jitter", s)
	case !(s.Loss >= 0 && s.Loss < 1): // also catches NaN
		return fmt.Errorf("shape %s: loss must be at least 0 and less than 1 (a fraction, not a percentage)", s)
	}
	return nil
}

// formatRate returns r bit/s with an SI prefix: 2Mbit/s, 1.5kbit/s.
func formatRate(r int64) string {
	v, unit := float64(r), "bit/s"
	for _, u := range []string{"kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"} {
		if v < 1000 {
			break
		}
		v, unit = v/1000, u
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + unit
}

// maxNameLen is the longest lab or link name: IFNAMSIZ-1.
const maxNameLen = 15

// CheckName checks a lab or link name, what it names (e.g. "nic") first:
// it must fit IFNAMSIZ and be safe as a file name (namespace names are
// files in /run/netns).
func CheckName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%s name %q is %d bytes, more than %d (IFNAMSIZ-1)", what, name, len(name), maxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%s name %q is not a name", what, name)
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%s name %q has %q: use letters, digits, '.', '_' and '-'", what, name, r)
		}
	}
	return nil
}
