package pi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
)

// answer is a handler that answers code.
func answer(code pb.AntarisReturnCode) handler {
	return func(context.Context, proto.Message) (*pb.AntarisReturnType, error) {
		return &pb.AntarisReturnType{ReturnCode: code}, nil
	}
}

// TestStartSequenceRefused: the app's synchronous refusals come back as a
// *CodeError with its code, and the sequence is not left running.
func TestStartSequenceRefused(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	for _, tc := range []struct {
		code pb.AntarisReturnCode
		what string
	}{
		{pb.AntarisReturnCode_An_INVALID_SEQUENCE, "unknown sequence"},
		{pb.AntarisReturnCode_An_INVALID_PARAMS, "invalid params"},
		{pb.AntarisReturnCode_An_GENERIC_FAILURE, "already running"},
	} {
		a.on("PA_StartSequence", answer(tc.code))
		err := b.C.StartSequence(ctxT(t), a.Board, "seq", "p", time.Now().Add(time.Hour))
		var ce *pi.CodeError
		if !errors.As(err, &ce) || ce.Code != tc.code || !strings.Contains(err.Error(), tc.what) {
			t.Errorf("app answering %v: StartSequence returned %v, want a *CodeError saying %q", tc.code, err, tc.what)
		}
	}
	// Refused, it is not running: the same id can start, and a done for
	// it before then is refused.
	r, err := pc.PCSequenceDone(ctxT(t), &pb.CmdSequenceDoneParams{SequenceId: "seq"})
	code(t, "PC_sequence_done", r, err, pb.AntarisReturnCode_An_INVALID_SEQUENCE)
	a.on("PA_StartSequence", answer(0))
	if err := b.C.StartSequence(ctxT(t), a.Board, "seq", "p", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.C.StartSequence(ctxT(t), a.Board, "seq", "p", time.Now().Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second StartSequence of a running sequence: %v", err)
	}
}

// TestSequenceDone: started then reported done before its deadline, or
// overrunning its deadline (an event) and reported done after it.
func TestSequenceDone(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)

	if err := b.C.StartSequence(ctxT(t), a.Board, "early", "x=1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c := a.wait(method("PA_StartSequence")).Req.(*pb.StartSequenceParams)
	if c.GetSequenceId() != "early" || c.GetSequenceParams() != "x=1" {
		t.Errorf("PA_StartSequence %v", c)
	}
	r, err := pc.PCSequenceDone(ctxT(t), &pb.CmdSequenceDoneParams{SequenceId: "early"})
	code(t, "PC_sequence_done", r, err, 0)
	e := b.waitKind(a.Board, pi.EventSequenceDone)
	if !strings.Contains(e.Detail, "sequence early done") || !strings.Contains(e.Detail, "before its deadline") {
		t.Errorf("done event %q", e)
	}
	in := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventIn && e.Method == "PC_sequence_done" })
	if in.HasCorr {
		t.Errorf("PC_sequence_done has no correlation id, event %q has one", in)
	}
	// Done twice is refused.
	r, err = pc.PCSequenceDone(ctxT(t), &pb.CmdSequenceDoneParams{SequenceId: "early"})
	code(t, "second PC_sequence_done", r, err, pb.AntarisReturnCode_An_INVALID_SEQUENCE)

	if err := b.C.StartSequence(ctxT(t), a.Board, "late", "", time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	e = b.waitKind(a.Board, pi.EventOverran)
	if !strings.Contains(e.Detail, "sequence late still running at its deadline") {
		t.Errorf("overran event %q", e)
	}
	r, err = pc.PCSequenceDone(ctxT(t), &pb.CmdSequenceDoneParams{SequenceId: "late"})
	code(t, "PC_sequence_done", r, err, 0)
	e = b.waitN(2, kind(a.Board, pi.EventSequenceDone))
	if !strings.Contains(e.Detail, "sequence late done") || !strings.Contains(e.Detail, "after its deadline (overran)") {
		t.Errorf("done event %q", e)
	}
}

// TestStartSequenceLimits: ids over 15 bytes, empty ids and params over
// 127 bytes are refused before anything is sent; so is an app not
// registered or not on the bench.
func TestStartSequenceLimits(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	if err := b.C.StartSequence(ctxT(t), a.Board, "s", "", time.Now().Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("StartSequence before register: %v", err)
	}
	b.register(a, b.connect(a, nil), 1, 0)
	for _, tc := range []struct{ name, id, params, want string }{
		{"id of 16 bytes", strings.Repeat("i", 16), "", "want 1 to 15 bytes"},
		{"id of 15 two-byte runes", strings.Repeat("é", 8), "", "want 1 to 15 bytes"},
		{"empty id", "", "", "want 1 to 15 bytes"},
		{"params of 128 bytes", "s", strings.Repeat("p", 128), "params are 128 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := b.C.StartSequence(ctxT(t), a.Board, tc.id, tc.params, time.Now().Add(time.Hour))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StartSequence: %v, want %q", err, tc.want)
			}
		})
	}
	if err := b.C.StartSequence(ctxT(t), "board9", "s", "", time.Now()); err == nil {
		t.Error("StartSequence on a board without an app succeeded")
	}
	// The limits themselves are accepted.
	if err := b.C.StartSequence(ctxT(t), a.Board, strings.Repeat("i", 15), strings.Repeat("p", 127), time.Now().Add(time.Hour)); err != nil {
		t.Errorf("StartSequence at the limits: %v", err)
	}
	b.Close()
	if n := a.count(method("PA_StartSequence")); n != 1 {
		t.Errorf("%d PA_StartSequence sent, want 1 (the one at the limits):\n%s", n, a.callsText())
	}
}

