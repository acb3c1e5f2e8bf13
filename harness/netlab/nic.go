//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nic is a network interface NIC borrowed from the process's namespace,
// and what Close needs to give it back as it was.
type nic struct {
	name   string
	origin int  // the namespace it came from, open
	wasUp  bool // administratively up before NIC took it
}

// NIC makes the network interface name of the calling process's
// namespace (the host's: the NIC a real board is cabled to) a port of the
// bridge, up, and returns it as the board's Link. It moves the interface
// into the bus namespace, so the host loses it until Close gives it back,
// with its name, down or up as it was, and no qdisc of the lab's.
//
// It refuses an interface the host uses: one with an address (an IPv6
// link-local one aside), a port of a bridge or a bond, or loopback. It does
// not wait for carrier: the board may be off.
//
// If the process dies before Close, removing the bus namespace (`hil
// doctor --clean`) returns a physical NIC to the host's initial namespace;
// a virtual one (a VLAN, a veth) is deleted with it.
func (l *Lab) NIC(ctx context.Context, name string) (Link, error) {
	if err := CheckName("nic", name); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.opMu.Lock()
	defer l.opMu.Unlock()
	fail := func(err error) (Link, error) {
		return nil, fmt.Errorf("netlab: nic %s for %s: %w", name, l.name, err)
	}
	n := &nic{name: name, origin: -1}
	// doIn(-1) runs in the process's namespace: netlab never leaves a
	// thread of the runtime in another.
	err := doIn(-1, func() error {
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("no such interface on this host (it has %s)", hostLinks())
		}
		if err := usedByHost(lk); err != nil {
			return fmt.Errorf("%w: the host uses it; cable the board to a NIC of its own", err)
		}
		return nil
	})
	if err == nil {
		err = l.Do(func() error {
			if _, err := netlink.LinkByName(name); err == nil {
				return errors.New("the lab has a link of that name (its bridge, a tap, a veth or an ifb): rename the interface")
			}
			return nil
		})
	}
	if err != nil {
		return fail(err)
	}
	// In the record before it moves, so that a run that dies holding it
	// leaves word of it (see Leftover).
	l.mu.Lock()
	nics := []string{}
	for _, o := range l.nics {
		nics = append(nics, o.name)
	}
	l.mu.Unlock()
	if err := l.setNICs(append(nics, name)); err != nil {
		return fail(err)
	}
	moved := false
	err = doIn(-1, func() error {
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		n.wasUp = lk.Attrs().Flags&net.FlagUp != 0
		if n.origin, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("opening this host's network namespace: %w", err)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return errors.New("the lab is closed")
		}
		if err := netlink.LinkSetDown(lk); err != nil {
			return fmt.Errorf("setting it down: %w", err)
		}
		if err := netlink.LinkSetNsFd(lk, l.bus.fd); err != nil {
			if n.wasUp {
				netlink.LinkSetUp(lk)
			}
			return fmt.Errorf("moving it into %s: %w", l.name, err)
		}
		// From here on it is the lab's, and Close gives it back.
		l.nics = append(l.nics, n)
		moved = true
		return nil
	})
	if err != nil {
		if !moved {
			if n.origin >= 0 {
				unix.Close(n.origin)
			}
			l.setNICs(nics)
		}
		return fail(err)
	}
	if err := l.Do(func() error { return attach(name, l.bridge) }); err != nil {
		return fail(err) // given back by Close
	}
	return &link{lab: l, kind: "nic", name: name}, nil
}

// hostLinks lists the interfaces of this thread's namespace but loopback,
// for an error.
func hostLinks() string {
	lks, err := netlink.LinkList()
	if err != nil {
		return "interfaces that cannot be listed: " + err.Error()
	}
	var names []string
	for _, lk := range lks {
		if lk.Attrs().Flags&net.FlagLoopback == 0 {
			names = append(names, lk.Attrs().Name)
		}
	}
	if len(names) == 0 {
		return "none but loopback"
	}
	return strings.Join(names, ", ")
}

// usedByHost says why the host uses lk, if it does.
func usedByHost(lk netlink.Link) error {
	a := lk.Attrs()
	if a.Flags&net.FlagLoopback != 0 {
		return errors.New("it is loopback")
	}
	if a.MasterIndex != 0 {
		master := fmt.Sprintf("index %d", a.MasterIndex)
		if m, err := netlink.LinkByIndex(a.MasterIndex); err == nil {
			master = m.Attrs().Name
		}
		return fmt.Errorf("it is a port of %s", master)
	}
	addrs, err := netlink.AddrList(lk, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("reading its addresses: %w", err)
	}
	for _, ad := range addrs {
		if !ad.IP.IsLinkLocalUnicast() || ad.IP.To4() != nil {
			return fmt.Errorf("it has address %s", ad.IPNet)
		}
	}
	return nil
}

// giveBack returns n to the namespace it came from, without the lab's
// qdiscs or bridge, and up if it was. It runs with l.mu held, while the
// bus namespace still exists.
func (l *Lab) giveBack(n *nic) error {
	defer unix.Close(n.origin)
	err := doIn(l.bus.fd, func() error {
		lk, err := netlink.LinkByName(n.name)
		if err != nil {
			return err
		}
		if err := shapeIngress(n.name, Shape{}); err != nil {
			return err
		}
		if err := shapeEgress(n.name, Shape{}); err != nil {
			return err
		}
		if err := netlink.LinkSetDown(lk); err != nil {
			return err
		}
		if err := netlink.LinkSetNoMaster(lk); err != nil {
			return err
		}
		return netlink.LinkSetNsFd(lk, n.origin)
	})
	if err == nil && n.wasUp {
		err = doIn(n.origin, func() error {
			lk, err := netlink.LinkByName(n.name)
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(lk)
		})
	}
	if err != nil {
		return fmt.Errorf("netlab: giving nic %s back to the host: %w", n.name, err)
	}
	return nil
}
