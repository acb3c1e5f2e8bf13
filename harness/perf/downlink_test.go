package perf_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/perf"
)

func TestMain(m *testing.M) {
	payload.RunIfChild() // the sim bench runs the reference payload as this binary
	os.Exit(m.Run())
}

func loadSim(t testing.TB) *bench.Bench {
	t.Helper()
	b, err := bench.Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDownlink runs the benchmark small: every file must go the whole way
// and every figure must come out.
func TestDownlink(t *testing.T) {
	r, err := perf.Downlink(t.Context(), perf.DownlinkOptions{Bench: loadSim(t), Files: 3, Size: 100 << 10, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Files != 3 || r.PipelineMBps <= 0 || r.SFTPMBps <= 0 || r.PutMBps <= 0 || r.LatencyP50 <= 0 || r.LatencyP99 < r.LatencyP50 {
		t.Errorf("report has missing figures:\n%s", r)
	}
	t.Logf("\n%s", r)
}

// BenchmarkDownlink sends N files of size S through the whole path and
// reports the pipeline next to its two ceilings, measured in the same run.
func BenchmarkDownlink(b *testing.B) {
	for _, tc := range []struct {
		files int
		size  int64
	}{
		{256, 64 << 10},
		{16, 4 << 20},
		{2, 64 << 20},
	} {
		b.Run(fmt.Sprintf("%dx%s", tc.files, bench.ByteSize(tc.size)), func(b *testing.B) {
			sim := loadSim(b)
			for b.Loop() {
				r, err := perf.Downlink(b.Context(), perf.DownlinkOptions{Bench: sim, Files: tc.files, Size: tc.size, Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.PipelineMBps, "pipeline-MB/s")
				b.ReportMetric(r.SFTPMBps, "sftp-MB/s")
				b.ReportMetric(r.PutMBps, "put-MB/s")
				b.ReportMetric(float64(r.LatencyP50.Milliseconds()), "p50-ms")
				b.ReportMetric(float64(r.LatencyP99.Milliseconds()), "p99-ms")
				b.ReportMetric(100*r.LowerCeilingX, "%-of-lower-ceiling")
				b.ReportMetric(float64(r.PeakRSS)/(1<<20), "peak-RSS-MiB")
			}
		})
	}
}
