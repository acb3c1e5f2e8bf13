//go:build linux

package netlab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config is a bench network. The zero Config is not valid: BusAddr is
// required.
type Config struct {
	// Name is the bus namespace's: it starts with Prefix and has at most 15
	// bytes of letters, digits, '.', '_' and '-' (15 so that it fits
	// wherever a link name does). The default is "hil-<pid>-<n>", n
	// counting the Labs of this process.
	Name string
	// Bridge names the bridge in the bus namespace; the default is "br0".
	Bridge string
	// BusAddr is the bus's address on the bridge, with the bench network's
	// prefix, e.g. 10.42.0.1/24: a private IPv4 address.
	BusAddr netip.Prefix
}

var labCount atomic.Int64

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = Prefix + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(labCount.Add(1), 10)
	}
	if c.Bridge == "" {
		c.Bridge = "br0"
	}
	return c
}

func (c Config) check() error {
	a := c.BusAddr
	switch {
	case !a.IsValid():
		return errors.New("netlab: config: BusAddr is required (the bus's address on the bench network, e.g. 10.42.0.1/24)")
	case !a.Addr().Is4():
		return fmt.Errorf("netlab: config: bus address %s is not IPv4", a)
	case !a.Addr().IsPrivate():
		return fmt.Errorf("netlab: config: bus address %s is not private (10/8, 172.16/12 or 192.168/16)", a)
	case a.Bits() > 30:
		return fmt.Errorf("netlab: config: bus address %s leaves no addresses for payloads: want a prefix of /30 or shorter", a)
	case a.Addr() == a.Masked().Addr():
		return fmt.Errorf("netlab: config: bus address %s is its network's own address", a)
	}
	if err := CheckName("lab", c.Name); err != nil {
		return fmt.Errorf("netlab: config: %w", err)
	}
	if len(c.Name) < len(Prefix) || c.Name[:len(Prefix)] != Prefix {
		return fmt.Errorf("netlab: config: lab name %q does not start with %q", c.Name, Prefix)
	}
	if err := CheckName("bridge", c.Bridge); err != nil {
		return fmt.Errorf("netlab: config: %w", err)
	}
	return nil
}

// A Lab is a bench network: a bus namespace holding a bridge with the bus
// address, and the payloads attached to it.
type Lab struct {
	name    string
	bridge  string
	busAddr netip.Prefix
	netem   bool   // set by Create
	recPath string // the owner record

	// opMu serializes what adds to or removes from the lab (Tap, Veth,
	// NIC, Close), each of which takes several steps.
	opMu sync.Mutex

	mu      sync.Mutex // guards what follows
	closed  bool
	rec     record
	recMade bool       // the record file is ours to remove
	bus     *namespace // nil until made
	payload []*namespace
	taps    []*os.File
	nics    []*nic             // borrowed from the host, given back by Close
	workers []chan func(error) // the threads Veth.Do keeps in payload namespaces
}

// namespace is one of a lab's namespaces, held open by fd.
type namespace struct {
	name string
	fd   int
}

// Create makes the bus namespace, with loopback up and the bridge up with
// cfg.BusAddr in it, and writes the lab's owner record (see Leftovers)
// first, so that a lab is never without one. It needs root, and leaves the
// calling thread's namespace as it was: the work in the new namespace is
// done on threads that are thrown away.
func Create(ctx context.Context, cfg Config) (*Lab, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Only the want of privileges stops it here: without /dev/net/tun, say,
	// a lab of veths still works, and Tap says what is missing.
	if err := Available(); errors.Is(err, ErrNeedRoot) {
		return nil, &needRootError{"creating network namespace " + cfg.Name}
	}
	l := &Lab{
		name:    cfg.Name,
		bridge:  cfg.Bridge,
		busAddr: cfg.BusAddr,
		recPath: filepath.Join(RecordDir, cfg.Name+".json"),
	}
	// Checked before the record is written, which would otherwise claim a
	// namespace that is someone else's.
	if _, err := os.Lstat(filepath.Join(nsRunDir, l.name)); err == nil {
		return nil, fmt.Errorf("netlab: network namespace %s already exists (a leftover? see `hil doctor`)", l.name)
	}
	start, err := startTime(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	l.rec = record{PID: os.Getpid(), StartTime: start, Created: time.Now().UTC().Format(time.RFC3339), Namespaces: []string{l.name}}
	if err := createRecord(l.recPath, l.rec); err != nil {
		return nil, err
	}
	l.recMade = true
	fail := func(err error) (*Lab, error) {
		l.Close()
		return nil, err
	}
	fd, err := newNamedNs(l.name)
	if errors.Is(err, unix.EPERM) {
		return fail(&needRootError{"creating network namespace " + l.name})
	}
	if err != nil {
		return fail(fmt.Errorf("netlab: creating network namespace %s: %w", l.name, err))
	}
	l.bus = &namespace{l.name, fd}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	err = l.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("setting lo up: %w", err)
		}
		// A bridge's MAC address follows its lowest port's unless set: set,
		// it does not change as payloads come and go, which would leave
		// their ARP caches stale.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.bridge, HardwareAddr: localMAC()}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("adding bridge %s: %w", l.bridge, err)
		}
		brl, err := netlink.LinkByName(l.bridge)
		if err != nil {
			return err
		}
		if l.netem, err = probeNetem(brl.Attrs().Index); err != nil {
			return fmt.Errorf("bridge %s: %w", l.bridge, err)
		}
		if err := netlink.AddrAdd(brl, &netlink.Addr{IPNet: ipNet(l.busAddr)}); err != nil {
			return fmt.Errorf("adding %s to bridge %s: %w", l.busAddr, l.bridge, err)
		}
		if err := netlink.LinkSetUp(brl); err != nil {
			return fmt.Errorf("setting bridge %s up: %w", l.bridge, err)
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("netlab: in %s: %w", l.name, err))
	}
	return l, nil
}

