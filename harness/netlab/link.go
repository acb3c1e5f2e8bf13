//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Link is the bus side of a payload's Ethernet.
type Link interface {
	// String describes the link, e.g. "tap qemu0 in hil-123-1".
	String() string
	// Up sets the link up: the payload is reachable again. It returns
	// when the kernel shows the link carrying (at most 5s, or ctx).
	Up(ctx context.Context) error
	// Down sets the link down: it is cut, as the bus may cut it in orbit.
	Down(ctx context.Context) error
	// Shape shapes the link both ways, bus to payload and payload to bus,
	// with s, replacing any earlier shaping; the zero Shape removes it. It
	// returns the part of s it could not apply, the zero Shape when it
	// applied all. The rate is applied with tbf. Delay, jitter and loss
	// need netem: on a host without it (see Lab.HasNetem) they are
	// returned, for the caller to apply elsewhere (in a QEMU guest) or to
	// refuse; they are never dropped silently. With an error, what was
	// applied is unknown, and s is returned whole.
	Shape(ctx context.Context, s Shape) (Shape, error)
}

// A Tap is a QEMU payload's Ethernet: a tap on the bus bridge.
type Tap struct {
	Link          // the bus side
	File *os.File // the tap's queue, for QEMU (-netdev tap,fd=N); the Lab closes it
}

// A Veth is a process payload's Ethernet: a veth pair from the bus bridge
// to eth0 in a namespace of the payload's own.
type Veth struct {
	Link // the bus end
	lab  *Lab
	ns   *namespace

	once sync.Once
	work chan func(error) // to the thread kept in ns, with its setns error; closed by the lab's Close
}

// Namespace returns the name of the payload's namespace (for `ip netns
// exec`, say).
func (v *Veth) Namespace() string { return v.ns.name }

// Do runs f on an OS thread in the payload's namespace and returns its
// error. A process f starts (exec.Cmd.Start) is in that namespace: a child
// forked from the thread inherits it. The thread is the veth's own, kept
// until the lab closes, because a child's parent-death signal
// (SysProcAttr.Pdeathsig) fires when the thread that forked it ends.
func (v *Veth) Do(f func() error) error {
	v.once.Do(func() {
		work := make(chan func(error))
		go func() {
			// Never unlocked: the thread leaves the runtime with the
			// namespace it was moved to.
			runtime.LockOSThread()
			err := unix.Setns(v.ns.fd, unix.CLONE_NEWNET)
			if err != nil {
				err = fmt.Errorf("netlab: entering network namespace %s: %w", v.ns.name, err)
			}
			for f := range work {
				f(err)
			}
		}()
		v.lab.mu.Lock()
		if v.lab.closed {
			close(work)
		} else {
			v.lab.workers = append(v.lab.workers, work)
		}
		v.lab.mu.Unlock()
		v.work = work
	})
	errc := make(chan error, 1)
	v.lab.mu.Lock()
	if v.lab.closed {
		v.lab.mu.Unlock()
		return fmt.Errorf("netlab: %s: the lab is closed", v.ns.name)
	}
	// Sent under the lab's lock, so that Close cannot close work first.
	v.work <- func(nsErr error) {
		if nsErr != nil {
			errc <- nsErr
			return
		}
		errc <- f()
	}
	v.lab.mu.Unlock()
	return <-errc
}

// loadIfb loads the ifb module, if it is one and not loaded, asking for no
// devices: left to the kernel, loading it for the first ifb would also
// make ifb0 and ifb1 in the host's namespace, which netlab never touches.
// A failure is not reported here: creating the ifb says what is missing.
var loadIfb = sync.OnceFunc(func() {
	if _, err := os.Stat("/sys/module/ifb"); err == nil {
		return // built in, or loaded
	}
	exec.Command("modprobe", "ifb", "numifbs=0").Run()
})

// payloadEnd is the name of a veth's end in the payload's namespace.
const payloadEnd = "eth0"

