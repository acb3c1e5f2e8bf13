package relay

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"

	"github.com/satbench/hil/fixtures/relaysim"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/power/powertest"
)

// testLimit bounds a test's operations. Reaching it is a failure, not a
// measurement; the margin is for loaded machines and the race detector.
const testLimit = 60 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testLimit)
	t.Cleanup(cancel)
	return ctx
}

func startSim(t *testing.T, cfg relaysim.Config) *relaysim.Sim {
	t.Helper()
	sim, err := relaysim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close the simulator: %v", err)
		}
	})
	return sim
}

func openBoard(t *testing.T, cfg Config) *Board {
	t.Helper()
	if cfg.Holder == "" {
		cfg.Holder = "relay test " + t.Name()
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hexb is the bytes written in hex, as in the relay specification.
func hexb(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// checkCommands fails the test if the simulator ignored any command it
// received, as malformed or too fast.
func checkCommands(t *testing.T, sim *relaysim.Sim) {
	t.Helper()
	for _, c := range sim.Commands() {
		if c.Malformed || c.TooFast {
			t.Errorf("the board ignored command %q (malformed %v, too fast %v)", c.Bytes, c.Malformed, c.TooFast)
		}
	}
}

// TestBytes switches a channel of each board and checks the bytes the
// simulated board received, its relay and the state read back.
func TestBytes(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		channels int
		ch       int
		// What the board receives to energise the relay, to release it,
		// and to read it back (nil: the board has no read-back).
		energise, release, read []byte
	}{
		{"lcus", "lcus", 4, 1, hexb("A0 01 01 A2"), hexb("A0 01 00 A1"), nil},
		{"lcus8", "lcus", 8, 8, hexb("A0 08 01 A9"), hexb("A0 08 00 A8"), nil},
		{"numato", "numato", 8, 3, []byte("\rrelay on 3\r"), []byte("\rrelay off 3\r"), []byte("\rrelay read 3\r")},
		{"kmtronic", "kmtronic", 8, 3, hexb("FF 03 01"), hexb("FF 03 00"), hexb("FF 09 00")},
		{"kmtronic2", "kmtronic", 2, 2, hexb("FF 02 01"), hexb("FF 02 00"), hexb("FF 02 03")},
		{"denkovi", "denkovi", 16, 12, []byte("12+//"), []byte("12-//"), []byte("ask//")},
		{"devantech", "devantech", 8, 3, hexb("67"), hexb("71"), hexb("5A 5B")},
		{"devantech2", "devantech", 2, 2, hexb("66"), hexb("70"), hexb("5A 5B")},
	}
	for _, tt := range tests {
		for _, invert := range []bool{false, true} {
			name := tt.name
			if invert {
				name += "/invert"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				sim := startSim(t, relaysim.Config{Protocol: tt.protocol, Channels: tt.channels})
				b := openBoard(t, Config{Protocol: tt.protocol, Port: Port{Path: sim.Path()}, Channels: tt.channels})
				c := &Channel{Board: b, Channel: tt.ch, Invert: invert, Name: "cam"}

				on, off := tt.energise, tt.release
				if invert {
					on, off = off, on
				}
				readCmds := 0
				if tt.read != nil {
					readCmds = 1
				}
				if tt.protocol == "devantech" {
					readCmds = 2 // module id, state
				}
				seen, cmds := 0, 0
				received := func(after string, want []byte, n int) {
					t.Helper()
					cmds += n
					if err := sim.WaitCommands(ctx, cmds); err != nil {
						t.Fatalf("after %s: waiting for %d commands: %v", after, cmds, err)
					}
					got := sim.Received()[seen:]
					seen += len(got)
					if !bytes.Equal(got, want) {
						t.Errorf("after %s the board received % X (%q), want % X (%q)", after, got, got, want, want)
					}
				}
				state := func(after string, want power.State) {
					t.Helper()
					st, err := c.State(ctx)
					if err != nil {
						t.Fatalf("State after %s: %v", after, err)
					}
					if st != want {
						t.Errorf("State after %s = %v, want %v", after, st, want)
					}
					received("State after "+after, tt.read, readCmds)
				}
				relay := func(after string, want bool) {
					t.Helper()
					first, last := b.Channels()
					for ch := first; ch <= last; ch++ {
						if got := sim.Relay(ch); got != (want && ch == tt.ch) {
							t.Errorf("after %s the board's relay %d is %s", after, ch, onOff(got))
						}
					}
				}

				fresh := power.Off
				switch {
				case tt.read == nil:
					fresh = power.Unknown
				case invert:
					fresh = power.On // normally closed: the relay at rest powers the payload
				}
				state("nothing", fresh)

				if err := c.On(ctx); err != nil {
					t.Fatal(err)
				}
				received("On", cat(on, tt.read), 1+readCmds)
				relay("On", !invert)
				state("On", power.On)

				if err := c.Off(ctx); err != nil {
					t.Fatal(err)
				}
				received("Off", cat(off, tt.read), 1+readCmds)
				relay("Off", invert)
				state("Off", power.Off)

				if got, want := b.CanReadBack(), tt.read != nil; got != want {
					t.Errorf("CanReadBack() = %v, want %v", got, want)
				}
				checkCommands(t, sim)
			})
		}
	}
}

// TestConformance runs the power conformance suite on a relay channel of
// each board, wired normally open and normally closed.
func TestConformance(t *testing.T) {
	for _, protocol := range Protocols() {
		for _, invert := range []bool{false, true} {
			name := protocol
			if invert {
				name += "/invert"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				powertest.Run(t, func(t *testing.T) power.Power {
					sim := startSim(t, relaysim.Config{Protocol: protocol})
					b := openBoard(t, Config{Protocol: protocol, Port: Port{Path: sim.Path()}})
					first, _ := b.Channels()
					c := &Channel{Board: b, Channel: first + 1, Invert: invert, Name: "cam"}
					if invert && b.CanReadBack() {
						// A fresh Power must be off or unknown; wired normally
						// closed, the relay at rest powers the payload.
						if err := b.Set(testContext(t), c.Channel, true); err != nil {
							t.Fatal(err)
						}
					}
					t.Cleanup(func() { checkCommands(t, sim) })
					return c
				})
			})
		}
	}
}

