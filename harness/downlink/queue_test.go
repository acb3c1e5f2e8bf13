package downlink_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/harness/downlink"
)

// enqueue queues a file of the given content directly, as a source would.
func (r *rig) enqueue(t testing.TB, it downlink.Item, content string) downlink.Item {
	t.Helper()
	data := filepath.Join(r.q.Incoming(), "in-"+it.Name+it.UUID)
	if err := os.WriteFile(data, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	it.Size, it.SHA256 = int64(len(content)), hex.EncodeToString(sum[:])
	it.Source = cmpOr(it.Source, downlink.SourceOutbox)
	got, err := r.q.Enqueue(t.Context(), it, data)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// crossed returns the names in the order they crossed the link.
func (r *rig) crossed() []string {
	var names []string
	for _, e := range r.log.All() {
		if e.Kind == downlink.EventCrossed {
			names = append(names, e.Item.Name)
		}
	}
	return names
}

// The link drains urgent, then bulk, then surplus; within a stage the
// higher priority, then the earlier file.
func TestStagesAndPriorities(t *testing.T) {
	r := newRig(t)
	r.q.Link().SetDown(true) // hold everything until all are queued
	old := time.Now().Add(-time.Hour)
	ttl := downlink.TTL{Urgent: time.Minute, Bulk: 2 * time.Hour, Surplus: time.Hour}
	var ids []string
	for _, it := range []downlink.Item{
		{Name: "bulk-a", TTL: ttl, Queued: old},                                                      // an hour old: bulk
		{Name: "urgent-low", TTL: ttl},                                                               // urgent
		{Name: "surplus", TTL: downlink.TTL{Surplus: time.Hour}},                                     // urgent and bulk skipped
		{Name: "urgent-high", TTL: ttl, Priority: 5},                                                 // urgent, first
		{Name: "bulk-b", TTL: ttl, Queued: old.Add(time.Second)},                                     // bulk, after bulk-a
		{Name: "expired", TTL: downlink.TTL{Urgent: time.Second}, Queued: old},                       // dropped
		{Name: "bulk-skip", TTL: downlink.TTL{Bulk: 2 * time.Hour, Surplus: time.Hour}, Queued: old}, // urgent skipped: bulk, queued last
	} {
		it.Window = "1"
		ids = append(ids, r.enqueue(t, it, it.Name).ID)
	}
	r.q.Link().SetDown(false)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	evs, err := r.q.Wait(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if want := map[bool]string{true: downlink.EventDropped, false: downlink.EventDelivered}[e.Item.Name == "expired"]; e.Kind != want {
			t.Errorf("%s: %s (%s), want %s", e.Item.Name, e.Kind, e.Detail, want)
		}
	}
	want := []string{"urgent-high", "urgent-low", "bulk-a", "bulk-b", "bulk-skip", "surplus"}
	if got := r.crossed(); !slices.Equal(got, want) {
		t.Errorf("crossed the link in order %v, want %v", got, want)
	}
}

// A more urgent file takes the link from a bulk one mid-transfer; the bulk
// one resumes where it stopped and lands whole.
func TestUrgentTakesTheLink(t *testing.T) {
	r := newRig(t)
	r.q.Link().Set(downlink.LinkConfig{Rate: 8 << 20}) // 1 MiB/s
	big := strings.Repeat("b", 1<<20)
	bulk := r.enqueue(t, downlink.Item{Name: "big", Window: "1", TTL: downlink.TTL{Bulk: time.Hour}}, big)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Wait until the big file is on the link.
	if _, err := r.log.Wait(ctx, func(e downlink.Event) bool { return e.Kind == downlink.EventSending && e.Item.Name == "big" }); err != nil {
		t.Fatal(err)
	}
	urgent := r.enqueue(t, downlink.Item{Name: "urgent", Window: "1"}, "now")
	objs := r.wait(t, []string{bulk.ID, urgent.ID})
	if got := r.crossed(); !slices.Equal(got, []string{"urgent", "big"}) {
		t.Errorf("crossed in order %v, want urgent before big", got)
	}
	var resumed bool
	for _, e := range r.log.All() {
		resumed = resumed || e.Kind == downlink.EventSending && e.Item.Name == "big" && !strings.Contains(e.Detail, "from byte 0 ")
	}
	if !resumed {
		t.Error("big never resumed from where it stopped")
	}
	if sum := r.sha256Of(t, "down", objs[0].Key); sum != bulk.SHA256 {
		t.Errorf("big landed with sha256 %s, want %s", sum, bulk.SHA256)
	}
}

// The same OORT file handed over twice goes down once; two different
// files with one name in the same second get distinct keys.
func TestDuplicatesAndKeyCollisions(t *testing.T) {
	r := newRig(t)
	fixed := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	r.open(t, downlink.Config{Now: func() time.Time { return fixed }})
	a := r.enqueue(t, downlink.Item{Source: downlink.SourceOORT, UUID: "u1", Topic: "logs", Name: "x.log", Window: "1"}, "one")
	again := r.enqueue(t, downlink.Item{Source: downlink.SourceOORT, UUID: "u1", Topic: "logs", Name: "x.log", Window: "1"}, "one")
	if again.ID != "" {
		t.Errorf("the same OORT id was queued twice (%s)", again.ID)
	}
	b := r.enqueue(t, downlink.Item{Name: "same", Window: "1"}, "first")
	c := r.enqueue(t, downlink.Item{Name: "same", Window: "2"}, "second")
	objs := r.wait(t, []string{a.ID, b.ID, c.ID})
	keys := map[string]bool{}
	for _, o := range objs {
		keys[o.Key] = true
	}
	for _, want := range []string{
		"cust/oort/logs/FM1/downlink/2026/11/21/20261121T120000Z_x.log",
		"cust/FM1/downlink/2026/11/21/20261121T120000Z_same",
		"cust/FM1/downlink/2026/11/21/20261121T120001Z_same",
	} {
		if !keys[want] {
			t.Errorf("no object %s; got %v", want, keys)
		}
	}
	if objs[0].Metadata["topic"] != "logs" || objs[0].Metadata["oort-uuid"] != "u1" || objs[0].Metadata["source"] != "oort" {
		t.Errorf("OORT object metadata %v", objs[0].Metadata)
	}
	// Delivered already: handed over again after delivery, still once.
	if again := r.enqueue(t, downlink.Item{Source: downlink.SourceOORT, UUID: "u1", Topic: "logs", Name: "x.log", Window: "1"}, "one"); again.ID != "" {
		t.Errorf("a delivered OORT id was queued again (%s)", again.ID)
	}
}

// Bad items are refused with the reason, and nothing is queued.
func TestEnqueueRefuses(t *testing.T) {
	r := newRig(t)
	data := filepath.Join(r.q.Incoming(), "d")
	os.WriteFile(data, []byte("12345"), 0o600)
	for _, tt := range []struct {
		it   downlink.Item
		want string
	}{
		{downlink.Item{Source: "outbox", Name: "n", Size: 5}, "sha256"},
		{downlink.Item{Source: "outbox", SHA256: "x", Size: 5}, "name"},
		{downlink.Item{Source: "outbox", Name: "n", SHA256: "x", Size: 4}, "holds 5 bytes, the item says 4"},
	} {
		if _, err := r.q.Enqueue(t.Context(), tt.it, data); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Enqueue(%+v) = %v, want an error with %q", tt.it, err, tt.want)
		}
	}
	if p := r.q.Pending(); len(p) != 0 {
		t.Errorf("queued %v", p)
	}
}
