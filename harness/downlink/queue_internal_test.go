package downlink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/harness/store"
	"github.com/satbench/hil/harness/store/storetest"
)

func TestMetadata(t *testing.T) {
	it := &Item{Window: "1", Board: "b", Source: SourceOORT, SHA256: "ab", Topic: "logs", UUID: "u",
		Meta: map[string]string{
			"camera":         "nadir",
			"Gain":           "42 dB",
			"note":           "line\nbreak é 100%",
			"bad key":        "dropped",
			"window-id":      "not this",
			"x":              strings.Repeat("v", 3000), // over S3's budget: dropped
			"x-amz-meta-ok?": "dropped",
		}}
	want := map[string]string{
		"window-id": "1", "payload": "b", "source": "oort", "sha256": "ab", "topic": "logs", "oort-uuid": "u",
		"camera": "nadir", "gain": "42 dB", "note": "line%0Abreak %C3%A9 100%25",
	}
	if got := metadata(it); !maps.Equal(got, want) {
		t.Errorf("metadata = %v\nwant %v", got, want)
	}
}

// A key journaled by a run that died before uploading, and since taken by
// another file, is given up for a free one: the other file stays.
func TestJournaledKeyTakenByAnother(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	_, st := storetest.StartEmbedded(t, "down")
	cfg := Config{Dir: filepath.Join(dir, "q"), Store: st, Satellite: "FM1", Bucket: "down", RetryMin: time.Millisecond}
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(q.Incoming(), "d")
	os.WriteFile(data, []byte("ours"), 0o600)
	sum := sha256.Sum256([]byte("ours"))
	it, err := q.Enqueue(ctx, Item{Source: SourceOutbox, Window: "1", Name: "f", Size: 4, SHA256: hex.EncodeToString(sum[:])}, data)
	if err != nil {
		t.Fatal(err)
	}
	const taken = "FM1/downlink/2021/09/06/20210906T043229Z_f"
	it.Key = taken
	if err := q.writeRecord(it, 0); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if _, err := st.Put(ctx, "down", taken, strings.NewReader("theirs"), 6, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	q, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- q.Run(rctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	evs, err := q.Wait(wctx, []string{it.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got := evs[0].Object.Key; got == taken || evs[0].Kind != EventDelivered {
		t.Errorf("%s to %s, want delivered under another key", evs[0].Kind, got)
	}
	if obj, err := st.Stat(ctx, "down", taken); err != nil || obj.Size != 6 {
		t.Errorf("the other file at %s: %+v, %v; want it untouched", taken, obj, err)
	}
}

// TestRecordWritesRace: progress and key reservation journal the same
// item from two goroutines. Each write must succeed, the newest snapshot
// must be the one left on disk, and a write that finishes after the item
// was forgotten must not bring its record back.
func TestRecordWritesRace(t *testing.T) {
	_, st := storetest.StartEmbedded(t, "down")
	q, err := Open(Config{Dir: filepath.Join(t.TempDir(), "q"), Store: st, Satellite: "FM1", Bucket: "down"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	data := filepath.Join(q.Incoming(), "d")
	os.WriteFile(data, []byte("data"), 0o600)
	sum := sha256.Sum256([]byte("data"))
	it, err := q.Enqueue(t.Context(), Item{Source: SourceOutbox, Window: "1", Name: "f", Size: 4, SHA256: hex.EncodeToString(sum[:])}, data)
	if err != nil {
		t.Fatal(err)
	}

	const n = 64
	snaps := make([]Item, n)
	revs := make([]uint64, n)
	for i := range n {
		snaps[i] = it
		snaps[i].Sent = int64(i)
		q.mu.Lock()
		revs[i] = q.nextRev()
		q.mu.Unlock()
	}
	errs := make(chan error, n)
	for i := n - 1; i >= 0; i-- { // newest first, so older ones arrive late
		go func() { errs <- q.writeRecord(snaps[i], revs[i]) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("writeRecord: %v", err)
		}
	}
	b, err := os.ReadFile(q.recordPath(it.ID))
	if err != nil {
		t.Fatal(err)
	}
	var got Item
	if err := json.Unmarshal(b, &got); err != nil || got.Sent != n-1 {
		t.Errorf("record on disk is %s (%v), want the newest snapshot (sent %d)", b, err, n-1)
	}

	q.mu.Lock()
	late := q.nextRev()
	q.forget(q.items[it.ID])
	q.mu.Unlock()
	if err := q.writeRecord(snaps[0], late); err != nil {
		t.Errorf("late writeRecord: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(q.cfg.Dir, "items"))
	for _, e := range ents {
		t.Errorf("items holds %s after the item was forgotten", e.Name())
	}
}