// TestNumatoIndex switches a relay on each size of Numato board, whose
// channel index format depends on the model.
func TestNumatoIndex(t *testing.T) {
	tests := []struct {
		channels, ch int
		index        string
	}{
		{1, 0, "0"},
		{8, 0, "0"},
		{8, 7, "7"},
		{16, 10, "A"},
		{16, 15, "F"},
		{32, 9, "9"},
		{32, 20, "K"},
		{32, 31, "V"},
		{64, 5, "05"},
		{64, 42, "42"},
		{64, 63, "63"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.channels, tt.ch), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			sim := startSim(t, relaysim.Config{Protocol: "numato", Channels: tt.channels})
			b := openBoard(t, Config{Protocol: "numato", Port: Port{Path: sim.Path()}, Channels: tt.channels})
			if err := b.Set(ctx, tt.ch, true); err != nil {
				t.Fatal(err)
			}
			on, known, err := b.Get(ctx, tt.ch)
			if err != nil {
				t.Fatal(err)
			}
			if !on || !known {
				t.Errorf("Get(%d) after Set on = %v, %v; want on and known", tt.ch, on, known)
			}
			if !sim.Relay(tt.ch) {
				t.Errorf("the board's relay %d is off after Set on", tt.ch)
			}
			want := "\rrelay on " + tt.index + "\r\rrelay read " + tt.index + "\r"
			if got := string(sim.Received()); got != want {
				t.Errorf("the board received %q, want %q", got, want)
			}
			checkCommands(t, sim)
		})
	}
}

