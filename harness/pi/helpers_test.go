package pi_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/internal/waitlog"
)

// waitFor bounds every wait of these tests. It is not a measurement: a
// test that reaches it has failed, however loaded the machine.
const waitFor = 30 * time.Second

// keyOf is a distinct 20-character auth key for the n-th app of a test.
func keyOf(n int) string { return fmt.Sprintf("testkey%013d", n) }

// call is one call an app's callback server received.
type call struct {
	Method string
	Req    proto.Message
}

// corr is the call's correlation id, -1 if it has none.
func (c call) corr() int32 {
	if m, ok := c.Req.(interface{ GetCorrelationId() int32 }); ok {
		return m.GetCorrelationId()
	}
	return -1
}

// handler answers one callback in place of the default (record, answer
// An_SUCCESS). It runs after the call is recorded.
type handler func(ctx context.Context, req proto.Message) (*pb.AntarisReturnType, error)

// testApp is a payload app made of parts: its real callback server on a
// loopback port, serving the generated service, and a raw gRPC client of
// the controller. Unlike the reference app it misbehaves on demand.
type testApp struct {
	t     testing.TB
	Board string
	Key   string
	AppID int
	Calls waitlog.Log[call] // every callback, in order of arrival

	ln  net.Listener
	srv *grpc.Server

	// quiet makes the app record nothing (long fuzzing runs).
	quiet atomic.Bool

	mu       sync.Mutex
	handlers map[string]handler
	stopped  bool
}

// newTestApp starts an app's callback server on 127.0.0.1; tlsCfg, if
// set, makes it serve TLS.
func newTestApp(t testing.TB, n int, tlsCfg *tls.Config) *testApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &testApp{t: t, Board: fmt.Sprintf("board%d", n), Key: keyOf(n), AppID: 100 + n, ln: ln, handlers: map[string]handler{}}
	// Stop waits for handlers, so that none outlives its test.
	opts := []grpc.ServerOption{grpc.WaitForHandlers(true)}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	a.srv = grpc.NewServer(opts...)
	pb.RegisterAntarisapiApplicationCallbackServer(a.srv, cbServer{a: a})
	go a.srv.Serve(ln)
	t.Cleanup(a.Stop)
	return a
}

// App is the controller's view of the app.
func (a *testApp) App() pi.App {
	return pi.App{Board: a.Board, Key: a.Key, AppID: a.AppID, Callback: a.ln.Addr().String()}
}

// Cookie is what the app's calls carry.
func (a *testApp) Cookie() string { return a.App().Cookie() }

// Stop stops the callback server at once, as an app that vanishes: its
// connections close under calls in flight.
func (a *testApp) Stop() {
	a.mu.Lock()
	stopped := a.stopped
	a.stopped = true
	a.mu.Unlock()
	if !stopped {
		a.srv.Stop()
	}
}

// on sets how the app answers method.
func (a *testApp) on(method string, h handler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handlers[method] = h
}

func (a *testApp) handle(ctx context.Context, method string, req proto.Message) (*pb.AntarisReturnType, error) {
	if !a.quiet.Load() {
		a.Calls.Append(call{method, req})
	}
	a.mu.Lock()
	h := a.handlers[method]
	a.mu.Unlock()
	if h != nil {
		return h(ctx, req)
	}
	return &pb.AntarisReturnType{}, nil
}

// wait returns the first callback for which match is true.
func (a *testApp) wait(match func(call) bool) call {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := a.Calls.Wait(ctx, match)
	if err != nil {
		a.t.Fatalf("app %s: no such callback: %v; got:\n%s", a.Board, err, a.callsText())
	}
	return c
}

// waitCall returns the callback method with correlation id corr.
func (a *testApp) waitCall(method string, corr int32) call {
	a.t.Helper()
	return a.wait(func(c call) bool { return c.Method == method && c.corr() == corr })
}

// waitN waits for the n-th callback matching match, counting from the
// start of the log.
func (a *testApp) waitN(n int, match func(call) bool) {
	a.t.Helper()
	seen := 0
	a.wait(func(c call) bool {
		if match(c) {
			seen++
		}
		return seen >= n
	})
}

func (a *testApp) count(match func(call) bool) int {
	n := 0
	for _, c := range a.Calls.All() {
		if match(c) {
			n++
		}
	}
	return n
}

func (a *testApp) callsText() string {
	var b strings.Builder
	for _, c := range a.Calls.All() {
		fmt.Fprintf(&b, "  %s %v\n", c.Method, c.Req)
	}
	return b.String()
}

func method(m string) func(call) bool { return func(c call) bool { return c.Method == m } }

