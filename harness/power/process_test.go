package power_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/fixtures/payload/payloadtest"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/power/powertest"
	"github.com/satbench/hil/harness/remote"
)

// TestMain lets this test binary be the reference payload: power.Process
// re-executes it with HIL_PAYLOAD_CHILD=1, as the sim bench does the hil
// binary.
func TestMain(m *testing.M) {
	payload.RunIfChild()
	os.Exit(m.Run())
}

// console is a Process's Console. It keeps everything the payload prints
// and hands over the address of each "payload: listening on ADDR" line as
// it arrives, so a test waits for the payload to serve without polling.
type console struct {
	mu        sync.Mutex
	out       bytes.Buffer
	partial   []byte      // the unfinished last line
	listening chan string // addresses, one per start
}

func newConsole() *console { return &console{listening: make(chan string, 64)} }

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(p)
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := string(c.partial[:i])
		c.partial = c.partial[i+1:]
		if addr, ok := strings.CutPrefix(line, "payload: listening on "); ok {
			select {
			case c.listening <- addr:
			default: // nobody is waiting for this many starts
			}
		}
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// waitListening returns the address of the next "payload: listening on"
// line.
func (c *console) waitListening(t *testing.T) string {
	t.Helper()
	select {
	case addr := <-c.listening:
		return addr
	case <-time.After(payloadtest.WaitLimit):
		t.Fatalf("no \"payload: listening on\" line on the console within %v", payloadtest.WaitLimit)
		return ""
	}
}

// payloadProcess is a power.Process that runs this test binary as the
// reference payload, rooted in a temp dir and listening on a free
// loopback port, with the keys to reach it.
type payloadProcess struct {
	p       *power.Process
	console *console
	hostKey ssh.PublicKey
	busKey  ssh.Signer
}

func newPayloadProcess(t *testing.T) *payloadProcess {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	hostKey, hostKeyFile, _ := payloadtest.NewKeyFiles(t, dir, "host_ed25519")
	busKey, _, busPubFile := payloadtest.NewKeyFiles(t, dir, "bus_ed25519")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pp := &payloadProcess{console: newConsole(), hostKey: hostKey.PublicKey(), busKey: busKey}
	pp.p = &power.Process{
		Name: "refpayload",
		Path: self,
		Args: []string{"--root", root, "--listen", "127.0.0.1:0", "--host-key", hostKeyFile,
			"--authorized-key", busPubFile, "--user", "signaling"},
		Env:     append(os.Environ(), "HIL_PAYLOAD_CHILD=1"),
		Console: pp.console,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), payloadtest.WaitLimit)
		defer cancel()
		if err := pp.p.Off(ctx); err != nil {
			t.Errorf("Off at cleanup: %v", err)
		}
		if t.Failed() {
			t.Logf("payload console:\n%s", pp.console)
		}
	})
	return pp
}

func (pp *payloadProcess) remoteConfig(addr string) remote.Config {
	return remote.Config{Address: addr, User: "signaling", Signer: pp.busKey, HostKey: pp.hostKey}
}

// start switches the payload on and waits until it serves SSH.
func (pp *payloadProcess) start(t *testing.T) (addr string, c *remote.Client) {
	t.Helper()
	if err := pp.p.On(t.Context()); err != nil {
		t.Fatalf("On: %v", err)
	}
	addr = pp.console.waitListening(t)
	ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
	defer cancel()
	c, err := remote.Wait(ctx, pp.remoteConfig(addr))
	if err != nil {
		t.Fatalf("SSH to the payload: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return addr, c
}

func wantState(t *testing.T, p power.Power, want power.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
	defer cancel()
	st, err := p.State(ctx)
	if err != nil || st != want {
		t.Fatalf("State = %v, %v; want %v", st, err, want)
	}
}

// isClosed says whether ch is closed now, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestProcessConformance(t *testing.T) {
	powertest.Run(t, func(t *testing.T) power.Power { return newPayloadProcess(t).p })
}

// TestConsole: the payload's output reaches Console, and the address it
// announces is the payload's, serving SSH with the pinned host key.
func TestConsole(t *testing.T) {
	pp := newPayloadProcess(t)
	addr, c := pp.start(t)
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		t.Errorf("announced address %q, want 127.0.0.1:PORT", addr)
	}
	if err := c.Run(t.Context(), "/usr/bin/exit 0", nil); err != nil {
		t.Errorf("Run on the payload: %v", err)
	}
}

