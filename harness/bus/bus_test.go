package bus_test

import (
	"context"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/power"
)

func TestMain(m *testing.M) {
	payload.RunIfChild() // the sim bench runs the reference payload as this binary
	os.Exit(m.Run())
}

func openSim(t testing.TB) *bus.Bus {
	t.Helper()
	b, err := bench.Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bs, err := bus.Open(context.Background(), b, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

func states(l *bus.Log, window string) []bus.State {
	var s []bus.State
	for _, e := range l.Events() {
		if e.Kind == bus.KindState && e.Window == window {
			s = append(s, e.State)
		}
	}
	return s
}

func cmd(argv ...string) map[string]any {
	return map[string]any{"executable": argv[0], "executable_arguments": argv[1:]}
}

func TestWindowStates(t *testing.T) {
	bs := openSim(t)
	tests := []struct {
		name    string
		w       bus.Window
		want    []bus.State
		reason  string
		objects int
	}{
		{
			name: "delivered",
			w: bus.Window{ID: "1", User: "alice", Board: "refpayload", Duration: time.Second,
				Tasking: map[string]any{"user_command": cmd("/usr/bin/writefile", "/outbox/hello.txt", "hello")}},
			want:    []bus.State{bus.Scheduled, bus.Powering, bus.Booting, bus.Uplinking, bus.Configuring, bus.Started, bus.Ending, bus.Off, bus.Downlinking, bus.Delivered},
			objects: 1,
		},
		{
			name: "configure fails",
			w: bus.Window{ID: "2", User: "alice", Board: "refpayload", Duration: time.Second,
				Tasking: map[string]any{"configure_command": cmd("/usr/bin/exit", "4", "no", "antenna")}},
			want:   []bus.State{bus.Scheduled, bus.Powering, bus.Booting, bus.Uplinking, bus.Configuring, bus.Aborted},
			reason: "configure exited 4: no antenna",
		},
		{
			name:   "unknown board",
			w:      bus.Window{ID: "3", User: "alice", Board: "nope", Duration: time.Second},
			want:   []bus.State{bus.Scheduled, bus.Aborted},
			reason: `no board "nope" on bench sim`,
		},
		{
			name: "payload halts mid-window",
			w: bus.Window{ID: "5", User: "alice", Board: "refpayload", Duration: time.Hour,
				Tasking: map[string]any{"user_command": cmd("/sbin/halt")}},
			want:   []bus.State{bus.Scheduled, bus.Powering, bus.Booting, bus.Uplinking, bus.Configuring, bus.Started, bus.Aborted},
			reason: "payload power lost mid-window: process refpayload reads off, and nothing switched it off",
		},
		{
			name:   "user with a space",
			w:      bus.Window{ID: "4", User: "a b", Board: "refpayload", Duration: time.Second},
			want:   []bus.State{bus.Scheduled, bus.Aborted},
			reason: `user "a b" is not a plain identifier`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.w.Start = time.Now()
			r := bs.Run(context.Background(), tt.w)
			if got := states(bs.Log, tt.w.ID); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("states %v, want %v", got, tt.want)
			}
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", r.Reason, tt.reason)
			}
			if len(r.Objects) != tt.objects {
				t.Errorf("%d objects delivered, want %d", len(r.Objects), tt.objects)
			}
			if s, _ := bs.Boards["refpayload"].Power.State(context.Background()); s != power.Off {
				t.Errorf("payload power %v after the window, want off", s)
			}
		})
	}
}

// TestCancelCutsPower: stopping the bus mid-window (Ctrl-C) aborts the
// window and leaves the payload off.
func TestCancelCutsPower(t *testing.T) {
	bs := openSim(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := bus.Window{ID: "9", User: "alice", Board: "refpayload", Start: time.Now(), Duration: time.Hour}
	done := make(chan bus.Result)
	go func() { done <- bs.Run(ctx, w) }()
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if _, err := bs.Log.Wait(wctx, func(e bus.Event) bool { return e.State == bus.Started || e.State == bus.Aborted }); err != nil {
		t.Fatal(err)
	}
	cancel()
	r := <-done
	if r.State != bus.Aborted || !strings.HasPrefix(r.Reason, "canceled") {
		t.Errorf("result %+v, want aborted because canceled", r)
	}
	if s, _ := bs.Boards["refpayload"].Power.State(context.Background()); s != power.Off {
		t.Errorf("payload power %v after cancel, want off", s)
	}
}

// BenchmarkWindow times one whole zero-length window on the sim bench:
// power on, SSH, uplink, config, configure, start, sweep, shutdown, off,
// delivery of one small file.
func BenchmarkWindow(b *testing.B) {
	bs := openSim(b)
	for i := 0; b.Loop(); i++ {
		w := bus.Window{ID: "1", User: "alice", Board: "refpayload", Start: time.Now(),
			Tasking: map[string]any{"configure_command": cmd("/usr/bin/writefile", "/outbox/w.txt", "x")}}
		if r := bs.Run(context.Background(), w); r.State != bus.Delivered || len(r.Objects) != 1 {
			b.Fatalf("window %d: %+v", i, r)
		}
	}
}

// TestBootFailureShowsConsole: a payload that dies while booting aborts
// the window at once, and the reason carries its console's last words.
func TestBootFailureShowsConsole(t *testing.T) {
	bs := openSim(t)
	// Take the payload's port so that it cannot listen.
	l, err := net.Listen("tcp", bs.Boards["refpayload"].Remote.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := bs.Run(context.Background(), bus.Window{ID: "11", User: "alice", Board: "refpayload", Start: time.Now(), Duration: time.Second})
	if r.State != bus.Aborted || !strings.Contains(r.Reason, "payload went off while booting") ||
		!strings.Contains(r.Reason, "address already in use") {
		t.Errorf("result %+v, want aborted with the console's bind error", r)
	}
	if testing.Verbose() {
		t.Log(r.Reason)
	}
}

// TestS3Credentials: a bench naming an S3 endpoint takes its credentials
// from the environment; a missing variable is named, a secret never shown.
func TestS3Credentials(t *testing.T) {
	b, err := bench.Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b.Store.Kind, b.Store.Endpoint = "s3", "127.0.0.1:1" // nothing listens there
	b.Store.AccessKeyEnv, b.Store.SecretKeyEnv = "HIL_TEST_ACCESS", "HIL_TEST_SECRET"

	t.Setenv("HIL_TEST_ACCESS", "")
	t.Setenv("HIL_TEST_SECRET", "")
	_, err = bus.Open(context.Background(), b, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "HIL_TEST_ACCESS and HIL_TEST_SECRET not set") {
		t.Errorf("Open without credentials: %v, want both variables named", err)
	}

	const secret = "s3cr3t-do-not-print"
	t.Setenv("HIL_TEST_ACCESS", "hil")
	t.Setenv("HIL_TEST_SECRET", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = bus.Open(ctx, b, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open against a dead endpoint: %v, want an error naming it", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("the error shows the secret: %v", err)
	}
}
