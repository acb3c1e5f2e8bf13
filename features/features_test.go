// Package features holds the Gherkin features; this test runs them on the
// sim bench, strictly, as `hil run` does.
package features_test

import (
	"os"
	"testing"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/harness/steps"
)

func TestMain(m *testing.M) {
	payload.RunIfChild() // the sim bench runs the reference payload as this binary
	os.Exit(m.Run())
}

func TestFeatures(t *testing.T) {
	s := steps.Suite(steps.Options{
		Bench:    "../benches/sim.yaml",
		Paths:    []string{"."},
		Format:   "pretty",
		TestingT: t,
	})
	if s.Run() != 0 {
		t.Fatal("features failed (godog strict mode: undefined and pending steps fail too)")
	}
}