// TestDeadlineUnit: scheduled_deadline is in epoch seconds, or
// milliseconds when configured.
func TestDeadlineUnit(t *testing.T) {
	deadline := time.Date(2031, 5, 6, 7, 8, 9, 987654321, time.UTC)
	for _, tc := range []struct {
		unit time.Duration
		want int64
	}{
		{0, deadline.Unix()},
		{time.Second, deadline.Unix()},
		{time.Millisecond, deadline.UnixMilli()},
	} {
		t.Run(tc.unit.String(), func(t *testing.T) {
			a := newTestApp(t, 1, nil)
			b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, DeadlineUnit: tc.unit})
			b.register(a, b.connect(a, nil), 1, 0)
			if err := b.C.StartSequence(ctxT(t), a.Board, "s", "", deadline); err != nil {
				t.Fatal(err)
			}
			if got := a.wait(method("PA_StartSequence")).Req.(*pb.StartSequenceParams).GetScheduledDeadline(); got != tc.want {
				t.Errorf("scheduled_deadline %d, want %d", got, tc.want)
			}
		})
	}
}

// TestShutdown: an app answering PC_response_shutdown (after returning
// from PA_ShutdownApp, as the Python SDK does) ends Shutdown with nil; an
// app that never answers makes it return ErrNoShutdownAnswer once the
// grace time is over; an app refusing gives a *CodeError.
func TestShutdown(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
		pc := b.connect(a, nil)
		b.register(a, pc, 1, 0)
		a.on("PA_ShutdownApp", func(_ context.Context, req proto.Message) (*pb.AntarisReturnType, error) {
			corr := req.(*pb.ShutdownParams).GetCorrelationId()
			go pc.PCResponseShutdown(context.Background(), &pb.RespShutdownParams{CorrelationId: corr})
			return &pb.AntarisReturnType{}, nil
		})
		if err := b.C.Shutdown(ctxT(t), a.Board, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		req := a.wait(method("PA_ShutdownApp")).Req.(*pb.ShutdownParams)
		if req.GetGraceTime() != 10 {
			t.Errorf("grace_time %d, want 10", req.GetGraceTime())
		}
		e := b.waitKind(a.Board, pi.EventShutdown)
		if e.Corr != req.GetCorrelationId() || !strings.Contains(e.Detail, "within the grace time 10s") {
			t.Errorf("shutdown event %q", e)
		}
	})
	t.Run("never answered", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
		b.register(a, b.connect(a, nil), 1, 0)
		err := b.C.Shutdown(ctxT(t), a.Board, 100*time.Millisecond)
		if !errors.Is(err, pi.ErrNoShutdownAnswer) {
			t.Fatalf("Shutdown: %v, want ErrNoShutdownAnswer", err)
		}
		// Grace times are whole seconds on the wire, rounded up.
		if g := a.wait(method("PA_ShutdownApp")).Req.(*pb.ShutdownParams).GetGraceTime(); g != 1 {
			t.Errorf("grace_time %d for 100ms, want 1", g)
		}
		if n := b.count(kind(a.Board, pi.EventShutdown)); n != 0 {
			t.Errorf("shutdown event without an answer")
		}
	})
	t.Run("refused", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
		b.register(a, b.connect(a, nil), 1, 0)
		a.on("PA_ShutdownApp", answer(pb.AntarisReturnCode_An_GENERIC_FAILURE))
		var ce *pi.CodeError
		if err := b.C.Shutdown(ctxT(t), a.Board, time.Second); !errors.As(err, &ce) {
			t.Errorf("Shutdown: %v, want a *CodeError", err)
		}
	})
	t.Run("late answer", func(t *testing.T) {
		// An answer after the grace time is ignored, and says so nowhere
		// but in its in event.
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
		pc := b.connect(a, nil)
		b.register(a, pc, 1, 0)
		if err := b.C.Shutdown(ctxT(t), a.Board, 50*time.Millisecond); !errors.Is(err, pi.ErrNoShutdownAnswer) {
			t.Fatalf("Shutdown: %v", err)
		}
		corr := a.wait(method("PA_ShutdownApp")).corr()
		r, err := pc.PCResponseShutdown(ctxT(t), &pb.RespShutdownParams{CorrelationId: corr})
		code(t, "PC_response_shutdown", r, err, 0)
		if n := b.count(kind(a.Board, pi.EventShutdown)); n != 0 {
			t.Errorf("shutdown event for a late answer")
		}
	})
}