// TestNumatoResync checks that a Numato exchange survives stray input on
// the line and a board whose line buffer holds junk.
func TestNumatoResync(t *testing.T) {
	t.Run("NoiseBefore", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sim := startSim(t, relaysim.Config{Protocol: "numato"})
		c := &Channel{Board: openBoard(t, Config{Protocol: "numato", Port: Port{Path: sim.Path()}}), Channel: 3}
		sim.Inject([]byte("\x00\xffboot>\n\r>relay on 3\n\r>on\n\r"))
		if err := c.On(ctx); err != nil {
			t.Fatal(err)
		}
		if !sim.Relay(3) {
			t.Error("relay 3 is off after On")
		}
		checkCommands(t, sim)
	})
	t.Run("JunkInTheBoard", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sim := startSim(t, relaysim.Config{Protocol: "numato"})
		// A command cut short, as by a process killed mid-write: without
		// the resync the board would read "relay xyzrelay on 3".
		p, err := serial.Open(sim.Path(), &mode)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Write([]byte("relay xyz")); err != nil {
			t.Fatal(err)
		}
		p.Close()
		c := &Channel{Board: openBoard(t, Config{Protocol: "numato", Port: Port{Path: sim.Path()}}), Channel: 3}
		if err := c.On(ctx); err != nil {
			t.Fatal(err)
		}
		if !sim.Relay(3) {
			t.Error("relay 3 is off after On")
		}
		if err := sim.WaitCommands(ctx, 3); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, cmd := range sim.Commands() {
			got = append(got, fmt.Sprintf("%q malformed=%v", cmd.Bytes, cmd.Malformed))
		}
		want := []string{`"relay xyz" malformed=true`, `"relay on 3" malformed=false`, `"relay read 3" malformed=false`}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("the board parsed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("NoiseDuring", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// A slow board, so that the noise arrives while the driver waits
		// for the prompt of its resync.
		sim := startSim(t, relaysim.Config{Protocol: "numato", Latency: 300 * time.Millisecond})
		c := &Channel{Board: openBoard(t, Config{Protocol: "numato", Port: Port{Path: sim.Path()}, Timeout: 10 * time.Second}), Channel: 3}
		errc := make(chan error, 1)
		go func() { errc <- c.On(ctx) }()
		waitFor(t, ctx, "the resync", func() bool { return bytes.Contains(sim.Received(), []byte("\r")) })
		sim.Inject([]byte("junk>\n\r>relay on 3\n\r>"))
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !sim.Relay(3) {
			t.Error("relay 3 is off after On")
		}
		checkCommands(t, sim)
	})
}

// waitFor polls cond until it holds, failing the test when ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, context.Cause(ctx))
		}
	}
}

// checkPowerError checks that err is a *power.Error for op on c whose
// text holds want.
func checkPowerError(t *testing.T, err error, op string, c *Channel, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded; want an error with %q", op, want)
	}
	var pe *power.Error
	if !errors.As(err, &pe) || pe.Op != op || pe.Power != c.String() {
		t.Errorf("%s failed with %v (%T); want a *power.Error with Op %q and Power %q", op, err, err, op, c.String())
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s failed with\n%v\nwant it to contain\n%s", op, err, want)
	}
}

func TestOutOfRange(t *testing.T) {
	tests := []struct {
		protocol string
		channels int
		ch       int
		want     string
	}{
		{"lcus", 4, 5, "channel 5 is out of range: a 4-channel lcus board has channels 1 to 4"},
		{"lcus", 4, 0, "channel 0 is out of range: a 4-channel lcus board has channels 1 to 4"},
		{"numato", 8, 8, "channel 8 is out of range: an 8-channel numato board has channels 0 to 7 (numato counts from 0)"},
		{"numato", 64, -1, "channel -1 is out of range: a 64-channel numato board has channels 0 to 63 (numato counts from 0)"},
		{"kmtronic", 2, 3, "channel 3 is out of range: a 2-channel kmtronic board has channels 1 to 2"},
		{"denkovi", 16, 17, "channel 17 is out of range: a 16-channel denkovi board has channels 1 to 16"},
		{"devantech", 8, 9, "channel 9 is out of range: an 8-channel devantech board has channels 1 to 8"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.protocol, tt.ch), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			sim := startSim(t, relaysim.Config{Protocol: tt.protocol, Channels: tt.channels})
			b := openBoard(t, Config{Protocol: tt.protocol, Port: Port{Path: sim.Path()}, Channels: tt.channels})
			c := &Channel{Board: b, Channel: tt.ch, Name: "cam"}
			err := c.On(ctx)
			checkPowerError(t, err, "on", c, tt.want)
			wantText := fmt.Sprintf("power on %s relay on %s channel %d (board cam): %s", tt.protocol, sim.Path(), tt.ch, tt.want)
			if err.Error() != wantText {
				t.Errorf("On failed with\n%v\nwant\n%s", err, wantText)
			}
			_, err = c.State(ctx)
			checkPowerError(t, err, "state", c, tt.want)
			if err := CheckChannel(tt.protocol, tt.channels, tt.ch); err == nil || err.Error() != tt.want {
				t.Errorf("CheckChannel(%q, %d, %d) = %v, want %s", tt.protocol, tt.channels, tt.ch, err, tt.want)
			}
			if got := sim.Received(); len(got) != 0 {
				t.Errorf("the board received %q", got)
			}
		})
	}
}

