package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/power/powertest"
)

// openRelayed opens the sim bench with its board's power through a
// simulated relay of protocol, wired to the reference payload.
func openRelayed(t testing.TB, protocol string, channel int, invert bool) *bus.Bus {
	t.Helper()
	b, err := bench.Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bc := *b.Boards[0]
	bc.Power.Kind = "relay"
	bc.Power.Relay = bench.Relay{Protocol: protocol, Channel: channel, Invert: invert, Simulate: true}
	b.Boards[0] = &bc
	bs, err := bus.Open(context.Background(), b, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

// The power a bus holds for a board on a simulated relay (the driver
// through the tty, the simulator, the payload process, the bus's
// supervision) is a Power like any other.
func TestSimulatedRelayConformance(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		channel  int
		invert   bool
	}{
		{"lcus", 1, false},   // no read-back
		{"numato", 0, false}, // echo and prompt
		{"denkovi", 16, true},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			powertest.Run(t, func(t *testing.T) power.Power {
				p := openRelayed(t, tt.protocol, tt.channel, tt.invert).Boards["refpayload"].Power
				if tt.invert {
					// Normally closed: the payload is on while the relay
					// rests; the suite starts from off.
					if err := p.Off(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
				return p
			})
		})
	}
}

// TestRelayWindow: a window on a relay-powered payload is delivered, and
// the payload follows the relay (inverted: normally-closed wiring).
func TestRelayWindow(t *testing.T) {
	bs := openRelayed(t, "kmtronic", 3, true)
	w := bus.Window{ID: "1", User: "alice", Board: "refpayload", Start: time.Now(), Duration: time.Second,
		Tasking: map[string]any{"user_command": cmd("/usr/bin/writefile", "/outbox/hello.txt", "hello")}}
	if r := bs.Run(context.Background(), w); r.State != bus.Delivered || len(r.Objects) != 1 {
		t.Fatalf("window: %+v", r)
	}
	sim := bs.Boards["refpayload"].Sim()
	if !sim.Relay(3) {
		t.Error("relay 3 is at rest after the window; inverted wiring keeps it energised to hold the payload off")
	}
	if s, _ := bs.Boards["refpayload"].Power.State(context.Background()); s != power.Off {
		t.Errorf("payload power %v after the window, want off", s)
	}
}

// TestRelayUnpluggedMidWindow: the relay board vanishing mid-window aborts
// it, and the reason names the board's port.
func TestRelayUnpluggedMidWindow(t *testing.T) {
	bs := openRelayed(t, "devantech", 1, false)
	sim := bs.Boards["refpayload"].Sim()
	done := make(chan bus.Result)
	go func() {
		done <- bs.Run(context.Background(), bus.Window{ID: "1", User: "alice", Board: "refpayload", Start: time.Now(), Duration: time.Hour})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := bs.Log.Wait(ctx, func(e bus.Event) bool { return e.State == bus.Started || e.State == bus.Aborted }); err != nil {
		t.Fatal(err)
	}
	sim.Unplug()
	r := <-done
	if r.State != bus.Aborted || !strings.Contains(r.Reason, "payload power lost mid-window") || !strings.Contains(r.Reason, sim.Port()) {
		t.Errorf("result %+v, want aborted because power was lost, naming %s", r, sim.Port())
	}
}
