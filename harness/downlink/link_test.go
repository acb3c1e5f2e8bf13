package downlink

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestContactSchedule(t *testing.T) {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return epoch.Add(time.Duration(s * float64(time.Second))) }
	sched := LinkConfig{Start: 10 * time.Second, Duration: 2 * time.Second, Period: 5 * time.Second}
	tests := []struct {
		cfg       LinkConfig
		t         float64
		open      bool
		k         int64
		end, next float64 // seconds after epoch; -1: none
	}{
		{LinkConfig{}, 0, true, 0, -1, -1},
		{LinkConfig{}, 1e6, true, 0, -1, -1},
		{sched, 0, false, 0, -1, 10},
		{sched, 10, true, 0, 12, -1},
		{sched, 11.999, true, 0, 12, -1},
		{sched, 12, false, 0, -1, 15},
		{sched, 16, true, 1, 17, -1},
		{sched, 17.5, false, 0, -1, 20},
		{sched, 10 + 5*1000 + 1, true, 1000, 10 + 5*1000 + 2, -1},
	}
	for _, tt := range tests {
		l := NewLink(tt.cfg, epoch)
		open, k, end, next := l.contact(at(tt.t))
		want := func(s float64) time.Time {
			if s < 0 {
				return time.Time{}
			}
			return at(s)
		}
		if open != tt.open || k != tt.k || !end.Equal(want(tt.end)) || !next.Equal(want(tt.next)) {
			t.Errorf("%+v at %vs: open %v k %d end %v next %v; want %v %d %v %v", tt.cfg, tt.t, open, k, end, next, tt.open, tt.k, want(tt.end), want(tt.next))
		}
	}
}

func TestFrame(t *testing.T) {
	for _, tt := range []struct{ rate, want int64 }{
		{0, 64 << 10},
		{9600, 1 << 10},
		{1_000_000, 12500},
		{1e9, 64 << 10},
	} {
		if got := frame(tt.rate); got != tt.want {
			t.Errorf("frame(%d) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}

// A file larger than one contact's budget waits for the next contacts,
// and no contact carries more than its budget.
func TestSendSpendsBudgetPerContact(t *testing.T) {
	const budget, size = 100 << 10, 250 << 10
	l := NewLink(LinkConfig{Budget: budget, Duration: 20 * time.Millisecond, Period: 40 * time.Millisecond}, time.Now())
	pauses := 0
	last := int64(0)
	sent, err := l.Send(t.Context(), 0, size, nil, func(sent int64, paused bool) {
		if paused && sent != last {
			pauses++ // a new cut, not the same wait reported again
			last = sent
		}
	})
	if err != nil || sent != size {
		t.Fatalf("Send = %d, %v; want %d, nil", sent, err, size)
	}
	if pauses < 2 {
		t.Errorf("transfer paused %d times, want at least 2 (250 KiB over 100 KiB contacts)", pauses)
	}
	var total int64
	for k, n := range l.used {
		if n > budget {
			t.Errorf("contact %d carried %d bytes, budget %d", k, n, budget)
		}
		total += n
	}
	if total != size {
		t.Errorf("link carried %d bytes in all, want %d", total, size)
	}
}

// Lost frames are sent again: the file arrives whole, and the link
// carried more than the file.
func TestSendResendsLostFrames(t *testing.T) {
	const size = 1 << 20
	l := NewLink(LinkConfig{Rate: 1e9, Loss: 0.3, Seed: 1}, time.Now())
	sent, err := l.Send(t.Context(), 0, size, nil, func(int64, bool) {})
	if err != nil || sent != size {
		t.Fatalf("Send = %d, %v; want %d, nil", sent, err, size)
	}
	if l.used[0] <= size {
		t.Errorf("link carried %d bytes for a %d-byte file with 30%% loss, want more", l.used[0], size)
	}
}

// A cut link holds the transfer until it is back; stop gives way.
func TestSendDownUpAndStop(t *testing.T) {
	l := NewLink(LinkConfig{Rate: 1e9}, time.Now())
	l.SetDown(true)
	paused := make(chan int64, 100)
	done := make(chan error)
	go func() {
		sent, err := l.Send(t.Context(), 5, 1<<20, nil, func(sent int64, p bool) {
			if p {
				paused <- sent
			}
		})
		if err == nil && sent != 1<<20 {
			err = errors.New("short")
		}
		done <- err
	}()
	if got := <-paused; got != 5 {
		t.Errorf("paused at %d, want 5 (where it started)", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Send returned while the link was down: %v", err)
	default:
	}
	l.SetDown(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	calls := 0
	sent, err := l.Send(context.Background(), 0, 1<<20, func() bool { calls++; return calls > 1 }, func(int64, bool) {})
	if !errors.Is(err, errStopped) || sent != 64<<10 {
		t.Errorf("Send with stop after one frame = %d, %v; want %d, errStopped", sent, err, 64<<10)
	}
}
