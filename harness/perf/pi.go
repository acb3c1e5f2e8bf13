package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/satbench/hil/fixtures/payload/app"
	"github.com/satbench/hil/harness/pi"
)

// PIOptions say how to load the Payload Controller. The zero value runs
// 64 apps for 30 s with the contract's 5 s health checks, each app asking
// for its location every 100 ms.
type PIOptions struct {
	Apps           int           // reference apps, one per board; default 64
	Duration       time.Duration // of the measured run, once every app registered; default 30 s
	HealthInterval time.Duration // default 5 s, the contract's
	// LocationEvery is how often each app runs its location sequence
	// (PC_get_current_location, then waits for the response); default
	// 100 ms.
	LocationEvery time.Duration
	Logf          func(format string, args ...any) // progress; nil: quiet
}

// PIReport holds the figures of one run.
type PIReport struct {
	Apps           int
	Duration       time.Duration
	HealthInterval time.Duration

	HealthChecks   int64 // health checks sent during the run
	HealthFailures int64 // of which failed
	HealthLate     int64 // sent more than a quarter interval late
	MissedHealth   int64 // HealthFailures + HealthLate; the target is 0

	Calls     int64   // PA->PC calls the controller served during the run
	CallsPerS float64 // Calls / Duration
	Dropped   int64   // answered An_OUT_OF_RESOURCES
	OutErrors int64   // PC->PA calls that failed

	Locations  int           // PC_get_current_location calls whose response came
	Lost       int           // ... whose response did not come by the end
	LatencyP50 time.Duration // PA's call to its PA_ProcessResponseGetCurrentLocation arriving
	LatencyP99 time.Duration
	LatencyMax time.Duration

	// Growth of this process (the controller and the apps, which run in
	// it) from before the apps started to the end of the run, per app.
	HeapPerApp float64 // bytes of live heap, after a GC
	RSSPerApp  float64 // bytes of resident memory; 0 if unknown
}

func (r PIReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "payload interface: %d reference apps on loopback for %v, health checks every %v\n", r.Apps, r.Duration.Round(time.Millisecond), r.HealthInterval)
	fmt.Fprintf(&b, "  health checks   %d sent, %d failed, %d late: %d missed\n", r.HealthChecks, r.HealthFailures, r.HealthLate, r.MissedHealth)
	fmt.Fprintf(&b, "  calls served    %d (%.0f/s), %d dropped, %d callbacks failed\n", r.Calls, r.CallsPerS, r.Dropped, r.OutErrors)
	fmt.Fprintf(&b, "  location        %d answered, %d lost; latency p50 %v  p99 %v  max %v\n", r.Locations, r.Lost,
		r.LatencyP50.Round(time.Microsecond), r.LatencyP99.Round(time.Microsecond), r.LatencyMax.Round(time.Microsecond))
	fmt.Fprintf(&b, "  growth per app  heap %.1f KiB", r.HeapPerApp/1024)
	if r.RSSPerApp != 0 {
		fmt.Fprintf(&b, ", RSS %.1f KiB", r.RSSPerApp/1024)
	}
	b.WriteString(" (controller and app, both in this process)\n")
	return b.String()
}

