package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/relay"
	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/internal/netproxy"
)

// ChildEnv marks a process started as the reference payload: the hil
// binary (and every test binary that runs a sim bench) checks it first
// thing and becomes the payload (see fixtures/payload.RunIfChild).
const ChildEnv = childEnvName + "=1"

const childEnvName = "HIL_PAYLOAD_CHILD" // the name fixtures/payload.RunIfChild reads

// Open builds the bus a bench describes, with everything it runs kept
// under dir: the store (the embedded S3 endpoint, or the configured one),
// each board's power and, on the sim bench, each reference payload's
// filesystem. Close releases it all.
func Open(ctx context.Context, b *bench.Bench, dir string) (*Bus, error) {
	if b.Signaling != "v1" {
		return nil, fmt.Errorf("bus: bench %s: signaling %s is not implemented yet; this bus speaks v1", b.File, b.Signaling)
	}
	var closers []func() error
	fail := func(err error) (*Bus, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil, err
	}
	st, stCfg, srv, proxy, err := openStore(ctx, b, filepath.Join(dir, "s3"))
	if err != nil {
		return fail(err)
	}
	if srv != nil {
		closers = append(closers, srv.Close, proxy.Close)
	}
	if err := st.EnsureBucket(ctx, b.Store.Bucket); err != nil {
		return fail(fmt.Errorf("bus: bench %s: store.bucket %s: %w", b.File, b.Store.Bucket, err))
	}
	for i, r := range b.Downlink.Routes {
		if err := st.EnsureBucket(ctx, r.Bucket); err != nil {
			return fail(fmt.Errorf("bus: bench %s: downlink.routes[%d].bucket %s: %w", b.File, i, r.Bucket, err))
		}
	}
	lab, err := openNetwork(ctx, b)
	if err != nil {
		return fail(err)
	}
	if lab != nil {
		closers = append(closers, lab.Close) // the last to go
	}
	powers := map[string]power.Power{}
	consoles := map[string]string{}
	links := map[string]netlab.Link{}
	roots := map[string]string{} // payload roots of the boards the bench starts
	relays := map[relay.Port]*relay.Board{}
	opened := *b
	opened.Boards = make([]*bench.Board, len(b.Boards))
	for i, bc := range b.Boards {
		bc := *bc // the address may be resolved below; the bench stays as loaded
		opened.Boards[i] = &bc
		dir := filepath.Join(dir, "boards", bc.Name)
		bp, err := openPower(ctx, &opened, i, dir, relays, lab)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, bp.closer)
		powers[bc.Name] = bp.power
		if bp.console != "" {
			consoles[bc.Name] = bp.console
			roots[bc.Name] = filepath.Join(dir, "root")
		}
		if bp.link != nil {
			links[bc.Name] = bp.link
		}
	}
	bus, err := New(&opened, st, filepath.Join(dir, "queue"), powers)
	if err != nil {
		return fail(err)
	}
	if lab != nil {
		bus.dial = lab.Dial
		for name, bd := range bus.Boards {
			bd.Remote.Dial, bd.Link = lab.Dial, links[name]
		}
	}
	pc, err := openPI(ctx, &opened, roots, bus, lab)
	if err != nil {
		bus.stopQueue()
		return fail(err)
	}
	if pc != nil {
		// Closed first: no health check or power cycle while boards go off.
		closers = append(closers, pc.Close)
	}
	bus.PI = pc
	for name, console := range consoles {
		bus.Boards[name].Console = console
	}
	bus.closers = closers
	bus.StoreConfig, bus.StoreServer, bus.StoreProxy = stCfg, srv, proxy
	return bus, nil
}

// Close stops the downlink queue (what it has not delivered stays in its
// journal), powers every board off and stops what Open started.
func (b *Bus) Close() error {
	if b.stopQueue != nil {
		b.stopQueue()
		b.stopQueue = nil
	}
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.closers = nil
	return errors.Join(errs...)
}

// openStore opens the bench's store. For the kinds the bench runs itself
// (embedded, minio) it also returns the server and the proxy the bus
// reaches it through.
func openStore(ctx context.Context, b *bench.Bench, dir string) (store.Store, store.Config, store.Server, *netproxy.Proxy, error) {
	fail := func(err error) (store.Store, store.Config, store.Server, *netproxy.Proxy, error) {
		return nil, store.Config{}, nil, nil, fmt.Errorf("bus: bench %s: store kind %s: %w", b.File, b.Store.Kind, err)
	}
	var srv store.Server
	var err error
	switch b.Store.Kind {
	case "embedded", "minio":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fail(err)
		}
		if b.Store.Kind == "embedded" {
			srv, err = store.StartEmbedded(ctx, dir, nil)
		} else {
			srv, err = store.StartMinIO(ctx, dir, nil)
		}
		if err != nil {
			return fail(err)
		}
		proxy, err := netproxy.Start(ctx, srv.Config().Endpoint)
		if err != nil {
			srv.Close()
			return fail(err)
		}
		cfg := srv.Config()
		cfg.Endpoint = proxy.Addr()
		st, err := store.New(cfg)
		if err != nil {
			proxy.Close()
			srv.Close()
			return fail(err)
		}
		return st, cfg, srv, proxy, nil
	case "s3":
		access, secret := os.Getenv(b.Store.AccessKeyEnv), os.Getenv(b.Store.SecretKeyEnv)
		var missing []string
		if access == "" {
			missing = append(missing, b.Store.AccessKeyEnv)
		}
		if secret == "" {
			missing = append(missing, b.Store.SecretKeyEnv)
		}
		if len(missing) > 0 {
			return fail(fmt.Errorf("endpoint %s needs credentials in the environment: %s not set",
				b.Store.Endpoint, strings.Join(missing, " and ")))
		}
		cfg := store.Config{Endpoint: b.Store.Endpoint, Secure: b.Store.Secure,
			Region: b.Store.Region, AccessKey: access, SecretKey: secret}
		st, err := store.New(cfg)
		if err != nil {
			return fail(err)
		}
		return st, cfg, nil, nil, nil
	}
	return nil, store.Config{}, nil, nil, fmt.Errorf("bus: bench %s: store.kind %q is not embedded, minio or s3", b.File, b.Store.Kind)
}