// TestWrongBoard drives a board with the driver of another protocol.
func TestWrongBoard(t *testing.T) {
	tests := []struct {
		driver, board string
		want          string
	}{
		{"numato", "lcus", "no answer within 200ms: is a numato board on that port?"},
		{"numato", "devantech", "no answer within 200ms: is a numato board on that port?"},
		{"kmtronic", "denkovi", "switched on, but not read back: no answer within 200ms: is a kmtronic board on that port?"},
		{"kmtronic", "numato", `switched on, but not read back: incomplete answer to "\xff\t\x00" within 200ms: received "\xff`},
		{"denkovi", "lcus", "switched on, but not read back: no answer within 200ms: is a denkovi board on that port?"},
		{"devantech", "kmtronic", "switched on, but not read back: no answer within 200ms: is a devantech board on that port?"},
		// The echo of an echoing board must not read as a state.
		{"denkovi", "numato", `switched on, but not read back: the board answered "ask//" with 5 bytes "ask//"; want 2: is a denkovi board on that port?`},
		{"devantech", "numato", `switched on, but not read back: incomplete answer to "Z[" within 200ms: received "Z[": is a devantech board on that port?`},
	}
	for _, tt := range tests {
		t.Run(tt.driver+"/"+tt.board, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			sim := startSim(t, relaysim.Config{Protocol: tt.board})
			b := openBoard(t, Config{Protocol: tt.driver, Port: Port{Path: sim.Path()}, Timeout: 200 * time.Millisecond})
			c := &Channel{Board: b, Channel: 1, Name: "cam"}
			err := c.On(ctx)
			checkPowerError(t, err, "on", c, tt.want)
			if ctx.Err() != nil {
				t.Fatalf("the test's context ended: %v", ctx.Err())
			}
		})
	}
}

// TestNumatoSize drives an 8-channel Numato as a 64-channel one: the
// board takes "relay on 03" for a command it does not know, and answers
// with the prompt only, which must not read as a state.
func TestNumatoSize(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	sim := startSim(t, relaysim.Config{Protocol: "numato", Channels: 8})
	b := openBoard(t, Config{Protocol: "numato", Port: Port{Path: sim.Path()}, Channels: 64})
	c := &Channel{Board: b, Channel: 3, Name: "cam"}
	checkPowerError(t, c.On(ctx), "on", c, `switched on, but not read back: no read-back for channel 03: the board answered "relay read 03\r" with the prompt only, as a numato does to a channel it does not have: is it a 64-channel board?`)
	_, err := c.State(ctx)
	checkPowerError(t, err, "state", c, "no read-back for channel 03")
}

