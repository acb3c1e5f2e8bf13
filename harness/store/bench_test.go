package store_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/harness/store/storetest"
)

// BenchmarkPut puts 64 MiB objects into the embedded endpoint, read from
// memory so that only the upload is measured.
func BenchmarkPut(b *testing.B) {
	const size = 64 << 20
	_, s := storetest.StartEmbedded(b)
	if err := s.EnsureBucket(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{}).Read(data)
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		// A bare io.Reader, as a pipe from the downlink would be.
		r := struct{ io.Reader }{bytes.NewReader(data)}
		if _, err := s.Put(b.Context(), "bench", "put/"+strconv.Itoa(i), r, size, store.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutMemory puts objects of 64 and 256 MiB, generated as they are
// read, and reports the peak resident memory of the process (client and
// endpoint together) and its growth during the Put. Both should be about
// the same for both sizes.
func BenchmarkPutMemory(b *testing.B) {
	_, s := storetest.StartEmbedded(b)
	if err := s.EnsureBucket(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	for _, size := range []int64{64 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(size)
			var peak, growth float64
			for i := 0; b.Loop(); i++ {
				before := resetPeakRSS(b)
				r := io.LimitReader(rand.NewChaCha8([32]byte{byte(i)}), size)
				key := fmt.Sprintf("memory/%d/%d", size, i)
				if _, err := s.Put(b.Context(), "bench", key, r, size, store.PutOptions{}); err != nil {
					b.Fatal(err)
				}
				hwm := procStatus(b, "VmHWM")
				peak = max(peak, float64(hwm)/(1<<20))
				growth = max(growth, float64(hwm-before)/(1<<20))
			}
			b.ReportMetric(peak, "peak-RSS-MiB")
			b.ReportMetric(growth, "RSS-growth-MiB")
		})
	}
}

// resetPeakRSS makes VmHWM start again from the current resident memory,
// and returns that.
func resetPeakRSS(b *testing.B) int64 {
	// Linux resets VmHWM when "5" is written to clear_refs.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset VmHWM (%v): the peak may predate the Put", err)
	}
	return procStatus(b, "VmRSS")
}

// procStatus returns a memory figure of /proc/self/status in bytes.
func procStatus(b *testing.B, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				b.Fatalf("/proc/self/status: %s: %v", sc.Text(), err)
			}
			return kb << 10
		}
	}
	b.Fatalf("/proc/self/status has no %s", field)
	return 0
}