// PayloadInterface runs the benchmark: one Payload Controller on
// loopback serving opts.Apps reference payload apps (package
// fixtures/payload/app, each with its own callback listener, auth key and
// app id), all registered, for opts.Duration. Meanwhile every app runs its
// location sequence every opts.LocationEvery: the controller starts it
// (PA_StartSequence), the app calls PC_get_current_location and waits for
// PA_ProcessResponseGetCurrentLocation, then reports PC_sequence_done. The
// latency is the app's, from its own log lines: its call going out to the
// response coming in.
func PayloadInterface(ctx context.Context, opts PIOptions) (PIReport, error) {
	if opts.Apps <= 0 {
		opts.Apps = 64
	}
	if opts.Apps > 999 {
		return PIReport{}, errors.New("perf: at most 999 apps (app ids are 3 digits)")
	}
	if opts.Duration <= 0 {
		opts.Duration = 30 * time.Second
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = pi.DefaultHealthInterval
	}
	if opts.LocationEvery <= 0 {
		opts.LocationEvery = 100 * time.Millisecond
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir, err := os.MkdirTemp("", "hil-perf-pi-")
	if err != nil {
		return PIReport{}, err
	}
	defer os.RemoveAll(dir)

	apps := make([]*piApp, opts.Apps)
	var cfgApps []pi.App
	for i := range apps {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, a := range apps[:i] {
				a.ln.Close()
			}
			return PIReport{}, err
		}
		a := &piApp{
			ln:   ln,
			sent: map[int32]time.Time{},
			App:  pi.App{Board: fmt.Sprintf("app%03d", i+1), Key: fmt.Sprintf("perfkey%013d", i+1), AppID: i + 1, Callback: ln.Addr().String()},
		}
		apps[i] = a
		cfgApps = append(cfgApps, a.App)
	}

	var registered, outErrors atomic.Int64
	allRegistered := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return PIReport{}, err
	}
	c, err := pi.Start(pi.Config{
		Listener:       ln,
		Apps:           cfgApps,
		HealthInterval: opts.HealthInterval,
		Notify: func(e pi.Event) {
			switch {
			case e.Kind == pi.EventRegistered:
				if registered.Add(1) == int64(len(apps)) {
					close(allRegistered)
				}
			case e.Kind == pi.EventOut && e.Err != nil:
				outErrors.Add(1)
			}
		},
	})
	if err != nil {
		ln.Close()
		for _, a := range apps {
			a.ln.Close()
		}
		return PIReport{}, err
	}
	defer c.Close()

	heap0, rss0 := memNow()
	logf("starting %d reference apps", len(apps))
	actx, stopApps := context.WithCancel(ctx)
	var appsDone sync.WaitGroup
	var appErrs errList
	defer func() {
		stopApps()
		appsDone.Wait()
	}()
	for _, a := range apps {
		outbound := filepath.Join(dir, a.App.Board)
		appsDone.Go(func() {
			err := app.Run(actx, app.Config{
				Controller: ln.Addr().String(),
				Listener:   a.ln,
				Cookie:     a.App.Cookie(),
				Outbound:   outbound,
				Logf:       a.logf,
			})
			if err != nil {
				appErrs.add(fmt.Errorf("%s: %w", a.App.Board, err))
			}
		})
	}
	select {
	case <-allRegistered:
	case <-time.After(30 * time.Second):
		return PIReport{}, fmt.Errorf("perf: %d of %d apps registered within 30 s: %v", registered.Load(), len(apps), appErrs.err())
	case <-ctx.Done():
		return PIReport{}, context.Cause(ctx)
	}

	logf("all registered; running for %v", opts.Duration)
	s0 := c.Stats()
	start := time.Now()
	rctx, stopRun := context.WithTimeout(ctx, opts.Duration)
	defer stopRun()
	var runs sync.WaitGroup
	for _, a := range apps {
		runs.Go(func() { a.drive(rctx, ctx, c, opts.LocationEvery) })
	}
	runs.Wait()
	elapsed := time.Since(start)
	s1 := c.Stats()
	heap1, rss1 := memNow()
	// Locations under way finish, for at most a few seconds.
	drain, stopDrain := context.WithTimeout(ctx, 5*time.Second)
	defer stopDrain()
	for _, a := range apps {
		select {
		case <-a.drained():
		case <-drain.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return PIReport{}, context.Cause(ctx)
	}
	if err := appErrs.err(); err != nil {
		return PIReport{}, err
	}

	r := PIReport{
		Apps:           len(apps),
		Duration:       elapsed,
		HealthInterval: opts.HealthInterval,
		HealthChecks:   s1.HealthChecks - s0.HealthChecks,
		HealthFailures: s1.HealthFailures - s0.HealthFailures,
		HealthLate:     s1.HealthLate - s0.HealthLate,
		Calls:          s1.Calls - s0.Calls,
		Dropped:        s1.Dropped - s0.Dropped,
		OutErrors:      outErrors.Load(),
		HeapPerApp:     float64(int64(heap1)-int64(heap0)) / float64(len(apps)),
	}
	r.MissedHealth = r.HealthFailures + r.HealthLate
	r.CallsPerS = float64(r.Calls) / elapsed.Seconds()
	if rss0 > 0 && rss1 > 0 {
		r.RSSPerApp = float64(rss1-rss0) / float64(len(apps))
	}
	var lat []time.Duration
	for _, a := range apps {
		a.mu.Lock()
		lat = append(lat, a.latencies...)
		r.Lost += len(a.sent)
		a.mu.Unlock()
	}
	r.Locations = len(lat)
	r.LatencyP50, r.LatencyP99 = percentile(lat, 50), percentile(lat, 99)
	for _, d := range lat {
		r.LatencyMax = max(r.LatencyMax, d)
	}
	if r.Locations == 0 {
		return r, errors.New("perf: no location request was answered")
	}
	return r, nil
}