// TestGone checks a port that never existed and a board unplugged
// between exchanges.
func TestGone(t *testing.T) {
	t.Run("NoSuchPort", func(t *testing.T) {
		ctx := testContext(t)
		const path = "/dev/serial/by-path/hil-relay-test-no-such-port"
		c := &Channel{Board: openBoard(t, Config{Protocol: "kmtronic", Port: Port{Path: path}}), Channel: 1, Name: "cam"}
		err := c.On(ctx)
		checkPowerError(t, err, "on", c, "port "+path+" is gone: unplugged? (stat "+path+": no such file or directory)")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the error does not wrap fs.ErrNotExist: %v", err)
		}
	})
	t.Run("Unplugged", func(t *testing.T) {
		ctx := testContext(t)
		sim := startSim(t, relaysim.Config{Protocol: "numato"})
		// By a link, as /dev/serial/by-path/..., which udev removes when
		// the board is unplugged. By its /dev/pts/N the Board could find
		// the number handed to a pty of another test process meanwhile,
		// and switch that test's relays.
		link := filepath.Join(t.TempDir(), "pci-0000:00:14.0-usb-0:2:1.0")
		if err := os.Symlink(sim.Path(), link); err != nil {
			t.Fatal(err)
		}
		c := &Channel{Board: openBoard(t, Config{Protocol: "numato", Port: Port{Path: link}}), Channel: 3, Name: "cam"}
		if err := c.On(ctx); err != nil {
			t.Fatal(err)
		}
		sim.Unplug()
		if _, err := os.Stat(sim.Path()); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after Unplug: %v, want it gone", sim.Path(), err)
		}
		os.Remove(link)
		err := c.Off(ctx)
		checkPowerError(t, err, "off", c, "port "+link+" is gone: unplugged?")
		_, err = c.State(ctx)
		checkPowerError(t, err, "state", c, "port "+link+" is gone: unplugged?")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the error does not wrap fs.ErrNotExist: %v", err)
		}
	})
}

// TestSerial selects boards by USB serial number. The test host has no
// USB serial ports, so past the first case the port list is made up,
// with a simulated board on the port that has the number. Not parallel:
// it replaces listPorts.
func TestSerial(t *testing.T) {
	t.Run("NoPorts", func(t *testing.T) {
		ctx := testContext(t)
		ports, err := enumerator.GetDetailedPortsList()
		if err != nil {
			t.Skipf("cannot list serial ports here: %v", err)
		}
		for _, p := range ports {
			if p.IsUSB {
				t.Skipf("this host has USB serial ports (%s)", p.Name)
			}
		}
		c := &Channel{Board: openBoard(t, Config{Protocol: "numato", Port: Port{Serial: "HIL-NO-SUCH-SERIAL"}}), Channel: 1, Name: "cam"}
		checkPowerError(t, c.On(ctx), "on", c, `no port has USB serial number "HIL-NO-SUCH-SERIAL": unplugged? There are no USB serial ports`)
	})

	sim := startSim(t, relaysim.Config{Protocol: "kmtronic"})
	list := []*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		{Name: sim.Path(), IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A50285BI"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "1A86", PID: "7523"},
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "2A19", PID: "0C05", SerialNumber: "TWIN"},
		{Name: "/dev/ttyACM1", IsUSB: true, VID: "2A19", PID: "0C05", SerialNumber: "TWIN"},
	}
	defer func(f func(...func(vid, pid string) bool) ([]*enumerator.PortDetails, error)) { listPorts = f }(listPorts)
	listPorts = func(...func(vid, pid string) bool) ([]*enumerator.PortDetails, error) { return list, nil }

	t.Run("Found", func(t *testing.T) {
		ctx := testContext(t)
		c := &Channel{Board: openBoard(t, Config{Protocol: "kmtronic", Port: Port{Serial: "A50285BI"}}), Channel: 2, Name: "cam"}
		if err := c.On(ctx); err != nil {
			t.Fatal(err)
		}
		if !sim.Relay(2) {
			t.Error("relay 2 is off after On")
		}
		if got, want := c.String(), "kmtronic relay on USB serial A50285BI channel 2 (board cam)"; got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		ctx := testContext(t)
		c := &Channel{Board: openBoard(t, Config{Protocol: "kmtronic", Port: Port{Serial: "B0000"}}), Channel: 2, Name: "cam"}
		want := fmt.Sprintf(`no port has USB serial number "B0000": unplugged? The USB serial ports are %s (0403:6001, serial "A50285BI"), /dev/ttyUSB1 (1A86:7523, no serial number), /dev/ttyACM0 (2A19:0C05, serial "TWIN") or /dev/ttyACM1 (2A19:0C05, serial "TWIN")`, sim.Path())
		checkPowerError(t, c.On(ctx), "on", c, want)
	})
	t.Run("Twins", func(t *testing.T) {
		ctx := testContext(t)
		c := &Channel{Board: openBoard(t, Config{Protocol: "kmtronic", Port: Port{Serial: "TWIN"}}), Channel: 2, Name: "cam"}
		checkPowerError(t, c.On(ctx), "on", c, `USB serial number "TWIN" is on 2 ports, /dev/ttyACM0 or /dev/ttyACM1: give the board's port by /dev/serial/by-path/... instead`)
	})
}

