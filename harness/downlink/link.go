package downlink

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// LinkConfig is the space link's model. The zero LinkConfig is always in
// contact, with no rate limit, latency, budget or loss.
type LinkConfig struct {
	Rate    int64         // bits per second; 0: unlimited
	Latency time.Duration // one way, added once a file's last frame is sent
	Loss    float64       // fraction of frames lost and sent again, [0, 1)
	Budget  int64         // bytes one contact can carry; 0: no limit
	// Contact k is open from Start + k*Period for Duration, counted from
	// the link's epoch. Duration 0: always in contact.
	Start, Duration, Period time.Duration
	Seed                    uint64 // for the loss draws, so runs repeat
}

// Link decides when each byte of a file reaches the ground. It carries no
// bytes: the ground's copy of a file is the bus's, byte for byte, so the
// model only spends time and budget, and no file is read for it.
type Link struct {
	mu      sync.Mutex
	cfg     LinkConfig
	epoch   time.Time
	down    bool            // cut by hand (a step), whatever the schedule says
	used    map[int64]int64 // bytes spent per contact index
	rnd     *rand.Rand
	changed chan struct{} // closed and replaced on every Set or SetDown
}

// NewLink returns a link following cfg, whose contact schedule starts at
// epoch.
func NewLink(cfg LinkConfig, epoch time.Time) *Link {
	return &Link{
		cfg:     cfg,
		epoch:   epoch,
		used:    map[int64]int64{},
		rnd:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		changed: make(chan struct{}),
	}
}

// Config returns the link's current model.
func (l *Link) Config() LinkConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// Set changes the model; a file in flight continues under the new one
// from its next frame.
func (l *Link) Set(cfg LinkConfig) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	l.notify()
}

// SetDown cuts the link (true) or gives it back to its schedule (false).
func (l *Link) SetDown(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
	l.notify()
}

func (l *Link) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// contact says whether a contact is open at t: if so, which one and when
// it ends; if not, when the next one opens.
func (l *Link) contact(t time.Time) (open bool, k int64, end, next time.Time) {
	c := l.cfg
	if c.Duration <= 0 {
		return true, 0, time.Time{}, time.Time{}
	}
	first := l.epoch.Add(c.Start)
	if t.Before(first) {
		return false, 0, time.Time{}, first
	}
	period := max(c.Period, c.Duration)
	k = int64(t.Sub(first) / period)
	start := first.Add(time.Duration(k) * period)
	if end = start.Add(c.Duration); t.Before(end) {
		return true, k, end, time.Time{}
	}
	return false, 0, time.Time{}, start.Add(period)
}

// frame is how many bytes go in one frame at rate: about 100 ms of
// sending, from 1 KiB to 64 KiB.
func frame(rate int64) int64 {
	if rate <= 0 {
		return 64 << 10
	}
	return min(max(rate/8/10, 1<<10), 64<<10)
}

// errStopped is Send's error when stop asked it to give way.
var errStopped = errors.New("downlink: transfer stopped to give way")

// Send moves bytes [from, size) of a file across the link and returns how
// far it got. It waits for contacts, spends each contact's budget, sends
// at the link's rate and sends lost frames again. progress is called
// after each frame that arrives (paused false), and when the transfer must
// wait for a contact with bytes still to send (paused true). Send returns size once the last frame
// arrived and the latency passed; earlier only with ctx's cause or, when
// stop (checked between frames) returns true, errStopped.
func (l *Link) Send(ctx context.Context, from, size int64, stop func() bool, progress func(sent int64, paused bool)) (int64, error) {
	sent := from
	var clock time.Time // when the previous frame finished; paces the next
	for sent < size {
		if stop != nil && stop() {
			return sent, errStopped
		}
		l.mu.Lock()
		now := time.Now()
		if clock.Before(now) {
			clock = now
		}
		cfg, changed := l.cfg, l.changed
		open, k, end, next := l.contact(clock)
		if l.down || !open {
			l.mu.Unlock()
			progress(sent, true)
			if err := waitUntil(ctx, next, changed); err != nil {
				return sent, err
			}
			clock = time.Time{}
			continue
		}
		if cfg.Rate == 0 && cfg.Budget == 0 && cfg.Loss == 0 {
			// Nothing to model but the contact: the rest arrives at once.
			l.mu.Unlock()
			sent = size
			progress(sent, false)
			break
		}
		n := min(frame(cfg.Rate), size-sent)
		if cfg.Budget > 0 {
			left := cfg.Budget - l.used[k]
			if left <= 0 {
				l.mu.Unlock()
				// This contact is spent: wait for it to end.
				progress(sent, true)
				if err := waitUntil(ctx, end, changed); err != nil {
					return sent, err
				}
				continue
			}
			n = min(n, left)
		}
		var d time.Duration
		if cfg.Rate > 0 {
			d = time.Duration(n * 8 * int64(time.Second) / cfg.Rate)
			if !end.IsZero() && clock.Add(d).After(end) {
				// Send what fits before the contact ends.
				n = int64(end.Sub(clock)) * cfg.Rate / 8 / int64(time.Second)
				d = end.Sub(clock)
			}
		}
		lost := cfg.Loss > 0 && l.rnd.Float64() < cfg.Loss
		l.used[k] += n
		l.mu.Unlock()
		clock = clock.Add(d)
		if err := waitUntil(ctx, clock, nil); err != nil {
			return sent, err
		}
		if n > 0 && !lost {
			sent += n
			progress(sent, false)
		}
	}
	if lat := l.Config().Latency; lat > 0 {
		if err := waitUntil(ctx, time.Now().Add(lat), nil); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// waitUntil waits until t (forever if t is zero), until changed is closed
// or until ctx ends, which alone is an error.
func waitUntil(ctx context.Context, t time.Time, changed <-chan struct{}) error {
	var timer <-chan time.Time
	if !t.IsZero() {
		d := time.Until(t)
		if d <= 0 {
			return context.Cause(ctx)
		}
		tm := time.NewTimer(d)
		defer tm.Stop()
		timer = tm.C
	}
	select {
	case <-timer:
		return nil
	case <-changed:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
