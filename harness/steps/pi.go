package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/pi"
	"github.com/satbench/hil/harness/power"
)

func piSteps(sc *godog.ScenarioContext) {
	sc.Given(`^health checks are sent every (\S+) with a (\S+) deadline$`, healthTiming)
	sc.Given(`^the bench serves the Payload Interface over TLS$`, servesTLS)
	sc.Given(`^the app asks to be rebooted when unhealthy$`, appEnv("HEALTH_CHECK_FAIL_ACTION", "1"))
	sc.Given(`^the app dials the Payload Controller in plaintext$`, appEnv("SSL_FLAG", "0"))
	sc.Given(`^the app's cookie is "([^"]*)"$`, appCookie)
	sc.Given(`^the payload has a file "([^"]*)" and a link "([^"]*)" to "([^"]*)"$`, fileAndLink)

	sc.When(`^the bus starts sequence "([^"]*)"(?: with params "([^"]*)")? on the app(?:, due in (\S+))?$`, startsSequence)
	sc.When(`^the app asks for its location (\d+) times, (\S+) apart$`, asksLocation)

	sc.Then(`^the app registers within (\S+) of power-on$`, registersWithin)
	sc.Then(`^the app registers again$`, registersAgain)
	sc.Then(`^the app has not registered$`, notRegistered)
	sc.Then(`^(\d+) health checks in a row reach the app (\S+) apart, each answered$`, healthChecksApart)
	sc.Then(`^a health check reaches the app and is answered$`, func(ctx context.Context) error { return healthChecksApart(ctx, 1, "") })
	sc.Then(`^the app is power-cycled after (\d+) failed health checks in a row$`, powerCycled)
	sc.Then(`^the app is reported unhealthy after (\d+) failed health checks in a row, and only reported$`, onlyReported)
	sc.Then(`^the payload was not power-cycled$`, notPowerCycled)
	sc.Then(`^sequence "([^"]*)" is reported done (before|after) its deadline$`, sequenceDone)
	sc.Then(`^sequence "([^"]*)" is reported overrunning its deadline$`, sequenceOverran)
	sc.Then(`^starting sequence "([^"]*)" on the app fails with "([^"]*)"$`, sequenceFails)
	sc.Then(`^the app answered the shutdown within the grace time$`, shutdownAnswered)
	sc.Then(`^the app did not answer the shutdown, and the payload was powered off after the grace time$`, shutdownIgnored)
	sc.Then(`^the staged file "([^"]*)" lands in the bucket under the outbox layout with the bytes of mkfile (\S+) seed (\d+) within (\S+)$`, stagedLands)
	sc.Then(`^"([^"]*)" is deleted from the payload within (\S+)$`, stagedDeleted)
	sc.Then(`^the controller refuses to stage "([^"]*)" because "([^"]*)"$`, stageRefused)
	sc.Then(`^the payload served no file for staging$`, noFileServed)
	sc.Then(`^every location is within the bench orbit's bounds$`, locationsInBounds)
	sc.Then(`^the locations change over time$`, locationsChange)
	sc.Then(`^the app received (\d+) GNSS ephemeris messages about (\S+) apart, and none after the stop$`, gnssReceived)
	sc.Then(`^the controller answered PayloadPowerControl with req_status (\d+)$`, powerControlAnswered)
	sc.Then(`^the payload is still powered on$`, stillOn)
	sc.Then(`^the controller refuses a connection because "([^"]*)"$`, refused(""))
	sc.Then(`^the controller refuses the app's calls because "([^"]*)"$`, refused("PC_register"))
}

func healthTiming(ctx context.Context, interval, deadline string) error {
	w := get(ctx)
	if err := w.mustNotBeOpen("the health-check timing"); err != nil {
		return err
	}
	i, err1 := time.ParseDuration(interval)
	d, err2 := time.ParseDuration(deadline)
	if err := firstErr(err1, err2); err != nil {
		return err
	}
	w.bench.PayloadInterface.HealthCheck.Interval = bench.Duration(i)
	w.bench.PayloadInterface.CallTimeout = bench.Duration(d)
	return nil
}

func servesTLS(ctx context.Context) error {
	w := get(ctx)
	if err := w.mustNotBeOpen("TLS"); err != nil {
		return err
	}
	w.bench.PayloadInterface.TLS = true
	return nil
}

