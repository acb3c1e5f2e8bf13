//go:build linux

package netlab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/internal/testenv"
)

// noRootEnv makes the test binary try to build a lab and report how that
// failed, instead of running tests: TestNeedRoot runs it without root.
const noRootEnv = "NETLAB_TEST_NOROOT"

func TestMain(m *testing.M) {
	if os.Getenv(noRootEnv) == "1" {
		tryWithoutRoot()
		return
	}
	// Owner records go to a directory of the run's, not /run/hil. The
	// namespaces are real, in /run/netns, with the usual names.
	dir, err := os.MkdirTemp("", "netlab-records-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	netlab.RecordDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var busAddr = netip.MustParsePrefix("10.42.0.1/24")

// newLab creates a lab for t, closed when t ends.
func newLab(t testing.TB) *netlab.Lab {
	t.Helper()
	testenv.RequireNetlab(t)
	lab, err := netlab.Create(t.Context(), netlab.Config{BusAddr: busAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return lab
}

// newVeth adds to lab a veth name with address addr, failing t if it
// cannot.
func newVeth(t testing.TB, lab *netlab.Lab, name, addr string) *netlab.Veth {
	t.Helper()
	v, err := lab.Veth(t.Context(), name, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// exists reports whether the named network namespace is in /run/netns.
func exists(name string) bool {
	_, err := os.Lstat(filepath.Join("/run/netns", name))
	return err == nil
}

// lockThread locks the test's goroutine to its thread, for the length of
// t, and returns the thread's network namespace.
func lockThread(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// checkThread fails t if the current thread is no longer in ns.
func checkThread(t *testing.T, ns netns.NsHandle, after string) {
	t.Helper()
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(ns) {
		t.Fatalf("after %s the calling thread is in network namespace %s, want %s", after, now, ns)
	}
}

// echo serves ln, echoing what each connection sends, until ln is closed.
func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// listenIn listens on TCP at addr in v's namespace, echoing, until t ends.
func listenIn(t testing.TB, v *netlab.Veth, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := v.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go echo(ln)
	return ln
}

// roundTrip sends msg on c and reads it back, within d.
func roundTrip(c net.Conn, msg string, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("read %q, want %q", buf, msg)
	}
	return nil
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  netlab.Config
		want string
	}{
		{"no bus address", netlab.Config{}, "BusAddr is required"},
		{"IPv6", netlab.Config{BusAddr: netip.MustParsePrefix("fd00::1/64")}, "bus address fd00::1/64 is not IPv4"},
		{"public", netlab.Config{BusAddr: netip.MustParsePrefix("8.8.8.1/24")}, "bus address 8.8.8.1/24 is not private"},
		{"no room", netlab.Config{BusAddr: netip.MustParsePrefix("10.42.0.1/31")}, "leaves no addresses for payloads"},
		{"network address", netlab.Config{BusAddr: netip.MustParsePrefix("10.42.0.0/24")}, "is its network's own address"},
		{"name without prefix", netlab.Config{Name: "bench-1", BusAddr: busAddr}, `lab name "bench-1" does not start with "hil-"`},
		{"name too long", netlab.Config{Name: "hil-0123456789ab", BusAddr: busAddr}, `lab name "hil-0123456789ab" is 16 bytes, more than 15`},
		{"name with slash", netlab.Config{Name: "hil-a/b", BusAddr: busAddr}, `lab name "hil-a/b" has '/'`},
		{"bridge too long", netlab.Config{Bridge: "bridge-of-the-bus", BusAddr: busAddr}, `bridge name "bridge-of-the-bus" is 17 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, err := netlab.Create(t.Context(), tc.cfg)
			if err == nil {
				lab.Close()
				t.Fatalf("Create(%+v) succeeded", tc.cfg)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Create(%+v) = %q, want one line with %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestNotOnHost(t *testing.T) {
	for _, tc := range []struct {
		p    string
		want string // in the error; "" for none
	}{
		{"10.42.0.1/24", ""},
		{"127.1.0.1/16", "netlab: bench network 127.1.0.0/16 is on the host's own network: lo has 127.0.0.0/8"},
		{"127.0.0.0/4", "lo has 127.0.0.0/8"},
	} {
		err := netlab.NotOnHost(netip.MustParsePrefix(tc.p))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("NotOnHost(%s) = %v, want %q", tc.p, err, tc.want)
		}
	}
	if err := netlab.NotOnHost(netip.Prefix{}); err == nil {
		t.Error("NotOnHost(invalid prefix) succeeded")
	}
}

func TestShapeString(t *testing.T) {
	for _, tc := range []struct {
		s    netlab.Shape
		want string
	}{
		{netlab.Shape{}, "none"},
		{netlab.Shape{Rate: 1e6, Delay: 50 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.01}, "rate 1Mbit/s delay 50ms jitter 5ms loss 1%"},
		{netlab.Shape{Rate: 2_500_000}, "rate 2.5Mbit/s"},
		{netlab.Shape{Rate: 9600}, "rate 9.6kbit/s"},
		{netlab.Shape{Rate: 800}, "rate 800bit/s"},
		{netlab.Shape{Rate: 10e9}, "rate 10Gbit/s"},
		{netlab.Shape{Delay: 300 * time.Millisecond}, "delay 300ms"},
		{netlab.Shape{Loss: 0.07}, "loss 7%"},
		{netlab.Shape{Loss: 0.005}, "loss 0.5%"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.s, got, tc.want)
		}
		if got, want := tc.s.IsZero(), tc.want == "none"; got != want {
			t.Errorf("%#v.IsZero() = %v, want %v", tc.s, got, want)
		}
	}
}

// tryWithoutRoot is the test binary as TestNeedRoot runs it: it reports
// what Available and Create say.
func tryWithoutRoot() {
	dir, err := os.MkdirTemp("", "netlab-records-")
	if err == nil {
		defer os.RemoveAll(dir)
		netlab.RecordDir = dir
	}
	report := func(what string, err error) {
		fmt.Printf("%s\t%v\t%v\n", what, errors.Is(err, netlab.ErrNeedRoot), err)
	}
	report("available", netlab.Available())
	lab, err := netlab.Create(context.Background(), netlab.Config{Name: "hil-noroot-1", BusAddr: busAddr})
	if err == nil {
		lab.Close()
	}
	report("create", err)
}

func TestNeedRoot(t *testing.T) {
	var out []byte
	if os.Geteuid() != 0 {
		// Without root already: ask directly.
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout := os.Stdout
		os.Stdout = w
		tryWithoutRoot()
		os.Stdout = stdout
		w.Close()
		out, _ = io.ReadAll(r)
	} else {
		// Root: run this binary as nobody. Its directory must be one nobody
		// can enter, which the go tool's and t.TempDir's are not.
		dir, err := os.MkdirTemp("", "netlab-noroot-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "netlab.test")
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), bin)
		cmd.Env = append(os.Environ(), noRootEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Stderr = os.Stderr
		if out, err = cmd.Output(); err != nil {
			t.Fatalf("running the test binary as nobody: %v", err)
		}
	}
	want := map[string]string{
		"available": "netlab: creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root or use the sim bench",
		"create":    "netlab: creating network namespace hil-noroot-1 needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root or use the sim bench",
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s\nwant %d lines", out, len(want))
	}
	for _, line := range lines {
		what, rest, _ := strings.Cut(line, "\t")
		is, msg, _ := strings.Cut(rest, "\t")
		if msg != want[what] || is != "true" {
			t.Errorf("%s without root: %q (wraps ErrNeedRoot: %s), want %q wrapping it", what, msg, is, want[what])
		}
	}
}

func TestCreateClose(t *testing.T) {
	testenv.RequireNetlab(t)
	host := lockThread(t)
	lab, err := netlab.Create(t.Context(), netlab.Config{BusAddr: busAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	checkThread(t, host, "Create")
	name := lab.Name()
	if !strings.HasPrefix(name, netlab.Prefix) || !exists(name) {
		t.Fatalf("network namespace %s is not in /run/netns", name)
	}
	if lab.BusAddr() != busAddr {
		t.Errorf("BusAddr() = %s, want %s", lab.BusAddr(), busAddr)
	}
	rec := filepath.Join(netlab.RecordDir, name+".json")
	if _, err := os.Stat(rec); err != nil {
		t.Errorf("owner record: %v", err)
	}

	err = lab.Do(func() error {
		in, err := netns.Get()
		if err != nil {
			return err
		}
		defer in.Close()
		want, err := netns.GetFromName(name)
		if err != nil {
			return err
		}
		defer want.Close()
		if !in.Equal(want) {
			return fmt.Errorf("Do ran in %s, want %s (%s)", in, want, name)
		}
		for _, n := range []string{"lo", "br0"} {
			lk, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			if lk.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("%s is down", n)
			}
		}
		br, _ := netlink.LinkByName("br0")
		if br.Type() != "bridge" {
			return fmt.Errorf("br0 is a %s, want a bridge", br.Type())
		}
		addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != busAddr.String() {
			return fmt.Errorf("br0 has addresses %v, want %s", addrs, busAddr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkThread(t, host, "Do")

	if err := lab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if exists(name) {
		t.Errorf("network namespace %s is still in /run/netns after Close", name)
	}
	if _, err := os.Stat(rec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owner record after Close: %v", err)
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := lab.Do(func() error { return nil }); err == nil {
		t.Error("Do after Close succeeded")
	}
	checkThread(t, host, "Close")
}

func TestCreateExisting(t *testing.T) {
	lab := newLab(t)
	_, err := netlab.Create(t.Context(), netlab.Config{Name: lab.Name(), BusAddr: busAddr})
	if err == nil || !strings.Contains(err.Error(), "network namespace "+lab.Name()+" already exists") {
		t.Errorf("Create of a taken name = %v", err)
	}
	if !exists(lab.Name()) {
		t.Errorf("the failed Create removed the namespace of the lab that has it")
	}
	if _, err := os.Stat(filepath.Join(netlab.RecordDir, lab.Name()+".json")); err != nil {
		t.Errorf("the failed Create removed the owner record of the lab that has it: %v", err)
	}
}

func TestVethDialListen(t *testing.T) {
	lab := newLab(t)
	v := newVeth(t, lab, "p1", "10.42.0.2/24")
	if want := "veth p1 in " + lab.Name(); v.String() != want {
		t.Errorf("String() = %q, want %q", v, want)
	}
	if !exists(v.Namespace()) || !strings.HasPrefix(v.Namespace(), lab.Name()) {
		t.Errorf("payload namespace %q is not in /run/netns", v.Namespace())
	}
	ln := listenIn(t, v, "10.42.0.2:0")
	addr := ln.Addr().String()

	host := lockThread(t)
	c, err := lab.Dial(t.Context(), "tcp", addr)
	checkThread(t, host, "Dial")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "hello", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// Only over the bench's bridge: the host's namespace has no way there
	// by its addresses and routes. (Read, not dialled: a dial would send
	// a packet out of the host's default route.)
	if err := netlab.NotOnHost(busAddr); err != nil {
		t.Fatal(err)
	}

	// And back: the payload reaches the bus.
	bl, err := lab.Listen(t.Context(), "tcp", busAddr.Addr().String()+":0")
	checkThread(t, host, "Listen")
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	go echo(bl)
	var pc net.Conn
	err = v.Do(func() error {
		var err error
		pc, err = net.DialTimeout("tcp", bl.Addr().String(), 5*time.Second)
		return err
	})
	checkThread(t, host, "Veth.Do")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := roundTrip(pc, "bus?", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		network, addr, want string
	}{
		{"tcp", "payload:22", `host "payload" is not an IP address`},
		{"tcp", "10.42.0.2", "missing port"},
	} {
		if _, err := lab.Dial(t.Context(), tc.network, tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dial(%s, %s) = %v, want an error with %q", tc.network, tc.addr, err, tc.want)
		}
	}
}

func TestVethInvalid(t *testing.T) {
	lab := newLab(t)
	newVeth(t, lab, "p1", "10.42.0.2/24")
	for _, tc := range []struct {
		name, addr, want string
	}{
		{"", "10.42.0.3/24", "veth name is empty"},
		{"payload-number-1", "10.42.0.3/24", `veth name "payload-number-1" is 16 bytes`},
		{"p2", "10.43.0.3/24", "address 10.43.0.3/24 is not in the bus's network 10.42.0.0/24"},
		{"p2", "10.42.0.1/24", "address 10.42.0.1/24 is the bus's"},
		{"p2", "fd00::2/64", "is not IPv4"},
		{"p1", "10.42.0.3/24", "network namespace " + lab.Name() + "-p1"}, // taken
		{"br0", "10.42.0.3/24", "adding veth"},                            // the bridge's name
	} {
		addr, _ := netip.ParsePrefix(tc.addr)
		_, err := lab.Veth(t.Context(), tc.name, addr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Veth(%q, %s) = %v, want an error with %q", tc.name, tc.addr, err, tc.want)
		}
	}
	if exists(lab.Name() + "-br0") {
		t.Errorf("the failed Veth left its namespace %s-br0", lab.Name())
	}
}

func TestDownUp(t *testing.T) {
	lab := newLab(t)
	v := newVeth(t, lab, "p1", "10.42.0.2/24")
	addr := listenIn(t, v, "10.42.0.2:0").Addr().String()
	c, err := lab.Dial(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "1", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := v.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The open connection stalls...
	if _, err := io.WriteString(c, "2"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read on a connection over a link that is down = %v, want a timeout", err)
	}
	// ... and a new one is not made.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if c2, err := lab.Dial(ctx, "tcp", addr); err == nil {
		c2.Close()
		t.Fatal("dialled the payload over a link that is down")
	}

	if err := v.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A new connection is made again: at once usually, as Up waits for
	// what the kernel does asynchronously and shows.
	dialUntil(t, lab, addr)
	// And the stalled one resumes when TCP retransmits.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "2" {
		t.Fatalf("read after Up = %q, %v; want 2", b, err)
	}
}

// inBus runs f in lab's bus namespace, failing t on its error.
func inBus(t *testing.T, lab *netlab.Lab, f func() error) {
	t.Helper()
	if err := lab.Do(f); err != nil {
		t.Fatal(err)
	}
}

// qdiscs returns the egress qdiscs of the link dev, in this thread's
// namespace, by kind, leaving out the default ones (handle 0).
func qdiscs(dev string) (map[string]netlink.Qdisc, error) {
	lk, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, err
	}
	qs, err := netlink.QdiscList(lk)
	if err != nil {
		return nil, err
	}
	m := map[string]netlink.Qdisc{}
	for _, q := range qs {
		if a := q.Attrs(); a.Handle != 0 && a.Parent != netlink.HANDLE_INGRESS {
			m[q.Type()] = q
		}
	}
	return m, nil
}

// checkTbf reports whether the qdiscs of dev are a tbf at rate bit/s and
// nothing else, or none at all when rate is 0, as a Shape of only a rate
// leaves them.
func checkTbf(dev string, rate int64) error {
	qs, err := qdiscs(dev)
	if err != nil {
		return err
	}
	if rate == 0 {
		if len(qs) != 0 {
			return fmt.Errorf("%s has qdiscs %v, want none", dev, qs)
		}
		return nil
	}
	tbf, ok := qs["tbf"].(*netlink.Tbf)
	if !ok || len(qs) != 1 {
		return fmt.Errorf("%s has qdiscs %v, want a tbf", dev, qs)
	}
	if tbf.Attrs().Parent != netlink.HANDLE_ROOT || tbf.Rate != uint64(rate/8) {
		return fmt.Errorf("%s has tbf %+v, want the root at %d bytes/s", dev, tbf, rate/8)
	}
	return nil
}

// checkNetem reports whether dev has a netem root with a tbf at rate bit/s
// below, as Shape leaves it where the kernel has netem.
func checkNetem(dev string, rate int64) error {
	qs, err := qdiscs(dev)
	if err != nil {
		return err
	}
	netem, ok := qs["netem"].(*netlink.Netem)
	tbf, ok2 := qs["tbf"].(*netlink.Tbf)
	if !ok || !ok2 || len(qs) != 2 {
		return fmt.Errorf("%s has qdiscs %v, want a netem and a tbf", dev, qs)
	}
	if netem.Attrs().Parent != netlink.HANDLE_ROOT || tbf.Attrs().Parent != netlink.MakeHandle(1, 1) || tbf.Rate != uint64(rate/8) {
		return fmt.Errorf("%s has netem %+v and tbf %+v, want the netem at the root and the tbf at %d bytes/s below", dev, netem, tbf, rate/8)
	}
	return nil
}

func TestShapeVeth(t *testing.T) {
	lab := newLab(t)
	v := newVeth(t, lab, "p1", "10.42.0.2/24")
	s := netlab.Shape{Rate: 2e6, Delay: 50 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.01}
	rest, err := v.Shape(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	check := checkNetem
	if lab.HasNetem() {
		if !rest.IsZero() {
			t.Errorf("Shape(%s) with netem left %s unapplied", s, rest)
		}
	} else {
		check = checkTbf
		if want := (netlab.Shape{Delay: s.Delay, Jitter: s.Jitter, Loss: s.Loss}); rest != want {
			t.Errorf("Shape(%s) without netem left %s unapplied, want %s", s, rest, want)
		}
	}
	inBus(t, lab, func() error { return check("p1", s.Rate) })
	if err := v.Do(func() error { return check("eth0", s.Rate) }); err != nil {
		t.Fatal(err)
	}
	if !lab.HasNetem() {
		mbps, err := transfer(lab, v, true, 256<<10)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("shaped to %s: measured %.2f Mbit/s payload to bus (256 KiB)", netlab.Shape{Rate: s.Rate}, mbps)
	}

	// Replaced, not added to.
	s = netlab.Shape{Rate: 10e6}
	if rest, err := v.Shape(t.Context(), s); err != nil || !rest.IsZero() {
		t.Fatalf("Shape(%s) = %s, %v; want all applied", s, rest, err)
	}
	inBus(t, lab, func() error { return checkTbf("p1", s.Rate) })
	if err := v.Do(func() error { return checkTbf("eth0", s.Rate) }); err != nil {
		t.Fatal(err)
	}

	if rest, err := v.Shape(t.Context(), netlab.Shape{}); err != nil || !rest.IsZero() {
		t.Fatalf("Shape(none) = %s, %v", rest, err)
	}
	inBus(t, lab, func() error { return checkTbf("p1", 0) })
	if err := v.Do(func() error { return checkTbf("eth0", 0) }); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		s    netlab.Shape
		want string
	}{
		{netlab.Shape{Rate: -1}, "negative rate"},
		{netlab.Shape{Rate: 100}, "the lowest rate is 1kbit/s"},
		{netlab.Shape{Delay: -time.Second}, "negative delay"},
		{netlab.Shape{Loss: 1}, "loss must be at least 0 and less than 1"},
	} {
		if _, err := v.Shape(t.Context(), tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Shape(%#v) = %v, want an error with %q", tc.s, err, tc.want)
		}
	}
}

func TestTap(t *testing.T) {
	lab := newLab(t)
	tap, err := lab.Tap(t.Context(), "qemu0")
	if err != nil {
		t.Fatal(err)
	}
	if tap.File == nil {
		t.Fatal("Tap has no File")
	}
	if want := "tap qemu0 in " + lab.Name(); tap.String() != want {
		t.Errorf("String() = %q, want %q", tap, want)
	}
	up := func(want bool) func() error {
		return func() error {
			br, err := netlink.LinkByName("br0")
			if err != nil {
				return err
			}
			lk, err := netlink.LinkByName("qemu0")
			if err != nil {
				return err
			}
			if lk.Type() != "tuntap" || lk.Attrs().MasterIndex != br.Attrs().Index {
				return fmt.Errorf("qemu0 is a %s with master %d, want a tap on br0 (%d)", lk.Type(), lk.Attrs().MasterIndex, br.Attrs().Index)
			}
			if got := lk.Attrs().Flags&net.FlagUp != 0; got != want {
				return fmt.Errorf("qemu0 up: %v, want %v", got, want)
			}
			return nil
		}
	}
	inBus(t, lab, up(true))
	if err := tap.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	inBus(t, lab, up(false))
	if err := tap.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	inBus(t, lab, up(true))

	for _, tc := range []struct{ name, want string }{
		{"", "tap name is empty"},
		{"qemu-payload-one", `tap name "qemu-payload-one" is 16 bytes, more than 15`},
		{"qemu:0", `tap name "qemu:0" has ':'`},
		{"qemu0", "making tap qemu0 in " + lab.Name() + ": a link of that name exists"},
		{"br0", "a link of that name exists"},
	} {
		if _, err := lab.Tap(t.Context(), tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Tap(%q) = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func TestShapeTap(t *testing.T) {
	lab := newLab(t)
	tap, err := lab.Tap(t.Context(), "qemu0")
	if err != nil {
		t.Fatal(err)
	}
	var index int
	inBus(t, lab, func() error {
		lk, err := netlink.LinkByName("qemu0")
		index = lk.Attrs().Index
		return err
	})
	ifb := fmt.Sprintf("ifb%d", index)

	// shaped checks the tap's qdiscs for a Shape of only rate (0: none):
	// a tbf at the root, and an ingress qdisc redirecting everything to an
	// ifb with a tbf.
	shaped := func(rate int64) func() error {
		return func() error {
			if err := checkTbf("qemu0", rate); err != nil {
				return err
			}
			lk, _ := netlink.LinkByName("qemu0")
			qs, err := netlink.QdiscList(lk)
			if err != nil {
				return err
			}
			ingress := slices.IndexFunc(qs, func(q netlink.Qdisc) bool { return q.Type() == "ingress" }) >= 0
			ifbLink, ifbErr := netlink.LinkByName(ifb)
			if rate == 0 {
				if ingress || ifbErr == nil {
					return fmt.Errorf("unshaped qemu0 has an ingress qdisc (%v) or %s (%v)", ingress, ifb, ifbErr)
				}
				return nil
			}
			if !ingress {
				return fmt.Errorf("qemu0 has no ingress qdisc: %v", qs)
			}
			if ifbErr != nil {
				return ifbErr
			}
			if ifbLink.Type() != "ifb" || ifbLink.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("%s is a %s, flags %v; want an ifb, up", ifb, ifbLink.Type(), ifbLink.Attrs().Flags)
			}
			fs, err := netlink.FilterList(lk, netlink.HANDLE_INGRESS)
			if err != nil {
				return err
			}
			var redirect bool
			for _, f := range fs {
				u32, ok := f.(*netlink.U32)
				if !ok {
					continue
				}
				for _, a := range u32.Actions {
					m, ok := a.(*netlink.MirredAction)
					redirect = redirect || ok && m.MirredAction == netlink.TCA_EGRESS_REDIR && m.Ifindex == ifbLink.Attrs().Index
				}
			}
			if !redirect {
				return fmt.Errorf("qemu0 has no u32 filter redirecting to %s: %v", ifb, fs)
			}
			return checkTbf(ifb, rate)
		}
	}

	s := netlab.Shape{Rate: 2e6, Loss: 0.01}
	rest, err := tap.Shape(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if !lab.HasNetem() {
		if want := (netlab.Shape{Loss: s.Loss}); rest != want {
			t.Errorf("Shape(%s) without netem left %s unapplied, want %s", s, rest, want)
		}
		inBus(t, lab, shaped(s.Rate))
	} else if !rest.IsZero() {
		t.Errorf("Shape(%s) with netem left %s unapplied", s, rest)
	}
	s = netlab.Shape{Rate: 5e6}
	if rest, err := tap.Shape(t.Context(), s); err != nil || !rest.IsZero() {
		t.Fatalf("Shape(%s) = %s, %v; want all applied", s, rest, err)
	}
	inBus(t, lab, shaped(s.Rate))
	if rest, err := tap.Shape(t.Context(), netlab.Shape{}); err != nil || !rest.IsZero() {
		t.Fatalf("Shape(none) = %s, %v", rest, err)
	}
	inBus(t, lab, shaped(0))
}

// deadProcess returns a pid that is dead: a child's that has been waited for.
func deadProcess(t *testing.T) int {
	t.Helper()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	return dead.Process.Pid
}

// setOwner rewrites lab's owner record to name pid as its owner.
func setOwner(t *testing.T, lab *netlab.Lab, pid int) {
	t.Helper()
	recPath := filepath.Join(netlab.RecordDir, lab.Name()+".json")
	b, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec["pid"] = pid
	if b, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLeftoversClean(t *testing.T) {
	testenv.RequireNetlab(t)
	deadPID := deadProcess(t)

	crashed := newLab(t)
	v := newVeth(t, crashed, "p1", "10.42.0.2/24")
	sleep := exec.Command("sleep", "60")
	if err := v.Do(sleep.Start); err != nil {
		t.Fatal(err)
	}
	defer sleep.Process.Kill()
	orphan := newLab(t)
	live := newLab(t)

	// Fake crashed's owner crashing, and orphan's record going.
	setOwner(t, crashed, deadPID)
	if err := os.Remove(filepath.Join(netlab.RecordDir, orphan.Name()+".json")); err != nil {
		t.Fatal(err)
	}

	// Only this test's labs: others' (other tests, other packages) are not
	// its to judge or clean.
	ours := func() []netlab.Leftover {
		t.Helper()
		all, err := netlab.Leftovers()
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(all, func(l netlab.Leftover) bool {
			for _, lab := range []*netlab.Lab{crashed, orphan, live} {
				if l.Namespace == lab.Name() || strings.HasPrefix(l.Namespace, lab.Name()+"-") {
					return false
				}
			}
			return true
		})
	}
	gone := fmt.Sprintf("owner pid %d is gone", deadPID)
	want := []netlab.Leftover{
		{Namespace: crashed.Name(), Owner: deadPID, Why: gone},
		{Namespace: v.Namespace(), Owner: deadPID, Why: gone},
		{Namespace: orphan.Name(), Why: "no owner record"},
	}
	slices.SortFunc(want, func(a, b netlab.Leftover) int { return strings.Compare(a.Namespace, b.Namespace) })
	got := ours()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Leftovers() = %+v, want %+v", got, want)
	}

	err := netlab.Clean(netlab.Leftover{Namespace: live.Name(), Why: "no owner record"})
	if err == nil || !strings.Contains(err.Error(), "not a leftover") {
		t.Errorf("Clean of a live lab's namespace = %v, want a refusal", err)
	}
	if !exists(live.Name()) {
		t.Fatalf("Clean removed the live lab's namespace %s", live.Name())
	}

	for _, l := range got {
		if err := netlab.Clean(l); err != nil {
			t.Errorf("Clean(%+v): %v", l, err)
		}
		if exists(l.Namespace) {
			t.Errorf("Clean left %s in /run/netns", l.Namespace)
		}
	}
	if err := sleep.Wait(); err == nil || sleep.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("sleep in the leftover namespace ended with %v, want killed", err)
	}
	if _, err := os.Stat(filepath.Join(netlab.RecordDir, crashed.Name()+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the record of the cleaned lab: %v, want it gone", err)
	}
	if got := ours(); len(got) != 0 {
		t.Errorf("Leftovers() after Clean = %+v, want none", got)
	}
	// Closing what was cleaned is fine (the labs' cleanups do it).
}

// transfer sends n bytes over TCP between the bus and v's payload, from
// the payload if up, and returns the rate the receiver saw, in Mbit/s.
func transfer(lab *netlab.Lab, v *netlab.Veth, up bool, n int64) (float64, error) {
	ctx := context.Background()
	var ln net.Listener
	var err error
	if up {
		ln, err = lab.Listen(ctx, "tcp", busAddr.Addr().String()+":0")
	} else {
		err = v.Do(func() error {
			ln, err = net.Listen("tcp", "10.42.0.2:0")
			return err
		})
	}
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		n   int64
		d   time.Duration
		err error
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		got, err := io.Copy(io.Discard, c)
		res <- result{got, time.Since(start), err}
	}()
	var c net.Conn
	if up {
		err = v.Do(func() error {
			c, err = net.Dial("tcp", ln.Addr().String())
			return err
		})
	} else {
		c, err = lab.Dial(ctx, "tcp", ln.Addr().String())
	}
	if err != nil {
		return 0, err
	}
	_, err = io.CopyN(c, zeros{}, n)
	c.Close()
	if err != nil {
		return 0, err
	}
	r := <-res
	if r.err == nil && r.n != n {
		r.err = fmt.Errorf("received %d bytes of %d", r.n, n)
	}
	return float64(r.n) * 8 / r.d.Seconds() / 1e6, r.err
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// BenchmarkShapedRate measures what a veth shaped to a rate carries, each
// way, over one TCP connection: rate seconds' worth (a quarter in -short).
func BenchmarkShapedRate(b *testing.B) {
	for _, rate := range []int64{2e6, 10e6, 100e6} {
		for _, up := range []bool{true, false} {
			dir := "down"
			if up {
				dir = "up"
			}
			b.Run(fmt.Sprintf("%s/%s", netlab.Shape{Rate: rate}, dir), func(b *testing.B) {
				lab := newLab(b)
				v := newVeth(b, lab, "p1", "10.42.0.2/24")
				if _, err := v.Shape(b.Context(), netlab.Shape{Rate: rate}); err != nil {
					b.Fatal(err)
				}
				n := rate / 8 * 2
				if testing.Short() {
					n /= 4
				}
				var sum float64
				for b.Loop() {
					mbps, err := transfer(lab, v, up, n)
					if err != nil {
						b.Fatal(err)
					}
					sum += mbps
				}
				b.ReportMetric(sum/float64(b.N), "Mbit/s")
				b.ReportMetric(100*sum/float64(b.N)/(float64(rate)/1e6), "%rate")
			})
		}
	}
}

// newBoard makes a board cabled to the host's NIC nic (testenv.Cable),
// at addr/24, with an echo server at addr:7.
func newBoard(t *testing.T, nic, addr string) {
	t.Helper()
	do := testenv.Cable(t, nic, netip.MustParsePrefix(addr+"/24"))
	var ln net.Listener
	err := do(func() (err error) {
		ln, err = net.Listen("tcp", addr+":7")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go echo(ln)
}

// dialUntil dials addr through lab until it answers, for at most 10s: the
// first packets over a link just up can take about a second.
func dialUntil(t *testing.T, lab *netlab.Lab, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		c, err := lab.Dial(ctx, "tcp", addr)
		cancel()
		if err == nil {
			err = roundTrip(c, "board?", 5*time.Second)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
	}
}

// TestNIC: a host's NIC, cabled to a real board, joins the bench bridge,
// carries the bus's traffic to the board, is cut, restored and shaped as a
// tap is, and goes back to the host as it was when the lab closes. An
// interface the host uses is refused, and left alone.
func TestNIC(t *testing.T) {
	if !testenv.OwnHost(t) {
		return
	}
	newBoard(t, "nic0", "10.42.0.2")
	nic0, err := netlink.LinkByName("nic0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(nic0); err != nil {
		t.Fatal(err)
	}
	// Interfaces the host uses.
	// (veths: this kernel may lack the dummy module)
	used := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "used0"}, PeerName: "used0p"}
	hbr := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hbr0"}}
	port := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "port0"}, PeerName: "port0p"}
	clash := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, PeerName: "br0p"}
	for _, lk := range []netlink.Link{used, hbr, port, clash} {
		if err := netlink.LinkAdd(lk); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := netlink.ParseAddr("192.168.77.1/24")
	if err := netlink.AddrAdd(used, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMaster(port, hbr); err != nil {
		t.Fatal(err)
	}

	lab := newLab(t)
	for _, tc := range []struct{ name, want string }{
		{"nope0", `nic nope0 for ` + lab.Name() + `: no such interface on this host (it has `},
		{"used0", "nic used0 for " + lab.Name() + ": it has address 192.168.77.1/24: the host uses it; cable the board to a NIC of its own"},
		{"port0", "it is a port of hbr0: the host uses it"},
		{"lo", "it is loopback"},
		{"br0", "the lab has a link of that name"},
		{"en/0", `nic name "en/0" has '/'`},
	} {
		_, err := lab.NIC(t.Context(), tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NIC(%q) = %v, want an error with %q", tc.name, err, tc.want)
		}
		if _, err := netlink.LinkByName(tc.name); tc.name != "nope0" && tc.name != "en/0" && err != nil {
			t.Errorf("after NIC(%q) was refused, the host lacks it: %v", tc.name, err)
		}
	}

	k, err := lab.NIC(t.Context(), "nic0")
	if err != nil {
		t.Fatal(err)
	}
	if want := "nic nic0 in " + lab.Name(); k.String() != want {
		t.Errorf("String() = %q, want %q", k, want)
	}
	if _, err := netlink.LinkByName("nic0"); err == nil {
		t.Error("nic0 is still in the host's namespace")
	}
	inBus(t, lab, func() error {
		lk, err := netlink.LinkByName("nic0")
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		if lk.Attrs().MasterIndex != br.Attrs().Index || lk.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("nic0 in the lab: master %d, flags %v; want br0 (%d), up", lk.Attrs().MasterIndex, lk.Attrs().Flags, br.Attrs().Index)
		}
		return nil
	})
	if err := k.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	dialUntil(t, lab, "10.42.0.2:7")

	if err := k.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if c, err := lab.Dial(ctx, "tcp", "10.42.0.2:7"); err == nil {
		c.Close()
		t.Fatal("dialled the board over a NIC that is down")
	}
	if err := k.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	dialUntil(t, lab, "10.42.0.2:7")

	if _, err := k.Shape(t.Context(), netlab.Shape{Rate: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	inBus(t, lab, func() error { return checkTbf("nic0", 1_000_000) })

	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	back, err := netlink.LinkByName("nic0")
	if err != nil {
		t.Fatalf("nic0 is not back on the host after Close: %v", err)
	}
	if back.Attrs().MasterIndex != 0 || back.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("nic0 back on the host: master %d, flags %v; want none, up as it was", back.Attrs().MasterIndex, back.Attrs().Flags)
	}
	if err := checkTbf("nic0", 0); err != nil {
		t.Error(err)
	}
	if qs, err := netlink.QdiscList(back); err != nil {
		t.Fatal(err)
	} else {
		for _, q := range qs {
			if q.Attrs().Parent == netlink.HANDLE_INGRESS {
				t.Errorf("nic0 came back with the lab's ingress qdisc %v", q)
			}
		}
	}
}

// TestNICLeftover: a run that dies holding a host's NIC leaves a leftover
// that names it, and cleaning the leftover removes the namespace (which
// gives a physical NIC back to the host).
func TestNICLeftover(t *testing.T) {
	if !testenv.OwnHost(t) {
		return
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nic0"}, PeerName: "nic0p"}); err != nil {
		t.Fatal(err)
	}
	lab, err := netlab.Create(t.Context(), netlab.Config{BusAddr: busAddr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.NIC(t.Context(), "nic0"); err != nil {
		t.Fatal(err)
	}
	setOwner(t, lab, deadProcess(t)) // its owner dies
	left, err := netlab.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(left, func(l netlab.Leftover) bool { return l.Namespace == lab.Name() })
	if i < 0 || !slices.Equal(left[i].NICs, []string{"nic0"}) {
		t.Fatalf("Leftovers() = %+v, want %s holding nic0", left, lab.Name())
	}
	if err := netlab.Clean(left[i]); err != nil {
		t.Fatal(err)
	}
	if exists(lab.Name()) {
		t.Errorf("namespace %s is still there after Clean", lab.Name())
	}
	// What the kernel does with the NIC when the namespace goes is the
	// kernel's; this process still holds the namespace open, as a dead
	// owner would not.
	lab.Close()
}