func TestValidate(t *testing.T) {
	const byPath = "/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0"
	tests := []struct {
		name string
		cfg  Config
		want string // "" for a valid configuration
	}{
		{"by-path", Config{Protocol: "lcus", Port: Port{Path: byPath}}, ""},
		{"by-id", Config{Protocol: "numato", Port: Port{Path: "/dev/serial/by-id/usb-Numato_Systems_Pvt._Ltd._Numato_Lab_8_Channel_USB_Relay_Module-if00"}, Channels: 64}, ""},
		{"serial", Config{Protocol: "kmtronic", Port: Port{Serial: "A50285BI"}, Channels: 2, Gap: time.Millisecond, Timeout: time.Minute}, ""},
		{"pts", Config{Protocol: "denkovi", Port: Port{Path: "/dev/pts/7"}}, ""},
		{"unknown protocol", Config{Protocol: "sainsmart", Port: Port{Path: byPath}},
			`relay: Protocol: "sainsmart" is not a relay protocol; want lcus, numato, kmtronic, denkovi or devantech`},
		{"no protocol", Config{Port: Port{Path: byPath}},
			`relay: Protocol: "" is not a relay protocol; want lcus, numato, kmtronic, denkovi or devantech`},
		{"numato size", Config{Protocol: "numato", Port: Port{Path: byPath}, Channels: 12},
			"relay: Channels: 12 is not a size numato boards are made in; want 1, 2, 4, 8, 16, 32 or 64 (or 0, the default 8)"},
		{"devantech size", Config{Protocol: "devantech", Port: Port{Path: byPath}, Channels: 16},
			"relay: Channels: 16 is not a size devantech boards are made in; want 2 or 8 (or 0, the default 8)"},
		{"denkovi size", Config{Protocol: "denkovi", Port: Port{Path: byPath}, Channels: 8},
			"relay: Channels: 8 is not a size denkovi boards are made in; want 16 (or 0, the default 16)"},
		{"no port", Config{Protocol: "numato"},
			"relay: Port.Path: missing; give the board's port by a stable path, /dev/serial/by-path/... or /dev/serial/by-id/..., or its USB serial number"},
		{"no lcus port", Config{Protocol: "lcus"},
			"relay: Port.Path: missing; give the board's port by a stable path, /dev/serial/by-path/..."},
		{"both", Config{Protocol: "numato", Port: Port{Path: byPath, Serial: "A50285BI"}},
			"relay: Port.Path: both a path (" + byPath + ") and a USB serial number (A50285BI) are given; give one"},
		{"ttyUSB", Config{Protocol: "kmtronic", Port: Port{Path: "/dev/ttyUSB0"}},
			"relay: Port.Path: /dev/ttyUSB0 names a port by plug-in order, which changes when boards are replugged or the host reboots; use its /dev/serial/by-path/... link (or /dev/serial/by-id/..., or the USB serial number)"},
		{"ttyACM", Config{Protocol: "numato", Port: Port{Path: "/dev/ttyACM12"}},
			"relay: Port.Path: /dev/ttyACM12 names a port by plug-in order, which changes when boards are replugged or the host reboots; use its /dev/serial/by-path/... link (or /dev/serial/by-id/..., or the USB serial number)"},
		{"lcus ttyUSB", Config{Protocol: "lcus", Port: Port{Path: "/dev/ttyUSB0"}},
			"relay: Port.Path: /dev/ttyUSB0 names a port by plug-in order, which changes when boards are replugged or the host reboots; use its /dev/serial/by-path/... link (an lcus board has no USB serial number)"},
		{"lcus serial", Config{Protocol: "lcus", Port: Port{Serial: "1234"}},
			`relay: Port.Serial: an lcus board (CH340) has no USB serial number, so "1234" cannot name it; give its port by a /dev/serial/by-path/... path`},
		{"relative", Config{Protocol: "numato", Port: Port{Path: "ttyACM0"}},
			`relay: Port.Path: "ttyACM0" is not an absolute path; give the board's port as /dev/serial/by-path/...`},
		{"negative gap", Config{Protocol: "denkovi", Port: Port{Path: byPath}, Gap: -time.Millisecond},
			"relay: Gap: -1ms is negative; want 0 (the protocol's default, 50ms for denkovi) or more"},
		{"negative timeout", Config{Protocol: "numato", Port: Port{Path: byPath}, Timeout: -time.Second},
			"relay: Timeout: -1s is negative; want 0 (the default, 1s) or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && got != tt.want {
				t.Errorf("Validate() = %v\nwant %s", err, cmp(tt.want, "nil"))
			}
			b, err := Open(tt.cfg)
			if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && got != tt.want {
				t.Errorf("Open() = %v\nwant %s", err, cmp(tt.want, "nil"))
			}
			if tt.want == "" && b != nil {
				want := tt.cfg.Protocol + " relay board on " + tt.cfg.Port.Path
				if tt.cfg.Port.Serial != "" {
					want = tt.cfg.Protocol + " relay board on USB serial " + tt.cfg.Port.Serial
				}
				if b.String() != want {
					t.Errorf("String() = %q, want %q", b.String(), want)
				}
			}
		})
	}
}