// Tap makes the tap name in the bus namespace, a port of the bridge, up,
// with one queue (IFF_TAP|IFF_NO_PI), and returns it with that queue open.
// The tap lives as long as the queue is open, which the Lab keeps until
// Close, so that QEMU can be restarted on the same file.
func (l *Lab) Tap(ctx context.Context, name string) (*Tap, error) {
	if err := CheckName("tap", name); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.opMu.Lock()
	defer l.opMu.Unlock()
	var f *os.File
	err := l.Do(func() error {
		if _, err := netlink.LinkByName(name); err == nil {
			return errors.New("a link of that name exists")
		}
		// /dev/net/tun is opened in the bus namespace: the tap is made in
		// the namespace of the thread that opens it.
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		if err := attach(name, l.bridge); err != nil {
			return err
		}
		return waitForwarding(ctx, name, l.bridge)
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("netlab: making tap %s in %s: %w", name, l.name, err)
	}
	l.mu.Lock()
	l.taps = append(l.taps, f)
	l.mu.Unlock()
	return &Tap{Link: &link{lab: l, kind: "tap", name: name}, File: f}, nil
}

// attach makes the link name a port of bridge, and sets it up.
func attach(name, bridge string) error {
	lk, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(lk, br); err != nil {
		return fmt.Errorf("adding it to bridge %s: %w", bridge, err)
	}
	if err := netlink.LinkSetUp(lk); err != nil {
		return fmt.Errorf("setting it up: %w", err)
	}
	return nil
}

// Veth makes a namespace for a process payload, named after the lab and
// name, and a veth pair: its end name is a port of the bridge in the bus
// namespace, up; its other end is eth0 in the payload's namespace, up with
// addr, which is in the bus's network, and a default route via the bus
// address. Loopback is up there too.
func (l *Lab) Veth(ctx context.Context, name string, addr netip.Prefix) (*Veth, error) {
	if err := CheckName("veth", name); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	bus := l.busAddr
	switch {
	case !addr.IsValid() || !addr.Addr().Is4():
		return nil, fmt.Errorf("netlab: veth %s: address %s is not IPv4 with a prefix", name, addr)
	case !bus.Contains(addr.Addr()) || !addr.Contains(bus.Addr()):
		return nil, fmt.Errorf("netlab: veth %s: address %s is not in the bus's network %s", name, addr, bus.Masked())
	case addr.Addr() == bus.Addr():
		return nil, fmt.Errorf("netlab: veth %s: address %s is the bus's", name, addr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.opMu.Lock()
	defer l.opMu.Unlock()
	nsName := l.name + "-" + name
	// Checked before the record claims it, as in Create.
	if _, err := os.Lstat(filepath.Join(nsRunDir, nsName)); err == nil {
		return nil, fmt.Errorf("netlab: veth %s: network namespace %s already exists", name, nsName)
	}
	// In the record before it exists, so that it is never without one.
	if err := l.addNamespace(nsName); err != nil {
		return nil, err
	}
	fd, err := newNamedNs(nsName)
	if err != nil {
		l.dropNamespace(nsName)
		return nil, fmt.Errorf("netlab: veth %s: creating network namespace %s: %w", name, nsName, err)
	}
	ns := &namespace{nsName, fd}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.payload = append(l.payload, ns)
	}
	l.mu.Unlock()
	if closed { // cannot be, with opMu held; but never leave a namespace behind
		removeNs(ns)
		return nil, fmt.Errorf("netlab: lab %s is closed", l.name)
	}
	v := &Veth{Link: &link{lab: l, kind: "veth", name: name, peer: ns}, lab: l, ns: ns}
	err = l.Do(func() error {
		// The peer is made in the payload's namespace directly, so its
		// name need only be unique there.
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: payloadEnd, PeerNamespace: netlink.NsFd(fd)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("adding veth: %w", err)
		}
		return attach(name, l.bridge)
	})
	if err == nil {
		err = v.Do(func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return fmt.Errorf("setting lo up: %w", err)
			}
			eth, err := netlink.LinkByName(payloadEnd)
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
				return fmt.Errorf("adding %s to %s: %w", addr, payloadEnd, err)
			}
			if err := netlink.LinkSetUp(eth); err != nil {
				return fmt.Errorf("setting %s up: %w", payloadEnd, err)
			}
			gw := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(bus.Addr().AsSlice())}
			if err := netlink.RouteAdd(gw); err != nil {
				return fmt.Errorf("adding default route via %s: %w", bus.Addr(), err)
			}
			return nil
		})
	}
	if err == nil {
		err = v.Link.(*link).waitUp(ctx)
	}
	if err != nil {
		l.mu.Lock()
		l.payload = l.payload[:len(l.payload)-1] // ns, appended above under opMu
		l.mu.Unlock()
		removeNs(ns)
		l.dropNamespace(nsName)
		return nil, fmt.Errorf("netlab: making veth %s in %s to %s: %w", name, l.name, nsName, err)
	}
	return v, nil
}

