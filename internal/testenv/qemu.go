package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireQEMUEnv names the variable that, set to 1, turns a missing QEMU
// or payload image from a skip into a failure. .ci/run sets it.
const RequireQEMUEnv = "HIL_REQUIRE_QEMU"

// RequireQEMU checks that qemu-system-aarch64 is installed and that the
// payload image is built in root/build/image (root: the repository,
// relative to the test's directory). If not, it skips t with one line,
// or fails t when HIL_REQUIRE_QEMU=1. A QEMU payload on the bench network
// needs RequireNetlab too.
func RequireQEMU(t testing.TB, root string) {
	t.Helper()
	var missing string
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		missing = "qemu-system-aarch64 not installed (Debian: apt-get install qemu-system-arm)"
	} else {
		for _, f := range []string{"Image", "initramfs.cpio.gz"} {
			if _, err := os.Stat(filepath.Join(root, "build", "image", f)); err != nil {
				missing = "payload image not built: run `make image`"
				break
			}
		}
	}
	switch {
	case missing == "":
	case os.Getenv(RequireQEMUEnv) == "1":
		t.Fatalf("%s=1 forbids skipping: %s", RequireQEMUEnv, missing)
	default:
		t.Skip(missing + "; CI runs these")
	}
}