func cmp(s, ifEmpty string) string {
	if s == "" {
		return ifEmpty
	}
	return s
}

func TestChannels(t *testing.T) {
	tests := []struct {
		protocol    string
		channels    int
		first, last int
	}{
		{"lcus", 0, 1, 4},
		{"lcus", 1, 1, 1},
		{"numato", 0, 0, 7},
		{"numato", 64, 0, 63},
		{"kmtronic", 0, 1, 8},
		{"denkovi", 0, 1, 16},
		{"devantech", 0, 1, 8},
		{"devantech", 2, 1, 2},
	}
	for _, tt := range tests {
		b, err := Open(Config{Protocol: tt.protocol, Channels: tt.channels, Port: Port{Path: "/dev/pts/0"}})
		if err != nil {
			t.Fatal(err)
		}
		if first, last := b.Channels(); first != tt.first || last != tt.last {
			t.Errorf("%s with %d channels: Channels() = %d, %d; want %d, %d", tt.protocol, tt.channels, first, last, tt.first, tt.last)
		}
		if tt.channels == 0 && DefaultChannels(tt.protocol) != tt.last-tt.first+1 {
			t.Errorf("DefaultChannels(%q) = %d, want %d", tt.protocol, DefaultChannels(tt.protocol), tt.last-tt.first+1)
		}
	}
	if DefaultChannels("sainsmart") != 0 {
		t.Errorf("DefaultChannels of an unknown protocol = %d, want 0", DefaultChannels("sainsmart"))
	}
	sim := relaysim.Protocols()
	for _, p := range Protocols() {
		if relaysim.DefaultChannels(p) != DefaultChannels(p) {
			t.Errorf("DefaultChannels(%q) = %d; the simulator's is %d", p, DefaultChannels(p), relaysim.DefaultChannels(p))
		}
	}
	if len(sim) != len(Protocols()) {
		t.Errorf("the driver speaks %v, the simulator %v", Protocols(), sim)
	}
}

// TestDenkoviGap sends commands back to back to a Denkovi board, which
// ignores a command that comes less than 50ms after the previous one.
// Not parallel, so that the test's own load does not stall the
// simulator.
func TestDenkoviGap(t *testing.T) {
	// The simulator stamps a command when it reads it, and a host can hold
	// pty bytes back for tens of milliseconds, so single gaps are noisy;
	// their median is not. The driver keeps 50ms after the frame's line
	// time; with a 1ms Gap it keeps only that line time.
	t.Run("Default", func(t *testing.T) {
		if got := denkoviMedianGap(t, 0); got < denkoviGap {
			t.Errorf("median time between commands %v with the default gap; want at least %v", got, denkoviGap)
		}
	})
	t.Run("TooShort", func(t *testing.T) {
		if got := denkoviMedianGap(t, time.Millisecond); got >= denkoviGap {
			t.Errorf("median time between commands %v with a 1ms gap; the measure cannot tell a kept gap from none", got)
		}
	})
}

