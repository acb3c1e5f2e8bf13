// Package perf measures the bench: how fast files go down from a payload
// to S3, next to the ceilings of the parts they go through, measured in
// the same run on the same machine.
package perf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/harness/store"
)

// DownlinkOptions say what to send. Bench is required; the zero value of
// the rest sends 16 files of 4 MiB.
type DownlinkOptions struct {
	Bench *bench.Bench
	Files int   // default 16
	Size  int64 // bytes per file; default 4 MiB
	Dir   string
	Logf  func(format string, args ...any) // progress; nil: quiet
}

// DownlinkReport holds the figures of one run. Rates are in MB/s (10^6
// bytes per second).
type DownlinkReport struct {
	Files int
	Size  int64
	Store string // the store kind

	Pipeline      time.Duration // first byte pulled to last object verified
	PipelineMBps  float64
	LatencyP50    time.Duration // per file: its pull began to its object landed
	LatencyP99    time.Duration
	SFTPMBps      float64 // ceiling: SFTP read of the same bytes from the payload
	PutMBps       float64 // ceiling: minio-go PutObject of the same bytes to the same endpoint
	PeakRSS       int64   // this process (bus, queue, embedded S3), bytes; 0 if unknown
	LowerCeilingX float64 // PipelineMBps / min(SFTPMBps, PutMBps)
}

func (r *DownlinkReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "downlink: %d files of %s through payload -> sweep -> queue -> %s S3, verified\n", r.Files, bench.ByteSize(r.Size), r.Store)
	fmt.Fprintf(&b, "  pipeline       %8.1f MB/s  (%v for %s)\n", r.PipelineMBps, r.Pipeline.Round(time.Millisecond), bench.ByteSize(r.Size*int64(r.Files)))
	fmt.Fprintf(&b, "  per file       p50 %v  p99 %v\n", r.LatencyP50.Round(time.Millisecond), r.LatencyP99.Round(time.Millisecond))
	fmt.Fprintf(&b, "  ceiling SFTP   %8.1f MB/s  (read of the same bytes from the payload)\n", r.SFTPMBps)
	fmt.Fprintf(&b, "  ceiling S3 PUT %8.1f MB/s  (minio-go PutObject of the same bytes, same endpoint)\n", r.PutMBps)
	fmt.Fprintf(&b, "  pipeline / lower ceiling: %.0f%%\n", 100*r.LowerCeilingX)
	if r.PeakRSS > 0 {
		fmt.Fprintf(&b, "  peak RSS of the bus process: %.0f MiB\n", float64(r.PeakRSS)/(1<<20))
	}
	return b.String()
}

// Downlink runs the benchmark: it opens the bench (the payload, the
// store), writes the files into the payload's outbox, then times the
// whole path — SFTP pull into the queue, the space link (as the bench
// models it), S3 upload with its checks — and then the two ceilings.
func Downlink(ctx context.Context, opts DownlinkOptions) (*DownlinkReport, error) {
	files, size := opts.Files, opts.Size
	if files <= 0 {
		files = 16
	}
	if size <= 0 {
		size = 4 << 20
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "hil-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	b, err := bus.Open(ctx, opts.Bench, dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	board := b.Boards[opts.Bench.Boards[0].Name]
	if err := board.Power.On(ctx); err != nil {
		return nil, err
	}
	c, err := remote.Wait(ctx, board.Remote)
	if err != nil {
		return nil, err
	}
	defer c.Close()

	r := &DownlinkReport{Files: files, Size: size, Store: opts.Bench.Store.Kind}
	logf("writing %d files of %s into the payload's outbox", files, bench.ByteSize(size))
	if err := writeFiles(ctx, c, files, size); err != nil {
		return nil, err
	}

	logf("timing the pipeline")
	resetPeakRSS()
	start := time.Now()
	sink := &timedSink{Queue: b.Queue, last: start, pullStart: map[string]time.Time{}}
	items, err := downlink.Sweep(ctx, c, "/outbox", b.Queue.Incoming(),
		downlink.Item{Window: "bench", Board: board.Config.Name, Source: downlink.SourceOutbox}, sink)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	pullStart := sink.pullStart
	evs, err := b.Queue.Wait(ctx, ids)
	if err != nil {
		return nil, err
	}
	r.Pipeline = time.Since(start)
	r.PeakRSS = peakRSS()
	var lat []time.Duration
	for _, e := range evs {
		if e.Kind != downlink.EventDelivered {
			return nil, fmt.Errorf("%s: %s: %s", e.Item.Name, e.Kind, e.Detail)
		}
	}
	for _, e := range b.Log.Events() {
		if e.Kind == bus.KindDownlink && e.Name == downlink.EventDelivered {
			lat = append(lat, e.Time.Sub(pullStart[idOf(evs, e.File)]))
		}
	}
	r.PipelineMBps = mbps(int64(files)*size, r.Pipeline)
	r.LatencyP50, r.LatencyP99 = percentile(lat, 50), percentile(lat, 99)

	logf("timing the SFTP ceiling")
	if err := writeFiles(ctx, c, files, size); err != nil {
		return nil, err
	}
	t0 := time.Now()
	for i := range files {
		if _, err := c.Get(ctx, outboxName(i), io.Discard); err != nil {
			return nil, err
		}
	}
	r.SFTPMBps = mbps(int64(files)*size, time.Since(t0))

	logf("timing the S3 PUT ceiling")
	if r.PutMBps, err = putCeiling(ctx, b.StoreConfig, opts.Bench.Store.Bucket, filepath.Join(dir, "put"), files, size); err != nil {
		return nil, err
	}
	r.LowerCeilingX = r.PipelineMBps / min(r.SFTPMBps, r.PutMBps)
	return r, nil
}

// timedSink is the queue, noting when each file's pull began: the sweep
// hands files over one after the other, so a file's pull began at the
// latest when the previous one was queued.
type timedSink struct {
	*downlink.Queue
	last      time.Time
	pullStart map[string]time.Time
}

func (s *timedSink) Enqueue(ctx context.Context, it downlink.Item, data string) (downlink.Item, error) {
	it, err := s.Queue.Enqueue(ctx, it, data)
	if err == nil {
		s.pullStart[it.ID], s.last = s.last, time.Now()
	}
	return it, err
}

func idOf(evs []downlink.Event, name string) string {
	for _, e := range evs {
		if e.Item.Name == name {
			return e.Item.ID
		}
	}
	return ""
}

func outboxName(i int) string { return path.Join("/outbox", fmt.Sprintf("bench-%05d.dat", i)) }

func writeFiles(ctx context.Context, c *remote.Client, files int, size int64) error {
	for i := range files {
		if err := c.Put(ctx, outboxName(i), mkfile.Content(size, uint64(i)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// putCeiling puts the same bytes with minio-go itself, one file after the
// other, from local files, with minio-go's defaults.
func putCeiling(ctx context.Context, cfg store.Config, bucket, dir string, files int, size int64) (float64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	for i := range files {
		f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(f, mkfile.Content(size, uint64(i)))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, err
		}
	}
	mc, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	for i := range files {
		f, err := os.Open(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			return 0, err
		}
		_, err = mc.PutObject(ctx, bucket, fmt.Sprintf("ceiling/%05d", i), f, size, minio.PutObjectOptions{})
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("put ceiling: %w", err)
		}
	}
	return mbps(int64(files)*size, time.Since(t0)), nil
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

// resetPeakRSS makes VmHWM start again from the current resident memory
// (Linux resets it when "5" is written to clear_refs).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is VmHWM of this process in bytes, 0 if unknown.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
