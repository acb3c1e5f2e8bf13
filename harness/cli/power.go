package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/satbench/hil/fixtures/relaysim"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/power"
)

// powerCmd switches one board's power: hil power on|off|cycle|status.
func powerCmd(args []string, stdout, stderr io.Writer) int {
	ops := []string{"on", "off", "cycle", "status"}
	if len(args) == 0 || !slices.Contains(ops, args[0]) {
		got := "nothing"
		if len(args) > 0 {
			got = fmt.Sprintf("%q", args[0])
		}
		fmt.Fprintf(stderr, "hil power: got %s; want on, off, cycle or status, then a board\n%s", got, usage)
		return 2
	}
	op := args[0]
	name := "hil power " + op
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	benchFile := fs.String("bench", filepath.Join("benches", "sim.yaml"), "bench file")
	off := fs.Duration("off", 0, "how long cycle keeps the payload off; 0: the board's power.off_time")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a relay port another run holds")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n%s", name, err, usage)
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "%s: want one board, got %d arguments\n%s", name, len(pos), usage)
		return 2
	}
	if *off < 0 || *wait <= 0 {
		fmt.Fprintf(stderr, "%s: --off %v, --wait %v: want --off 0 or more and --wait more than 0\n", name, *off, *wait)
		return 2
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	var bc *bench.Board
	var names []string
	for _, c := range b.Boards {
		names = append(names, c.Name)
		if c.Name == pos[0] {
			bc = c
		}
	}
	if bc == nil {
		fmt.Fprintf(stderr, "%s: bench %s has no board %q; its boards: %v\n", name, *benchFile, pos[0], names)
		return 2
	}
	p, err := bus.StandalonePower(bc, *wait, func(holder string) {
		fmt.Fprintf(stderr, "%s: waiting up to %v for the relay port, in use by %s\n", name, *wait, holder)
	})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if *off == 0 {
		*off = bc.Power.OffTime.D()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch op {
	case "on":
		err = p.On(ctx)
	case "off":
		err = p.Off(ctx)
	case "cycle":
		err = p.Cycle(ctx, *off)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	st, err := p.State(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	how := p.String()
	if st == power.Unknown {
		how += " cannot report its state"
	}
	fmt.Fprintf(stdout, "%s: %s (%s)\n", bc.Name, st, how)
	// Drivers with a read-back check it themselves; this catches a PDU
	// whose status disagrees with what its commands claim.
	want := map[string]power.State{"on": power.On, "off": power.Off, "cycle": power.On}[op]
	if op != "status" && st != power.Unknown && st != want {
		fmt.Fprintf(stderr, "%s: %s reads %s after switching %s\n", name, p, st, want)
		return 1
	}
	return 0
}

// relaysimCmd runs a simulated relay board until interrupted, so that hil
// power and a bench can be tried without hardware.
func relaysimCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hil relaysim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	protocol := fs.String("protocol", "", "lcus, numato, kmtronic, denkovi or devantech")
	channels := fs.Int("channels", 0, "relays on the board; 0: the protocol's usual size")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "hil relaysim: %v\n%s", err, usage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hil relaysim: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	sim, err := relaysim.Start(relaysim.Config{Protocol: *protocol, Channels: *channels,
		OnChange: func(ch int, on bool) {
			fmt.Fprintf(stdout, "relay %d %s\n", ch, map[bool]string{true: "on", false: "off"}[on])
		}})
	if err != nil {
		fmt.Fprintf(stderr, "hil relaysim: %v\n", err)
		return 2
	}
	defer sim.Close()
	fmt.Fprintf(stdout, "hil relaysim: a %s board with %d relays on %s; set a board's power.relay.port to it. Ctrl-C stops.\n",
		sim.Protocol(), sim.Channels(), sim.Path())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return 0
}
