package pi_test

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/internal/certs"
)

// TestRegister: PC_register is answered at once, and RespRegister comes
// later, to the app's callback server, with the same correlation id and
// an auth token.
func TestRegister(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	if b.C.Registered(a.Board) {
		t.Fatal("registered before PC_register")
	}
	// PA ids are not unique: two registers with the same id are each
	// answered with it.
	for i := range 2 {
		r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 4242, SdkVersion: &pb.AntarisSdkVersion{Major: 1, Minor: 2, Patch: 3}})
		code(t, "PC_register", r, err, pb.AntarisReturnCode_An_SUCCESS)
		a.waitN(i+1, func(c call) bool { return c.Method == "PA_ProcessResponseRegister" })
	}
	for _, c := range a.Calls.All() {
		resp := c.Req.(*pb.RespRegisterParams)
		if resp.GetCorrelationId() != 4242 || resp.GetReqStatus() != 0 {
			t.Errorf("RespRegister %v, want correlation_id 4242 and req_status 0", resp)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(resp.GetAuthToken()) {
			t.Errorf("RespRegister auth_token %q, want 32 hex digits", resp.GetAuthToken())
		}
	}
	e := b.waitKind(a.Board, pi.EventRegistered)
	if !e.HasCorr || e.Corr != 4242 || !strings.Contains(e.Detail, "SDK 1.2.3") || !strings.Contains(e.Detail, "app 101") {
		t.Errorf("registered event %q, want corr 4242, app 101 and SDK 1.2.3", e)
	}
	if !b.C.Registered(a.Board) {
		t.Error("Registered is false after PC_register")
	}
	in := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventIn && e.Method == "PC_register" })
	if in.Board != a.Board || in.Corr != 4242 || in.Code != 0 {
		t.Errorf("in event %q", in)
	}
}

// TestCookie: each form of the cookie metadata, accepted or refused with
// Unauthenticated and an event naming what is wrong.
func TestCookie(t *testing.T) {
	a := newTestApp(t, 1, nil)
	other := newTestApp(t, 2, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App(), other.App()}})
	for _, tc := range []struct {
		name, cookie string
		why          string // in the refusal; "" = accepted
	}{
		{"key and app id", a.Cookie(), ""},
		{"key alone", a.Key, ""},
		{"missing", "", "no cookie metadata"},
		{"unknown key", keyOf(9) + "101", "is no board's payload_interface.key"},
		{"right key, wrong app id", a.Key + "102", `board1's auth key with app id "102"; the board's app id is 101`},
		{"22 characters", a.Key + "10", "cookie of 22 characters"},
		{"24 characters", a.Cookie() + "0", "cookie of 24 characters"},
		{"key prefix only", a.Key[:19], "cookie of 19 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := dialPC(t, b.Addr(), tc.cookie, nil)
			before := len(b.Events.All())
			r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 7})
			if tc.why == "" {
				code(t, "PC_register", r, err, pb.AntarisReturnCode_An_SUCCESS)
				return
			}
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("PC_register: %v, %v; want Unauthenticated", r, err)
			}
			e := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventRefused })
			for _, e2 := range b.Events.All()[before:] {
				if e2.Kind == pi.EventRefused {
					e = e2
				}
			}
			if e.Board != "" || e.Method != "PC_register" || !strings.Contains(e.Detail, tc.why) {
				t.Errorf("refusal event %q, want one for PC_register saying %q", e, tc.why)
			}
			if strings.Contains(e.Detail, a.Key) {
				t.Errorf("refusal event shows the whole key: %q", e)
			}
		})
	}
}

