package pi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/fixtures/payload/app"
	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/internal/certs"
	"github.com/satbench/hil/internal/waitlog"
)

// refApp is the reference payload app, run in this process against a
// controller.
type refApp struct {
	App      pi.App
	Log      *waitlog.Lines
	Outbound string
	ln       net.Listener
	done     chan error
	cancel   context.CancelFunc
}

// newRefApp makes the n-th app's listener and identity; start runs it.
func newRefApp(t testing.TB, n int) *refApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &refApp{
		App:      pi.App{Board: fmt.Sprintf("board%d", n), Key: keyOf(n), AppID: 100 + n, Callback: ln.Addr().String()},
		Log:      &waitlog.Lines{},
		Outbound: t.TempDir(),
		ln:       ln,
	}
}

// start runs the app against b with cfg (Controller, Listener, Cookie,
// Outbound and Logf filled in); it is stopped when t ends.
func (r *refApp) start(t testing.TB, b *bench, cfg app.Config) {
	t.Helper()
	cfg.Controller = b.Addr()
	cfg.Listener = r.ln
	if cfg.Cookie == "" {
		cfg.Cookie = r.App.Cookie()
	}
	cfg.Outbound = r.Outbound
	cfg.Logf = r.Log.Logf
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- app.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("app.Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("app.Run did not return within %v of its cancel", waitFor)
		}
	})
}

func (r *refApp) wait(t testing.TB, parts ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	line, err := r.Log.Wait(ctx, parts...)
	if err != nil {
		t.Fatalf("%s: %v; its log:\n%s", r.App.Board, err, r.Log.String())
	}
	return line
}

// runSequence starts sequence id on r's board and waits for the app's
// PC_sequence_done.
func runSequence(t *testing.T, b *bench, r *refApp, id, params string) {
	t.Helper()
	before := b.count(kind(r.App.Board, pi.EventSequenceDone))
	if err := b.C.StartSequence(ctxT(t), r.App.Board, id, params, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("StartSequence %s %q: %v", id, params, err)
	}
	e := b.waitN(before+1, kind(r.App.Board, pi.EventSequenceDone))
	if !strings.Contains(e.Detail, "sequence "+id+" done") || !strings.Contains(e.Detail, "before its deadline") {
		t.Errorf("done event %q", e)
	}
	r.wait(t, "app: sequence "+id+" end", "ok")
}