// The kernel applies a change of carrier asynchronously (linkwatch), and
// at most about once a second: until it has, a new bridge port drops what
// it receives (the payload's first ARP request, retried only a second
// later), and a device that has just got carrier, the bridge with its
// first port or a veth end, drops what it sends. So Tap, Veth and Up wait
// for it, at most linkWait unless ctx says less. (On a loaded machine the
// first packets after Up can still take about a second: the states read
// here can be stale.)
const linkWait = 5 * time.Second

// brStateForwarding is BR_STATE_FORWARDING (linux/if_bridge.h).
const brStateForwarding = 3

// waitForwarding waits until the bridge forwards what the port dev, in
// this thread's namespace, receives, which takes carrier on dev, and the
// bridge has carrier.
func waitForwarding(ctx context.Context, dev, bridge string) error {
	return poll(ctx, "bridge "+bridge+" to forward from "+dev+" (has it carrier?)", func() (bool, error) {
		lk, err := netlink.LinkByName(dev)
		if err != nil {
			return false, err
		}
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return false, err
		}
		state, err := portState(lk.Attrs().Index)
		return state == brStateForwarding && br.Attrs().OperState == netlink.OperUp, err
	})
}

// waitOperUp waits until dev, in this thread's namespace, is up with
// carrier.
func waitOperUp(ctx context.Context, dev string) error {
	return poll(ctx, dev+" to be up with carrier", func() (bool, error) {
		lk, err := netlink.LinkByName(dev)
		if err != nil {
			return false, err
		}
		return lk.Attrs().OperState == netlink.OperUp, nil
	})
}

// poll calls done until it reports true or fails, or ctx or linkWait
// ends.
func poll(ctx context.Context, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, linkWait)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %s for %s: %w", time.Since(start).Round(time.Millisecond), what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// portState returns the state (IFLA_BRPORT_STATE) of the bridge port with
// the index, in this thread's namespace. netlink.LinkGetProtinfo leaves
// it out.
func portState(index int) (uint8, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if err != nil {
		return 0, fmt.Errorf("reading bridge port states: %w", err)
	}
	for _, m := range msgs {
		info := nl.DeserializeIfInfomsg(m)
		if int(info.Index) != index {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[info.Len():])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_PROTINFO {
				continue
			}
			port, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, err
			}
			for _, p := range port {
				if p.Attr.Type == nl.IFLA_BRPORT_STATE && len(p.Value) > 0 {
					return p.Value[0], nil
				}
			}
		}
	}
	return 0, nil // not a port (yet)
}

// link is a Link: the bus end of a tap or a veth, or a NIC.
type link struct {
	lab  *Lab
	kind string     // "tap", "veth" or "nic"
	name string     // in the bus namespace
	peer *namespace // a veth's payload namespace, with its other end

	mu sync.Mutex // serializes Shape, which takes several steps
}

func (k *link) String() string { return k.kind + " " + k.name + " in " + k.lab.name }

// Up returns when the link carries again (see waitUp).
func (k *link) Up(ctx context.Context) error {
	if err := k.set(ctx, "up", netlink.LinkSetUp); err != nil {
		return err
	}
	if err := k.waitUp(ctx); err != nil {
		return fmt.Errorf("netlab: setting %s up: %w", k, err)
	}
	return nil
}

// waitUp waits until the link carries both ways: the bridge forwards what
// the port receives and has carrier itself, and a veth's payload end has
// carrier.
func (k *link) waitUp(ctx context.Context) error {
	err := k.lab.Do(func() error { return waitForwarding(ctx, k.name, k.lab.bridge) })
	if err == nil && k.peer != nil {
		err = k.lab.doIn(func() *namespace { return k.peer }, func() error { return waitOperUp(ctx, payloadEnd) })
	}
	return err
}

