package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exec switches a payload with shell commands: a PDU's command-line tool,
// an SNMP set, a lab script. Each command runs with sh -c, HIL_BOARD set
// to Name, in its own process group, killed whole when it overruns.
type Exec struct {
	Name       string // the board, for errors and HIL_BOARD
	OnCommand  string // switches on; required
	OffCommand string // switches off; required
	// StatusCommand prints "on" or "off" (case and surrounding space
	// ignored). Empty: State reports what this Exec last switched,
	// unknown before.
	StatusCommand string
	Timeout       time.Duration // per command; 0: 10s

	mu      sync.Mutex // one command at a time
	tracked State
}

var _ Power = (*Exec)(nil)

func (e *Exec) String() string { return "exec " + e.Name }

// On runs the on command.
func (e *Exec) On(ctx context.Context) error { return e.switchTo(ctx, On) }

// Off runs the off command.
func (e *Exec) Off(ctx context.Context) error { return e.switchTo(ctx, Off) }

// Cycle runs the off command, waits off, and runs the on command.
func (e *Exec) Cycle(ctx context.Context, off time.Duration) error { return OffOn(ctx, e, off) }

func (e *Exec) switchTo(ctx context.Context, st State) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	cmd := e.OnCommand
	if st == Off {
		cmd = e.OffCommand
	}
	if err := ctx.Err(); err != nil {
		return &Error{Op: st.String(), Power: e.String(), Err: fmt.Errorf("command %q not run: %w", cmd, context.Cause(ctx))}
	}
	if _, err := e.run(ctx, cmd); err != nil {
		// What a failed command did is not known.
		e.tracked = Unknown
		return &Error{Op: st.String(), Power: e.String(), Err: err}
	}
	e.tracked = st
	return nil
}

// State runs the status command, or reports the state last switched.
func (e *Exec) State(ctx context.Context) (State, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.StatusCommand == "" {
		return e.tracked, nil
	}
	out, err := e.run(ctx, e.StatusCommand)
	if err != nil {
		return Unknown, &Error{Op: "state", Power: e.String(), Err: err}
	}
	switch strings.ToLower(strings.TrimSpace(out)) {
	case "on":
		return On, nil
	case "off":
		return Off, nil
	}
	return Unknown, &Error{Op: "state", Power: e.String(), Err: fmt.Errorf("status command %q printed %q; want on or off", e.StatusCommand, truncate(out, 200))}
}

// run runs command and returns its standard output.
func (e *Exec) run(ctx context.Context, command string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("command %q not run: %w", command, context.Cause(ctx))
	}
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	cctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("did not finish within %v", timeout))
	defer cancel()
	cmd := exec.CommandContext(cctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), "HIL_BOARD="+e.Name)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A PDU tool may fork; the whole group goes when the command overruns,
	// and a child that keeps the pipes open cannot hold Wait forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if cctx.Err() != nil {
		return "", fmt.Errorf("command %q: %w", command, context.Cause(cctx))
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return "", fmt.Errorf("command %q exited %d: %s", command, ee.ExitCode(), truncate(msg, 500))
	case err != nil:
		return "", fmt.Errorf("command %q: %w", command, err)
	}
	return stdout.String(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
