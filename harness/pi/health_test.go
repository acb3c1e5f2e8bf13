package pi_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/harness/power"
)

// Fast health checks: the contract's 5 s and 3 s, scaled down.
const (
	healthInterval = 50 * time.Millisecond
	callTimeout    = 200 * time.Millisecond
	healthFailures = 3
)

// payloadPower is a real power.Process, a `sleep` standing in for the
// payload computer, switched on; it is switched off when t ends.
func payloadPower(t testing.TB) *power.Process {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("no sleep(1) to stand in for a payload: %v", err)
	}
	p := &power.Process{Name: "payload " + t.Name(), Path: sleep, Args: []string{"3600"}}
	if err := p.On(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Off(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return p
}

func powerState(t testing.TB, p power.Power) power.State {
	t.Helper()
	s, err := p.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func healthBench(t *testing.T, apps ...pi.App) *bench {
	return startBench(t, pi.Config{Apps: apps, HealthInterval: healthInterval, CallTimeout: callTimeout, HealthFailures: healthFailures})
}

// TestHealthChecksArrive: health checks start with registration, each
// with a fresh correlation id within 0..65535, and an app answering 0 is
// healthy.
func TestHealthChecksArrive(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := healthBench(t, a.App())
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	a.waitN(5, method("PA_ProcessHealthCheck"))
	b.Close()
	seen := map[int32]bool{}
	for _, c := range a.Calls.All() {
		if c.Method != "PA_ProcessHealthCheck" {
			continue
		}
		id := c.corr()
		if id < 0 || id > 65535 || seen[id] {
			t.Errorf("health check correlation id %d: repeated or outside 0..65535", id)
		}
		seen[id] = true
	}
	if n := b.count(func(e pi.Event) bool { return e.Kind == pi.EventHealthFailed }); n != 0 {
		t.Errorf("%d failed health checks of a healthy app:\n%s", n, b.eventsText())
	}
	if s := b.C.Stats(); s.HealthChecks < 5 || s.HealthFailures != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestHealthyByResponse: an app whose PA_ProcessHealthCheck fails but
// which sends PC_response_health_check (as the C++ sample does) is
// healthy if its application_state is 0, and not otherwise.
func TestHealthyByResponse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   int32
		answer  func() (*pb.AntarisReturnType, error)
		healthy bool
	}{
		{"state 0, code -1", 0, func() (*pb.AntarisReturnType, error) {
			return &pb.AntarisReturnType{ReturnCode: pb.AntarisReturnCode_An_GENERIC_FAILURE}, nil
		}, true},
		{"state 0, gRPC error", 0, func() (*pb.AntarisReturnType, error) {
			return nil, status.Error(codes.Unimplemented, "PA_ProcessHealthCheck not implemented")
		}, true},
		{"state 1, code -1", 1, func() (*pb.AntarisReturnType, error) {
			return &pb.AntarisReturnType{ReturnCode: pb.AntarisReturnCode_An_GENERIC_FAILURE}, nil
		}, false},
		{"no response, code -1", -1, func() (*pb.AntarisReturnType, error) {
			return &pb.AntarisReturnType{ReturnCode: pb.AntarisReturnCode_An_GENERIC_FAILURE}, nil
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestApp(t, 1, nil)
			b := healthBench(t, a.App())
			pc := b.connect(a, nil)
			a.on("PA_ProcessHealthCheck", func(ctx context.Context, req proto.Message) (*pb.AntarisReturnType, error) {
				if tc.state >= 0 {
					// Answered before the check returns, as the C++ SDK does.
					corr := req.(*pb.HealthCheckParams).GetCorrelationId()
					// An error shows as a failed check.
					pc.PCResponseHealthCheck(ctx, &pb.RespHealthCheckParams{CorrelationId: corr, ApplicationState: tc.state})
				}
				return tc.answer()
			})
			b.register(a, pc, 1, 0)
			if tc.healthy {
				a.waitN(2*healthFailures, method("PA_ProcessHealthCheck"))
				b.Close()
				if n := b.count(func(e pi.Event) bool { return e.Kind == pi.EventHealthFailed || e.Kind == pi.EventUnhealthy }); n != 0 {
					t.Errorf("%d failure events for a healthy app:\n%s", n, b.eventsText())
				}
				return
			}
			e := b.waitKind(a.Board, pi.EventHealthFailed)
			want := "application_state 1"
			if tc.state < 0 {
				want = "no PC_response_health_check came"
			}
			if !strings.Contains(e.Detail, "PA_ProcessHealthCheck answered -1") || !strings.Contains(e.Detail, want) {
				t.Errorf("health failure %q, want it to say %q", e, want)
			}
		})
	}
}

// TestSilentApp: an app that never answers health checks fails them one
// after the other, each at CallTimeout.
func TestSilentApp(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := healthBench(t, a.App())
	a.on("PA_ProcessHealthCheck", blockUntilDone)
	b.register(a, b.connect(a, nil), 1, 0)
	for i := 1; i <= healthFailures; i++ {
		e := b.waitN(i, kind(a.Board, pi.EventHealthFailed))
		if want := fmt.Sprintf("%d of %d in a row", i, healthFailures); !strings.Contains(e.Detail, want) || !strings.Contains(e.Detail, "DeadlineExceeded") {
			t.Errorf("failure %d: %q, want %q and DeadlineExceeded", i, e, want)
		}
	}
	if s := b.C.Stats(); s.HealthFailures < healthFailures {
		t.Errorf("stats %+v", s)
	}
}

// TestFailAction: after HealthFailures failures in a row, fail action 1
// power-cycles the payload (a new process runs) and ends the
// registration; fail action 0 only logs; fail action 1 without a known
// power says it cannot be carried out.
func TestFailAction(t *testing.T) {
	t.Run("1 power-cycles", func(t *testing.T) {
		pw := payloadPower(t)
		first := pw.Stopped()
		a := newTestApp(t, 1, nil)
		app := a.App()
		app.Power = pw
		b := healthBench(t, app)
		a.on("PA_ProcessHealthCheck", blockUntilDone)
		b.register(a, b.connect(a, nil), 1, 1)
		e := b.waitKind(a.Board, pi.EventUnhealthy)
		if !strings.Contains(e.Detail, "power-cycling") {
			t.Errorf("unhealthy event %q", e)
		}
		e = b.waitKind(a.Board, pi.EventPowerCycled)
		if e.Detail != "" {
			t.Errorf("power cycle failed: %q", e)
		}
		if !isClosed(first) {
			t.Error("the payload's process before the cycle is still running")
		}
		if s := powerState(t, pw); s != power.On || isClosed(pw.Stopped()) {
			t.Errorf("after the cycle the payload is %v, want on with a new process", s)
		}
		u := b.waitKind(a.Board, pi.EventUnregistered)
		if !strings.Contains(u.Detail, "power-cycled") {
			t.Errorf("unregistered event %q", u)
		}
		if b.C.Registered(a.Board) {
			t.Error("still registered after a power cycle")
		}
	})
	t.Run("0 logs only", func(t *testing.T) {
		pw := payloadPower(t)
		first := pw.Stopped()
		a := newTestApp(t, 1, nil)
		app := a.App()
		app.Power = pw
		b := healthBench(t, app)
		a.on("PA_ProcessHealthCheck", blockUntilDone)
		b.register(a, b.connect(a, nil), 1, 0)
		e := b.waitKind(a.Board, pi.EventUnhealthy)
		if !strings.Contains(e.Detail, "logged only") {
			t.Errorf("unhealthy event %q", e)
		}
		// Checks go on; the next failure comes after the logged one.
		b.waitN(healthFailures+1, kind(a.Board, pi.EventHealthFailed))
		b.Close()
		if isClosed(first) || powerState(t, pw) != power.On {
			t.Error("fail action 0 switched the payload's power")
		}
		if n := b.count(func(e pi.Event) bool { return e.Kind == pi.EventPowerCycled || e.Kind == pi.EventUnregistered }); n != 0 {
			t.Errorf("fail action 0 power-cycled:\n%s", b.eventsText())
		}
	})
	t.Run("1 without power", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := healthBench(t, a.App())
		a.on("PA_ProcessHealthCheck", blockUntilDone)
		b.register(a, b.connect(a, nil), 1, 1)
		e := b.waitKind(a.Board, pi.EventUnhealthy)
		if !strings.Contains(e.Detail, "power is not known") {
			t.Errorf("unhealthy event %q", e)
		}
	})
}

