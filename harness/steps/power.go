package steps

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cucumber/godog"

	"github.com/satbench/hil/fixtures/relaysim"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/relay"
	"github.com/satbench/hil/harness/remote"
)

// CLIChildEnv set to 1 makes the executable (the hil binary, or a test
// binary that runs the features) run the hil command line with its
// arguments: the steps run "hil power ..." as separate processes, as a
// person or a second CI job would.
const CLIChildEnv = "HIL_CLI_CHILD"

func powerSteps(sc *godog.ScenarioContext) {
	sc.Given(`^board "([^"]*)" is powered through a simulated (\S+) relay on channel (\d+)$`, simulatedRelay)
	sc.Given(`^a second payload "([^"]*)" with hw_id (\d+), powered through a simulated (\S+) relay on channel (\d+)$`, secondPayload)
	sc.Given(`^a simulated (\S+) relay board(?:, answering after (\S+))?$`, standaloneRelay)
	sc.Given(`^board "([^"]*)" is on its relay (\d+)$`, onStandaloneRelay)
	sc.Given(`^board "([^"]*)" is configured as a (\S+) board$`, configuredAs)
	sc.Given(`^the simulated relay board is unplugged$`, standaloneUnplugged)
	sc.Given(`^nothing else is wrong$`, func() {})

	sc.When(`^I run "hil ([^"]*)"$`, runHil)
	sc.When(`^"hil ([^"]*)" and "hil ([^"]*)" run at the same time$`, runHilTogether)
	sc.When(`^the app switches hw_id (\d+) (on|off)$`, appSwitches)
	sc.When(`^the relay board of "([^"]*)" is unplugged$`, unplugged)

	sc.Then(`^it succeeds, printing "([^"]*)"$`, succeedsPrinting)
	sc.Then(`^it fails with exit status (\d+), saying "(.*)"$`, failsSaying)
	sc.Then(`^the relay board received exactly (.+)$`, relayReceived)
	sc.Then(`^both succeed, one waiting for the port while the other held it$`, bothSucceedInTurn)
	sc.Then(`^one of them fails with exit status (\d+), saying "(.*)" and naming the other's board$`, oneFailsNamingOther)
	sc.Then(`^every frame reached the relay board whole, (\d+) in all$`, framesWhole)
	sc.Then(`^the relay of "([^"]*)" received (.+) and later (.+)$`, wiredReceived)
	sc.Then(`^payload "([^"]*)" answers SSH within (\S+)$`, answersSSH)
	sc.Then(`^payload "([^"]*)" is off, and its relay is open$`, isOffRelayOpen)
}

// boardConfig returns the bench's config of board name, to change before
// the bus opens.
func (w *world) boardConfig(name string) (*bench.Board, error) {
	for i, bc := range w.bench.Boards {
		if bc.Name == name {
			c := *bc // the loaded bench may be shared; change a copy
			w.bench.Boards[i] = &c
			return &c, nil
		}
	}
	return nil, fmt.Errorf("bench %s has no board %q", w.bench.Name, name)
}

func simulatedRelay(ctx context.Context, board, protocol string, channel int) error {
	w := get(ctx)
	if err := w.mustNotBeOpen("a board's power"); err != nil {
		return err
	}
	bc, err := w.boardConfig(board)
	if err != nil {
		return err
	}
	return wireRelay(bc, protocol, channel)
}

// wireRelay powers bc, a reference payload, through a simulated relay.
func wireRelay(bc *bench.Board, protocol string, channel int) error {
	// The checks a board file gets; zero size and timeout are the
	// driver's and the simulator's defaults.
	if err := relay.CheckChannel(protocol, 0, channel); err != nil {
		return err
	}
	bc.Power.Kind = "relay"
	bc.Power.Relay = bench.Relay{Protocol: protocol, Channel: channel, Simulate: true}
	return nil
}

// secondPayload adds a board running the reference payload and its own
// app, switched by a simulated relay, which the window's app can switch
// with PayloadPowerControl.
func secondPayload(ctx context.Context, name string, hwID int, protocol string, channel int) error {
	w := get(ctx)
	if err := w.mustNotBeOpen("a second payload"); err != nil {
		return err
	}
	if len(w.bench.Boards) == 0 {
		return errors.New("the bench has no board to model the second payload on")
	}
	bc := *w.bench.Boards[0]
	bc.Name = name
	bc.Address = "127.0.0.1:0"
	bc.OORT = bench.OORT{}
	key := make([]byte, 10)
	rand.Read(key)
	bc.PayloadInterface = bench.BoardPayloadInterface{Key: hex.EncodeToString(key), AppID: 1, Callback: "127.0.0.1:0", HWID: hwID}
	if err := wireRelay(&bc, protocol, channel); err != nil {
		return err
	}
	w.bench.Boards = append(w.bench.Boards, &bc)
	return nil
}

