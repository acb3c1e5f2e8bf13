package pi_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/harness/power"
)

// TestFlood: 10,000 requests at once from one app whose callback server
// has stopped answering. Each is answered at once, 0 or
// An_OUT_OF_RESOURCES with an event; the app's health checks go on; a
// second app registers meanwhile; and once the app answers again, every
// accepted request gets its response.
func TestFlood(t *testing.T) {
	const calls, callers = 10000, 100
	a := newTestApp(t, 1, nil)
	other := newTestApp(t, 2, nil)
	release := make(chan struct{})
	a.on("PA_ProcessResponseGetCurrentLocation", func(ctx context.Context, _ proto.Message) (*pb.AntarisReturnType, error) {
		select {
		case <-release:
			return &pb.AntarisReturnType{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	b := startBench(t, pi.Config{Apps: []pi.App{a.App(), other.App()}, HealthInterval: healthInterval, CallTimeout: time.Minute})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)

	var (
		next               atomic.Int32
		accepted, dropped  sync.Map // corr -> struct{}
		nAccepted, nDroped atomic.Int32
		wg                 sync.WaitGroup
		halfway            = make(chan struct{})
		half               sync.Once
	)
	floodCtx := ctxT(t)
	for range callers {
		wg.Go(func() {
			for {
				corr := next.Add(1)
				if corr > calls {
					return
				}
				r, err := pc.PCGetCurrentLocation(floodCtx, &pb.ReqGetCurrentLocationParams{CorrelationId: corr})
				switch {
				case err != nil:
					t.Errorf("call %d: %v", corr, err)
				case r.GetReturnCode() == pb.AntarisReturnCode_An_SUCCESS:
					accepted.Store(corr, struct{}{})
					nAccepted.Add(1)
				case r.GetReturnCode() == pb.AntarisReturnCode_An_OUT_OF_RESOURCES:
					dropped.Store(corr, struct{}{})
					nDroped.Add(1)
				default:
					t.Errorf("call %d answered %v", corr, r.GetReturnCode())
				}
				if corr == calls/2 {
					half.Do(func() { close(halfway) })
				}
			}
		})
	}
	// Meanwhile another app registers, at once.
	<-halfway
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	r, err := b.connect(other, nil).PCRegister(ctx, &pb.ReqRegisterParams{CorrelationId: 77})
	code(t, "second app's PC_register during the flood", r, err, 0)
	if _, err := other.Calls.Wait(ctx, func(c call) bool { return c.Method == "PA_ProcessResponseRegister" }); err != nil {
		t.Errorf("second app's RespRegister during the flood: %v", err)
	}
	cancel()
	wg.Wait()

	// The app's outgoing queue is full and its senders stuck: its health
	// checks go on all the same.
	hc := a.count(method("PA_ProcessHealthCheck"))
	a.waitN(hc+3, method("PA_ProcessHealthCheck"))
	other.waitN(3, method("PA_ProcessHealthCheck"))

	na, nd := int(nAccepted.Load()), int(nDroped.Load())
	t.Logf("%d accepted, %d answered An_OUT_OF_RESOURCES", na, nd)
	if na+nd != calls || nd == 0 || na < 1024 {
		t.Errorf("%d accepted and %d dropped of %d", na, nd, calls)
	}
	var dropEvents int
	for _, e := range b.Events.All() {
		if e.Kind == pi.EventDropped && e.Board == a.Board {
			dropEvents++
			if _, ok := dropped.Load(e.Corr); !ok || e.Method != "PA_ProcessResponseGetCurrentLocation" {
				t.Errorf("dropped event %q for a request not dropped", e)
			}
		}
	}
	if dropEvents != nd || b.C.Stats().Dropped != int64(nd) {
		t.Errorf("%d dropped events, stats %+v, for %d dropped", dropEvents, b.C.Stats(), nd)
	}

	close(release)
	a.waitN(na, method("PA_ProcessResponseGetCurrentLocation"))
	for _, c := range a.Calls.All() {
		if c.Method != "PA_ProcessResponseGetCurrentLocation" {
			continue
		}
		if _, ok := accepted.Load(c.corr()); !ok {
			t.Errorf("a response for request %d, which was not accepted", c.corr())
		}
	}
	b.Close()
	if n := b.count(func(e pi.Event) bool { return e.Kind == pi.EventHealthFailed }); n != 0 {
		t.Errorf("%d failed health checks during the flood", n)
	}
	if s := b.C.Stats(); s.Calls < calls {
		t.Errorf("stats %+v", s)
	}
}

// TestAppVanishes: an app whose callback server goes away with calls in
// flight: those calls fail with an event, later ones too, and nothing
// blocks.
func TestAppVanishes(t *testing.T) {
	a := newTestApp(t, 1, nil)
	// CallTimeout is also how long a failed health check waits for a
	// PC_response_health_check: long enough for the calls to be in flight
	// when the app goes, short enough for the health failure to follow.
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, HealthInterval: healthInterval, CallTimeout: 5 * time.Second})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	a.on("PA_ProcessResponseGetCurrentLocation", blockUntilDone)
	a.on("PA_ProcessHealthCheck", blockUntilDone)
	for i := range int32(3) {
		r, err := pc.PCGetCurrentLocation(ctxT(t), &pb.ReqGetCurrentLocationParams{CorrelationId: 10 + i})
		code(t, "PC_get_current_location", r, err, 0)
	}
	a.waitN(3, method("PA_ProcessResponseGetCurrentLocation"))
	a.wait(method("PA_ProcessHealthCheck"))
	a.Stop()
	for i := range int32(3) {
		e := b.wait(func(e pi.Event) bool {
			return e.Kind == pi.EventOut && e.Method == "PA_ProcessResponseGetCurrentLocation" && e.Corr == 10+i
		})
		if status.Code(e.Err) != codes.Unavailable {
			t.Errorf("call in flight when the app vanished: %q, want Unavailable", e)
		}
	}
	if e := b.waitKind(a.Board, pi.EventHealthFailed); !strings.Contains(e.Detail, "PA_ProcessHealthCheck failed") {
		t.Errorf("health failure %q", e)
	}
	// The app's client still reaches the controller; its responses fail.
	r, err := pc.PCGetCurrentLocation(ctxT(t), &pb.ReqGetCurrentLocationParams{CorrelationId: 20})
	code(t, "PC_get_current_location", r, err, 0)
	if e := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventOut && e.Corr == 20 }); e.Err == nil {
		t.Errorf("call to a vanished app: %q", e)
	}
	b.Close()
}

