package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"go.bug.st/serial"
)

// pollSlice bounds each blocking read, so that a done context is noticed
// within it: a read on a serial port cannot be interrupted otherwise, short
// of closing the port under the reader.
const pollSlice = 20 * time.Millisecond

// mode is every board's line: 9600 8N1 (CDC-ACM boards ignore the baud).
var mode = serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}

// conn is a port open for one exchange.
type conn struct {
	ctx     context.Context
	port    serial.Port
	path    string
	proto   string
	timeout time.Duration

	sent     bool // a command went out, so the exchange counts for the gap
	last     int  // the length of the last command sent
	answered bool // the board answered the last command
}

// lineSlack is what the USB link and the host's scheduling may add
// before the board has a command that Drain reported sent; it cannot be
// measured from here.
const lineSlack = 5 * time.Millisecond

// settled returns when the board had the exchange's last command, as
// best the driver can tell: now, if the board answered it; else later by
// the time the bytes take on a 9600 8N1 line (10 bits a byte), which a
// USB adapter's UART still spends after Drain returns, and lineSlack.
func (c *conn) settled() time.Time {
	now := time.Now()
	if c.answered {
		return now
	}
	return now.Add(time.Duration(c.last)*10*time.Second/time.Duration(mode.BaudRate) + lineSlack)
}

// openPort opens the serial port at path for an exchange, with stale
// input discarded.
func openPort(path string) (serial.Port, error) {
	p, err := serial.Open(path, &mode)
	if err != nil {
		return nil, openError(path, err)
	}
	// A reply that came after its exchange gave up, or noise, must not be
	// read as this exchange's reply.
	if err := p.ResetInputBuffer(); err != nil {
		p.Close()
		return nil, ioError("discard stale input on", path, err)
	}
	return p, nil
}

func openError(path string, err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortBusy:
			// Another hil would hold the port's lock, not the port: this is
			// TIOCEXCL, set by a terminal program, ModemManager or the like.
			return fmt.Errorf("port %s is held exclusively by a program that is not hil (open: %v); find it with fuser -v %s", path, syscall.EBUSY, path)
		case serial.PermissionDenied:
			return fmt.Errorf("open %s: %w; the user needs the port's group (often dialout)", path, fs.ErrPermission)
		case serial.PortNotFound:
			return gone(path, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist})
		case serial.InvalidSerialPort:
			return fmt.Errorf("%s is not a serial port: %w", path, err)
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	perr := &fs.PathError{Op: "open", Path: path, Err: err}
	if errors.Is(err, fs.ErrNotExist) {
		return gone(path, perr)
	}
	return perr
}

// gone is the error for a port whose device does not exist (any more).
func gone(path string, cause error) error {
	return fmt.Errorf("port %s is gone: unplugged? (%w)", path, cause)
}

// ioError is an I/O error on the port at path; a port unplugged mid-way
// says so.
func ioError(op, path string, err error) error {
	if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
		return gone(path, fmt.Errorf("%s %s: %w", op, path, err))
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// send writes b and waits until it has left, so that the gap to the next
// command runs from when the board has the bytes, not from when they were
// queued.
func (c *conn) send(b []byte) error {
	if c.ctx.Err() != nil {
		return fmt.Errorf("before sending %q: %w", b, context.Cause(c.ctx))
	}
	c.sent, c.last, c.answered = true, len(b), false
	for rest := b; len(rest) > 0; {
		n, err := c.port.Write(rest)
		if err == syscall.EINTR {
			continue // the Go runtime's preemption signal; nothing was written
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			return ioError(fmt.Sprintf("write %q to", b), c.path, err)
		}
		rest = rest[n:]
	}
	for {
		err := c.port.Drain()
		if err == nil {
			return nil
		}
		// The ioctl is not restarted after a signal, and the Go runtime
		// signals its threads to preempt goroutines.
		if err != syscall.EINTR {
			return ioError(fmt.Sprintf("drain %q to", b), c.path, err)
		}
		if c.ctx.Err() != nil {
			return fmt.Errorf("sending %q: %w", b, context.Cause(c.ctx))
		}
	}
}

// noAnswerError is a reply that did not come, or not whole, within the
// timeout.
type noAnswerError struct {
	proto  string
	within time.Duration
	sent   []byte
	got    []byte
}

func (e *noAnswerError) Error() string {
	if len(e.got) == 0 {
		return fmt.Sprintf("no answer within %v: is a %s board on that port?", e.within, e.proto)
	}
	return fmt.Sprintf("incomplete answer to %q within %v: received %q: is a %s board on that port?", e.sent, e.within, e.got, e.proto)
}

// recv reads the reply to sent until complete says it is whole, for at
// most the timeout. It returns what it read, also with an error.
func (c *conn) recv(sent []byte, complete func([]byte) bool) ([]byte, error) {
	deadline := time.Now().Add(c.timeout)
	var buf []byte
	tmp := make([]byte, 256)
	for !complete(buf) {
		if c.ctx.Err() != nil {
			return buf, fmt.Errorf("waiting for the answer to %q (received %q): %w", sent, buf, context.Cause(c.ctx))
		}
		left := time.Until(deadline)
		if left <= 0 {
			return buf, &noAnswerError{proto: c.proto, within: c.timeout, sent: sent, got: buf}
		}
		if err := c.port.SetReadTimeout(min(left, pollSlice)); err != nil {
			return buf, fmt.Errorf("set read timeout on %s: %w", c.path, err)
		}
		n, err := c.port.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			return buf, ioError(fmt.Sprintf("read the answer to %q (received %q) from", sent, buf), c.path, err)
		}
	}
	c.answered = len(buf) > 0
	return buf, nil
}

// ask sends cmd and reads a reply of exactly n bytes.
func (c *conn) ask(cmd []byte, n int) ([]byte, error) {
	if err := c.send(cmd); err != nil {
		return nil, err
	}
	buf, err := c.recv(cmd, func(b []byte) bool { return len(b) >= n })
	if err != nil {
		return nil, err
	}
	// A board that echoes (a numato) sends back what it was sent, a byte
	// at a time: whatever comes on the heels of the reply is not one.
	if len(buf) == n {
		if err := c.port.SetReadTimeout(lineSlack); err != nil {
			return nil, fmt.Errorf("set read timeout on %s: %w", c.path, err)
		}
		tmp := make([]byte, 64)
		m, _ := c.port.Read(tmp)
		buf = append(buf, tmp[:m]...)
	}
	if len(buf) > n {
		return nil, fmt.Errorf("the board answered %q with %d bytes %q; want %d: is a %s board on that port?", cmd, len(buf), buf, n, c.proto)
	}
	return buf, nil
}
