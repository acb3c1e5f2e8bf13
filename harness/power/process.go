package power

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process powers a payload that is a local process, as the reference
// payload is on the sim bench: on starts it, off kills it outright, the
// way cutting power would.
type Process struct {
	Name string   // for errors and logs
	Path string   // the program
	Args []string // its arguments, without the program name
	Env  []string // the process environment; nil: inherit
	// Console receives the process's standard output and error, as a
	// board's serial console would. Nil discards them.
	Console io.Writer
	// ExtraFiles are passed to the process as fds 3, 4, ... (a tap's
	// queue, for QEMU).
	ExtraFiles []*os.File
	// Within, if set, runs the start of the process: a bench network
	// starts it inside the payload's network namespace.
	Within func(start func() error) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited <-chan struct{} // closed when cmd has exited
}

var _ Power = (*Process)(nil)

func (p *Process) String() string { return "process " + p.Name }

// On starts the process unless it is running.
func (p *Process) On(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return &Error{Op: "on", Power: p.String(), Err: context.Cause(ctx)}
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout = p.Console
	cmd.Stderr = p.Console
	cmd.ExtraFiles = p.ExtraFiles
	// Its own process group, so a Ctrl-C at the terminal reaches only the
	// bus, which then powers the payload off in order; and killed with the
	// bus, as a payload loses power when its bus does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var start func() error
	if p.Within != nil {
		start = func() error { return p.Within(cmd.Start) }
	}
	exited, err := Start(cmd, start)
	if err != nil {
		return &Error{Op: "on", Power: p.String(), Err: err}
	}
	p.cmd, p.exited = cmd, exited
	return nil
}

func (p *Process) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Off kills the process and waits for it to be gone.
func (p *Process) Off(ctx context.Context) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		// A process already gone is off whatever the context says;
		// select alone would pick between the two at random.
		select {
		case <-exited:
			return nil
		default:
		}
		return &Error{Op: "off", Power: p.String(), Err: fmt.Errorf("process %d still running: %w", cmd.Process.Pid, context.Cause(ctx))}
	}
}

// Cycle kills the process and starts it again after off.
func (p *Process) Cycle(ctx context.Context, off time.Duration) error { return OffOn(ctx, p, off) }

// State reports whether the process is running.
func (p *Process) State(ctx context.Context) (State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return On, nil
	}
	return Off, nil
}

var _ Stopper = (*Process)(nil)

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Stopped returns a channel closed when the current process has exited.
func (p *Process) Stopped() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return closed
	}
	return p.exited
}
