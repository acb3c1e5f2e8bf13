package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/signal"
)

// stepTimeout bounds any single wait in a step; a window that should have
// ended long before is reported, not waited on forever.
const stepTimeout = 2 * time.Minute

func signalingSteps(sc *godog.ScenarioContext) {
	sc.Given(`^a window (\S+) for user "([^"]*)" on board "([^"]*)" lasting (\S+)$`, aWindow)
	sc.Given(`^the window's user command is "([^"]*)"$`, command("user_command"))
	sc.Given(`^the window lasts (\S+)$`, windowLasts)
	sc.Given(`^the window's configure command is "([^"]*)"$`, command("configure_command"))
	sc.Given(`^the window's tasking parameters are:$`, taskingParameters)
	sc.Given(`^the window's (id|user) is "([^"]*)"$`, windowField)
	sc.Given(`^the file "([^"]*)" containing "([^"]*)" is uplinked for the window$`, uplinked)
	sc.Given(`^the payload serves a host key other than the one the board pins$`, wrongHostKey)

	sc.When(`^the window runs to the end$`, runsToEnd)
	sc.When(`^the window reaches "([^"]*)"$`, reaches)

	sc.Then(`^the window is delivered$`, isDelivered)
	sc.Then(`^the window is aborted because "([^"]*)"$`, isAborted)
	sc.Then(`^"([^"]*)" lands in the bucket under the outbox layout with the bytes of mkfile (\S+) seed (\d+)$`, landsAsMkfile)
	sc.Then(`^the payload file "([^"]*)" is a version 1 window config with the window's tasking parameters$`, windowConfigOnPayload)
	sc.Then(`^the payload file "([^"]*)" contains "([^"]*)"$`, payloadFileContains)
	sc.Then(`^the bus placed "([^"]*)" before it signalled configure$`, placedBeforeConfigure)
	sc.Then(`^payload_exec is still running the window on the payload$`, stillRunning)
	sc.Then(`^no start signal was sent$`, noStartSignal)
	sc.Then(`^nothing was sent to the payload$`, nothingSent)
	sc.Then(`^nothing was placed on the payload$`, nothingPlaced)
	sc.Then(`^the payload is powered off$`, poweredOff)
}

func aWindow(ctx context.Context, id, user, board, dur string) error {
	w := get(ctx)
	d, err := time.ParseDuration(dur)
	if err != nil {
		return fmt.Errorf("window duration %q: %v (want e.g. 2s)", dur, err)
	}
	w.window = bus.Window{ID: id, User: user, Board: board, Duration: d, Tasking: map[string]any{}}
	return nil
}

func windowLasts(ctx context.Context, dur string) error {
	d, err := time.ParseDuration(dur)
	if err != nil {
		return fmt.Errorf("window duration %q: %v (want e.g. 2s)", dur, err)
	}
	get(ctx).window.Duration = d
	return nil
}

// command sets a {executable, executable_arguments} tasking parameter from
// a command line split on spaces.
func command(param string) func(context.Context, string) error {
	return func(ctx context.Context, line string) error {
		argv := strings.Fields(line)
		if len(argv) == 0 {
			return fmt.Errorf("%s: empty command", param)
		}
		get(ctx).window.Tasking[param] = map[string]any{
			"executable":           argv[0],
			"executable_arguments": argv[1:],
		}
		return nil
	}
}

func taskingParameters(ctx context.Context, doc *godog.DocString) error {
	var tp map[string]any
	if err := json.Unmarshal([]byte(doc.Content), &tp); err != nil {
		return fmt.Errorf("tasking parameters are not a JSON object: %v", err)
	}
	w := get(ctx)
	for k, v := range tp {
		w.window.Tasking[k] = v
	}
	return nil
}

func windowField(ctx context.Context, field, value string) error {
	w := get(ctx)
	if field == "id" {
		w.window.ID = value
	} else {
		w.window.User = value
	}
	return nil
}

func uplinked(ctx context.Context, name, content string) error {
	w := get(ctx)
	w.window.Uplinks = append(w.window.Uplinks, signal.Uplink{Name: name, Data: []byte(content)})
	return nil
}

func wrongHostKey(ctx context.Context) error {
	w := get(ctx)
	bc, err := w.board()
	if err != nil {
		return err
	}
	key, err := w.newHostKey()
	if err != nil {
		return err
	}
	bc.Power.HostKey = key
	return nil
}

func runsToEnd(ctx context.Context) error {
	w := get(ctx)
	if err := w.start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	_, err := w.wait(ctx)
	return err
}

func reaches(ctx context.Context, state string) error {
	w := get(ctx)
	if err := w.start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	e, err := w.bus.Log.Wait(ctx, func(e bus.Event) bool {
		return e.Window == w.window.ID && e.Kind == bus.KindState &&
			(e.State == bus.State(state) || e.State == bus.Aborted || e.State == bus.Delivered)
	})
	if err != nil {
		return fmt.Errorf("window %s did not reach %q: %w", w.window.ID, state, err)
	}
	if e.State != bus.State(state) {
		return fmt.Errorf("window %s ended %s (%s) before reaching %q", w.window.ID, e.State, e.Detail, state)
	}
	return nil
}

func result(ctx context.Context) (*bus.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	return get(ctx).wait(ctx)
}

func isDelivered(ctx context.Context) error {
	r, err := result(ctx)
	if err != nil {
		return err
	}
	if r.State != bus.Delivered {
		return fmt.Errorf("window %s ended %s: %s", r.Window, r.State, r.Reason)
	}
	return nil
}