// relayBench is a bench of boards on one standalone simulated relay
// board, for hil power.
type relayBench struct {
	sim    *relaysim.Sim
	boards []string          // "name:channel", in the order given
	as     map[string]string // board -> the protocol its file names, if not the board's
	file   string            // the bench file, once written
	mark   int               // bytes of sim.Received() already asserted on

	runs []*hilRun // the hil commands run, in order
}

type hilRun struct {
	args           string
	status         int
	stdout, stderr string
}

func standaloneRelay(ctx context.Context, protocol, latency string) error {
	w := get(ctx)
	// The board's port is a link that goes when it is unplugged, as
	// /dev/serial/by-path does; its pty number may be reused at once.
	cfg := relaysim.Config{Protocol: protocol, Link: filepath.Join(w.dir, "relay-"+protocol)}
	if latency != "" {
		d, err := time.ParseDuration(latency)
		if err != nil {
			return fmt.Errorf("answering after %q: %v (want e.g. 200ms)", latency, err)
		}
		cfg.Latency = d
	}
	sim, err := relaysim.Start(cfg)
	if err != nil {
		return err
	}
	w.cleanups = append(w.cleanups, sim.Close)
	w.relay = &relayBench{sim: sim}
	return nil
}

func onStandaloneRelay(ctx context.Context, board string, channel int) error {
	rb := get(ctx).relay
	if rb == nil {
		return errors.New(`no simulated relay board: start with "a simulated <protocol> relay board"`)
	}
	if rb.file != "" {
		return errors.New("the bench file is written already: give the boards before the first hil command")
	}
	rb.boards = append(rb.boards, fmt.Sprintf("%s:%d", board, channel))
	return nil
}

func configuredAs(ctx context.Context, board, protocol string) error {
	rb := get(ctx).relay
	if rb == nil {
		return errors.New("no simulated relay board")
	}
	if rb.as == nil {
		rb.as = map[string]string{}
	}
	rb.as[board] = protocol
	return nil
}

func standaloneUnplugged(ctx context.Context) error {
	rb := get(ctx).relay
	if rb == nil {
		return errors.New("no simulated relay board")
	}
	rb.sim.Unplug()
	return nil
}

// relayBenchFile writes a bench whose boards are on the standalone relay
// board, modelled on the scenario's bench's first board for the fields a
// bench requires (never dialled: hil power only switches).
func (w *world) relayBenchFile() (string, error) {
	rb := w.relay
	if rb == nil || len(rb.boards) == 0 {
		return "", errors.New(`no board on a simulated relay board: give "board "<name>" is on its relay <n>" first`)
	}
	if rb.file != "" {
		return rb.file, nil
	}
	model := w.bench.Boards[0]
	key, err := filepath.Abs(model.SSH.Key)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(w.dir, "relaybench")
	if err := os.MkdirAll(filepath.Join(dir, "boards"), 0o755); err != nil {
		return "", err
	}
	var names []string
	for i, b := range rb.boards {
		name, ch, _ := strings.Cut(b, ":")
		names = append(names, name)
		yaml := fmt.Sprintf(`name: %s
address: 192.0.2.%d:22
ssh:
  user: signaling
  key: %s
  host_key: %s
power:
  kind: relay
  off_time: 100ms
  relay:
    protocol: %s
    port: %s
    channels: %d
    channel: %s
`, name, 10+i, key, model.SSH.HostKey, cmp.Or(rb.as[name], rb.sim.Protocol()), rb.sim.Port(), rb.sim.Channels(), ch)
		if err := os.WriteFile(filepath.Join(dir, "boards", name+".yaml"), []byte(yaml), 0o644); err != nil {
			return "", err
		}
	}
	bench := fmt.Sprintf("name: relays\nsatellite: FM1\nstore: {kind: embedded, bucket: hil-downlink}\nboards_dir: boards\nboards: [%s]\n", strings.Join(names, ", "))
	file := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(file, []byte(bench), 0o644); err != nil {
		return "", err
	}
	rb.file = file
	return file, nil
}

