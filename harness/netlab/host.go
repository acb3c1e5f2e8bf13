//go:build linux

package netlab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NotOnHost reports an error if the network p (a bench's, such as
// Lab.BusAddr) overlaps the calling process's own network: an address of
// one of its links, or a route of any table other than a default route.
// Then the payloads would not be reachable only over the bench bridge. It
// only reads the host's addresses and routes; it sends nothing.
func NotOnHost(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("netlab: not on host: %v is not a network", p)
	}
	p = p.Masked()
	// The package-level netlink calls use sockets of this thread, which is
	// in the process's own namespace: netlab never switches a thread that
	// goes back to the runtime.
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("netlab: reading the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q.Overlaps(p) {
			dev := "a link"
			if lk, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				dev = lk.Attrs().Name
			}
			return fmt.Errorf("netlab: bench network %s is on the host's own network: %s has %s", p, dev, q)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("netlab: reading the host's routes: %w", err)
	}
	for _, r := range routes {
		q, ok := prefixOf(r.Dst)
		if !ok || q.Bits() == 0 || !q.Overlaps(p) {
			continue // a default route covers every network
		}
		return fmt.Errorf("netlab: bench network %s is on the host's own network: route %s (table %d) covers it", p, q, r.Table)
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	if a.Is4In6() && bits > 32 {
		bits -= 96
	}
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}