// TestForgetStopsHealthChecks: once forgotten, an app gets no more health
// checks (one may be in flight), while a second app, the witness, gets
// several.
func TestForgetStopsHealthChecks(t *testing.T) {
	a := newTestApp(t, 1, nil)
	w := newTestApp(t, 2, nil)
	b := healthBench(t, a.App(), w.App())
	b.register(a, b.connect(a, nil), 1, 0)
	a.waitN(2, method("PA_ProcessHealthCheck"))
	b.C.Forget(a.Board, "power off")
	e := b.waitKind(a.Board, pi.EventUnregistered)
	if e.Detail != "power off" || b.C.Registered(a.Board) {
		t.Errorf("unregistered event %q; registered %v", e, b.C.Registered(a.Board))
	}
	n := a.count(method("PA_ProcessHealthCheck"))
	b.register(w, b.connect(w, nil), 1, 0)
	w.waitN(5, method("PA_ProcessHealthCheck"))
	if m := a.count(method("PA_ProcessHealthCheck")); m > n+1 {
		t.Errorf("%d health checks after Forget", m-n)
	}
	// Forgetting twice, or an app never registered, says nothing more.
	b.C.Forget(a.Board, "again")
	b.C.Forget("no such board", "x")
	if n := b.count(kind(a.Board, pi.EventUnregistered)); n != 1 {
		t.Errorf("%d unregistered events", n)
	}
}