// appFile returns the host path of one of the app's files on the window's
// payload, opening the bus, which writes them. A QEMU payload finds them
// laid over its filesystem at its next boot.
func (w *world) appFile(ctx context.Context, name string) (string, error) {
	if _, err := w.open(ctx); err != nil {
		return "", err
	}
	bc, err := w.board()
	if err != nil {
		return "", err
	}
	if !bc.Power.StartsPayload() {
		return "", fmt.Errorf("board %s is not started by the bench (power kind %s): the bench cannot change its app's files", bc.Name, bc.Power.Kind)
	}
	root := filepath.Join(w.dir, "boards", bc.Name, "root")
	return filepath.Join(root, filepath.FromSlash(name)), nil
}

// appEnv sets key=value in the app's sdk_env.conf, as a payload team
// would configure its app on the payload's disk.
func appEnv(key, value string) func(context.Context) error {
	return func(ctx context.Context) error {
		name, err := get(ctx).appFile(ctx, bus.SDKEnvFile)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			if !strings.HasPrefix(l, key+"=") {
				lines = append(lines, l)
			}
		}
		lines = append(lines, key+"="+value)
		return os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	}
}

func appCookie(ctx context.Context, cookie string) error {
	name, err := get(ctx).appFile(ctx, bus.AppConfigFile)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(map[string]string{"cookie": cookie})
	return os.WriteFile(name, data, 0o600)
}

