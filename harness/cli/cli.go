// Package cli is the hil command line; cmd/hil only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/perf"
	"github.com/satbench/hil/harness/steps"
	"github.com/satbench/hil/harness/store"
)

// Version is set at link time (-X); otherwise it comes from the build info.
var Version = ""

const usage = `usage:
  hil run [--bench FILE] [--tags EXPR] [--format pretty|progress|junit:FILE|cucumber:FILE] [-v] [features...]
  hil bench downlink [--bench FILE] [--files N] [--size SIZE]
  hil bench pi [--apps N] [--duration D] [--health D]
  hil power on|off|cycle|status BOARD [--bench FILE] [--off D] [--wait D]
  hil relaysim --protocol lcus|numato|kmtronic|denkovi|devantech [--channels N]
  hil doctor [--clean] [--image DIR]
  hil version
`

// RunIfChild runs the command line and exits, if this process was started
// by the feature steps to run "hil ..." (steps.CLIChildEnv): a test binary
// that runs the features calls it first thing, as the hil binary runs the
// command line anyway.
func RunIfChild() {
	if os.Getenv(steps.CLIChildEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
}

// Main runs the hil command with args (without the program name) and
// returns the exit status: 0 only when everything asked for passed, 1 when
// a scenario failed, 2 for a usage or configuration error.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return run(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "power":
		return powerCmd(args[1:], stdout, stderr)
	case "relaysim":
		return relaysimCmd(args[1:], stdout, stderr)
	case "doctor":
		return doctorCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "hil", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "hil: unknown command %q (want run, bench, power, relaysim, doctor or version)\n%s", args[0], usage)
	return 2
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// parseInterleaved parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hil run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	benchFile := fs.String("bench", filepath.Join("benches", "sim.yaml"), "bench file")
	tags := fs.String("tags", "", "godog tag expression, e.g. '@sim && ~@slow'")
	format := fs.String("format", "pretty", "pretty, progress, junit:FILE or cucumber:FILE")
	verbose := fs.Bool("v", false, "print every bus event as it happens")
	paths, err := parseInterleaved(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "hil run: %v\n%s", err, usage)
		return 2
	}
	if err := checkFormat(*format); err != nil {
		fmt.Fprintf(stderr, "hil run: --format: %v\n", err)
		return 2
	}
	if len(paths) == 0 {
		paths = []string{"features"}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(stderr, "hil run: feature path %s: %v\n", p, errors.Unwrap(err))
			return 2
		}
	}
	// A broken bench is one clear line, not a failure in every scenario.
	if err := checkBench(*benchFile); err != nil {
		fmt.Fprintf(stderr, "hil run: %v\n", err)
		return 2
	}
	// Ctrl-C aborts the window in progress, which cuts its payload's
	// power; a second Ctrl-C kills hil at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	opts := steps.Options{Bench: *benchFile, Paths: paths, Tags: *tags, Format: *format,
		Output: stdout, NoColors: !isTerminal(stdout), Context: ctx}
	if *verbose {
		opts.Logf = func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }
	}
	status, err := steps.Run(opts)
	if err != nil {
		fmt.Fprintf(stderr, "hil run: %v\n", err)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "hil run: interrupted; windows in progress were aborted and their payloads powered off")
		return 1
	}
	return status
}

func checkFormat(f string) error {
	for _, one := range strings.Split(f, ",") {
		name, file, hasFile := strings.Cut(one, ":")
		switch name {
		case "pretty", "progress", "junit", "cucumber":
		default:
			return fmt.Errorf("%q is not a format (want pretty, progress, junit:FILE or cucumber:FILE)", name)
		}
		if hasFile {
			if file == "" {
				return fmt.Errorf("%q: empty file name after the colon", one)
			}
			if fi, err := os.Stat(filepath.Dir(file)); err != nil || !fi.IsDir() {
				return fmt.Errorf("%q: directory %s does not exist", one, filepath.Dir(file))
			}
		}
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func benchCmd(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) > 0 && args[0] == "pi":
		return benchPI(args[1:], stdout, stderr)
	case len(args) == 0 || args[0] != "downlink":
		fmt.Fprintf(stderr, "hil bench: want a benchmark name: downlink or pi\n%s", usage)
		return 2
	}
	fs := flag.NewFlagSet("hil bench downlink", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	benchFile := fs.String("bench", filepath.Join("benches", "sim.yaml"), "bench file")
	files := fs.Int("files", 16, "number of files")
	size := fs.String("size", "4MiB", "size of each file, e.g. 64KiB, 4MiB, 1GiB")
	if err := fs.Parse(args[1:]); err != nil {
		fmt.Fprintf(stderr, "hil bench downlink: %v\n%s", err, usage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hil bench downlink: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	n, err := bench.ParseByteSize(*size)
	if err != nil || n <= 0 {
		fmt.Fprintf(stderr, "hil bench downlink: --size %q: want a size above zero, e.g. 4MiB\n", *size)
		return 2
	}
	if *files <= 0 {
		fmt.Fprintf(stderr, "hil bench downlink: --files %d: want 1 or more\n", *files)
		return 2
	}
	if err := checkBench(*benchFile); err != nil {
		fmt.Fprintf(stderr, "hil bench downlink: %v\n", err)
		return 2
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		fmt.Fprintf(stderr, "hil bench downlink: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := perf.Downlink(ctx, perf.DownlinkOptions{Bench: b, Files: *files, Size: int64(n),
		Logf: func(f string, a ...any) { fmt.Fprintf(stderr, "hil bench: "+f+"\n", a...) }})
	if err != nil {
		fmt.Fprintf(stderr, "hil bench downlink: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, r)
	return 0
}

// benchPI runs the Payload Controller scale benchmark.
func benchPI(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hil bench pi", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	apps := fs.Int("apps", 64, "reference payload apps served at once")
	dur := fs.Duration("duration", 30*time.Second, "length of the measured run")
	health := fs.Duration("health", 5*time.Second, "health-check interval")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "hil bench pi: %v\n%s", err, usage)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "hil bench pi: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	case *apps < 1 || *apps > 999:
		fmt.Fprintf(stderr, "hil bench pi: --apps %d: want 1 to 999 (app ids are 3 digits)\n", *apps)
		return 2
	case *dur <= 0:
		fmt.Fprintf(stderr, "hil bench pi: --duration %v: want more than 0, e.g. 30s\n", *dur)
		return 2
	case *health <= 0:
		fmt.Fprintf(stderr, "hil bench pi: --health %v: want more than 0, e.g. 5s\n", *health)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := perf.PayloadInterface(ctx, perf.PIOptions{Apps: *apps, Duration: *dur, HealthInterval: *health,
		Logf: func(f string, a ...any) { fmt.Fprintf(stderr, "hil bench: "+f+"\n", a...) }})
	if err != nil {
		fmt.Fprintf(stderr, "hil bench pi: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, r)
	return 0
}

// checkBench loads the bench and checks that what it needs from this
// machine is there.
func checkBench(file string) error {
	b, err := bench.Load(file)
	if err != nil {
		return err
	}
	if b.Store.Kind == "minio" {
		if _, err := store.FindMinIO(); err != nil {
			return fmt.Errorf("bench %s: %w", file, err)
		}
	}
	if b.Network.Enabled() {
		if err := netlab.Available(); err != nil {
			return fmt.Errorf("bench %s: network: %w", file, err)
		}
	}
	return nil
}