// TestNoAnswers: an app whose callback handlers never return. Calls time
// out at CallTimeout; and with a CallTimeout longer than any test, Close
// still returns at once, cancelling the calls in flight.
func TestNoAnswers(t *testing.T) {
	t.Run("calls time out", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, CallTimeout: callTimeout})
		pc := b.connect(a, nil)
		a.on("PA_ProcessResponseRegister", blockUntilDone)
		r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 5})
		code(t, "PC_register", r, err, 0)
		e := b.wait(out(a.Board, "PA_ProcessResponseRegister"))
		if status.Code(e.Err) != codes.DeadlineExceeded || e.Corr != 5 {
			t.Errorf("unanswered call: %q, want DeadlineExceeded", e)
		}
		// Synchronous calls of the bus time out the same way.
		a.on("PA_StartSequence", blockUntilDone)
		err = b.C.StartSequence(ctxT(t), a.Board, "s", "", time.Now().Add(time.Hour))
		if status.Code(errors.Unwrap(err)) != codes.DeadlineExceeded && status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("StartSequence to a silent app: %v", err)
		}
	})
	t.Run("Close does not wait", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, HealthInterval: healthInterval, CallTimeout: time.Hour})
		pc := b.connect(a, nil)
		b.register(a, pc, 1, 0)
		for _, m := range []string{"PA_ProcessHealthCheck", "PA_ProcessResponseGetCurrentLocation", "PA_ProcessRespPsTemp", "PA_StartSequence"} {
			a.on(m, blockUntilDone)
		}
		for i := range int32(8) {
			pc.PCGetCurrentLocation(ctxT(t), &pb.ReqGetCurrentLocationParams{CorrelationId: i})
			pc.PCPsTempReq(ctxT(t), &pb.PsTempReq{CorrelationId: 100 + i})
		}
		seqErr := make(chan error, 1)
		go func() { seqErr <- b.C.StartSequence(context.Background(), a.Board, "s", "", time.Now().Add(time.Hour)) }()
		a.wait(method("PA_ProcessHealthCheck"))
		a.wait(method("PA_StartSequence"))
		a.waitN(4, func(c call) bool {
			return c.Method == "PA_ProcessResponseGetCurrentLocation" || c.Method == "PA_ProcessRespPsTemp"
		})
		closed := make(chan error, 1)
		go func() { closed <- b.C.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close waits for calls to an app that does not answer")
		}
		// A call of the bus's own (not the controller's) is the caller's
		// to bound; closing the controller ends it too.
		select {
		case err := <-seqErr:
			if err == nil {
				t.Error("StartSequence in flight at Close succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("StartSequence in flight at Close still waits")
		}
	})
}