// boardPower is what openPower builds for a board.
type boardPower struct {
	power   power.Power
	console string      // the file its console goes to, for the boards the bench starts
	link    netlab.Link // its Ethernet on the bench network, if the bench has one
	closer  func() error
}

// openPower builds the power of board i of b (on lab, the bench's
// network, if it has one) and what powers the payload off and closes what
// it opened. relays holds the real relay boards opened so far, by port.
func openPower(ctx context.Context, b *bench.Bench, i int, dir string, relays map[relay.Port]*relay.Board, lab *netlab.Lab) (boardPower, error) {
	bc := b.Boards[i]
	fail := func(err error) (boardPower, error) {
		return boardPower{}, fmt.Errorf("bus: board %s (%s): %w", bc.Name, bc.File, err)
	}
	off := func(p power.Power) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return p.Off(ctx)
	}
	if !bc.Power.StartsPayload() {
		var link netlab.Link
		if lab != nil {
			// The lab gives the NIC back when it closes.
			var err error
			if link, err = nicLink(ctx, lab, b, i); err != nil {
				return fail(err)
			}
		}
		p, err := standalonePower(bc, relays, 0, nil)
		if err != nil {
			return fail(err)
		}
		return boardPower{power: p, link: link, closer: func() error { return off(p) }}, nil
	}
	console, err := openConsole(dir)
	if err != nil {
		return fail(err)
	}
	if bc.Power.Kind == "qemu" {
		m, link, err := qemuPower(ctx, lab, b, i, dir, filepath.Join(dir, "root"), console)
		if err != nil {
			console.Close()
			return fail(err)
		}
		return boardPower{power: m, console: console.Name(), link: link,
			closer: func() error { return errors.Join(off(m), console.Close()) }}, nil
	}
	proc, err := payloadProcess(bc, dir, console)
	if err != nil {
		console.Close()
		return fail(err)
	}
	var link netlab.Link
	if lab != nil {
		if link, err = vethPower(ctx, lab, b, i, proc); err != nil {
			console.Close()
			return fail(err)
		}
	}
	if bc.Power.Kind == "process" {
		return boardPower{power: proc, console: console.Name(), link: link,
			closer: func() error { return errors.Join(off(proc), console.Close()) }}, nil
	}
	w, err := simulateRelay(bc, proc, dir)
	if err != nil {
		console.Close()
		return fail(fmt.Errorf("simulated %s relay: %w", bc.Power.Relay.Protocol, err))
	}
	// The payload goes off with its relay board, which a scenario may
	// have unplugged: switching the relay off could then only fail.
	return boardPower{power: w, console: console.Name(), link: link,
		closer: func() error { return errors.Join(w.sim.Close(), off(proc), console.Close()) }}, nil
}

// openConsole opens dir/console.log, where the console of a payload the
// bench starts goes, for appending.
func openConsole(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// payloadProcess builds the reference payload of a board the bench
// starts: this same executable re-run as a child, serving SSH on the
// board's address with its filesystem rooted under dir; its output goes
// to console.
func payloadProcess(bc *bench.Board, dir string, console *os.File) (*power.Process, error) {
	fail := func(err error) (*power.Process, error) {
		return nil, fmt.Errorf("bus: board %s (%s): %w", bc.Name, bc.File, err)
	}
	for _, addr := range []*string{&bc.Address, &bc.OORT.Address, &bc.PayloadInterface.Callback} {
		if strings.HasSuffix(*addr, ":0") {
			free, err := FreeLoopbackPort()
			if err != nil {
				return fail(fmt.Errorf("pick a port: %w", err))
			}
			*addr = free
		}
	}
	hostKey, err := filepath.Abs(bc.Power.HostKey)
	if err != nil {
		return fail(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fail(err)
	}
	rc, err := RemoteConfig(bc)
	if err != nil {
		return nil, err
	}
	pub := filepath.Join(dir, "bus_key.pub")
	if err := os.WriteFile(pub, ssh.MarshalAuthorizedKey(rc.Signer.PublicKey()), 0o644); err != nil {
		return fail(err)
	}
	// A binary that forgot payload.RunIfChild would, as the payload, run
	// its own main again (tests open benches): stop that at one level.
	if os.Getenv(childEnvName) == "1" {
		return fail(fmt.Errorf("this executable was started as the reference payload but did not become it: its main or TestMain must call payload.RunIfChild() first"))
	}
	self, err := os.Executable()
	if err != nil {
		return fail(fmt.Errorf("find the reference payload (this executable): %w", err))
	}
	args := []string{"--root", root, "--listen", bc.Address, "--host-key", hostKey,
		"--authorized-key", pub, "--user", bc.SSH.User}
	if bc.OORT.Address != "" {
		args = append(args, "--oort-listen", bc.OORT.Address)
	}
	if bc.RunsApp() {
		args = append(args, "--app") // it reads the files openPI writes into root
	}
	return &power.Process{
		Name:    bc.Name,
		Path:    self,
		Args:    args,
		Env:     append(os.Environ(), ChildEnv),
		Console: console,
	}, nil
}
