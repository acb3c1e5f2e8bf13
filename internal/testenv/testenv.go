// Package testenv decides what tests do when the machine lacks a part
// they need: locally they skip with one line saying how to get it; where
// the part is required (CI) they fail, so that a run can never pass by
// skipping.
package testenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/store"
)

// RequireMinIOEnv names the variable that, set to 1, turns a missing MinIO
// server from a skip into a failure. .ci/run sets it.
const RequireMinIOEnv = "HIL_REQUIRE_MINIO"

// RequireMinIO returns the MinIO server binary store.StartMinIO runs (see
// store.FindMinIO). If none is installed, it skips t with one line, or
// fails t when HIL_REQUIRE_MINIO=1. A HIL_MINIO that names no usable
// binary fails t in any case: it is a mistake, not an absence.
func RequireMinIO(t testing.TB) string {
	t.Helper()
	bin, err := store.FindMinIO()
	switch {
	case err == nil:
		return bin
	case !errors.Is(err, store.ErrNoMinIO):
		t.Fatal(err)
	case os.Getenv(RequireMinIOEnv) == "1":
		t.Fatalf("%s=1 forbids skipping: %v", RequireMinIOEnv, err)
	default:
		t.Skip("MinIO not installed: run `make minio` or set HIL_MINIO; CI runs these")
	}
	return ""
}

// StartMinIO runs a MinIO server for t, as RequireMinIO allows, with its
// data in a new temporary directory and its output in t's log. It is
// closed when t ends.
func StartMinIO(t testing.TB) *store.MinIO {
	t.Helper()
	RequireMinIO(t)
	m, err := store.StartMinIO(context.Background(), filepath.Join(t.TempDir(), "minio"), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// RequireNetlabEnv names the variable that, set to 1, turns a host that
// cannot build network labs from a skip into a failure.
const RequireNetlabEnv = "HIL_REQUIRE_NETLAB"

// netlabAvailable is netlab.Available; tests replace it.
var netlabAvailable = netlab.Available

// RequireNetlab skips t with one line unless this process can build
// network labs (netlab.Available: Linux, root, /dev/net/tun), or fails t
// when HIL_REQUIRE_NETLAB=1.
func RequireNetlab(t testing.TB) {
	t.Helper()
	err := netlabAvailable()
	switch {
	case err == nil:
	case os.Getenv(RequireNetlabEnv) == "1":
		t.Fatalf("%s=1 forbids skipping: %v", RequireNetlabEnv, err)
	default:
		t.Skip(err.Error() + "; CI runs these")
	}
}
