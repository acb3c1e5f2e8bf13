package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/satbench/hil/fixtures/relaysim"
)

// busy switches c with a context that ends soon, for a port whose lock is
// held, and returns the *BusyError it fails with.
func busy(t *testing.T, c *Channel) *BusyError {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	err := c.On(ctx)
	var be *BusyError
	if !errors.As(err, &be) {
		t.Fatalf("On with the port's lock held: %v (%T); want a *BusyError", err, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the error does not wrap the context's cause: %v", err)
	}
	return be
}

func TestBusy(t *testing.T) {
	t.Parallel()
	sim := startSim(t, relaysim.Config{Protocol: "kmtronic"})
	l, err := lockPort(testContext(t), sim.Path(), "hil power cycle cam, bench x.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	var waits []string
	b := openBoard(t, Config{Protocol: "kmtronic", Port: Port{Path: sim.Path()}, OnWait: func(h string) { waits = append(waits, h) }})
	c := &Channel{Board: b, Channel: 1, Name: "cam"}

	be := busy(t, c)
	holder := fmt.Sprintf("pid %d (hil power cycle cam, bench x.yaml) since %s", os.Getpid(), l.rec.Since.Format("15:04:05"))
	if be.Port != sim.Path() || be.Holder != holder {
		t.Errorf("BusyError{Port: %q, Holder: %q}, want {%q, %q}", be.Port, be.Holder, sim.Path(), holder)
	}
	if want := "relay port " + sim.Path() + " is in use by " + holder; be.Error() != want {
		t.Errorf("BusyError text %q, want %q", be.Error(), want)
	}
	if len(waits) != 1 || waits[0] != holder {
		t.Errorf("OnWait called with %q, want once with %q", waits, holder)
	}
	if got := len(sim.Received()); got != 0 {
		t.Errorf("the board received %d bytes while the port's lock was held", got)
	}

	l.unlock(time.Time{})
	if err := c.On(testContext(t)); err != nil {
		t.Fatalf("On once the lock is released: %v", err)
	}
}

// TestBusyOtherProcess holds the port's lock in a second process.
func TestBusyOtherProcess(t *testing.T) {
	t.Parallel()
	sim := startSim(t, relaysim.Config{Protocol: "devantech"})
	pid, release := startHolder(t, sim.Path())
	c := &Channel{Board: openBoard(t, Config{Protocol: "devantech", Port: Port{Path: sim.Path()}}), Channel: 2, Name: "cam"}
	be := busy(t, c)
	if want := fmt.Sprintf("pid %d (relay test helper holding the lock) since ", pid); !strings.HasPrefix(be.Holder, want) {
		t.Errorf("BusyError.Holder = %q, want it to start with %q", be.Holder, want)
	}
	release()
	if err := c.On(testContext(t)); err != nil {
		t.Fatalf("On once the other process exited: %v", err)
	}
}

// TestLockName checks that two names of one port share its lock.
func TestLockName(t *testing.T) {
	t.Parallel()
	sim := startSim(t, relaysim.Config{Protocol: "numato"})
	link := filepath.Join(t.TempDir(), "usb-Numato_Lab_8_Channel_USB_Relay_Module-if00")
	if err := os.Symlink(sim.Path(), link); err != nil {
		t.Fatal(err)
	}
	byLink, err := lockName(link)
	if err != nil {
		t.Fatal(err)
	}
	byPath, err := lockName(sim.Path())
	if err != nil {
		t.Fatal(err)
	}
	if byLink != byPath || !strings.HasPrefix(byPath, "tty-136-") {
		t.Errorf("lock names: %s for %s, %s for %s; want one tty-136-N.lock", byLink, link, byPath, sim.Path())
	}

	l, err := lockPort(testContext(t), link, "holder by link", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock(time.Time{})
	busy(t, &Channel{Board: openBoard(t, Config{Protocol: "numato", Port: Port{Path: sim.Path()}}), Channel: 1})

	file := filepath.Join(t.TempDir(), "not-a-device")
	if err := os.WriteFile(file, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	name, err := lockName(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "path-%2F") || strings.Contains(name, "/") {
		t.Errorf("lock name of %s: %q, want path-<escaped path>", file, name)
	}
}

// TestLockFile checks the lock file a holder leaves and the directory.
func TestLockFile(t *testing.T) {
	t.Parallel()
	sim := startSim(t, relaysim.Config{Protocol: "devantech"})
	b := openBoard(t, Config{Protocol: "devantech", Port: Port{Path: sim.Path()}, Holder: "hil run (bench benches/lab.yaml, board cam)"})
	if err := b.Set(testContext(t), 1, true); err != nil {
		t.Fatal(err)
	}
	name, err := lockName(sim.Path())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(lockDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	var rec lockRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("lock file %s: %v", data, err)
	}
	if rec.PID != os.Getpid() || rec.Holder != "hil run (bench benches/lab.yaml, board cam)" || rec.Since.IsZero() || rec.LastEnd.IsZero() {
		t.Errorf("lock file %s: want our pid, the holder, since and last_end", data)
	}
	for _, key := range []string{`"pid":`, `"hostname":`, `"holder":`, `"since":`, `"last_end":`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("lock file %s has no %s", data, key)
		}
	}
	fi, err := os.Stat(lockDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("lock directory %s has mode %v, want drwxrwxrwt", lockDir(), fi.Mode())
	}
	fi, err = os.Stat(filepath.Join(lockDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("lock file has mode %v, want -rw-rw-rw-", fi.Mode())
	}
}

// TestExclusive opens a port held with TIOCEXCL by a program that is not
// hil, as a terminal program does.
func TestExclusive(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root opens a port despite TIOCEXCL")
	}
	t.Parallel()
	sim := startSim(t, relaysim.Config{Protocol: "kmtronic"})
	p, err := serial.Open(sim.Path(), &mode) // go.bug.st/serial sets TIOCEXCL
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &Channel{Board: openBoard(t, Config{Protocol: "kmtronic", Port: Port{Path: sim.Path()}}), Channel: 1, Name: "cam"}
	checkPowerError(t, c.On(testContext(t)), "on", c, "port "+sim.Path()+" is held exclusively by a program that is not hil")
}