// blockUntilDone is a handler that never answers: it returns only when
// the caller gives up or the connection goes.
func blockUntilDone(ctx context.Context, _ proto.Message) (*pb.AntarisReturnType, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// dialPC returns a raw client of the controller at addr whose calls carry
// cookie (none if empty); creds nil means plaintext.
func dialPC(t testing.TB, addr, cookie string, creds credentials.TransportCredentials, opts ...grpc.DialOption) pb.AntarisapiPayloadControllerClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts = append(opts, grpc.WithTransportCredentials(creds))
	if cookie != "" {
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "cookie", cookie), method, req, reply, cc, opts...)
		}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewAntarisapiPayloadControllerClient(conn)
}

// bench is a controller on a loopback port and every event it emits.
type bench struct {
	t      testing.TB
	C      *pi.Controller
	Events *waitlog.Log[pi.Event]
	// bugOK says the test provokes a controller failure on purpose; any
	// other "a bug in hil" event fails the test.
	bugOK  bool
	closed atomic.Bool
}

// startBench starts a controller with cfg on 127.0.0.1. Unless cfg says
// otherwise, health checks are an hour apart (out of the way of tests
// about something else) and calls to apps time out after 10 s, more
// than any loaded machine needs to answer on loopback.
func startBench(t testing.TB, cfg pi.Config) *bench {
	t.Helper()
	b := &bench{t: t, Events: &waitlog.Log[pi.Event]{}}
	notify := cfg.Notify
	cfg.Notify = func(e pi.Event) {
		b.Events.Append(e)
		if notify != nil {
			notify(e)
		}
	}
	if cfg.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = ln
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = time.Hour
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	c, err := pi.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.C = c
	t.Cleanup(func() {
		b.Close()
		if b.bugOK {
			return
		}
		for _, e := range b.Events.All() {
			if strings.Contains(e.Detail, "a bug in hil") {
				t.Errorf("controller failed: %s", e)
			}
		}
	})
	return b
}

// Addr is where apps dial the controller.
func (b *bench) Addr() string { return b.C.Addr().String() }

// Close closes the controller, failing the test if that takes long: Close
// must not wait for apps that do not answer.
func (b *bench) Close() {
	b.t.Helper()
	if b.closed.Swap(true) {
		return
	}
	done := make(chan error, 1)
	go func() { done <- b.C.Close() }()
	select {
	case err := <-done:
		if err != nil {
			b.t.Errorf("Close: %v", err)
		}
	case <-time.After(waitFor):
		b.t.Fatalf("Close did not return within %v", waitFor)
	}
}

// wait returns the first event for which match is true.
func (b *bench) wait(match func(pi.Event) bool) pi.Event {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	e, err := b.Events.Wait(ctx, match)
	if err != nil {
		b.t.Fatalf("no such event: %v; events:\n%s", err, b.eventsText())
	}
	return e
}

// waitKind returns the first event of kind for board.
func (b *bench) waitKind(board, kind string) pi.Event {
	b.t.Helper()
	return b.wait(func(e pi.Event) bool { return e.Board == board && e.Kind == kind })
}

// waitN waits for the n-th event matching match.
func (b *bench) waitN(n int, match func(pi.Event) bool) pi.Event {
	b.t.Helper()
	seen := 0
	return b.wait(func(e pi.Event) bool {
		if match(e) {
			seen++
		}
		return seen >= n
	})
}

func (b *bench) count(match func(pi.Event) bool) int {
	n := 0
	for _, e := range b.Events.All() {
		if match(e) {
			n++
		}
	}
	return n
}

func (b *bench) eventsText() string {
	var s strings.Builder
	all := b.Events.All()
	if len(all) > 200 {
		fmt.Fprintf(&s, "  (%d events before)\n", len(all)-200)
		all = all[len(all)-200:]
	}
	for _, e := range all {
		fmt.Fprintf(&s, "  [%s] %s\n", e.Board, e)
	}
	return s.String()
}

func kind(board, k string) func(pi.Event) bool {
	return func(e pi.Event) bool { return e.Board == board && e.Kind == k }
}

func out(board, m string) func(pi.Event) bool {
	return func(e pi.Event) bool { return e.Board == board && e.Kind == pi.EventOut && e.Method == m }
}

// connect dials the controller as a, over plaintext unless creds.
func (b *bench) connect(a *testApp, creds credentials.TransportCredentials) pb.AntarisapiPayloadControllerClient {
	b.t.Helper()
	return dialPC(b.t, b.Addr(), a.Cookie(), creds)
}

// register registers a through pc with failAction and waits for its
// RespRegister.
func (b *bench) register(a *testApp, pc pb.AntarisapiPayloadControllerClient, corr, failAction int32) *pb.RespRegisterParams {
	b.t.Helper()
	r, err := pc.PCRegister(ctxT(b.t), &pb.ReqRegisterParams{CorrelationId: corr, HealthCheckFailAction: failAction, SdkVersion: &pb.AntarisSdkVersion{Major: 1, Minor: 2, Patch: 3}})
	if err != nil {
		b.t.Fatalf("PC_register: %v", err)
	}
	if r.GetReturnCode() != pb.AntarisReturnCode_An_SUCCESS {
		b.t.Fatalf("PC_register answered %v", r.GetReturnCode())
	}
	return a.waitCall("PA_ProcessResponseRegister", corr).Req.(*pb.RespRegisterParams)
}