func fileAndLink(ctx context.Context, file, link, target string) error {
	root, err := get(ctx).payloadRoot()
	if err != nil {
		return err
	}
	f := filepath.Join(root, filepath.FromSlash(file))
	l := filepath.Join(root, filepath.FromSlash(link))
	for _, dir := range []string{filepath.Dir(f), filepath.Dir(l)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(f, []byte("not for downlink\n"), 0o600); err != nil {
		return err
	}
	// The target as the payload sees it: its own absolute path.
	return os.Symlink(target, l)
}

// registered waits for the window's app to register (after the event
// numbered since, if since > 0) and returns the registration event.
func (w *world) registered(ctx context.Context, since int) (bus.Event, error) {
	if err := w.start(ctx); err != nil {
		return bus.Event{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	e, err := w.bus.Log.Wait(ctx, func(e bus.Event) bool {
		return e.Seq > since && e.Kind == bus.KindPI && e.Name == pi.EventRegistered && e.Board == w.window.Board
	})
	if err != nil {
		return e, fmt.Errorf("the app on board %s did not register: %w", w.window.Board, err)
	}
	return e, nil
}

func startsSequence(ctx context.Context, id, params, due string) error {
	w := get(ctx)
	if _, err := w.registered(ctx, 0); err != nil {
		return err
	}
	d := 30 * time.Second
	if due != "" {
		var err error
		if d, err = time.ParseDuration(due); err != nil {
			return fmt.Errorf("due in %q: %v (want e.g. 10s)", due, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	return w.bus.PI.StartSequence(ctx, w.window.Board, id, params, time.Now().Add(d))
}

func asksLocation(ctx context.Context, n int, apart string) error {
	gap, err := time.ParseDuration(apart)
	if err != nil {
		return err
	}
	for i := range n {
		if i > 0 {
			// The pace of the scenario's requests, not a wait for an event.
			t := time.NewTimer(gap)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		since := len(get(ctx).bus.Log.Events()) - 1 // the last event so far
		if err := startsSequence(ctx, "location", "", "10s"); err != nil {
			return err
		}
		if err := waitSequenceDone(ctx, since, "location", "before"); err != nil {
			return err
		}
	}
	return nil
}

// piEvents returns the window's board's Payload Interface events so far
// that match.
func piEvents(ctx context.Context, match func(bus.Event) bool) []bus.Event {
	w := get(ctx)
	return events(ctx, func(e bus.Event) bool { return e.Kind == bus.KindPI && e.Board == w.window.Board && match(e) })
}

// waitPI waits for the board's next Payload Interface event that matches,
// after the event numbered since.
func (w *world) waitPI(ctx context.Context, since int, what string, match func(bus.Event) bool) (bus.Event, error) {
	if err := w.start(ctx); err != nil {
		return bus.Event{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	e, err := w.bus.Log.Wait(ctx, func(e bus.Event) bool {
		return e.Seq > since && e.Kind == bus.KindPI && e.Board == w.window.Board && match(e)
	})
	if err != nil {
		return e, fmt.Errorf("no %s: %w", what, err)
	}
	return e, nil
}

func registersWithin(ctx context.Context, within string) error {
	w := get(ctx)
	d, err := time.ParseDuration(within)
	if err != nil {
		return err
	}
	reg, err := w.registered(ctx, 0)
	if err != nil {
		return err
	}
	var on *bus.Event
	for _, e := range w.bus.Log.Events() {
		if e.Seq < reg.Seq && e.Kind == bus.KindPower && e.Name == "on" && e.Board == w.window.Board {
			on = &e
		}
	}
	if on == nil {
		return fmt.Errorf("the app registered (%s) before the payload was powered on", reg.Detail)
	}
	if took := reg.Time.Sub(on.Time); took > d {
		return fmt.Errorf("the app registered %v after power-on, want within %v", took.Round(time.Millisecond), d)
	}
	return nil
}

func registersAgain(ctx context.Context) error {
	w := get(ctx)
	cycled := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventPowerCycled })
	if len(cycled) == 0 {
		return fmt.Errorf("the payload was not power-cycled, so there is nothing to register again after")
	}
	_, err := w.registered(ctx, cycled[0].Seq)
	return err
}

func notRegistered(ctx context.Context) error {
	if es := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventRegistered }); len(es) > 0 {
		return fmt.Errorf("the app registered: %s", es[0].Detail)
	}
	return nil
}

// healthChecksApart waits for n health checks answered in a row and, if
// apart is given, checks the controller sent them that far apart (to
// within a tenth of the interval, early, and a second, late).
func healthChecksApart(ctx context.Context, n int, apart string) error {
	w := get(ctx)
	var gap time.Duration
	if apart != "" {
		var err error
		if gap, err = time.ParseDuration(apart); err != nil {
			return err
		}
	}
	since := 0
	var prev time.Time
	for i := range n {
		e, err := w.waitPI(ctx, since, fmt.Sprintf("health check %d of %d", i+1, n), func(e bus.Event) bool {
			return e.Name == pi.EventOut+" PA_ProcessHealthCheck" || e.Name == pi.EventHealthFailed
		})
		if err != nil {
			return err
		}
		if e.Name == pi.EventHealthFailed || !strings.Contains(e.Detail, "code=0") {
			return fmt.Errorf("health check %d of %d was not answered: %s", i+1, n, e.Detail)
		}
		if i > 0 && gap > 0 {
			if got := e.Time.Sub(prev); got < gap-gap/10 || got > gap+time.Second {
				return fmt.Errorf("health checks %d and %d came %v apart, want %v", i, i+1, got.Round(time.Millisecond), gap)
			}
		}
		since, prev = e.Seq, e.Time
	}
	return nil
}

// failedInARow checks that the n health-check failures before e were
// counted 1 to n.
func failedInARow(ctx context.Context, before bus.Event, n int) error {
	fails := piEvents(ctx, func(e bus.Event) bool { return e.Seq < before.Seq && e.Name == pi.EventHealthFailed })
	if len(fails) < n {
		return fmt.Errorf("%s after %d failed health checks, want %d", before.Name, len(fails), n)
	}
	for i, e := range fails[len(fails)-n:] {
		if want := fmt.Sprintf("%d of %d in a row", i+1, n); !strings.Contains(e.Detail, want) {
			return fmt.Errorf("failed health check %d: %q, want %q", i+1, e.Detail, want)
		}
	}
	return nil
}

func powerCycled(ctx context.Context, n int) error {
	w := get(ctx)
	e, err := w.waitPI(ctx, 0, "power cycle", func(e bus.Event) bool { return e.Name == pi.EventPowerCycled })
	if err != nil {
		return err
	}
	if e.Detail != "" {
		return fmt.Errorf("the power cycle failed: %s", e.Detail)
	}
	un := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventUnhealthy })
	if len(un) == 0 || !strings.Contains(un[0].Detail, "power-cycling") {
		return fmt.Errorf("no unhealthy event announcing the power cycle: %v", un)
	}
	return failedInARow(ctx, un[0], n)
}

func onlyReported(ctx context.Context, n int) error {
	w := get(ctx)
	e, err := w.waitPI(ctx, 0, "unhealthy report", func(e bus.Event) bool { return e.Name == pi.EventUnhealthy })
	if err != nil {
		return err
	}
	if !strings.Contains(e.Detail, "logged only") {
		return fmt.Errorf("unhealthy: %q, want it logged only", e.Detail)
	}
	return failedInARow(ctx, e, n)
}

func notPowerCycled(ctx context.Context) error {
	w := get(ctx)
	if es := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventPowerCycled }); len(es) > 0 {
		return fmt.Errorf("the payload was power-cycled: %s", es[0])
	}
	ons := events(ctx, func(e bus.Event) bool { return e.Kind == bus.KindPower && e.Board == w.window.Board })
	if len(ons) != 1 || ons[0].Name != "on" {
		return fmt.Errorf("power events %v, want only the window's power-on", ons)
	}
	return stillOn(ctx)
}

func stillOn(ctx context.Context) error {
	w := get(ctx)
	s, err := w.bus.Boards[w.window.Board].Power.State(ctx)
	if err != nil {
		return err
	}
	if s != power.On {
		return fmt.Errorf("board %s power is %s, want on", w.window.Board, s)
	}
	return nil
}

func sequenceDone(ctx context.Context, id, when string) error {
	return waitSequenceDone(ctx, 0, id, when)
}

// waitSequenceDone waits for the report that sequence id is done, after
// the event numbered since, and checks it came when it should.
func waitSequenceDone(ctx context.Context, since int, id, when string) error {
	w := get(ctx)
	e, err := w.waitPI(ctx, since, "done report of sequence "+id, func(e bus.Event) bool {
		return e.Name == pi.EventSequenceDone && strings.HasPrefix(e.Detail, "sequence "+id+" done")
	})
	if err != nil {
		return err
	}
	if !strings.Contains(e.Detail, when+" its deadline") {
		return fmt.Errorf("%s, want done %s its deadline", e.Detail, when)
	}
	return nil
}

func sequenceOverran(ctx context.Context, id string) error {
	w := get(ctx)
	_, err := w.waitPI(ctx, 0, "overrun report of sequence "+id, func(e bus.Event) bool {
		return e.Name == pi.EventOverran && strings.HasPrefix(e.Detail, "sequence "+id+" ")
	})
	return err
}

func sequenceFails(ctx context.Context, id, want string) error {
	err := startsSequence(ctx, id, "", "")
	if err == nil {
		return fmt.Errorf("sequence %s started, want it refused with %q", id, want)
	}
	if !strings.Contains(err.Error(), want) {
		return fmt.Errorf("sequence %s refused with %q, want %q", id, err, want)
	}
	return nil
}

func shutdownAnswered(ctx context.Context) error {
	if _, err := result(ctx); err != nil {
		return err
	}
	if es := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventShutdown }); len(es) == 0 {
		return fmt.Errorf("no shutdown answer from the app was recorded")
	}
	return nil
}

