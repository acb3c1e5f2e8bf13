package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/store"
)

// doctorCmd says what this machine can run (the sim bench always; the
// netns and qemu benches with root, QEMU and the payload image), and finds
// what a crashed run left behind: network namespaces whose run is gone.
// With --clean it removes them. It exits 1 if leftovers remain.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hil doctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	clean := fs.Bool("clean", false, "remove what crashed runs left behind")
	image := fs.String("image", "build/image", "directory of the payload image (make image)")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "hil doctor: %v\n%s", err, usage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hil doctor: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	check := func(what string, err error, needed string) {
		if err != nil {
			fmt.Fprintf(stdout, "  no   %s: %v (%s)\n", what, err, needed)
			return
		}
		fmt.Fprintf(stdout, "  ok   %s\n", what)
	}
	fmt.Fprintln(stdout, "hil doctor: what this machine can run")
	fmt.Fprintln(stdout, "  ok   sim bench (no root, no hardware)")
	netErr := netlab.Available()
	check("network labs (benches netns and qemu)", netErr, "needs root")
	_, err := exec.LookPath("qemu-system-aarch64")
	check("qemu-system-aarch64", err, "the qemu bench needs it: apt-get install qemu-system-arm")
	var imgErr error
	for _, f := range []string{"Image", "initramfs.cpio.gz"} {
		if _, err := os.Stat(filepath.Join(*image, f)); err != nil {
			imgErr = fmt.Errorf("%s missing", filepath.Join(*image, f))
			break
		}
	}
	check("payload image in "+*image, imgErr, "the qemu bench needs it: make image")
	_, err = store.FindMinIO()
	check("MinIO", err, "benches sim-minio and qemu need it: make minio")
	if netErr != nil {
		fmt.Fprintln(stdout, "leftovers: not looked for (network namespaces need root to read)")
		return 0
	}
	left, err := netlab.Leftovers()
	if err != nil {
		fmt.Fprintf(stderr, "hil doctor: %v\n", err)
		return 1
	}
	if len(left) == 0 {
		fmt.Fprintln(stdout, "leftovers: none")
		return 0
	}
	fmt.Fprintf(stdout, "leftovers: %d network namespace(s) of runs that are gone\n", len(left))
	status := 0
	for _, l := range left {
		if len(l.NICs) > 0 {
			// The host lacks these until the namespace goes.
			l.Why += "; it holds the host's " + strings.Join(l.NICs, ", ") + ", which removing it gives back (a physical NIC; a VLAN is deleted)"
		}
		switch {
		case !*clean:
			fmt.Fprintf(stdout, "  %s: %s\n", l.Namespace, l.Why)
			status = 1
		default:
			if err := netlab.Clean(l); err != nil {
				fmt.Fprintf(stdout, "  %s: %s; not removed: %v\n", l.Namespace, l.Why, err)
				status = 1
				continue
			}
			fmt.Fprintf(stdout, "  %s: %s; removed\n", l.Namespace, l.Why)
		}
	}
	if status != 0 && !*clean {
		fmt.Fprintln(stdout, "run `hil doctor --clean` to remove them")
	}
	return status
}
