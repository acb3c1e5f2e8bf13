package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/orbit"
	"github.com/satbench/hil/harness/pi"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/internal/certs"
)

// The files an app built on the SatOS SDK reads, as payload paths.
const (
	SDKEnvFile     = "/opt/antaris/app/conf/sdk_env.conf"
	AppConfigFile  = "/opt/antaris/app/config.json"
	ServerCertFile = "/opt/antaris/sdk/server.crt" // what the app trusts: the bench's CA
	AppCertFile    = "/opt/antaris/app/client.crt" // the app's callback server
	AppKeyFile     = "/opt/antaris/app/client.key"
)

// openPI starts the Payload Controller if any board runs a payload app,
// and writes each such board's app-side files into its root (what a QEMU
// payload finds laid over its own at boot). roots maps a board the bench
// starts to its payload root. On a bench with a network (lab), the
// controller serves inside it.
func openPI(ctx context.Context, b *bench.Bench, roots map[string]string, bus *Bus, lab *netlab.Lab) (*pi.Controller, error) {
	var apps []*bench.Board
	for _, bc := range b.Boards {
		if bc.RunsApp() {
			apps = append(apps, bc)
		}
	}
	if len(apps) == 0 {
		return nil, nil
	}
	fail := func(err error) (*pi.Controller, error) {
		return nil, fmt.Errorf("bus: bench %s: payload_interface: %w", b.File, err)
	}
	cfg := b.PayloadInterface
	listen := func(ctx context.Context, network, addr string) (net.Listener, error) {
		return new(net.ListenConfig).Listen(ctx, network, addr)
	}
	// What a payload app dials when the controller listens everywhere.
	local := "127.0.0.1"
	if lab != nil {
		listen, local = lab.Listen, lab.BusAddr().Addr().String()
	}
	ln, err := listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", cfg.Listen, err))
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = local
	}
	pc := pi.Config{
		Listener:       ln,
		Dial:           bus.dial,
		Hardware:       map[int32]power.Power{},
		Orbit:          orbit.Circular{AltitudeKm: cfg.Orbit.AltitudeKm, InclinationDeg: cfg.Orbit.InclinationDeg},
		HealthInterval: cfg.HealthCheck.Interval.D(),
		HealthFailures: cfg.HealthCheck.Failures,
		CallTimeout:    cfg.CallTimeout.D(),
		DeadlineUnit:   time.Second,
		Stage:          bus.stage,
		Notify:         bus.piEvent,
	}
	if cfg.DeadlineUnit == "ms" {
		pc.DeadlineUnit = time.Millisecond
	}
	var ca *certs.CA
	if cfg.TLS {
		if ca, err = certs.NewCA("hil bench " + b.Name); err == nil {
			pc.TLS, err = ca.ServerTLS("hil payload controller", host, "127.0.0.1")
		}
		if err != nil {
			ln.Close()
			return fail(err)
		}
		pc.CallbackTLS = ca.ClientTLS()
	}
	for _, bc := range apps {
		a := bc.PayloadInterface
		p := bus.Boards[bc.Name].Power
		pc.Apps = append(pc.Apps, pi.App{Board: bc.Name, Key: a.Key, AppID: a.AppID, Callback: a.Callback, Power: p, OffTime: bc.Power.OffTime.D()})
		pc.Hardware[int32(a.HWID)] = p
		if root, ok := roots[bc.Name]; ok {
			if err := writeAppFiles(root, bc, host, port, ca); err != nil {
				ln.Close()
				return fail(fmt.Errorf("board %s: %w", bc.Name, err))
			}
		}
	}
	c, err := pi.Start(pc)
	if err != nil {
		ln.Close()
		return fail(err)
	}
	return c, nil
}