func shutdownIgnored(ctx context.Context) error {
	w := get(ctx)
	if _, err := result(ctx); err != nil {
		return err
	}
	var asked, unanswered, off *bus.Event
	for _, e := range w.bus.Log.Events() {
		switch {
		case e.Kind == bus.KindPI && e.Name == pi.EventOut+" PA_ShutdownApp" && e.Board == w.window.Board:
			asked = &e
		case e.Kind == bus.KindError && e.Name == "app shutdown unanswered" && e.Window == w.window.ID:
			unanswered = &e
		case e.Kind == bus.KindPower && e.Name == "off" && e.Window == w.window.ID && unanswered != nil:
			off = &e
		}
	}
	switch {
	case asked == nil:
		return fmt.Errorf("the bus never asked the app to shut down")
	case unanswered == nil:
		return fmt.Errorf("no report that the app left the shutdown unanswered")
	case off == nil:
		return fmt.Errorf("the payload was not powered off after the unanswered shutdown")
	}
	if grace := w.bench.Timing.ShutdownGrace.D(); off.Time.Sub(asked.Time) < grace {
		return fmt.Errorf("powered off %v after asking the app to shut down, before the grace time %v", off.Time.Sub(asked.Time), grace)
	}
	if es := events(ctx, func(e bus.Event) bool {
		return e.Kind == bus.KindSignal && e.Name == "shutdown" && e.Window == w.window.ID
	}); len(es) > 0 {
		return fmt.Errorf("the bus still signalled shutdown over SSH after the app ignored it")
	}
	return nil
}