// TestHandlerPanic: a panic while handling a request (nothing an app
// sends can cause one: every field is read through nil-safe getters; here
// the bench's Notify panics once, inside the handler) is answered
// codes.Internal with an event, and the controller goes on.
func TestHandlerPanic(t *testing.T) {
	a := newTestApp(t, 1, nil)
	var once atomic.Bool
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, Notify: func(e pi.Event) {
		if e.Kind == pi.EventInvalid && e.Method == "PC_start_ses_therm_mgmnt_req" && once.CompareAndSwap(false, true) {
			panic("notify exploded")
		}
	}})
	b.bugOK = true
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	_, err := pc.PCStartSesThermMgmntReq(ctxT(t), &pb.StartSesThermMgmntReq{CorrelationId: 1})
	if status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: %v, want Internal", err)
	}
	e := b.wait(func(e pi.Event) bool { return strings.Contains(e.Detail, "a bug in hil") })
	if e.Board != a.Board || !strings.Contains(e.Detail, "notify exploded") || !strings.Contains(e.Detail, "PCStartSesThermMgmntReq") {
		t.Errorf("panic event %q", e.Detail)
	}
	r, err := pc.PCStartSesThermMgmntReq(ctxT(t), &pb.StartSesThermMgmntReq{CorrelationId: 2})
	code(t, "next request", r, err, 0)
	a.waitCall("PA_ProcessRespStartSesThermMgmntReq", 2)
}

// TestHealthResponseThenHang: an app that sends PC_response_health_check
// with state 0 and never returns from PA_ProcessHealthCheck is healthy:
// the response says so, whatever the call does after.
func TestHealthResponseThenHang(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := healthBench(t, a.App())
	pc := b.connect(a, nil)
	a.on("PA_ProcessHealthCheck", func(ctx context.Context, req proto.Message) (*pb.AntarisReturnType, error) {
		pc.PCResponseHealthCheck(ctx, &pb.RespHealthCheckParams{CorrelationId: req.(*pb.HealthCheckParams).GetCorrelationId()})
		<-ctx.Done()
		return nil, ctx.Err()
	})
	b.register(a, pc, 1, 0)
	// Each check lasts CallTimeout, after which its response and its
	// deadline are both there to be seen.
	a.waitN(3*healthFailures, method("PA_ProcessHealthCheck"))
	b.Close()
	if n := b.count(kind(a.Board, pi.EventHealthFailed)); n != 0 {
		t.Errorf("%d failed health checks of an app that answered state 0:\n%s", n, b.eventsText())
	}
}

// TestConcurrentRegister: an app registering many times at once ends with
// one registration and one health-check loop: once it is forgotten, no
// check is made for it.
func TestConcurrentRegister(t *testing.T) {
	a := newTestApp(t, 1, nil)
	w := newTestApp(t, 2, nil)
	b := healthBench(t, a.App(), w.App())
	pc := b.connect(a, nil)
	for round := range 50 {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: int32(round*100 + i)})
				code(t, "PC_register", r, err, 0)
			})
		}
		wg.Wait()
	}
	b.C.Forget(a.Board, "power off")
	forgot := len(b.Events.All())
	b.register(w, b.connect(w, nil), 1, 0)
	w.waitN(6, method("PA_ProcessHealthCheck"))
	n := 0
	for _, e := range b.Events.All()[forgot:] {
		if e.Board == a.Board && e.Kind == pi.EventOut && e.Method == "PA_ProcessHealthCheck" {
			n++
		}
	}
	if n > 1 {
		t.Errorf("%d health checks of a forgotten app: health-check loops outlived their registration:\n%s", n, b.eventsText())
	}
}

// TestCloseUnderLoad: Close while requests that start work of their own
// (streams, power switches, staging, registrations) keep coming.
func TestCloseUnderLoad(t *testing.T) {
	before := len(pkgStacks())
	for range 5 {
		closeUnderLoad(&cleanups{T: t})
		noLeaks(t, before)
	}
}