// writeAppFiles writes, under a process board's payload root, what the
// SDK reads: sdk_env.conf, config.json and, on a TLS bench, the CA the
// app trusts and its callback server's certificate.
func writeAppFiles(root string, bc *bench.Board, pcHost, pcPort string, ca *certs.CA) error {
	a := bc.PayloadInterface
	appHost, appPort, err := net.SplitHostPort(a.Callback)
	if a.Callback == "" || err != nil {
		// The address the app calls from, as the controller sees it.
		appHost, _, _ = net.SplitHostPort(bc.Address)
		appPort = pi.DefaultCallbackPort
	}
	ssl := "0"
	if ca != nil {
		ssl = "1"
	}
	env := strings.Join([]string{
		"# Written by hil for board " + bc.Name + ": the SatOS SDK's settings for this bench.",
		"PAYLOAD_CONTROLLER_IP=" + pcHost,
		"PC_API_PORT=" + pcPort,
		"PAYLOAD_APP_IP=" + appHost,
		"LISTEN_IP=" + appHost,
		"APP_API_PORT=" + appPort,
		"SSL_FLAG=" + ssl,
		"KEEPALIVE=0",
		"",
	}, "\n")
	cookie, _ := json.Marshal(map[string]string{"cookie": a.Cookie()})
	files := map[string][]byte{SDKEnvFile: []byte(env), AppConfigFile: append(cookie, '\n')}
	if ca != nil {
		cert, key, err := ca.Issue("payload app "+bc.Name, appHost)
		if err != nil {
			return err
		}
		files[ServerCertFile], files[AppCertFile], files[AppKeyFile] = ca.CertPEM(), cert, key
	}
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// piEvent records what the Payload Controller saw or did.
func (b *Bus) piEvent(e pi.Event) {
	ev := Event{Time: e.Time, Board: e.Board, Kind: KindPI, Name: e.Kind, Detail: e.Text(), Method: e.Method}
	if e.HasCorr {
		ev.Corr = fmt.Sprint(e.Corr)
	}
	if e.Kind == pi.EventIn || e.Kind == pi.EventOut {
		ev.Name = e.Kind + " " + e.Method
	}
	ev.Window = b.windowOn(e.Board)
	b.Log.Append(ev)
}

// windowOn returns the id of the window running on board, or "".
func (b *Bus) windowOn(board string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.running[board]; r != nil {
		return r.w.ID
	}
	return ""
}

// stage fetches a file an app staged and queues it for downlink; it is
// deleted from the payload once delivered. A file staged during a window
// goes down with the window's files.
func (b *Bus) stage(ctx context.Context, r pi.StageRequest) error {
	bd := b.Boards[r.Board]
	c, err := remote.Dial(ctx, bd.Remote)
	if err != nil {
		return err
	}
	defer c.Close()
	file, err := pi.ResolveOutbound(ctx, c, r.Path)
	if err != nil {
		return err
	}
	b.mu.Lock()
	run := b.running[r.Board]
	b.mu.Unlock()
	it := downlink.Item{Source: downlink.SourceStage, Board: r.Board, TTL: b.ttl(), Priority: int(r.Priority),
		Meta: map[string]string{"radio-band": strings.ToLower(strings.TrimPrefix(r.Band.String(), "FILE_DL_"))}}
	if run != nil {
		it.Window = run.w.ID
	}
	q, err := downlink.Pull(ctx, c, file, b.Queue.Incoming(), it, b.Queue)
	if err != nil {
		return err
	}
	if run != nil && q.ID != "" {
		run.addStaged(q.ID)
	}
	return nil
}

// unstage deletes a staged file from its payload once it is delivered.
// A payload that is off keeps it: the next window's power-up retries.
func (b *Bus) unstage(it downlink.Item) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bd := b.Boards[it.Board]
	if bd == nil {
		return
	}
	err := func() error {
		c, err := remote.Dial(ctx, bd.Remote)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Remove(ctx, it.Path); err != nil {
			return err
		}
		return b.Queue.SourceRemoved(it)
	}()
	ev := Event{Window: it.Window, Board: it.Board, Kind: KindDownlink, Name: "staged file removed", Detail: it.Path, File: it.Name}
	if err != nil {
		ev.Name, ev.Detail = "staged file kept", fmt.Sprintf("%s: delivered, but not removed from the payload: %v (retried at the next power-up)", it.Path, err)
		b.mu.Lock()
		b.unremoved = append(b.unremoved, it)
		b.mu.Unlock()
	}
	b.Log.Append(ev)
}

// retryUnstage removes the delivered staged files board's payload kept
// because it was off when they were delivered.
func (b *Bus) retryUnstage(board string) {
	b.mu.Lock()
	var mine []downlink.Item
	rest := b.unremoved[:0]
	for _, it := range b.unremoved {
		if it.Board == board {
			mine = append(mine, it)
		} else {
			rest = append(rest, it)
		}
	}
	b.unremoved = rest
	b.mu.Unlock()
	for _, it := range mine {
		b.unstage(it)
	}
}