func isAborted(ctx context.Context, because string) error {
	r, err := result(ctx)
	if err != nil {
		return err
	}
	if r.State != bus.Aborted {
		return fmt.Errorf("window %s ended %s, want aborted because %q", r.Window, r.State, because)
	}
	if !strings.Contains(r.Reason, because) {
		return fmt.Errorf("window %s aborted because %q, want a reason containing %q", r.Window, r.Reason, because)
	}
	return nil
}

func landsAsMkfile(ctx context.Context, name, size, seed string) error {
	w := get(ctx)
	if _, err := result(ctx); err != nil {
		return err
	}
	n, err := mkfile.ParseSize(size)
	if err != nil {
		return err
	}
	sd, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		return fmt.Errorf("seed %q: want a number", seed)
	}
	h := sha256.New()
	io.Copy(h, mkfile.Content(n, sd))
	s := &sent{name: name, size: n, sha256: hex.EncodeToString(h.Sum(nil)), source: downlink.SourceOutbox}
	w.sent = append(w.sent, s)
	// The window has ended: the delivery is in the log, or never was.
	es := events(ctx, func(e bus.Event) bool {
		return e.Kind == bus.KindDownlink && e.Name == downlink.EventDelivered && e.File == name && e.Window == w.window.ID
	})
	if len(es) == 0 {
		return fmt.Errorf("%q was not delivered in window %s", name, w.window.ID)
	}
	return w.checkObject(ctx, s, es[0], w.bench.Store.Bucket, w.bench.Store.Prefix)
}

// readPayload reads a file on the running payload over SSH.
func readPayload(ctx context.Context, name string) ([]byte, error) {
	c, err := get(ctx).dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ReadFile(ctx, name)
}

func windowConfigOnPayload(ctx context.Context, name string) error {
	b, err := readPayload(ctx, name)
	if err != nil {
		return err
	}
	var cfg struct {
		Version          *int `json:"version"`
		SignalParameters struct {
			TaskingParameters map[string]any `json:"tasking_parameters"`
		} `json:"signal_parameters"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s is not JSON: %v\n%s", name, err, b)
	}
	if cfg.Version == nil || *cfg.Version != 1 {
		return fmt.Errorf("%s: version is not 1:\n%s", name, b)
	}
	// Compare as JSON values, the way the payload reads them.
	var want map[string]any
	wb, _ := json.Marshal(get(ctx).window.Tasking)
	json.Unmarshal(wb, &want)
	if !reflect.DeepEqual(cfg.SignalParameters.TaskingParameters, want) {
		return fmt.Errorf("%s: tasking_parameters = %v, want %v", name, cfg.SignalParameters.TaskingParameters, want)
	}
	return nil
}

func payloadFileContains(ctx context.Context, name, content string) error {
	b, err := readPayload(ctx, name)
	if err != nil {
		return err
	}
	if string(b) != content {
		return fmt.Errorf("%s holds %q, want %q", name, b, content)
	}
	return nil
}

func placedBeforeConfigure(ctx context.Context, name string) error {
	w := get(ctx)
	placed, configure := -1, -1
	for _, e := range w.bus.Log.Events() {
		if e.Kind == bus.KindUplink && e.Detail == name && placed < 0 {
			placed = e.Seq
		}
		if e.Kind == bus.KindState && e.State == bus.Configuring && configure < 0 {
			configure = e.Seq
		}
	}
	switch {
	case placed < 0:
		return fmt.Errorf("the bus never placed %s", name)
	case configure < 0:
		return fmt.Errorf("the bus never signalled configure")
	case placed > configure:
		return fmt.Errorf("%s was placed after configure was signalled", name)
	}
	return nil
}

func stillRunning(ctx context.Context) error {
	w := get(ctx)
	b, err := readPayload(ctx, payload.ExecLog)
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("window=%s ", w.window.ID)
	var begun, ended bool
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, tag) {
			begun = begun || strings.HasSuffix(line, " start begin")
			ended = ended || strings.HasSuffix(line, " start end")
		}
	}
	if !begun || ended {
		return fmt.Errorf("want payload_exec started and still running for window %s; %s says:\n%s", w.window.ID, payload.ExecLog, b)
	}
	return nil
}

func events(ctx context.Context, match func(bus.Event) bool) []bus.Event {
	w := get(ctx)
	if w.bus == nil {
		return nil
	}
	var out []bus.Event
	for _, e := range w.bus.Log.Events() {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func noStartSignal(ctx context.Context) error {
	if _, err := result(ctx); err != nil {
		return err
	}
	if es := events(ctx, func(e bus.Event) bool { return e.Kind == bus.KindSignal && e.Name == "started" }); len(es) > 0 {
		return fmt.Errorf("a start signal was sent: %v", es[0])
	}
	return nil
}

func nothingSent(ctx context.Context) error {
	if _, err := result(ctx); err != nil {
		return err
	}
	if es := events(ctx, func(e bus.Event) bool { return e.Kind != bus.KindState }); len(es) > 0 {
		return fmt.Errorf("the bus acted on the payload: %v", es[0])
	}
	return nil
}

func nothingPlaced(ctx context.Context) error {
	if _, err := result(ctx); err != nil {
		return err
	}
	if es := events(ctx, func(e bus.Event) bool { return e.Kind == bus.KindSignal || e.Kind == bus.KindUplink }); len(es) > 0 {
		return fmt.Errorf("the bus placed or signalled: %v", es[0])
	}
	return nil
}

func poweredOff(ctx context.Context) error {
	w := get(ctx)
	if _, err := result(ctx); err != nil {
		return err
	}
	s, err := w.bus.Boards[w.window.Board].Power.State(ctx)
	if err != nil {
		return err
	}
	if s != power.Off {
		return fmt.Errorf("board %s power is %s", w.window.Board, s)
	}
	return nil
}
