//go:build !linux

package netlab

import (
	"errors"
	"net/netip"
)

// Available reports why this process cannot create labs: they are built of
// Linux network namespaces.
func Available() error {
	return errors.New("netlab: needs Linux (network namespaces, bridges, veth, tun/tap)")
}

// NotOnHost cannot tell on this system.
func NotOnHost(p netip.Prefix) error {
	return errors.New("netlab: not on host: needs Linux")
}
