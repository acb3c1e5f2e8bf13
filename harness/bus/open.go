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
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/store"
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
	st, closeStore, err := openStore(ctx, b, filepath.Join(dir, "s3"))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, closeStore)
	if err := st.EnsureBucket(ctx, b.Store.Bucket); err != nil {
		return fail(fmt.Errorf("bus: bench %s: store.bucket %s: %w", b.File, b.Store.Bucket, err))
	}
	powers := map[string]power.Power{}
	consoles := map[string]string{}
	boards := make([]*bench.Board, len(b.Boards))
	for i, bc := range b.Boards {
		bc := *bc // the address may be resolved below; the bench stays as loaded
		boards[i] = &bc
		p, console, err := openPower(&bc, filepath.Join(dir, "boards", bc.Name))
		if err != nil {
			return fail(err)
		}
		powers[bc.Name] = p
		consoles[bc.Name] = console.Name()
		closers = append(closers, console.Close, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return p.Off(ctx)
		})
	}
	opened := *b
	opened.Boards = boards
	bus, err := New(&opened, st, filepath.Join(dir, "spool"), powers)
	if err != nil {
		return fail(err)
	}
	for name, console := range consoles {
		bus.Boards[name].Console = console
	}
	bus.closers = closers
	return bus, nil
}

// Close powers every board off and stops what Open started.
func (b *Bus) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.closers = nil
	return errors.Join(errs...)
}

func openStore(ctx context.Context, b *bench.Bench, dir string) (store.Store, func() error, error) {
	switch b.Store.Kind {
	case "embedded":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("bus: embedded store: %w", err)
		}
		e, err := store.StartEmbedded(ctx, dir, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("bus: embedded store: %w", err)
		}
		st, err := store.New(e.Config())
		if err != nil {
			e.Close()
			return nil, nil, err
		}
		return st, e.Close, nil
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
			return nil, nil, fmt.Errorf("bus: bench %s: store %s needs credentials in the environment: %s not set",
				b.File, b.Store.Endpoint, strings.Join(missing, " and "))
		}
		st, err := store.New(store.Config{Endpoint: b.Store.Endpoint, Secure: b.Store.Secure,
			Region: b.Store.Region, AccessKey: access, SecretKey: secret})
		if err != nil {
			return nil, nil, fmt.Errorf("bus: bench %s: %w", b.File, err)
		}
		return st, func() error { return nil }, nil
	}
	return nil, nil, fmt.Errorf("bus: bench %s: store.kind %q is not embedded or s3", b.File, b.Store.Kind)
}

// openPower builds a board's power. For kind process, the reference
// payload is this same executable re-run as a child, serving SSH on the
// board's address with its filesystem rooted under dir; its output goes to
// dir/console.log, returned for the caller to close.
func openPower(bc *bench.Board, dir string) (power.Power, *os.File, error) {
	fail := func(err error) (power.Power, *os.File, error) {
		return nil, nil, fmt.Errorf("bus: board %s (%s): %w", bc.Name, bc.File, err)
	}
	if bc.Power.Kind != "process" {
		return fail(fmt.Errorf("power.kind %q is not supported yet (want process)", bc.Power.Kind))
	}
	if strings.HasSuffix(bc.Address, ":0") {
		addr, err := FreeLoopbackPort()
		if err != nil {
			return fail(fmt.Errorf("pick a port: %w", err))
		}
		bc.Address = addr
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
		return nil, nil, err
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
	console, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	return &power.Process{
		Name: bc.Name,
		Path: self,
		Args: []string{"--root", root, "--listen", bc.Address, "--host-key", hostKey,
			"--authorized-key", pub, "--user", bc.SSH.User},
		Env:     append(os.Environ(), ChildEnv),
		Console: console,
	}, console, nil
}
