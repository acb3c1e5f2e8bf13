package perf_test

import (
	"os"
	"testing"
	"time"

	"github.com/satbench/hil/harness/perf"
)

// TestPayloadInterface runs the benchmark small: every figure must come
// out, and no health check may fail.
func TestPayloadInterface(t *testing.T) {
	r, err := perf.PayloadInterface(t.Context(), perf.PIOptions{Apps: 4, Duration: 2 * time.Second, HealthInterval: 300 * time.Millisecond, LocationEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", r)
	if r.Apps != 4 || r.HealthChecks == 0 || r.Calls == 0 || r.CallsPerS <= 0 || r.Locations == 0 || r.LatencyP50 <= 0 || r.LatencyP99 < r.LatencyP50 || r.LatencyMax < r.LatencyP99 {
		t.Errorf("report has missing figures: %+v", r)
	}
	// Lateness is the machine's (a loaded CI runner, -race); failures are
	// the controller's or the apps'.
	if r.HealthFailures != 0 || r.OutErrors != 0 || r.Dropped != 0 || r.Lost != 0 {
		t.Errorf("failures: %+v", r)
	}
}

// piBenchDuration is how long BenchmarkPayloadInterface runs:
// HIL_PI_BENCH_DURATION if set (a Go duration), else 6 s with -short (as
// a quick once-over of every benchmark), else 30 s.
func piBenchDuration(b *testing.B) time.Duration {
	if v := os.Getenv("HIL_PI_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("HIL_PI_BENCH_DURATION=%q: want a positive Go duration, e.g. 6s", v)
		}
		return d
	}
	if testing.Short() {
		return 6 * time.Second
	}
	return 30 * time.Second
}

// BenchmarkPayloadInterface is one Payload Controller serving 64
// reference apps on loopback with the contract's 5 s health checks, each
// app asking for its location every 100 ms. It reports missed health
// checks (the target is 0), the location latency, memory growth per app
// and the calls served.
func BenchmarkPayloadInterface(b *testing.B) {
	opts := perf.PIOptions{Apps: 64, Duration: piBenchDuration(b), HealthInterval: 5 * time.Second}
	for b.Loop() {
		r, err := perf.PayloadInterface(b.Context(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("\n%s", r)
		b.ReportMetric(float64(r.MissedHealth), "missed-health-checks")
		b.ReportMetric(float64(r.HealthChecks), "health-checks")
		b.ReportMetric(float64(r.LatencyP50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(r.LatencyP99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(r.HeapPerApp/1024, "heap-KiB/app")
		b.ReportMetric(r.RSSPerApp/1024, "RSS-KiB/app")
		b.ReportMetric(float64(r.Calls), "calls")
		b.ReportMetric(r.CallsPerS, "calls/s")
		b.ReportMetric(float64(r.Locations), "locations")
	}
}