// piApp is one reference app of the benchmark and its measurements.
type piApp struct {
	App pi.App
	ln  net.Listener

	mu        sync.Mutex
	sent      map[int32]time.Time // PC_get_current_location calls awaiting their response, by corr
	latencies []time.Duration
	idle      []chan struct{} // closed once sent is empty
}

// drained returns a channel closed once no location call of the app
// awaits its response.
func (a *piApp) drained() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	if len(a.sent) == 0 {
		close(ch)
	} else {
		a.idle = append(a.idle, ch)
	}
	return ch
}

// The app's log lines (stable, see package app) for its call and the
// response.
const (
	locationOut = "app: -> PC_get_current_location corr="
	locationIn  = "app: <- PA_ProcessResponseGetCurrentLocation corr="
)

// logf is the app's Logf: it times the location call and its response.
func (a *piApp) logf(format string, args ...any) {
	now := time.Now()
	line := fmt.Sprintf(format, args...)
	if rest, ok := strings.CutPrefix(line, locationOut); ok {
		if corr, ok := corrOf(rest); ok {
			a.mu.Lock()
			a.sent[corr] = now
			a.mu.Unlock()
		}
	} else if rest, ok := strings.CutPrefix(line, locationIn); ok {
		if corr, ok := corrOf(rest); ok {
			a.mu.Lock()
			if t0, ok := a.sent[corr]; ok {
				a.latencies = append(a.latencies, now.Sub(t0))
				delete(a.sent, corr)
				if len(a.sent) == 0 {
					for _, ch := range a.idle {
						close(ch)
					}
					a.idle = nil
				}
			}
			a.mu.Unlock()
		}
	}
}

func corrOf(s string) (int32, bool) {
	s, _, _ = strings.Cut(s, " ")
	n, err := strconv.ParseInt(s, 10, 32)
	return int32(n), err == nil
}

// drive starts the app's location sequence every period until run ends;
// a tick that finds it still running is skipped. Each start is bounded
// by ctx, not run: the run's end does not cut a call short.
func (a *piApp) drive(run, ctx context.Context, c *pi.Controller, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-run.Done():
			return
		case <-t.C:
		}
		// An error (the sequence still running) shows as fewer
		// locations; the health figures say whether the controller kept
		// up.
		c.StartSequence(ctx, a.App.Board, "location", "", time.Now().Add(10*time.Second))
	}
}

// memNow is the live heap after a GC and this process's resident memory
// (0 if unknown), in bytes.
func memNow() (heap uint64, rss int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, procStatus("VmRSS:")
}

// procStatus is a kB field of /proc/self/status in bytes, 0 if unknown.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// errList collects errors from goroutines.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errList) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}
