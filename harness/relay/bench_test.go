package relay

import (
	"context"
	"testing"

	"github.com/satbench/hil/fixtures/relaysim"
)

// BenchmarkSwitch times switching a relay and reading it back through a
// Channel, the way the bus switches a payload: lock file, gap, open, the
// exchange(s), close, against each simulated board on a pty. The gap
// dominates: a switch is two exchanges.
func BenchmarkSwitch(b *testing.B) {
	for _, protocol := range Protocols() {
		b.Run(protocol, func(b *testing.B) {
			sim, err := relaysim.Start(relaysim.Config{Protocol: protocol})
			if err != nil {
				b.Fatal(err)
			}
			defer sim.Close()
			// The protocol's own gap, as on a bench.
			board, err := Open(Config{Protocol: protocol, Port: Port{Path: sim.Path()}})
			if err != nil {
				b.Fatal(err)
			}
			first, _ := board.Channels()
			ch := &Channel{Board: board, Channel: first, Name: "bench"}
			ctx := context.Background()
			on := false
			for b.Loop() {
				on = !on
				var err error
				if on {
					err = ch.On(ctx)
				} else {
					err = ch.Off(ctx)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