func (k *link) Down(ctx context.Context) error {
	return k.set(ctx, "down", netlink.LinkSetDown)
}

func (k *link) set(ctx context.Context, state string, f func(netlink.Link) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := k.lab.Do(func() error {
		lk, err := netlink.LinkByName(k.name)
		if err != nil {
			return err
		}
		return f(lk)
	})
	if err != nil {
		return fmt.Errorf("netlab: setting %s %s: %w", k, state, err)
	}
	return nil
}

func (k *link) Shape(ctx context.Context, s Shape) (Shape, error) {
	if err := s.check(); err != nil {
		return s, fmt.Errorf("netlab: %s: %w", k, err)
	}
	if s.Rate != 0 && s.Rate < minRate {
		return s, fmt.Errorf("netlab: %s: shape %s: the lowest rate is %s", k, s, formatRate(minRate))
	}
	if err := ctx.Err(); err != nil {
		return s, err
	}
	apply, rest := s, Shape{}
	if !k.lab.netem {
		apply, rest = Shape{Rate: s.Rate}, Shape{Delay: s.Delay, Jitter: s.Jitter, Loss: s.Loss}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// Bus to payload: the bus end's egress.
	err := k.lab.Do(func() error { return shapeEgress(k.name, apply) })
	if err == nil {
		// Payload to bus: a veth's other end's egress; a tap's or a
		// NIC's ingress, redirected to an ifb whose egress can be shaped.
		if k.kind == "veth" {
			err = k.lab.doIn(func() *namespace { return k.peer }, func() error { return shapeEgress(payloadEnd, apply) })
		} else {
			err = k.lab.Do(func() error { return shapeIngress(k.name, apply) })
		}
	}
	if err != nil {
		return s, fmt.Errorf("netlab: shaping %s with %s: %w", k, s, err)
	}
	return rest, nil
}

// Handles of the qdiscs Shape adds: the root one, and the tbf below a
// netem root.
var (
	rootHandle  = netlink.MakeHandle(1, 0)
	childHandle = netlink.MakeHandle(10, 0)
)

// shapeEgress shapes the egress of the link dev, in this thread's
// namespace, with s, after removing the root qdisc an earlier call added:
// tbf for the rate as the root qdisc or, when s has delay, jitter or loss,
// below a netem root.
func shapeEgress(dev string, s Shape) error {
	lk, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	qs, err := netlink.QdiscList(lk)
	if err != nil {
		return fmt.Errorf("listing qdiscs of %s: %w", dev, err)
	}
	for _, q := range qs {
		if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT && a.Handle == rootHandle {
			if err := netlink.QdiscDel(q); err != nil {
				return fmt.Errorf("removing %s qdisc of %s: %w", q.Type(), dev, err)
			}
		}
	}
	if s.IsZero() {
		return nil
	}
	index := lk.Attrs().Index
	parent, handle := uint32(netlink.HANDLE_ROOT), rootHandle
	if s.Delay != 0 || s.Jitter != 0 || s.Loss != 0 {
		q, err := netemQdisc(index, s)
		if err != nil {
			return err
		}
		if err := netlink.QdiscAdd(q); err != nil {
			return fmt.Errorf("adding netem qdisc to %s: %w", dev, err)
		}
		parent, handle = netlink.MakeHandle(1, 1), childHandle
	}
	if s.Rate != 0 {
		if err := netlink.QdiscAdd(tbfQdisc(index, parent, handle, s.Rate)); err != nil {
			return fmt.Errorf("adding tbf qdisc to %s: %w", dev, err)
		}
	}
	return nil
}

// minRate is the lowest rate Shape takes: below, tbf's buffer, in ticks,
// overflows 32 bits.
const minRate = 1000

// tbf queue sizes, measured (see BenchmarkShapedRate): a burst of 10 ms
// of traffic but at least a few full frames, so that one always fits, and
// a queue of 50 ms beyond the burst, enough for TCP to keep the link full.
const (
	tbfMinBurst = 4 * 1514
	tbfBurst    = 10 * time.Millisecond
	tbfLatency  = 50 * time.Millisecond
)

// tbfQdisc returns a tbf qdisc limiting to rate bit/s.
func tbfQdisc(index int, parent, handle uint32, rate int64) *netlink.Tbf {
	bps := uint64(rate) / 8 // bytes per second
	burst := max(bytesIn(bps, tbfBurst), tbfMinBurst)
	limit := min(burst+bytesIn(bps, tbfLatency), math.MaxUint32)
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Parent: parent, Handle: handle},
		Rate:       bps,
		Limit:      uint32(limit),
		Buffer:     netlink.Xmittime(bps, uint32(min(burst, math.MaxUint32))),
	}
}