func stagedLands(ctx context.Context, name, size, seed, within string) error {
	w := get(ctx)
	n, err := mkfile.ParseSize(size)
	if err != nil {
		return err
	}
	sd, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		return fmt.Errorf("seed %q: want a number", seed)
	}
	d, err := time.ParseDuration(within)
	if err != nil {
		return err
	}
	h := sha256.New()
	io.Copy(h, mkfile.Content(n, sd))
	s := &sent{name: name, size: n, sha256: hex.EncodeToString(h.Sum(nil)), source: downlink.SourceStage}
	w.sent = append(w.sent, s)
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	e, err := w.delivered(wctx, s)
	if err != nil {
		return fmt.Errorf("%q not delivered within %v: %w", name, d, err)
	}
	return w.checkObject(ctx, s, e, w.bench.Store.Bucket, w.bench.Store.Prefix)
}

func stagedDeleted(ctx context.Context, file, within string) error {
	w := get(ctx)
	d, err := time.ParseDuration(within)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	e, err := w.bus.Log.Wait(wctx, func(e bus.Event) bool {
		return e.Kind == bus.KindDownlink && (e.Name == "staged file removed" || e.Name == "staged file kept") && strings.HasPrefix(e.Detail, file)
	})
	if err != nil {
		return fmt.Errorf("%s was not deleted from the payload within %v: %w", file, d, err)
	}
	if e.Name != "staged file removed" {
		return fmt.Errorf("%s", e.Detail)
	}
	c, err := w.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Stat(ctx, file); err == nil {
		return fmt.Errorf("%s is still on the payload", file)
	}
	return nil
}

func stageRefused(ctx context.Context, path, why string) error {
	w := get(ctx)
	e, err := w.waitPI(ctx, 0, "refusal to stage "+path, func(e bus.Event) bool {
		return (e.Name == pi.EventInvalid && e.Method == "PC_stage_file_download") || e.Name == pi.EventStageFailed || e.Name == pi.EventStaged
	})
	if err != nil {
		return err
	}
	if e.Name == pi.EventStaged || !strings.Contains(e.Detail, why) {
		return fmt.Errorf("staging %q: %s %s, want it refused because %q", path, e.Name, e.Detail, why)
	}
	// The app hears of it too.
	_, err = w.waitPI(ctx, 0, "Request_failed answer to the app", func(e bus.Event) bool {
		return e.Name == pi.EventOut+" PA_ProcessResponseStageFileDownload" && strings.Contains(e.Detail, "req_status=1")
	})
	return err
}

// noFileServed checks the payload's console: its SFTP server logs every
// file it serves ("get PATH: N bytes").
func noFileServed(ctx context.Context) error {
	w := get(ctx)
	data, err := os.ReadFile(w.bus.Boards[w.window.Board].Console)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, " get /") {
			return fmt.Errorf("the payload served a file: %s", l)
		}
	}
	return nil
}

var locationRE = regexp.MustCompile(`latitude=(\S+) longitude=(\S+) altitude=(\S+)`)

// locations are the positions the controller answered the app with.
func locations(ctx context.Context) ([][3]float64, error) {
	var out [][3]float64
	for _, e := range piEvents(ctx, func(e bus.Event) bool {
		return e.Name == pi.EventOut+" PA_ProcessResponseGetCurrentLocation"
	}) {
		m := locationRE.FindStringSubmatch(e.Detail)
		if m == nil || !strings.Contains(e.Detail, "code=0") {
			return nil, fmt.Errorf("location answer not delivered: %s", e.Detail)
		}
		var v [3]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(m[i+1], 64)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the controller answered no location request")
	}
	return out, nil
}