// TestReferenceApp: the reference payload app registers with the
// controller, passes its health checks and runs every sequence through
// the controller.
func TestReferenceApp(t *testing.T) {
	r := newRefApp(t, 1)
	pw := payloadPower(t)
	st := &stager{}
	var outbound dirFS
	b := startBench(t, pi.Config{
		Apps:           []pi.App{r.App},
		HealthInterval: healthInterval,
		Hardware:       map[int32]power.Power{3: pw},
		// The bench's Stage: resolve the path on the payload, check the
		// file is there, then record it.
		Stage: func(ctx context.Context, req pi.StageRequest) error {
			p, err := pi.ResolveOutbound(ctx, outbound, req.Path)
			if err != nil {
				return err
			}
			req.Path = p
			return st.stage(ctx, req)
		},
	})
	outbound = dirFS{t: t, root: r.Outbound}
	r.start(t, b, app.Config{FailAction: 1})
	b.waitKind(r.App.Board, pi.EventRegistered)
	r.wait(t, "app: registered with the PC")
	r.wait(t, "app: <- PA_ProcessHealthCheck")
	b.wait(func(e pi.Event) bool { return e.Kind == pi.EventIn && e.Method == "PC_response_health_check" })

	t.Run("location", func(t *testing.T) {
		runSequence(t, b, r, "location", "")
		line := r.wait(t, "app: location lat=")
		var lat, lon, alt float64
		var at int64
		if _, err := fmt.Sscanf(line, "app: location lat=%g lon=%g alt=%g determined_at=%d", &lat, &lon, &alt, &at); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if alt != 550 || lat < -90 || lat > 90 || lon < -180 || lon >= 180 || time.Since(time.Unix(at, 0)).Abs() > time.Hour {
			t.Errorf("location %q", line)
		}
	})
	t.Run("stage", func(t *testing.T) {
		runSequence(t, b, r, "stage", "out/a.bin 4KiB 7 2")
		r.wait(t, `app: stage "out/a.bin" req_status=0`)
		req, err := st.reqs.Wait(ctxT(t), func(s pi.StageRequest) bool { return s.Rel == "out/a.bin" })
		if err != nil {
			t.Fatal(err)
		}
		if req.Path != pi.OutboundDir+"/out/a.bin" || req.Priority != pb.FilePriorities_FILE_DL_PRIORITY_HIGH {
			t.Errorf("staged %+v", req)
		}
		f, err := os.Open(filepath.Join(r.Outbound, "out", "a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, _ := io.Copy(io.Discard, f); n != 4096 {
			t.Errorf("the app wrote %d bytes", n)
		}
	})
	t.Run("stage refused", func(t *testing.T) {
		// The app's stage_path sends the path as it is; the sequence
		// fails, and PC_sequence_done follows all the same.
		before := b.count(kind(r.App.Board, pi.EventSequenceDone))
		if err := b.C.StartSequence(ctxT(t), r.App.Board, "stage_path", "../../etc/passwd", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		b.waitN(before+1, kind(r.App.Board, pi.EventSequenceDone))
		r.wait(t, "app: sequence stage_path end", "failed")
		if e := b.wait(func(e pi.Event) bool { return e.Kind == pi.EventInvalid && e.Method == "PC_stage_file_download" }); !strings.Contains(e.Detail, `".."`) {
			t.Errorf("invalid event %q", e)
		}
	})
	t.Run("power", func(t *testing.T) {
		runSequence(t, b, r, "power", "3 0")
		r.wait(t, "app: power hw_id=3 power_operation=0 req_status=0")
		if s := powerState(t, pw); s != power.Off {
			t.Errorf("payload %v after the app switched it off", s)
		}
		runSequence(t, b, r, "power", "3 1")
		if s := powerState(t, pw); s != power.On {
			t.Errorf("payload %v after the app switched it on", s)
		}
	})
	t.Run("gnss", func(t *testing.T) {
		runSequence(t, b, r, "gnss", "100 3")
		r.wait(t, "app: gnss data 3/3")
	})
	t.Run("eps", func(t *testing.T) {
		runSequence(t, b, r, "eps", "100 2")
		r.wait(t, "app: eps data 2/2", "eps_voltage=28")
	})
	t.Run("satos", func(t *testing.T) {
		runSequence(t, b, r, "satos", "42")
		r.wait(t, "app: satos command_id=42 req_status=0")
	})
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			id, params string
			code       pb.AntarisReturnCode
		}{
			{"nope", "", pb.AntarisReturnCode_An_INVALID_SEQUENCE},
			{"sleep", "soon", pb.AntarisReturnCode_An_INVALID_PARAMS},
		} {
			var ce *pi.CodeError
			if err := b.C.StartSequence(ctxT(t), r.App.Board, tc.id, tc.params, time.Now().Add(time.Minute)); !errors.As(err, &ce) || ce.Code != tc.code {
				t.Errorf("StartSequence %s %q: %v, want code %v", tc.id, tc.params, err, tc.code)
			}
		}
	})
	t.Run("overrun", func(t *testing.T) {
		if err := b.C.StartSequence(ctxT(t), r.App.Board, "sleep", "300ms", time.Now().Add(50*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		b.waitKind(r.App.Board, pi.EventOverran)
		e := b.wait(func(e pi.Event) bool {
			return e.Kind == pi.EventSequenceDone && strings.Contains(e.Detail, "sequence sleep")
		})
		if !strings.Contains(e.Detail, "after its deadline") {
			t.Errorf("done event %q", e)
		}
	})
	if n := b.count(func(e pi.Event) bool { return e.Kind == pi.EventHealthFailed }); n != 0 {
		t.Errorf("%d failed health checks of the reference app:\n%s", n, b.eventsText())
	}
	t.Run("shutdown", func(t *testing.T) {
		if err := b.C.Shutdown(ctxT(t), r.App.Board, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup
			if err != nil {
				t.Errorf("app.Run after shutdown: %v", err)
			}
		case <-time.After(waitFor):
			t.Fatal("the app still runs after its shutdown")
		}
	})
}

// TestReferenceAppMisbehaves: the app's silence sequence makes it fail
// its health checks, and with fail action 1 the controller power-cycles
// its payload; its ignore_shutdown makes Shutdown run out of grace time.
func TestReferenceAppMisbehaves(t *testing.T) {
	r := newRefApp(t, 1)
	pw := payloadPower(t)
	first := pw.Stopped()
	r.App.Power = pw
	b := startBench(t, pi.Config{Apps: []pi.App{r.App}, HealthInterval: healthInterval, CallTimeout: callTimeout, HealthFailures: healthFailures})
	r.start(t, b, app.Config{FailAction: 1})
	b.waitKind(r.App.Board, pi.EventRegistered)

	runSequence(t, b, r, "ignore_shutdown", "")
	if err := b.C.Shutdown(ctxT(t), r.App.Board, 100*time.Millisecond); !errors.Is(err, pi.ErrNoShutdownAnswer) {
		t.Errorf("Shutdown of an app ignoring it: %v", err)
	}
	r.wait(t, "app: ignore_shutdown: not shutting down for PA_ShutdownApp")

	runSequence(t, b, r, "silence", "")
	r.wait(t, "app: silence: not answering PA_ProcessHealthCheck")
	b.waitKind(r.App.Board, pi.EventUnhealthy)
	if e := b.waitKind(r.App.Board, pi.EventPowerCycled); e.Detail != "" {
		t.Errorf("power cycle: %q", e)
	}
	if !isClosed(first) || powerState(t, pw) != power.On {
		t.Error("the payload was not power-cycled")
	}
}

// TestReferenceAppTLS: the reference app with SSL_FLAG=1 against a TLS
// controller: both legs over TLS with the bench CA.
func TestReferenceAppTLS(t *testing.T) {
	ca, err := certs.NewCA("pi test")
	if err != nil {
		t.Fatal(err)
	}
	pcTLS, err := ca.ServerTLS("payload controller", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("payload app", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	r := newRefApp(t, 1)
	b := startBench(t, pi.Config{Apps: []pi.App{r.App}, TLS: pcTLS, CallbackTLS: ca.ClientTLS(), HealthInterval: healthInterval})
	r.start(t, b, app.Config{TLS: true, ServerCA: ca.CertPEM(), Cert: cert, Key: key})
	r.wait(t, "app: callback server listening on", "(tls)")
	r.wait(t, "app: registered with the PC")
	r.wait(t, "app: <- PA_ProcessHealthCheck")
	runSequence(t, b, r, "location", "")
	for _, e := range b.Events.All() {
		if e.Kind == pi.EventOut && e.Err != nil {
			t.Errorf("callback over TLS failed: %q", e)
		}
		if e.Kind == pi.EventRefused {
			t.Errorf("refused: %q", e)
		}
	}
}

// TestReferenceAppKeyAlone: an app whose cookie is the key alone is
// accepted.
func TestReferenceAppKeyAlone(t *testing.T) {
	r := newRefApp(t, 1)
	b := startBench(t, pi.Config{Apps: []pi.App{r.App}})
	r.start(t, b, app.Config{Cookie: r.App.Key})
	r.wait(t, "app: registered with the PC")
	runSequence(t, b, r, "location", "")
}
