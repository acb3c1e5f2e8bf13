package steps

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/remote"
)

// world is one scenario's state.
type world struct {
	opts  Options
	dir   string
	bench *bench.Bench
	bus   *bus.Bus // opened by the first step that needs it

	window  bus.Window
	results chan bus.Result
	result  *bus.Result
	cancel  context.CancelCauseFunc

	relay    *relayBench    // a standalone simulated relay board, for hil power
	sent     []*sent        // files the scenario put on the payload to go down
	cleanups []func() error // run when the scenario ends, before the bus closes
}

// mustNotBeOpen refuses a Given step that changes the bench once the bus
// runs on it.
func (w *world) mustNotBeOpen(what string) error {
	if w.bus != nil {
		return fmt.Errorf("%s must be set before the bus starts: move this step before the first When", what)
	}
	return nil
}

// payloadRoot is the directory that is the window's payload's whole
// filesystem on a bench that runs it as a local process.
func (w *world) payloadRoot() (string, error) {
	bc, err := w.board()
	if err != nil {
		return "", err
	}
	if !bc.Power.LocalProcess() {
		return "", fmt.Errorf("board %s is not a local process (power kind %s): its disk cannot be read from the bench while it is off", bc.Name, bc.Power.Kind)
	}
	return filepath.Join(w.dir, "boards", bc.Name, "root"), nil
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func newWorld(opts Options) (*world, error) {
	b, err := bench.Load(opts.Bench)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hil-scenario-")
	if err != nil {
		return nil, err
	}
	return &world{opts: opts, dir: dir, bench: b}, nil
}

func (w *world) failOut() io.Writer {
	if w.opts.Output != nil {
		return w.opts.Output
	}
	return os.Stderr
}

// open starts the bus on first use, so that Given steps can still adjust
// the bench.
func (w *world) open(ctx context.Context) (*bus.Bus, error) {
	if w.bus != nil {
		return w.bus, nil
	}
	b, err := bus.Open(ctx, w.bench, w.dir)
	if err != nil {
		return nil, err
	}
	if w.opts.Logf != nil {
		b.Log.OnAppend = func(e bus.Event) { w.opts.Logf("  %s", e) }
	}
	w.bus = b
	return b, nil
}

func (w *world) close() error {
	if w.cancel != nil {
		w.cancel(errors.New("the scenario ended before the window"))
		<-w.results // the window has aborted and cut power
	}
	var errs []error
	for i := len(w.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, w.cleanups[i]())
	}
	if w.bus != nil {
		errs = append(errs, w.bus.Close())
	}
	err := errors.Join(errs...)
	if rerr := os.RemoveAll(w.dir); err == nil {
		err = rerr
	}
	return err
}

func (w *world) eventText() string {
	if w.bus == nil {
		return "(the bus was never opened)\n"
	}
	var b strings.Builder
	for _, e := range w.bus.Log.Events() {
		fmt.Fprintln(&b, e)
	}
	return b.String()
}

// start runs the scenario's window in the background, starting now.
func (w *world) start(ctx context.Context) error {
	if w.results != nil {
		return nil
	}
	b, err := w.open(ctx)
	if err != nil {
		return err
	}
	// Scheduled as far ahead as the bench powers payloads on before a
	// window (timing.pre_buffer), so a payload that boots slowly, such as
	// a QEMU one, is up by the start, as in orbit.
	w.window.Start = time.Now().Add(b.Bench.Timing.PreBuffer.D())
	// The window outlives this step but not the scenario, whose context
	// godog derives from Options.Context: Ctrl-C ends it too.
	rctx, cancel := context.WithCancelCause(ctx)
	w.cancel = cancel
	w.results = make(chan bus.Result, 1)
	go func(win bus.Window) { w.results <- b.Run(rctx, win) }(w.window)
	return nil
}

// wait waits for the window's result.
func (w *world) wait(ctx context.Context) (*bus.Result, error) {
	if w.result != nil {
		return w.result, nil
	}
	if w.results == nil {
		return nil, fmt.Errorf("no window was run in this scenario")
	}
	select {
	case r := <-w.results:
		w.result, w.cancel = &r, nil
		w.results <- r // close() may still wait on it
		return w.result, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("window %s still running: %w", w.window.ID, ctx.Err())
	}
}

// board returns the scenario's board config.
func (w *world) board() (*bench.Board, error) {
	for _, bc := range w.bench.Boards {
		if bc.Name == w.window.Board {
			return bc, nil
		}
	}
	return nil, fmt.Errorf("bench %s has no board %q", w.bench.Name, w.window.Board)
}

// dial opens an SSH connection to the window's payload, which must be on.
func (w *world) dial(ctx context.Context) (*remote.Client, error) {
	if w.bus == nil {
		return nil, fmt.Errorf("the bus is not running")
	}
	bd := w.bus.Boards[w.window.Board]
	if bd == nil {
		return nil, fmt.Errorf("bench %s has no board %q", w.bench.Name, w.window.Board)
	}
	return remote.Dial(ctx, bd.Remote)
}

// newHostKey writes a fresh ed25519 host key for the reference payload.
func (w *world) newHostKey() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "wrong host key")
	if err != nil {
		return "", err
	}
	name := filepath.Join(w.dir, "other_host_ed25519")
	return name, os.WriteFile(name, pem.EncodeToMemory(blk), 0o600)
}

type console struct {
	board string
	text  []byte
}

// consoles returns the console of each payload the bench started, in
// board order.
func (w *world) consoles() []console {
	if w.bus == nil {
		return nil
	}
	var cs []console
	for _, bc := range w.bench.Boards {
		bd := w.bus.Boards[bc.Name]
		if bd == nil || bd.Console == "" {
			continue
		}
		if b, err := os.ReadFile(bd.Console); err == nil && len(b) > 0 {
			cs = append(cs, console{bc.Name, b})
		}
	}
	return cs
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