// hil runs the hil command line in a process of its own.
func (w *world) hil(ctx context.Context, args string) (*hilRun, error) {
	file, err := w.relayBenchFile()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, append(strings.Fields(args), "--bench", file)...)
	cmd.Env = append(os.Environ(), CLIChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := &hilRun{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.status = ee.ExitCode()
	case err != nil:
		return nil, fmt.Errorf("hil %s: %w", args, err)
	}
	return r, nil
}

func runHil(ctx context.Context, args string) error {
	w := get(ctx)
	r, err := w.hil(ctx, args)
	if err != nil {
		return err
	}
	w.relay.runs = append(w.relay.runs, r)
	return nil
}

func runHilTogether(ctx context.Context, a, b string) error {
	w := get(ctx)
	if _, err := w.relayBenchFile(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	runs := make([]*hilRun, 2)
	errs := make([]error, 2)
	for i, args := range []string{a, b} {
		wg.Go(func() { runs[i], errs[i] = w.hil(ctx, args) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.relay.runs = append(w.relay.runs, runs...)
	return nil
}

func (w *world) lastRun() (*hilRun, error) {
	if w.relay == nil || len(w.relay.runs) == 0 {
		return nil, errors.New("no hil command was run")
	}
	return w.relay.runs[len(w.relay.runs)-1], nil
}

func succeedsPrinting(ctx context.Context, want string) error {
	r, err := get(ctx).lastRun()
	if err != nil {
		return err
	}
	if r.status != 0 || !strings.Contains(r.stdout, want) {
		return fmt.Errorf("hil %s: exit status %d, printed %q, said %q; want status 0, printing %q", r.args, r.status, r.stdout, r.stderr, want)
	}
	return nil
}

func failsSaying(ctx context.Context, status int, want string) error {
	r, err := get(ctx).lastRun()
	if err != nil {
		return err
	}
	if r.status != status || !strings.Contains(r.stderr, want) {
		return fmt.Errorf("hil %s: exit status %d, said %q; want status %d, saying %q", r.args, r.status, r.stderr, status, want)
	}
	return nil
}

// parseBytes reads bytes written in a step: a quoted Go string
// ("\rrelay on 3\r") or hex bytes ("A0 01 01 A2").
func parseBytes(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, `"`) {
		u, err := strconv.Unquote(s)
		if err != nil {
			return nil, fmt.Errorf("bytes %s: %v (want a quoted string with Go escapes, e.g. \"relay on 3\\r\")", s, err)
		}
		return []byte(u), nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		return nil, fmt.Errorf("bytes %s: %v (want hex bytes, e.g. A0 01 01 A2, or a quoted string)", s, err)
	}
	return b, nil
}

// relayReceived checks the bytes the standalone relay board received
// since the last such check: a whole exchange, byte for byte.
func relayReceived(ctx context.Context, spec string) error {
	rb := get(ctx).relay
	if rb == nil {
		return errors.New("no simulated relay board")
	}
	want, err := parseBytes(spec)
	if err != nil {
		return err
	}
	all := rb.sim.Received()
	got := all[rb.mark:]
	rb.mark = len(all)
	if !bytes.Equal(got, want) {
		return fmt.Errorf("the %s board received % X (%q), want % X (%q)", rb.sim.Protocol(), got, got, want, want)
	}
	return nil
}

func bothSucceedInTurn(ctx context.Context) error {
	w := get(ctx)
	if w.relay == nil || len(w.relay.runs) < 2 {
		return errors.New("two hil commands were not run")
	}
	runs := w.relay.runs[len(w.relay.runs)-2:]
	waited := 0
	for _, r := range runs {
		if r.status != 0 {
			return fmt.Errorf("hil %s: exit status %d: %s", r.args, r.status, r.stderr)
		}
		if strings.Contains(r.stderr, "in use by") {
			waited++
		}
	}
	if waited == 0 {
		return fmt.Errorf("neither run waited for the port; they said %q and %q", runs[0].stderr, runs[1].stderr)
	}
	return nil
}

func oneFailsNamingOther(ctx context.Context, status int, want string) error {
	w := get(ctx)
	if w.relay == nil || len(w.relay.runs) < 2 {
		return errors.New("two hil commands were not run")
	}
	runs := w.relay.runs[len(w.relay.runs)-2:]
	for i, r := range runs {
		other := runs[1-i]
		if r.status != status || other.status != 0 {
			continue
		}
		board := strings.Fields(other.args)[2] // power OP BOARD
		if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "board "+board+" ") {
			return fmt.Errorf("hil %s said %q; want %q, naming board %s, which held the port", r.args, r.stderr, want, board)
		}
		return nil
	}
	return fmt.Errorf("hil %s exited %d (%q) and hil %s exited %d (%q); want one to fail with %d and the other to succeed",
		runs[0].args, runs[0].status, runs[0].stderr, runs[1].args, runs[1].status, runs[1].stderr, status)
}

func framesWhole(ctx context.Context, n int) error {
	rb := get(ctx).relay
	if rb == nil {
		return errors.New("no simulated relay board")
	}
	cmds := rb.sim.Commands()
	var bad []string
	for _, c := range cmds {
		if c.Malformed || c.TooFast {
			bad = append(bad, fmt.Sprintf("% X (malformed %v, too fast %v)", c.Bytes, c.Malformed, c.TooFast))
		}
	}
	if len(bad) > 0 || len(cmds) != n {
		return fmt.Errorf("the board parsed %d commands, want %d, all whole; not whole: %v", len(cmds), n, bad)
	}
	return nil
}

// boardSim returns the simulated relay board of a bus board.
func (w *world) boardSim(ctx context.Context, board string) (*relaysim.Sim, *bus.Board, error) {
	b, err := w.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	bd := b.Boards[board]
	if bd == nil {
		return nil, nil, fmt.Errorf("bench %s has no board %q", w.bench.Name, board)
	}
	sim := bd.Sim()
	if sim == nil {
		return nil, nil, fmt.Errorf("board %s is not powered through a simulated relay (power kind %s)", board, bd.Config.Power.Kind)
	}
	return sim, bd, nil
}

func unplugged(ctx context.Context, board string) error {
	sim, _, err := get(ctx).boardSim(ctx, board)
	if err != nil {
		return err
	}
	sim.Unplug()
	return nil
}

// wiredReceived checks that a board's relay received the frame first,
// and the frame then after it.
func wiredReceived(ctx context.Context, board, first, then string) error {
	sim, _, err := get(ctx).boardSim(ctx, board)
	if err != nil {
		return err
	}
	a, err := parseBytes(first)
	if err != nil {
		return err
	}
	b, err := parseBytes(then)
	if err != nil {
		return err
	}
	got := sim.Received()
	i := bytes.Index(got, a)
	if i < 0 || bytes.Index(got[i+len(a):], b) < 0 {
		return fmt.Errorf("the %s relay of %s received % X; want % X and, later, % X", sim.Protocol(), board, got, a, b)
	}
	return nil
}

func appSwitches(ctx context.Context, hwID int, op string) error {
	w := get(ctx)
	if _, err := w.registered(ctx, 0); err != nil {
		return err
	}
	since := len(w.bus.Log.Events())
	params := fmt.Sprintf("%d %d", hwID, map[string]int{"off": 0, "on": 1}[op])
	if err := startsSequence(ctx, "power", params, "30s"); err != nil {
		return err
	}
	e, err := w.waitPI(ctx, since, "answer to PayloadPowerControl", func(e bus.Event) bool {
		return e.Name == "out PA_ProcessResponsePayloadPowerControl"
	})
	if err != nil {
		return err
	}
	if !strings.Contains(e.Detail, "req_status=0") {
		return fmt.Errorf("PayloadPowerControl hw_id %d %s answered %s, want req_status=0", hwID, op, e.Detail)
	}
	return waitSequenceDone(ctx, since, "power", "before")
}

func answersSSH(ctx context.Context, board, within string) error {
	w := get(ctx)
	d, err := time.ParseDuration(within)
	if err != nil {
		return err
	}
	b, err := w.open(ctx)
	if err != nil {
		return err
	}
	bd := b.Boards[board]
	if bd == nil {
		return fmt.Errorf("bench %s has no board %q", w.bench.Name, board)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c, err := remote.Wait(wctx, bd.Remote)
	if err != nil {
		return fmt.Errorf("payload %s did not answer SSH at %s within %v: %w", board, bd.Remote.Address, d, err)
	}
	return c.Close()
}

func isOffRelayOpen(ctx context.Context, board string) error {
	sim, bd, err := get(ctx).boardSim(ctx, board)
	if err != nil {
		return err
	}
	st, err := bd.Power.State(ctx)
	if err != nil {
		return err
	}
	ch := bd.Config.Power.Relay.Channel
	if st != power.Off || sim.Relay(ch) {
		return fmt.Errorf("payload %s power reads %s and its relay %d is energised %v; want off and open", board, st, ch, sim.Relay(ch))
	}
	return nil
}
