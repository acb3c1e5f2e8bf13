// Package features holds the Gherkin features; these tests run them,
// strictly, as `hil run` does: all of them on the sim bench, and the S3
// ones (@s3) again on the sim bench with a real MinIO server as the store.
package features_test

import (
	"os"
	"testing"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/harness/cli"
	"github.com/satbench/hil/harness/steps"
	"github.com/satbench/hil/internal/testenv"
)

func TestMain(m *testing.M) {
	payload.RunIfChild() // the sim bench runs the reference payload as this binary
	cli.RunIfChild()     // the power steps run "hil power" as this binary
	os.Exit(m.Run())
}

func TestFeatures(t *testing.T) {
	run(t, "../benches/sim.yaml", "")
}

func TestFeaturesMinIO(t *testing.T) {
	bin := testenv.RequireMinIO(t)
	t.Setenv("HIL_MINIO", bin)
	run(t, "../benches/sim-minio.yaml", "@s3")
}

func run(t *testing.T, bench, tags string) {
	s := steps.Suite(steps.Options{
		Bench:    bench,
		Paths:    []string{"."},
		Tags:     tags,
		Format:   "pretty",
		TestingT: t,
	})
	if s.Run() != 0 {
		t.Fatalf("features on %s failed (godog strict mode: undefined and pending steps fail too)", bench)
	}
}