const denkoviGap = 50 * time.Millisecond

// denkoviMedianGap switches relays of a Denkovi board one after the
// other, through two Boards as two processes would (the gap is the
// port's, kept through its lock file, not a Board's), and returns the
// median time between the commands' arrivals at the board.
func denkoviMedianGap(t *testing.T, gap time.Duration) time.Duration {
	t.Helper()
	const n = 11
	ctx := testContext(t)
	sim := startSim(t, relaysim.Config{Protocol: "denkovi"})
	cfg := Config{Protocol: "denkovi", Port: Port{Path: sim.Path()}, Gap: gap}
	boards := []*Board{openBoard(t, cfg), openBoard(t, cfg)}
	for i := range n {
		if err := boards[i%2].Set(ctx, 1+i, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := sim.WaitCommands(ctx, n); err != nil {
		t.Fatal(err)
	}
	cmds := sim.Commands()
	var gaps []time.Duration
	for i, c := range cmds {
		if c.Malformed {
			t.Errorf("the board received a malformed command %q", c.Bytes)
		}
		if i > 0 {
			gaps = append(gaps, c.At.Sub(cmds[i-1].At))
		}
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// TestConcurrent switches one board through two Boards, as two processes
// would, from many goroutines at once.
func TestConcurrent(t *testing.T) {
	for _, protocol := range []string{"numato", "kmtronic", "denkovi", "devantech"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			sim := startSim(t, relaysim.Config{Protocol: protocol})
			var waits atomic.Int32
			cfg := Config{Protocol: protocol, Port: Port{Path: sim.Path()}, OnWait: func(string) { waits.Add(1) }}
			boards := []*Board{openBoard(t, cfg), openBoard(t, cfg)}
			first, last := boards[0].Channels()
			rounds := 3
			if protocol == "denkovi" {
				rounds = 1 // the 50ms gap a command
			}
			var wg sync.WaitGroup
			errs := make(chan error, 1000)
			for ch := first; ch <= min(last, first+7); ch++ {
				c := &Channel{Board: boards[ch%2], Channel: ch, Name: fmt.Sprintf("payload%d", ch)}
				wg.Go(func() {
					for range rounds {
						for _, on := range []bool{true, false} {
							op, want := c.Off, power.Off
							if on {
								op, want = c.On, power.On
							}
							if err := op(ctx); err != nil {
								errs <- err
								return
							}
							if st, err := c.State(ctx); err != nil || st != want {
								errs <- fmt.Errorf("%s: State = %v, %v; want %v", c, st, err, want)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for _, c := range sim.Commands() {
				if c.Malformed {
					t.Errorf("the board received a malformed command %q: frames interleaved", c.Bytes)
				}
			}
			checkCommands(t, sim)
			if waits.Load() == 0 {
				t.Error("OnWait was never called, though two Boards switched one port at once")
			}
		})
	}
}

// TestOpposingSwitches switches one channel on and off from several
// goroutines at once, as the bus's window and a Ctrl-C handler may: each
// switch's read-back must see its own switch, not another goroutine's.
func TestOpposingSwitches(t *testing.T) {
	for _, protocol := range []string{"numato", "kmtronic", "devantech"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			sim := startSim(t, relaysim.Config{Protocol: protocol})
			c := &Channel{Board: openBoard(t, Config{Protocol: protocol, Port: Port{Path: sim.Path()}}), Channel: 1, Name: "cam"}
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for i := range 6 {
				op := c.On
				if i%2 == 1 {
					op = c.Off
				}
				wg.Go(func() {
					for range 4 {
						if err := op(ctx); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			checkCommands(t, sim)
		})
	}
}