// ctxT is a context for one call of a test, bounded by waitFor.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// code checks a synchronous answer.
func code(t testing.TB, what string, r *pb.AntarisReturnType, err error, want pb.AntarisReturnCode) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if r.GetReturnCode() != want {
		t.Fatalf("%s answered %v, want %v", what, r.GetReturnCode(), want)
	}
}

// cbServer is the app's callback service; every method goes to handle.
type cbServer struct {
	pb.UnimplementedAntarisapiApplicationCallbackServer
	a *testApp
}

var _ pb.AntarisapiApplicationCallbackServer = cbServer{}

func (s cbServer) PA_StartSequence(ctx context.Context, r *pb.StartSequenceParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_StartSequence", r)
}
func (s cbServer) PA_ShutdownApp(ctx context.Context, r *pb.ShutdownParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ShutdownApp", r)
}
func (s cbServer) PA_ProcessHealthCheck(ctx context.Context, r *pb.HealthCheckParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessHealthCheck", r)
}
func (s cbServer) PA_ProcessResponseRegister(ctx context.Context, r *pb.RespRegisterParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessResponseRegister", r)
}
func (s cbServer) PA_ProcessResponseGetCurrentLocation(ctx context.Context, r *pb.RespGetCurrentLocationParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessResponseGetCurrentLocation", r)
}
func (s cbServer) PA_ProcessResponseStageFileDownload(ctx context.Context, r *pb.RespStageFileDownloadParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessResponseStageFileDownload", r)
}
func (s cbServer) PA_ProcessResponsePayloadPowerControl(ctx context.Context, r *pb.RespPayloadPowerControlParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessResponsePayloadPowerControl", r)
}
func (s cbServer) PA_ProcessReqPayloadMetrics(ctx context.Context, r *pb.ReqPayloadMetricsParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessReqPayloadMetrics", r)
}
func (s cbServer) PA_ProcessRespGnssEphStopDataReq(ctx context.Context, r *pb.RespGnssEphStopDataReq) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespGnssEphStopDataReq", r)
}
func (s cbServer) PA_ProcessRespGnssEphStartDataReq(ctx context.Context, r *pb.RespGnssEphStartDataReq) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespGnssEphStartDataReq", r)
}
func (s cbServer) PA_ProcessGnssEphData(ctx context.Context, r *pb.GnssEphData) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessGnssEphData", r)
}
func (s cbServer) PA_ProcessRespGetEpsVoltageStopReq(ctx context.Context, r *pb.RespGetEpsVoltageStopReq) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespGetEpsVoltageStopReq", r)
}
func (s cbServer) PA_ProcessRespGetEpsVoltageStartReq(ctx context.Context, r *pb.RespGetEpsVoltageStartReq) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespGetEpsVoltageStartReq", r)
}
func (s cbServer) PA_ProcessGetEpsVoltage(ctx context.Context, r *pb.GetEpsVoltage) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessGetEpsVoltage", r)
}
func (s cbServer) PA_ProcessRespStartSesThermMgmntReq(ctx context.Context, r *pb.RespStartSesThermMgmntReq) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespStartSesThermMgmntReq", r)
}
func (s cbServer) PA_ProcessRespStopSesThermMgmntReq(ctx context.Context, r *pb.RespStopSesThermMgmntReq) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespStopSesThermMgmntReq", r)
}
func (s cbServer) PA_ProcessRespSesTempReq(ctx context.Context, r *pb.RespSesTempReqParams) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespSesTempReq", r)
}
func (s cbServer) PA_ProcessRespPsTemp(ctx context.Context, r *pb.RespPsTemp) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespPsTemp", r)
}
func (s cbServer) PA_ProcessSesThrmlNtf(ctx context.Context, r *pb.SesThermalStatusNtf) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessSesThrmlNtf", r)
}
func (s cbServer) PA_ProcessRespPaSatOsMsg(ctx context.Context, r *pb.RespPaSatOsMsg) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRespPaSatOsMsg", r)
}
func (s cbServer) PA_ProcessSatOsPaMsg(ctx context.Context, r *pb.SatOsPaMsg) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessSatOsPaMsg", r)
}
func (s cbServer) PA_ProcessRemoteAcPwrStatusNtf(ctx context.Context, r *pb.NtfRemoteAcPwrStatus) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessRemoteAcPwrStatusNtf", r)
}
func (s cbServer) PA_ProcessHostToPeerFcmOperationNotify(ctx context.Context, r *pb.HostToPeerFcmOperationNotify) (*pb.AntarisReturnType, error) {
	return s.a.handle(ctx, "PA_ProcessHostToPeerFcmOperationNotify", r)
}
