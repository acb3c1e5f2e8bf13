package downlink_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/harness/store/storetest"
)

// queueChildEnv makes the test binary run a queue until killed (see
// TestMain): the harness that TestKilledMidTransfer kills.
const queueChildEnv = "HIL_TEST_QUEUE_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(queueChildEnv); v != "" {
		os.Exit(queueChild(v))
	}
	os.Exit(m.Run())
}

type childConfig struct {
	Dir   string
	Store store.Config
	Rate  int64
}

// queueChild runs the queue in cfg.Dir and prints each event's kind and
// item name, one per line, until it is killed.
func queueChild(v string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := store.New(cfg.Store)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	q, err := downlink.Open(downlink.Config{
		Dir: cfg.Dir, Store: st, Satellite: "FM1", Bucket: "down", Prefix: "cust",
		Link:   downlink.NewLink(downlink.LinkConfig{Rate: cfg.Rate}, time.Now()),
		Notify: func(e downlink.Event) { fmt.Printf("%s %s\n", e.Kind, e.Item.Name) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	q.Run(context.Background())
	return 0
}

// TestKilledMidTransfer kills the harness (a child process running the
// queue) at several points, mid-link and mid-upload, starts it again each
// time, and checks that every file is delivered exactly once, whole.
func TestKilledMidTransfer(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	e, st := storetest.StartEmbedded(t, "down")
	qdir := filepath.Join(dir, "queue")

	// Queue the files with a queue that does not run.
	const n, size = 6, 256 << 10
	q, err := downlink.Open(downlink.Config{Dir: qdir, Store: st, Bucket: "down"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("f%d.bin", i)
		data := filepath.Join(q.Incoming(), name)
		h := sha256.New()
		f, _ := os.Create(data)
		io.Copy(io.MultiWriter(f, h), mkfile.Content(size, uint64(i)))
		f.Close()
		want[name] = hex.EncodeToString(h.Sum(nil))
		if _, err := q.Enqueue(ctx, downlink.Item{Source: downlink.SourceOutbox, Window: "9", Name: name, Size: size, SHA256: want[name]}, data); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()

	cfg, _ := json.Marshal(childConfig{Dir: qdir, Store: e.Config(), Rate: 8 << 20}) // 1 MiB/s: a file takes 1/4 s
	// Kill after these events: mid-link, right after an upload began or
	// landed, and a burst of deliveries.
	for _, killAfter := range []string{"crossed f0.bin", "delivered f0.bin", "crossed f2.bin", "delivered f3.bin"} {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), queueChildEnv+"="+string(cfg))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), killAfter) {
				seen = true
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		io.Copy(io.Discard, out)
		cmd.Wait()
		if !seen {
			t.Logf("the queue never said %q before it was killed (already past it)", killAfter)
		}
	}

	// The last start runs to the end, here.
	var delivered []string
	q, err = downlink.Open(downlink.Config{Dir: qdir, Store: st, Satellite: "FM1", Bucket: "down", Prefix: "cust"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range q.Pending() {
		ids = append(ids, it.ID)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- q.Run(runCtx) }()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := q.Wait(wctx, ids); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	q.Close()

	objs, err := st.List(ctx, "down", "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, o := range objs {
		name := o.Key[strings.LastIndex(o.Key, "Z_")+2:]
		got[name]++
		delivered = append(delivered, o.Key)
		if sum, err := store.SHA256(ctx, st, "down", o.Key); err != nil || sum != want[name] {
			t.Errorf("%s: sha256 %s (%v), want %s", o.Key, sum, err, want[name])
		}
		if o.Size != size {
			t.Errorf("%s: %d bytes, want %d", o.Key, o.Size, size)
		}
	}
	for name := range want {
		if got[name] != 1 {
			t.Errorf("%s delivered %d times, want exactly once; bucket: %v", name, got[name], delivered)
		}
	}
	if len(objs) != n {
		t.Errorf("bucket holds %d objects, want %d: %v", len(objs), n, delivered)
	}
}