// probeNetem reports whether the kernel has netem, by adding a netem root
// qdisc on the link and removing it. A kernel without it answers ENOENT,
// as it does for any kind it does not know, so any failure to add counts
// as none; a failure to remove is an error.
func probeNetem(index int) (bool, error) {
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: index, Parent: netlink.HANDLE_ROOT, Handle: netlink.MakeHandle(1, 0)},
		netlink.NetemQdiscAttrs{Latency: 1000})
	if err := netlink.QdiscAdd(q); err != nil {
		return false, nil
	}
	if err := netlink.QdiscDel(q); err != nil {
		return true, fmt.Errorf("removing the netem qdisc that probed for netem: %w", err)
	}
	return true, nil
}

// localMAC returns a random locally administered unicast MAC address.
func localMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Name returns the name of the lab's bus namespace.
func (l *Lab) Name() string { return l.name }

// BusAddr returns the bus's address on the bench network.
func (l *Lab) BusAddr() netip.Prefix { return l.busAddr }

// HasNetem reports whether delay, jitter and loss can be applied on this
// host's links; without, Link.Shape returns them unapplied.
func (l *Lab) HasNetem() bool { return l.netem }

// Close gives the NICs back to the host and removes everything the lab
// made: the payload namespaces, killing (SIGKILL) the processes still in
// them, the bus namespace with the bridge, taps, veths and ifbs in it, and
// the owner record. It can be
// called more than once, and after a Create that failed part way.
func (l *Lab) Close() error {
	l.opMu.Lock()
	defer l.opMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for _, f := range l.taps {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netlab: %w", err))
		}
	}
	l.taps = nil
	for i := len(l.payload) - 1; i >= 0; i-- {
		errs = append(errs, removeNs(l.payload[i]))
	}
	l.payload = nil
	for _, w := range l.workers {
		close(w)
	}
	l.workers = nil
	for _, n := range l.nics {
		errs = append(errs, l.giveBack(n))
	}
	l.nics = nil
	if l.bus != nil {
		errs = append(errs, removeNs(l.bus))
		l.bus = nil
	}
	if l.recMade {
		if err := os.Remove(l.recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("netlab: removing owner record: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeNs kills the processes in ns, removes its name and closes it.
func removeNs(ns *namespace) error {
	var errs []error
	if id, err := nsIDOfFd(ns.fd); err != nil {
		errs = append(errs, fmt.Errorf("netlab: network namespace %s: %w", ns.name, err))
	} else if err := killIn(id); err != nil {
		errs = append(errs, fmt.Errorf("netlab: network namespace %s: %w", ns.name, err))
	}
	errs = append(errs, deleteNamedNs(ns.name))
	unix.Close(ns.fd)
	return errors.Join(errs...)
}

// Do runs f on an OS thread in the bus namespace and returns its error.
// The thread is not reused: goroutines f starts run in the caller's
// namespace, but a process it starts (exec.Cmd.Start) and the sockets it
// makes are in the bus namespace.
func (l *Lab) Do(f func() error) error {
	return l.doIn(func() *namespace { return l.bus }, f)
}

// doIn runs f in the namespace ns returns, if the lab is still open. The
// namespace is entered through a duplicate of its descriptor, so that a
// Close meanwhile does not pull it away.
func (l *Lab) doIn(ns func() *namespace, f func() error) error {
	l.mu.Lock()
	n := ns()
	if l.closed || n == nil {
		l.mu.Unlock()
		return fmt.Errorf("netlab: lab %s is closed", l.name)
	}
	fd, err := unix.FcntlInt(uintptr(n.fd), unix.F_DUPFD_CLOEXEC, 0)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("netlab: network namespace %s: %w", n.name, err)
	}
	defer unix.Close(fd)
	return doIn(fd, f)
}

// Dial connects to addr on network from inside the bus namespace, as
// net.Dialer.DialContext does. For TCP and UDP the host must be an IP
// address: a name would be resolved by goroutines in the host's namespace.
func (l *Lab) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkHost(network, addr); err != nil {
		return nil, fmt.Errorf("netlab: dial %s %s in %s: %w", network, addr, l.name, err)
	}
	var c net.Conn
	err := l.Do(func() error {
		// No fallback: its second attempt would race on another goroutine,
		// so on another thread, in the host's namespace.
		d := net.Dialer{FallbackDelay: -1}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: in %s: %w", l.name, err)
	}
	return c, nil
}

// Listen listens on addr on network inside the bus namespace, as
// net.ListenConfig.Listen does. Connections it accepts are in the bus
// namespace too. For TCP the host must be an IP address or empty.
func (l *Lab) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	if err := checkHost(network, addr); err != nil {
		return nil, fmt.Errorf("netlab: listen %s %s in %s: %w", network, addr, l.name, err)
	}
	var ln net.Listener
	err := l.Do(func() error {
		var err error
		ln, err = new(net.ListenConfig).Listen(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: in %s: %w", l.name, err)
	}
	return ln, nil
}

// checkHost refuses a TCP or UDP address whose host is a name.
func checkHost(network, addr string) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("host %q is not an IP address: names are not resolved inside a lab", host)
	}
	return nil
}