// TestStopsByItself: a payload that halts is seen stopping, without Off.
func TestStopsByItself(t *testing.T) {
	pp := newPayloadProcess(t)
	_, c := pp.start(t)
	stopped := pp.p.Stopped()
	if isClosed(stopped) {
		t.Fatal("Stopped() is closed while the payload runs")
	}
	// The payload halts while answering: the session ends with exit 0, or
	// drops with the connection.
	err := c.Run(t.Context(), "sudo /sbin/halt", nil)
	if ee := (*remote.ExitError)(nil); errors.As(err, &ee) {
		t.Fatalf("halt: %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(payloadtest.WaitLimit):
		t.Fatalf("Stopped() still open %v after halt (halt returned %v)", payloadtest.WaitLimit, err)
	}
	wantState(t, pp.p, power.Off)
	if !isClosed(pp.p.Stopped()) {
		t.Error("Stopped() returns an open channel after the payload stopped")
	}
	if out := pp.console.String(); !strings.Contains(out, "payload: halting") {
		t.Errorf("console does not show the payload halting:\n%s", out)
	}
	// It can be switched on again.
	_, c2 := pp.start(t)
	wantState(t, pp.p, power.On)
	if err := c2.Run(t.Context(), "/usr/bin/exit 0", nil); err != nil {
		t.Errorf("Run after the restart: %v", err)
	}
}

// TestOffKills: Off ends a running payload at once, as cutting power would.
func TestOffKills(t *testing.T) {
	pp := newPayloadProcess(t)
	addr, c := pp.start(t)
	stopped := pp.p.Stopped()
	ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
	defer cancel()
	if err := pp.p.Off(ctx); err != nil {
		t.Fatalf("Off: %v", err)
	}
	if !isClosed(stopped) {
		t.Error("Stopped() still open after Off returned")
	}
	wantState(t, pp.p, power.Off)
	// The payload is gone: its connection is dead and nothing answers.
	if err := c.Run(ctx, "/usr/bin/exit 0", nil); err == nil {
		t.Error("Run on the connection to a killed payload succeeded")
	}
	if c2, err := remote.Dial(ctx, pp.remoteConfig(addr)); err == nil {
		c2.Close()
		t.Errorf("Dial %s after Off succeeded", addr)
	}
	if out := pp.console.String(); strings.Contains(out, "payload: stopping") || strings.Contains(out, "payload: halting") {
		t.Errorf("the payload shut down in order; Off should kill it:\n%s", out)
	}
}

// TestOffAfterStopWithDoneContext: Off of a payload that has already
// stopped has nothing to wait for, so even a done context is no failure.
// (It used to pick at random between "stopped" and "context done".)
func TestOffAfterStopWithDoneContext(t *testing.T) {
	pp := newPayloadProcess(t)
	pp.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
	defer cancel()
	if err := pp.p.Off(ctx); err != nil {
		t.Fatalf("Off: %v", err)
	}
	doneCtx, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	for i := range 64 {
		if err := pp.p.Off(doneCtx); err != nil {
			t.Fatalf("Off #%d of a stopped payload with a done context: %v", i+2, err)
		}
	}
	wantState(t, pp.p, power.Off)
}

// TestOnFails: an On that cannot start the program is a *power.Error for
// "on" naming the power, and leaves the power off.
func TestOnFails(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		is   error // what the error must also wrap
	}{
		{"missing", filepath.Join(dir, "no-such-payload"), fs.ErrNotExist},
		{"missing directory", filepath.Join(dir, "no", "such", "payload"), fs.ErrNotExist},
		{"not executable", notExec, fs.ErrPermission},
		{"directory", dir, fs.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &power.Process{Name: "refpayload", Path: tc.path}
			err := p.On(t.Context())
			var pe *power.Error
			if !errors.As(err, &pe) {
				t.Fatalf("On: %v (%T), want a *power.Error", err, err)
			}
			if pe.Op != "on" || pe.Power != "process refpayload" || !errors.Is(err, tc.is) {
				t.Errorf("Error{Op %q, Power %q, Err %v}; want Op \"on\", Power \"process refpayload\", wrapping %v",
					pe.Op, pe.Power, pe.Err, tc.is)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "power on process refpayload: ") || !strings.Contains(msg, tc.path) {
				t.Errorf("error %q does not name the operation, the power and %s", msg, tc.path)
			}
			wantState(t, p, power.Off)
			if !isClosed(p.Stopped()) {
				t.Error("Stopped() open after a failed On")
			}
			if err := p.Off(t.Context()); err != nil {
				t.Errorf("Off after a failed On: %v", err)
			}
		})
	}
}
