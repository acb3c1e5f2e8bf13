// Package relay drives USB/serial relay boards that switch payload power:
// LC-Tech LCUS, Numato, KMTronic, Denkovi and Devantech, over
// go.bug.st/serial, byte for byte as in the relay contract
// (contracts/relays.md and its byte-level specification).
//
// A Board is one physical board; a Channel, one of its relays powering a
// payload, is a power.Power. The port is opened for each exchange and
// closed after it, under a lock shared by every hil process on the host,
// so that two runs never interleave frames on one board and a board
// unplugged between exchanges is seen at the next one.
package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"go.bug.st/serial/enumerator"
)

// Port says which serial port a board is on. Exactly one of Path and
// Serial.
type Port struct {
	// Path is a device path; on a bench a stable one,
	// /dev/serial/by-path/... or /dev/serial/by-id/...
	Path string
	// Serial is the board's USB serial number (iSerial), looked up with
	// go.bug.st/serial/enumerator at each exchange.
	Serial string
}

func (p Port) String() string {
	if p.Serial != "" {
		return "USB serial " + p.Serial
	}
	return p.Path
}

// Config is a relay board. Its zero values are the protocol's defaults.
type Config struct {
	Protocol string // lcus, numato, kmtronic, denkovi or devantech
	Port     Port
	Channels int           // the board's size; 0: the protocol's default
	Gap      time.Duration // least time between commands on the port; 0: the protocol's (denkovi 50ms, others 10ms)
	Timeout  time.Duration // how long to wait for a reply; 0: 1s
	// Wait bounds how long an exchange waits for the port while another
	// holds it, before failing with a *BusyError naming the holder; 0:
	// as long as the exchange's context allows.
	Wait time.Duration
	// Holder says who is switching, for others who find the port busy,
	// e.g. "hil run (bench benches/lab.yaml, board cam)"; empty: the
	// program's name.
	Holder string
	// OnWait, if set, is called once when an exchange has to wait for the
	// port's lock, with a description of the holder. It is never called
	// concurrently for one Board.
	OnWait func(holder string)
}

const defaultTimeout = time.Second

// Validate checks the configuration: a known protocol, a size that board
// is made in, and the port given once by a stable name.
func (c Config) Validate() error {
	p, err := lookupErr(c.Protocol)
	if err != nil {
		return fmt.Errorf("relay: Protocol: %w", err)
	}
	if err := CheckPort(c.Protocol, c.Port); err != nil {
		field := "Port.Path"
		if c.Port.Path == "" && c.Port.Serial != "" {
			field = "Port.Serial"
		}
		return fmt.Errorf("relay: %s: %w", field, err)
	}
	if c.Channels != 0 {
		if err := p.checkSize(c.Channels); err != nil {
			return fmt.Errorf("relay: Channels: %w (or 0, the default %d)", err, p.def)
		}
	}
	if c.Gap < 0 {
		return fmt.Errorf("relay: Gap: %v is negative; want 0 (the protocol's default, %v for %s) or more", c.Gap, p.gap, p.name)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("relay: Timeout: %v is negative; want 0 (the default, %v) or more", c.Timeout, defaultTimeout)
	}
	return nil
}

// byOrder matches device names the kernel hands out in plug-in order.
var byOrder = regexp.MustCompile(`^/dev/tty(USB|ACM)[0-9]+$`)

// CheckPort checks that p names the port of a board of protocol once, and
// by a name that stays with the board: /dev/ttyUSB0 is whichever
// USB-serial adapter the kernel found first, and changes when boards are
// replugged or the host reboots.
func CheckPort(protocol string, p Port) error {
	lcus := protocol == "lcus"
	switch {
	case p.Path != "" && p.Serial != "":
		return fmt.Errorf("both a path (%s) and a USB serial number (%s) are given; give one", p.Path, p.Serial)
	case p.Path == "" && p.Serial == "":
		if lcus {
			return errors.New("missing; give the board's port by a stable path, /dev/serial/by-path/...")
		}
		return errors.New("missing; give the board's port by a stable path, /dev/serial/by-path/... or /dev/serial/by-id/..., or its USB serial number")
	case p.Serial != "" && lcus:
		return fmt.Errorf("an lcus board (CH340) has no USB serial number, so %q cannot name it; give its port by a /dev/serial/by-path/... path", p.Serial)
	case p.Serial != "":
		return nil
	case !filepath.IsAbs(p.Path):
		return fmt.Errorf("%q is not an absolute path; give the board's port as /dev/serial/by-path/...", p.Path)
	case byOrder.MatchString(filepath.Clean(p.Path)):
		hint := "its /dev/serial/by-path/... link (or /dev/serial/by-id/..., or the USB serial number)"
		if lcus {
			hint = "its /dev/serial/by-path/... link (an lcus board has no USB serial number)"
		}
		return fmt.Errorf("%s names a port by plug-in order, which changes when boards are replugged or the host reboots; use %s", p.Path, hint)
	}
	return nil
}

// Board is a relay board. Its methods are safe for concurrent use; its
// exchanges with the board happen one at a time.
type Board struct {
	cfg     Config
	proto   *proto
	n       int
	gap     time.Duration
	timeout time.Duration
	holder  string

	turn chan struct{} // holds a token while an exchange runs

	mu      sync.Mutex
	tracked map[int]bool // boards without read-back: what this process switched each channel to
}

