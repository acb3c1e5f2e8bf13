// Package features holds the Gherkin features; these tests run them,
// strictly, as `hil run` does, each bench running the scenarios its tags
// select: the sim bench; the S3 ones (@s3) again with a real MinIO server
// as the store; the network ones on a process payload behind a veth; and
// what a QEMU payload can run on the qemu bench.
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

// The sim bench and the qemu bench run side by side: both mostly wait,
// for windows and for the emulated guest.
func TestFeatures(t *testing.T) {
	t.Parallel()
	run(t, "../benches/sim.yaml", "")
}

func TestFeaturesMinIO(t *testing.T) {
	bin := testenv.RequireMinIO(t)
	t.Setenv("HIL_MINIO", bin)
	run(t, "../benches/sim-minio.yaml", "@s3")
}

// The network features, on a bench whose payload is a local process
// behind a veth (root, no QEMU).
func TestFeaturesNetns(t *testing.T) {
	testenv.RequireNetlab(t)
	run(t, "../benches/netns.yaml", "")
}

// The features a QEMU payload can run, on the image `make image` built
// (root, QEMU).
func TestFeaturesQEMU(t *testing.T) {
	testenv.RequireNetlab(t)
	testenv.RequireQEMU(t, "..")
	testenv.RequireMinIO(t) // the bench finds it as RequireMinIO does
	t.Parallel()
	run(t, "../benches/qemu.yaml", "")
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