// bytesIn returns how many bytes are sent in d at bps bytes per second.
func bytesIn(bps uint64, d time.Duration) uint64 {
	return uint64(float64(bps) * d.Seconds())
}

// netemQdisc returns a netem root qdisc delaying and dropping as s says.
func netemQdisc(index int, s Shape) (*netlink.Netem, error) {
	// netem takes times in ticks in 32 bits.
	tick := netlink.TickInUsec()
	maxTime := time.Duration(float64(math.MaxUint32)/tick) * time.Microsecond
	if s.Delay+s.Jitter > maxTime {
		return nil, fmt.Errorf("delay plus jitter is more than netem takes (%s)", maxTime)
	}
	// Its queue holds what is in flight during the delay: twice that at
	// the rate, with 1500-byte packets, or, with no rate, enough for a
	// fast one.
	limit := uint64(10000)
	if s.Rate != 0 {
		limit = min(max(2*bytesIn(uint64(s.Rate)/8, s.Delay+s.Jitter)/1500, 1000), 1<<20)
	}
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: index, Parent: netlink.HANDLE_ROOT, Handle: rootHandle},
		netlink.NetemQdiscAttrs{Limit: uint32(limit), Loss: float32(s.Loss * 100)})
	// Set here, as NewNetem leaves a jitter without delay in µs, not ticks.
	q.Latency = uint32(float64(s.Delay.Microseconds()) * tick)
	q.Jitter = uint32(float64(s.Jitter.Microseconds()) * tick)
	return q, nil
}

// shapeIngress shapes what the tap dev receives (from the payload) with s:
// an ingress qdisc on it whose u32 filter matches all and redirects
// (mirred) to an ifb, whose egress is shaped. The ifb is named after dev's
// index, unique in the namespace, and removed with a zero s.
func shapeIngress(dev string, s Shape) error {
	lk, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	index := lk.Attrs().Index
	ifbName := "ifb" + strconv.Itoa(index)
	qs, err := netlink.QdiscList(lk)
	if err != nil {
		return fmt.Errorf("listing qdiscs of %s: %w", dev, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_INGRESS {
			if err := netlink.QdiscDel(q); err != nil { // and its filter
				return fmt.Errorf("removing ingress qdisc of %s: %w", dev, err)
			}
		}
	}
	ifb, err := netlink.LinkByName(ifbName)
	if s.IsZero() {
		if err == nil {
			if err := netlink.LinkDel(ifb); err != nil {
				return fmt.Errorf("removing %s: %w", ifbName, err)
			}
		}
		return nil
	}
	if err != nil {
		loadIfb() // only to add one: removing shaping needs no module
		if err := netlink.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: ifbName}}); err != nil {
			return fmt.Errorf("adding %s: %w", ifbName, err)
		}
		if ifb, err = netlink.LinkByName(ifbName); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(ifb); err != nil {
		return fmt.Errorf("setting %s up: %w", ifbName, err)
	}
	if err := shapeEgress(ifbName, s); err != nil {
		return err
	}
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
	if err := netlink.QdiscAdd(ingress); err != nil {
		return fmt.Errorf("adding ingress qdisc to %s: %w", dev, err)
	}
	all := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: ingress.Handle, Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions:     []netlink.Action{netlink.NewMirredAction(ifb.Attrs().Index)},
	}
	if err := netlink.FilterAdd(all); err != nil {
		return fmt.Errorf("adding filter redirecting %s to %s: %w", dev, ifbName, err)
	}
	return nil
}