// Open returns the board of cfg. It does not open the port: each
// exchange opens, locks and closes it.
func Open(cfg Config) (*Board, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Board{
		cfg:     cfg,
		proto:   lookup(cfg.Protocol),
		n:       cfg.Channels,
		gap:     cfg.Gap,
		timeout: cfg.Timeout,
		holder:  cfg.Holder,
		turn:    make(chan struct{}, 1),
		tracked: make(map[int]bool),
	}
	if b.n == 0 {
		b.n = b.proto.def
	}
	if b.gap == 0 {
		b.gap = b.proto.gap
	}
	if b.timeout == 0 {
		b.timeout = defaultTimeout
	}
	if b.holder == "" {
		b.holder = filepath.Base(os.Args[0])
	}
	return b, nil
}

// String names the board, e.g. "numato relay board on /dev/serial/by-path/...".
func (b *Board) String() string {
	return fmt.Sprintf("%s relay board on %s", b.proto.name, b.cfg.Port)
}

// Channels returns the board's valid channel range, in its protocol's
// numbering: numato counts from 0, the others from 1.
func (b *Board) Channels() (first, last int) {
	return b.proto.first, b.proto.first + b.n - 1
}

// CanReadBack reports whether the board reports the state of its relays.
// An lcus board does not: Get knows only what this process switched.
func (b *Board) CanReadBack() bool { return b.proto.get != nil }

// Set switches relay ch on or off.
func (b *Board) Set(ctx context.Context, ch int, on bool) error {
	err := b.hold(ctx, func() error { return b.set(ctx, ch, on) })
	if err != nil {
		return fmt.Errorf("%s: switch channel %d %s: %w", b, ch, onOff(on), err)
	}
	return nil
}

// Get reads relay ch. known is false for a board without read-back
// (lcus) whose relay ch this process never switched.
func (b *Board) Get(ctx context.Context, ch int) (on, known bool, err error) {
	err = b.hold(ctx, func() error {
		on, known, err = b.get(ctx, ch)
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("%s: read channel %d: %w", b, ch, err)
	}
	return on, known, nil
}

// hold runs f as the only user of the board in this process: a switch and
// its read-back are not split by another goroutine's.
func (b *Board) hold(ctx context.Context, f func() error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for this process's other exchange with the board: %w", context.Cause(ctx))
	}
	defer func() { <-b.turn }()
	return f()
}

// set switches relay ch; the caller holds the board.
func (b *Board) set(ctx context.Context, ch int, on bool) error {
	if err := b.proto.checkChannel(b.n, ch); err != nil {
		return err
	}
	return b.exchange(ctx, func(c *conn) error {
		err := b.proto.set(c, b.n, ch, on)
		if b.proto.get == nil && c.sent {
			// A frame cut short leaves the relay in doubt: unknown.
			b.mu.Lock()
			if err == nil {
				b.tracked[ch] = on
			} else {
				delete(b.tracked, ch)
			}
			b.mu.Unlock()
		}
		return err
	})
}

// get reads relay ch; the caller holds the board.
func (b *Board) get(ctx context.Context, ch int) (on, known bool, err error) {
	if err := b.proto.checkChannel(b.n, ch); err != nil {
		return false, false, err
	}
	if b.proto.get == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		on, known = b.tracked[ch]
		return on, known, nil
	}
	err = b.exchange(ctx, func(c *conn) error {
		on, err = b.proto.get(c, b.n, ch)
		return err
	})
	return on, err == nil, err
}

// exchange runs do with the board's port open and locked, the gap since
// the last command on the port waited out. The caller holds the board.
func (b *Board) exchange(ctx context.Context, do func(*conn) error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	path, err := b.resolve()
	if err != nil {
		return err
	}
	lctx := ctx
	if b.cfg.Wait > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeoutCause(ctx, b.cfg.Wait, fmt.Errorf("waited %v for the port", b.cfg.Wait))
		defer cancel()
	}
	l, err := lockPort(lctx, path, b.holder, b.cfg.OnWait)
	if err != nil {
		return err
	}
	var end time.Time // zero: nothing was sent, the gap still runs from the previous command
	defer func() { l.unlock(end) }()

	if err := l.waitGap(ctx, b.gap); err != nil {
		return err
	}
	port, err := openPort(path)
	if err != nil {
		return err
	}
	c := &conn{ctx: ctx, port: port, path: path, proto: b.proto.name, timeout: b.timeout}
	err = do(c)
	port.Close()
	if c.sent {
		end = c.settled()
	}
	return err
}

// listPorts lists the serial ports and their USB details; a variable for
// tests, as a test host has no USB serial ports.
var listPorts = enumerator.GetDetailedPortsList

// resolve returns the device path of the board's port, looking up its
// USB serial number if it is given by one: the number stays with the
// board wherever it is plugged.
func (b *Board) resolve() (string, error) {
	if b.cfg.Port.Serial == "" {
		return b.cfg.Port.Path, nil
	}
	want := b.cfg.Port.Serial
	ports, err := listPorts()
	if err != nil {
		return "", fmt.Errorf("look up the port with USB serial number %q: %w", want, err)
	}
	var match, usb []string
	for _, p := range ports {
		if !p.IsUSB {
			continue
		}
		if p.SerialNumber == want {
			match = append(match, p.Name)
		}
		sn := "no serial number"
		if p.SerialNumber != "" {
			sn = fmt.Sprintf("serial %q", p.SerialNumber)
		}
		usb = append(usb, fmt.Sprintf("%s (%s:%s, %s)", p.Name, p.VID, p.PID, sn))
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		if len(usb) == 0 {
			return "", fmt.Errorf("no port has USB serial number %q: unplugged? There are no USB serial ports", want)
		}
		return "", fmt.Errorf("no port has USB serial number %q: unplugged? The USB serial ports are %s", want, orList(usb))
	}
	return "", fmt.Errorf("USB serial number %q is on %d ports, %s: give the board's port by /dev/serial/by-path/... instead", want, len(match), orList(match))
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