func locationsInBounds(ctx context.Context) error {
	w := get(ctx)
	o := w.bench.PayloadInterface.Orbit
	maxLat := math.Min(o.InclinationDeg, 180-o.InclinationDeg)
	locs, err := locations(ctx)
	if err != nil {
		return err
	}
	for _, l := range locs {
		lat, lon, alt := l[0], l[1], l[2]
		if math.Abs(lat) > maxLat+0.001 || lon < -180 || lon >= 180 || math.Abs(alt-o.AltitudeKm) > 0.1 {
			return fmt.Errorf("location lat %.4f lon %.4f alt %.1f km is outside the orbit's bounds (|lat| <= %.1f, altitude %.0f km)", lat, lon, alt, maxLat, o.AltitudeKm)
		}
	}
	return nil
}

func locationsChange(ctx context.Context) error {
	locs, err := locations(ctx)
	if err != nil {
		return err
	}
	if len(locs) < 2 {
		return fmt.Errorf("%d locations, want at least 2 to compare", len(locs))
	}
	for i := 1; i < len(locs); i++ {
		if locs[i][0] == locs[i-1][0] && locs[i][1] == locs[i-1][1] {
			return fmt.Errorf("locations %d and %d are the same: %v", i, i+1, locs[i])
		}
	}
	return nil
}

func gnssReceived(ctx context.Context, n int, apart string) error {
	gap, err := time.ParseDuration(apart)
	if err != nil {
		return err
	}
	// Each message is an event once the app has answered it, so the
	// boundary is the app's answer to the stop, not the stop request. The
	// app reports its sequence done once it has asked to stop, which may
	// come before that answer: wait for it.
	if _, err := get(ctx).waitPI(ctx, 0, "answer to the app's GNSS stop", func(e bus.Event) bool {
		return e.Name == pi.EventOut+" PA_ProcessRespGnssEphStopDataReq"
	}); err != nil {
		return fmt.Errorf("the app never stopped the GNSS stream: %w", err)
	}
	data := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventOut+" PA_ProcessGnssEphData" })
	stop := piEvents(ctx, func(e bus.Event) bool { return e.Name == pi.EventOut+" PA_ProcessRespGnssEphStopDataReq" })
	var before []bus.Event
	for _, e := range data {
		if e.Seq < stop[0].Seq {
			before = append(before, e)
		}
	}
	// A message is recorded when the app answers it, and the app asks to
	// stop once it has its n-th: that answer, or one more message already
	// on its way, may be recorded after the stop's. None may start later.
	if len(data) < n || len(data) > n+1 || len(data) > len(before)+1 {
		return fmt.Errorf("%d GNSS messages before the stop's answer and %d after, want %d, at most one of them after", len(before), len(data)-len(before), n)
	}
	for i := 1; i < len(data); i++ {
		if got := data[i].Time.Sub(data[i-1].Time); got < gap/2 || got > gap+time.Second {
			return fmt.Errorf("GNSS messages %d and %d came %v apart, want about %v", i, i+1, got.Round(time.Millisecond), gap)
		}
	}
	return nil
}

func powerControlAnswered(ctx context.Context, status int) error {
	w := get(ctx)
	e, err := w.waitPI(ctx, 0, "answer to PayloadPowerControl", func(e bus.Event) bool {
		return e.Name == pi.EventOut+" PA_ProcessResponsePayloadPowerControl"
	})
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("req_status=%d", status); !strings.Contains(e.Detail, want) {
		return fmt.Errorf("answered %s, want %s", e.Detail, want)
	}
	return nil
}

// refused waits for the controller to refuse something (a call of method,
// or any connection when method is "") for a reason containing why.
func refused(method string) func(context.Context, string) error {
	return func(ctx context.Context, why string) error {
		w := get(ctx)
		if err := w.start(ctx); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		e, err := w.bus.Log.Wait(wctx, func(e bus.Event) bool {
			return e.Kind == bus.KindPI && e.Name == pi.EventRefused && (method == "" || e.Method == method)
		})
		if err != nil {
			return fmt.Errorf("the controller refused nothing: %w", err)
		}
		if !strings.Contains(e.Detail, why) {
			return fmt.Errorf("refused: %s, want %q", e.Detail, why)
		}
		return nil
	}
}
