package steps

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cucumber/godog"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/remote"
)

func networkSteps(sc *godog.ScenarioContext) {
	sc.Given(`^the payload's link is shaped to (\S+)$`, shapedTo)
	sc.Given(`^the payload's link is shaped with a delay of (\S+)$`, shapedDelay)
	sc.Given(`^the payload's boot timeout is (\S+)$`, bootTimeout)
	sc.Given(`^the payload's link is down at power-on$`, switchLink(false))
	sc.When(`^the bus cuts the payload's link$`, switchLink(false))
	sc.When(`^the bus restores the payload's link$`, switchLink(true))
	sc.When(`^the payload's QEMU stops dead$`, qemuStopsDead)
	sc.Then(`^the payload answers SSH at its bench address over the bench bridge$`, answersOverBridge)
	sc.Then(`^the bench network is not on the host's own network$`, notOnHost)
	sc.Then(`^SSH to the payload fails$`, sshFails)
	sc.Then(`^the pull of "([^"]*)" from the payload ran at no more than (\S+), as measured$`, pullRate)
	sc.Then(`^the reason ends with the tail of the payload's console$`, reasonHasConsoleTail)
	sc.Then(`^a command on the payload takes at least (\S+), as measured$`, commandTakes)
}

// networkBoard returns the window's board on the open bus, which must be
// on a bench network.
func (w *world) networkBoard(ctx context.Context) (*bus.Board, error) {
	b, err := w.open(ctx)
	if err != nil {
		return nil, err
	}
	bd := b.Boards[w.window.Board]
	if bd == nil {
		return nil, fmt.Errorf("bench %s has no board %q", w.bench.Name, w.window.Board)
	}
	if bd.Link == nil {
		return nil, fmt.Errorf("bench %s has no network section: board %s is reached on loopback, with no link of the bench's (run this feature on benches/qemu.yaml or benches/netns.yaml)", w.bench.File, bd.Config.Name)
	}
	return bd, nil
}

// shapeLink changes the bench's link shape before the bus opens.
func shapeLink(ctx context.Context, change func(*bench.Shape) error) error {
	w := get(ctx)
	if err := w.mustNotBeOpen("the link's shape"); err != nil {
		return err
	}
	if !w.bench.Network.Enabled() {
		return fmt.Errorf("bench %s has no network section, so no link to shape", w.bench.File)
	}
	return change(&w.bench.Network.Shape)
}

func shapedTo(ctx context.Context, rate string) error {
	return shapeLink(ctx, func(s *bench.Shape) error {
		r, err := bench.ParseBitRate(rate)
		s.Rate = r
		return err
	})
}

func shapedDelay(ctx context.Context, d string) error {
	return shapeLink(ctx, func(s *bench.Shape) error {
		v, err := time.ParseDuration(d)
		if err != nil || v <= 0 {
			return fmt.Errorf("delay %q: want a duration more than zero, e.g. 100ms", d)
		}
		s.Delay = bench.Duration(v)
		return nil
	})
}

// commandTakes runs a command that does nothing on the payload, over an
// open SSH connection, a few times: each takes at least one round trip,
// so the fastest shows the link's delay.
func commandTakes(ctx context.Context, least string) error {
	w := get(ctx)
	want, err := time.ParseDuration(least)
	if err != nil {
		return err
	}
	c, err := w.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	fastest := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		if err := c.Run(ctx, "/usr/bin/exit 0", nil); err != nil {
			return err
		}
		fastest = min(fastest, time.Since(start))
	}
	fmt.Fprintf(w.failOut(), "    measured: the fastest of 3 commands on the payload took %v\n", fastest.Round(time.Millisecond))
	if fastest < want {
		return fmt.Errorf("a command on the payload took %v, less than the %v the link should delay it", fastest, want)
	}
	return nil
}

func bootTimeout(ctx context.Context, d string) error {
	w := get(ctx)
	if err := w.mustNotBeOpen("the boot timeout"); err != nil {
		return err
	}
	bc, err := w.board()
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(d)
	if err != nil || v <= 0 {
		return fmt.Errorf("boot timeout %q: want a duration more than zero, e.g. 10s", d)
	}
	bc.BootTimeout = bench.Duration(v)
	return nil
}

func switchLink(up bool) func(context.Context) error {
	return func(ctx context.Context) error {
		w := get(ctx)
		if _, err := w.networkBoard(ctx); err != nil {
			return err
		}
		if up {
			return w.bus.RestoreLink(ctx, w.window.Board)
		}
		return w.bus.CutLink(ctx, w.window.Board)
	}
}

