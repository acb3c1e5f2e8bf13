// Command hil is a hardware-in-the-loop bench for satellite payloads.
package main

import (
	"os"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/harness/cli"
)

func main() {
	payload.RunIfChild() // the sim bench runs the reference payload as this binary
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
