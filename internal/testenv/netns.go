package testenv

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
		// A new namespace has loopback down; a host has it up.
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Fatalf("setting loopback up on the test's own host: %v", err)
		}
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

// Cable makes, on a host of the test's own (see OwnHost), what a real
// board cabled to the host's NIC nic is: a veth whose host end is nic,
// down, and whose other end is eth0 with addr (e.g. 10.42.0.2/24), up, in
// a network namespace of its own, the board's. It returns a function that
// runs f in the board's namespace: the sockets f makes are the board's.
// The namespace lasts until t ends.
func Cable(t testing.TB, nic string, addr netip.Prefix) (do func(f func() error) error) {
	t.Helper()
	work := make(chan func())
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends in the board's namespace.
		runtime.LockOSThread()
		ready <- cable(nic, addr)
		for f := range work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		close(work)
		t.Fatalf("cabling a board to %s: %v", nic, err)
	}
	t.Cleanup(func() { close(work) })
	return func(f func() error) error {
		errc := make(chan error, 1)
		work <- func() { errc <- f() }
		return <-errc
	}
}

// cable moves this thread into a new namespace, the board's, and makes the
// veth from there to nic in the namespace it left.
func cable(nic string, addr netip.Prefix) error {
	host, err := netns.Get()
	if err != nil {
		return err
	}
	defer host.Close()
	board, err := netns.New()
	if err != nil {
		return err
	}
	defer board.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: nic, PeerNamespace: netlink.NsFd(host)}
	if err := netlink.LinkAdd(veth); err != nil {
		return err
	}
	for _, name := range []string{"lo", "eth0"} {
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if name == "eth0" {
			ipNet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}
			if err := netlink.AddrAdd(lk, &netlink.Addr{IPNet: ipNet}); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			return err
		}
	}
	return nil
}