func answersOverBridge(ctx context.Context) error {
	w := get(ctx)
	bd, err := w.networkBoard(ctx)
	if err != nil {
		return err
	}
	// The link just came back, or the payload just started: give ARP and
	// TCP's retransmission a moment, as the bus does after power-on.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := remote.Wait(ctx, bd.Remote)
	if err != nil {
		return fmt.Errorf("payload %s did not answer SSH at %s over %s: %w", bd.Config.Name, bd.Remote.Address, bd.Link, err)
	}
	defer c.Close()
	if err := c.Run(ctx, "/usr/bin/writefile /tmp/bridge-check ok", nil); err != nil {
		return fmt.Errorf("payload %s answered SSH but could not run a command: %w", bd.Config.Name, err)
	}
	return nil
}

func notOnHost(ctx context.Context) error {
	w := get(ctx)
	if _, err := w.networkBoard(ctx); err != nil {
		return err
	}
	// Read-only: dialling the payload from the host's own namespace would
	// send a packet out of the host's default route.
	return netlab.NotOnHost(w.bus.Network())
}

func sshFails(ctx context.Context) error {
	w := get(ctx)
	bd, err := w.networkBoard(ctx)
	if err != nil {
		return err
	}
	rc := bd.Remote
	rc.AttemptTimeout = 2 * time.Second
	c, err := remote.Dial(ctx, rc)
	if err == nil {
		c.Close()
		return fmt.Errorf("payload %s still answers SSH at %s over a cut link", bd.Config.Name, rc.Address)
	}
	return nil
}

// pullRate measures the pull of file from the payload's outbox: from the
// window's "ending" (the sweep starts) to the file's "queued" (its last
// byte is on the bus), and checks it is no faster than the link's shape.
func pullRate(ctx context.Context, file, max string) error {
	w := get(ctx)
	limit, err := bench.ParseBitRate(max)
	if err != nil {
		return err
	}
	if _, err := result(ctx); err != nil {
		return err
	}
	var ending, queued *bus.Event
	var size int64
	for _, e := range w.bus.Log.Events() {
		switch {
		case e.Window == w.window.ID && e.Kind == bus.KindState && e.State == bus.Ending && ending == nil:
			ending = &e
		case e.Kind == bus.KindDownlink && e.Name == "queued" && e.File == file && queued == nil:
			queued = &e
			fmt.Sscanf(e.Detail, file+": %d bytes", &size)
		}
	}
	if ending == nil || queued == nil || size == 0 {
		return fmt.Errorf("no sweep of %s in the events (ending %v, queued %v, %d bytes)", file, ending != nil, queued != nil, size)
	}
	d := queued.Time.Sub(ending.Time)
	rate := float64(size*8) / d.Seconds()
	fmt.Fprintf(w.failOut(), "    measured: pulled %s (%d bytes) in %v: %.3f Mbit/s over a link shaped to %s\n", file, size, d.Round(time.Millisecond), rate/1e6, max)
	// A token bucket lets its burst through at once: allow it, and no
	// more than 10% over the rate.
	if rate > float64(limit)*1.1 {
		return fmt.Errorf("pulled %s at %.3f Mbit/s, more than the %s the link is shaped to", file, rate/1e6, max)
	}
	return nil
}

func qemuStopsDead(ctx context.Context) error {
	w := get(ctx)
	b, err := w.open(ctx)
	if err != nil {
		return err
	}
	m := b.Boards[w.window.Board].Machine()
	if m == nil {
		return fmt.Errorf("board %s is not a QEMU payload (power kind %s)", w.window.Board, b.Boards[w.window.Board].Config.Power.Kind)
	}
	return m.Off(ctx) // past the bus: it did not switch the payload off
}

func reasonHasConsoleTail(ctx context.Context) error {
	w := get(ctx)
	r, err := result(ctx)
	if err != nil {
		return err
	}
	const marker = "; console tail:\n"
	i := strings.Index(r.Reason, marker)
	if i < 0 {
		return fmt.Errorf("the reason %q has no console tail", r.Reason)
	}
	tail := strings.Split(r.Reason[i+len(marker):], "\n")
	console, err := os.ReadFile(w.bus.Boards[w.window.Board].Console)
	if err != nil {
		return fmt.Errorf("board %s's console: %v", w.window.Board, err)
	}
	last := tail[len(tail)-1]
	if strings.TrimSpace(last) == "" || !strings.Contains(string(console), last) {
		return fmt.Errorf("the console tail in the reason does not end with a line of board %s's console:\n%s", w.window.Board, strings.Join(tail, "\n"))
	}
	return nil
}
