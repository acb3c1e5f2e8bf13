package testenv

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// ownHostEnv names the test that a child test binary runs as its own
// host (see OwnHost).
const ownHostEnv = "HIL_TEST_OWN_HOST"

// OwnHost lets the top-level test t treat a network namespace as the host:
// make, move and address interfaces as on the bench host, which a test
// must never do to the real one. Called in the test binary, it runs t
// again in a child test binary started in a new network namespace, reports
// the child's outcome as t's, and returns false: t must return. In the
// child it returns true, and t goes on there. It needs what RequireNetlab
// needs.
func OwnHost(t *testing.T) bool {
	t.Helper()
	if os.Getenv(ownHostEnv) == t.Name() {
		return true
	}
	RequireNetlab(t)
	if strings.Contains(t.Name(), "/") {
		t.Fatal("testenv.OwnHost: call it from a top-level test, not a subtest")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0],
		"-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.count", "1", "-test.v")
	cmd.Env = append(os.Environ(), ownHostEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	// A filter that matched nothing also exits 0: the PASS line proves it ran.
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s in a network namespace of its own: %v\n%s", t.Name(), err, out)
	}
	if testing.Verbose() {
		t.Logf("in a network namespace of its own:\n%s", out)
	}
	return false
}