// TestNotRegistered: every call but PC_register is refused with
// An_NOT_PERMITTED until the app registers, and nothing goes to it.
func TestNotRegistered(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	ctx := ctxT(t)
	for name, f := range map[string]func() (*pb.AntarisReturnType, error){
		"PC_get_current_location": func() (*pb.AntarisReturnType, error) {
			return pc.PCGetCurrentLocation(ctx, &pb.ReqGetCurrentLocationParams{CorrelationId: 1})
		},
		"PC_stage_file_download": func() (*pb.AntarisReturnType, error) {
			return pc.PCStageFileDownload(ctx, &pb.ReqStageFileDownloadParams{CorrelationId: 2, FilePath: "a.bin"})
		},
		"PC_sequence_done": func() (*pb.AntarisReturnType, error) {
			return pc.PCSequenceDone(ctx, &pb.CmdSequenceDoneParams{SequenceId: "s"})
		},
		"PC_response_health_check": func() (*pb.AntarisReturnType, error) {
			return pc.PCResponseHealthCheck(ctx, &pb.RespHealthCheckParams{CorrelationId: 3})
		},
		"PC_gnss_eph_start_req": func() (*pb.AntarisReturnType, error) {
			return pc.PCGnssEphStartReq(ctx, &pb.ReqGnssEphStartDataReq{CorrelationId: 4, PeriodicityInMs: 1000})
		},
		"PC_pa_satos_message": func() (*pb.AntarisReturnType, error) {
			return pc.PCPaSatosMessage(ctx, &pb.PaSatOsMsg{CorrelationId: 5})
		},
	} {
		r, err := f()
		code(t, name, r, err, pb.AntarisReturnCode_An_NOT_PERMITTED)
		e := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventIn && e.Method == name })
		if e.Code != int32(pb.AntarisReturnCode_An_NOT_PERMITTED) || !strings.Contains(e.Detail, "PC_register comes first") {
			t.Errorf("event %q", e)
		}
	}
	b.Close()
	if n := len(a.Calls.All()); n != 0 {
		t.Errorf("an unregistered app got %d callbacks:\n%s", n, a.callsText())
	}
}

// TestRegisterFailAction: health_check_fail_action other than 0 or 1 is
// refused with An_INVALID_PARAMS, and the app stays unregistered.
func TestRegisterFailAction(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	for _, action := range []int32{2, -1} {
		r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 9, HealthCheckFailAction: action})
		code(t, "PC_register", r, err, pb.AntarisReturnCode_An_INVALID_PARAMS)
		e := b.waitKind(a.Board, pi.EventInvalid)
		if e.Method != "PC_register" || !strings.Contains(e.Detail, "health_check_fail_action") {
			t.Errorf("event %q", e)
		}
	}
	if b.C.Registered(a.Board) {
		t.Error("registered with a bad fail action")
	}
	r, err := pc.PCGetCurrentLocation(ctxT(t), &pb.ReqGetCurrentLocationParams{CorrelationId: 1})
	code(t, "PC_get_current_location", r, err, pb.AntarisReturnCode_An_NOT_PERMITTED)
	b.Close()
	if n := a.count(method("PA_ProcessResponseRegister")); n != 0 {
		t.Errorf("%d RespRegister to a refused register", n)
	}
}

