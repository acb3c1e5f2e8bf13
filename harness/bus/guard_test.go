package bus_test

import (
	"context"
	"strings"
	"testing"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
)

// TestChildGuard: a process already started as the payload refuses to
// start another, so a binary missing payload.RunIfChild fails with a clear
// reason instead of running itself recursively.
func TestChildGuard(t *testing.T) {
	b, err := bench.Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HIL_PAYLOAD_CHILD", "1")
	_, err = bus.Open(context.Background(), b, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "must call payload.RunIfChild()") {
		t.Errorf("Open as a payload child: %v, want the RunIfChild advice", err)
	}
}

// TestSignalingV2Refused: a bench asking for Signaling v2 is refused until
// the bus speaks it, never silently run as v1.
func TestSignalingV2Refused(t *testing.T) {
	b, err := bench.Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b.Signaling = "v2"
	_, err = bus.Open(context.Background(), b, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "signaling v2 is not implemented yet") {
		t.Errorf("Open with signaling v2: %v", err)
	}
}
