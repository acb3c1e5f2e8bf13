// Package steps is the godog step library: Gherkin steps that drive the
// bus and assert on its event log and on the world (S3 objects, files on
// the payload, power). Each scenario gets its own bus, on a bench loaded
// afresh, with its state kept in the scenario's context.Context.
package steps

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cucumber/godog"

	"github.com/satbench/hil/harness/bench"
)

// Options configure a feature run.
type Options struct {
	Bench  string   // bench file; required
	Paths  []string // feature files or directories; default "features"
	Tags   string   // godog tag expression
	Format string   // pretty (default), progress, junit:FILE, cucumber:FILE, ...
	Output io.Writer
	// NoColors turns off ANSI colours, for output that is not a terminal.
	NoColors bool
	// TestingT, when set, runs each scenario as a subtest of it.
	TestingT *testing.T
	// Logf receives progress lines (bus events as they happen); nil: quiet.
	Logf func(format string, args ...any)
	// Context, when it ends (Ctrl-C), aborts the window in progress, which
	// cuts its payload's power; the remaining scenarios then fail fast.
	Context context.Context
}

// Run runs the features and returns godog's status (0 passed, 1 failed,
// 2 bad options). Matching no scenario at all is a failure: a run that
// checks nothing must not pass.
func Run(opts Options) (int, error) {
	var scenarios atomic.Int64
	s := Suite(opts)
	init := s.ScenarioInitializer
	s.ScenarioInitializer = func(sc *godog.ScenarioContext) {
		sc.Before(func(ctx context.Context, _ *godog.Scenario) (context.Context, error) {
			scenarios.Add(1)
			return ctx, nil
		})
		init(sc)
	}
	status := s.Run()
	if status == 0 && scenarios.Load() == 0 {
		return 1, fmt.Errorf("no scenario in %s matched tags %q", strings.Join(s.Options.Paths, " "), s.Options.Tags)
	}
	return status, nil
}

// Suite returns the godog suite for opts, in strict mode: an undefined or
// pending step fails its scenario.
func Suite(opts Options) godog.TestSuite {
	paths := opts.Paths
	if len(paths) == 0 {
		paths = []string{"features"}
	}
	format := opts.Format
	if format == "" {
		format = "pretty"
	}
	out := opts.Output
	if out == nil {
		out = os.Stdout
	}
	tags := opts.Tags
	// A bench that does not load fails every scenario, saying why.
	if b, err := bench.Load(opts.Bench); err == nil && b.Tags != "" {
		tags = strings.Trim(tags+" && "+b.Tags, " &")
	}
	return godog.TestSuite{
		Name:                "hil",
		ScenarioInitializer: func(sc *godog.ScenarioContext) { initScenario(sc, opts) },
		Options: &godog.Options{
			Format:   format,
			Paths:    paths,
			Tags:     tags,
			Strict:   true,
			NoColors: opts.NoColors,
			Output:   out,
			TestingT: opts.TestingT,
			// Steps derive their contexts from it.
			DefaultContext: opts.Context,
		},
	}
}

func initScenario(sc *godog.ScenarioContext, opts Options) {
	sc.Before(func(ctx context.Context, s *godog.Scenario) (context.Context, error) {
		w, err := newWorld(opts)
		if err != nil {
			return ctx, err
		}
		return context.WithValue(ctx, worldKey{}, w), nil
	})
	sc.After(func(ctx context.Context, s *godog.Scenario, serr error) (context.Context, error) {
		w := get(ctx)
		if w == nil {
			return ctx, nil
		}
		if serr != nil {
			// What a person needs to see why it failed: the bus's story.
			ctx = godog.Attach(ctx, godog.Attachment{FileName: "events.txt", MediaType: "text/plain", Body: []byte(w.eventText())})
			fmt.Fprintf(w.failOut(), "--- events of %q\n%s", s.Name, w.eventText())
			// And each payload's serial console, as a bench engineer
			// would look at it next.
			for _, c := range w.consoles() {
				ctx = godog.Attach(ctx, godog.Attachment{FileName: c.board + "-console.log", MediaType: "text/plain", Body: c.text})
				fmt.Fprintf(w.failOut(), "--- console of %s (last lines; all %d bytes in %s-console.log of the report)\n%s\n", c.board, len(c.text), c.board, lastLines(c.text, 20))
			}
		}
		return ctx, w.close()
	})
	signalingSteps(sc)
	downlinkSteps(sc)
	piSteps(sc)
	powerSteps(sc)
	networkSteps(sc)
}

type worldKey struct{}

func get(ctx context.Context) *world {
	w, _ := ctx.Value(worldKey{}).(*world)
	return w
}