// TestCallbackAddress: the configured callback address is used; without
// one, the register call's peer IP and port 50053. The default is checked
// from the event (50053 may be taken on the machine, so nothing is bound).
func TestCallbackAddress(t *testing.T) {
	t.Run("configured", func(t *testing.T) {
		a := newTestApp(t, 1, nil)
		b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
		b.register(a, b.connect(a, nil), 1, 0)
		e := b.waitKind(a.Board, pi.EventRegistered)
		if !strings.HasSuffix(e.Detail, "callback "+a.App().Callback) {
			t.Errorf("registered event %q, want callback %s", e, a.App().Callback)
		}
	})
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		t.Run("default from "+ip, func(t *testing.T) {
			a := newTestApp(t, 1, nil)
			app := a.App()
			app.Callback = ""
			b := startBench(t, pi.Config{Apps: []pi.App{app}, CallTimeout: 200 * time.Millisecond})
			// Dial from ip, so the peer address is what the controller sees.
			local := &net.TCPAddr{IP: net.ParseIP(ip)}
			if l, err := net.ListenTCP("tcp", local); err != nil {
				t.Skipf("cannot use %s on this machine: %v", ip, err)
			} else {
				l.Close()
			}
			d := &net.Dialer{LocalAddr: local}
			pc := dialPC(t, b.Addr(), a.Cookie(), nil, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", addr)
			}))
			r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 5})
			code(t, "PC_register", r, err, pb.AntarisReturnCode_An_SUCCESS)
			e := b.waitKind(a.Board, pi.EventRegistered)
			if want := "callback " + ip + ":" + pi.DefaultCallbackPort; !strings.HasSuffix(e.Detail, want) {
				t.Errorf("registered event %q, want %q", e, want)
			}
			// The RespRegister went to the default address, not to the
			// app's real server.
			b.wait(out(a.Board, "PA_ProcessResponseRegister"))
			b.Close()
			if n := a.count(method("PA_ProcessResponseRegister")); n != 0 {
				t.Errorf("RespRegister reached the app's configured server, not the default address")
			}
		})
	}
}

// TestTLS: on a TLS controller, an app trusting the bench CA registers and
// gets its callbacks over TLS; a plaintext app is refused with an event
// saying so; an app trusting another CA cannot connect.
func TestTLS(t *testing.T) {
	ca, err := certs.NewCA("pi test")
	if err != nil {
		t.Fatal(err)
	}
	pcTLS, err := ca.ServerTLS("payload controller", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	appTLS, err := ca.ServerTLS("payload app", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, 1, appTLS)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, TLS: pcTLS, CallbackTLS: ca.ClientTLS()})

	t.Run("right CA", func(t *testing.T) {
		resp := b.register(a, b.connect(a, credentials.NewTLS(ca.ClientTLS())), 11, 0)
		if resp.GetAuthToken() == "" {
			t.Error("no auth token")
		}
		e := b.wait(out(a.Board, "PA_ProcessResponseRegister"))
		if e.Err != nil {
			t.Errorf("callback over TLS: %v", e.Err)
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		pc := dialPC(t, b.Addr(), a.Cookie(), nil)
		if _, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 12}); status.Code(err) != codes.Unavailable {
			t.Errorf("plaintext PC_register: %v, want Unavailable", err)
		}
		e := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventRefused })
		if !strings.Contains(e.Detail, "plaintext") || !strings.Contains(e.Detail, "SSL_FLAG=1") {
			t.Errorf("refusal %q", e)
		}
	})
	t.Run("other CA", func(t *testing.T) {
		other, err := certs.NewCA("another bench")
		if err != nil {
			t.Fatal(err)
		}
		pc := dialPC(t, b.Addr(), a.Cookie(), credentials.NewTLS(other.ClientTLS()))
		if _, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 13}); status.Code(err) != codes.Unavailable {
			t.Errorf("PC_register trusting another CA: %v, want Unavailable", err)
		}
	})
	t.Run("plaintext callback server", func(t *testing.T) {
		// The controller dials callbacks with TLS: an app whose callback
		// server is plaintext gets nothing, and the event says why.
		plain := newTestApp(t, 2, nil)
		b2 := startBench(t, pi.Config{Apps: []pi.App{plain.App()}, TLS: pcTLS, CallbackTLS: ca.ClientTLS(), CallTimeout: 200 * time.Millisecond})
		pc := dialPC(t, b2.Addr(), plain.Cookie(), credentials.NewTLS(ca.ClientTLS()))
		r, err := pc.PCRegister(ctxT(t), &pb.ReqRegisterParams{CorrelationId: 14})
		code(t, "PC_register", r, err, pb.AntarisReturnCode_An_SUCCESS)
		if e := b2.wait(out(plain.Board, "PA_ProcessResponseRegister")); e.Err == nil {
			t.Errorf("TLS callback to a plaintext server succeeded: %q", e)
		}
	})
}