func closeUnderLoad(t *cleanups) {
	defer t.run()
	{
		a := newTestApp(t, 1, nil)
		pw := payloadPower(t)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, HealthInterval: healthInterval, Hardware: map[int32]power.Power{1: pw},
			Stage: func(ctx context.Context, r pi.StageRequest) error { return nil }})
		pc := b.connect(a, nil)
		b.register(a, pc, 1, 0)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var done atomic.Int32
		busy := make(chan struct{}) // closed after 200 requests
		var once sync.Once
		var closing atomic.Bool
		for i := range 8 {
			wg.Go(func() {
				for ctx.Err() == nil {
					var err error
					switch i % 4 {
					case 0:
						_, err = pc.PCGnssEphStartReq(ctx, &pb.ReqGnssEphStartDataReq{CorrelationId: int32(i), PeriodicityInMs: 0})
					case 1:
						_, err = pc.PCPayloadPowerControl(ctx, &pb.ReqPayloadPowerControlParams{CorrelationId: int32(i), PowerOperation: 1, HwId: 1})
					case 2:
						_, err = pc.PCStageFileDownload(ctx, &pb.ReqStageFileDownloadParams{CorrelationId: int32(i), FilePath: "x.bin"})
					case 3:
						_, err = pc.PCRegister(ctx, &pb.ReqRegisterParams{CorrelationId: int32(i)})
					}
					if err != nil {
						if !closing.Load() {
							t.Errorf("before Close: %v", err)
						}
						once.Do(func() { close(busy) })
						return
					}
					if done.Add(1) == 200 {
						once.Do(func() { close(busy) })
					}
				}
			})
		}
		<-busy
		closing.Store(true)
		b.Close()
		cancel()
		wg.Wait()
	}
}

// pkgStacks are the goroutines running code of package pi or gRPC.
func pkgStacks() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var ours []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "satbench/hil/harness/pi.") || strings.Contains(s, "google.golang.org/grpc") {
			ours = append(ours, s)
		}
	}
	return ours
}

// TestNoGoroutineLeak: after Close, no goroutine of the controller is
// left, whatever was going on: streams, blocked calls, a power cycle
// under way, a sequence timer, a stage in progress.
func TestNoGoroutineLeak(t *testing.T) {
	before := len(pkgStacks())
	func() {
		// Everything of this scenario, the test's apps and clients
		// included, is gone when it returns.
		t := &cleanups{T: t}
		defer t.run()
		a := newTestApp(t, 1, nil)
		cyc := newTestApp(t, 2, nil)
		gated := &gatedPower{Power: payloadPower(t), entered: make(chan struct{}), gate: make(chan struct{})}
		cycApp := cyc.App()
		cycApp.Power = gated
		stageStarted := make(chan struct{})
		b := startBench(t, pi.Config{Apps: []pi.App{a.App(), cycApp}, HealthInterval: healthInterval, CallTimeout: callTimeout, HealthFailures: healthFailures,
			Stage: func(ctx context.Context, r pi.StageRequest) error {
				close(stageStarted)
				<-ctx.Done()
				return ctx.Err()
			}})
		pc := b.connect(a, nil)
		b.register(a, pc, 1, 0)
		a.on("PA_ProcessRespPsTemp", blockUntilDone)
		for _, f := range []func() (*pb.AntarisReturnType, error){
			func() (*pb.AntarisReturnType, error) {
				return pc.PCGnssEphStartReq(ctxT(t), &pb.ReqGnssEphStartDataReq{CorrelationId: 1, PeriodicityInMs: 100})
			},
			func() (*pb.AntarisReturnType, error) {
				return pc.PCGetEpsVoltageStartReq(ctxT(t), &pb.ReqGetEpsVoltageStartReq{CorrelationId: 2, PeriodicityInMs: 100})
			},
			func() (*pb.AntarisReturnType, error) { return pc.PCPsTempReq(ctxT(t), &pb.PsTempReq{CorrelationId: 3}) },
			func() (*pb.AntarisReturnType, error) {
				return pc.PCStageFileDownload(ctxT(t), &pb.ReqStageFileDownloadParams{CorrelationId: 4, FilePath: "f"})
			},
		} {
			r, err := f()
			code(t, "request", r, err, 0)
		}
		if err := b.C.StartSequence(ctxT(t), a.Board, "s", "", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		a.wait(method("PA_ProcessGnssEphData"))
		a.wait(method("PA_ProcessRespPsTemp"))
		<-stageStarted
		// The second app fails its health checks and is being
		// power-cycled, slowly, when the controller closes.
		cyc.on("PA_ProcessHealthCheck", blockUntilDone)
		b.register(cyc, b.connect(cyc, nil), 1, 1)
		<-gated.entered
		b.Close()
	}()
	noLeaks(t, before)
}

// noLeaks fails t unless the goroutines running code of package pi or
// gRPC come down to before within a few seconds (gRPC's own end in the
// background after Close).
func noLeaks(t *testing.T, before int) {
	t.Helper()
	var left []string
	for range 500 {
		if left = pkgStacks(); len(left) <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines of the controller or gRPC left after Close (%d before):\n%s", len(left), before, strings.Join(left, "\n\n"))
}

// cleanups is a testing.TB whose Cleanup functions run when run is
// called, not when the test ends.
type cleanups struct {
	*testing.T
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) Cleanup(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
