package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/fixtures/image/guest"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/oort"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/qemu"
)

// dialer is how the bus reaches its payloads: through the bench's
// network lab when it has one, else on this host.
type dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// openNetwork builds the bench's network, if it has one. Without root it
// fails with one line saying what is needed.
func openNetwork(ctx context.Context, b *bench.Bench) (*netlab.Lab, error) {
	if !b.Network.Enabled() {
		return nil, nil
	}
	addr, _ := netip.ParsePrefix(b.Network.BusAddress) // checked by bench.Load
	lab, err := netlab.Create(ctx, netlab.Config{BusAddr: addr})
	if err != nil {
		return nil, fmt.Errorf("bus: bench %s: network: %w", b.File, err)
	}
	return lab, nil
}

// shape is the bench's link shape as netlab takes it.
func shape(s bench.Shape) netlab.Shape {
	return netlab.Shape{Rate: int64(s.Rate), Delay: s.Delay.D(), Jitter: s.Jitter.D(), Loss: s.Loss}
}

// linkName names board i's link on the bench bridge: short, because a
// Linux interface name has at most 15 bytes, which a board name may not.
func linkName(i int) string { return "pl" + strconv.Itoa(i) }

// payloadAddr is the board's address on the bench network, with the
// network's prefix length.
func payloadAddr(b *bench.Bench, bc *bench.Board) netip.Prefix {
	bus, _ := netip.ParsePrefix(b.Network.BusAddress)
	ap, _ := netip.ParseAddrPort(bc.Address) // checked by bench.Load
	return netip.PrefixFrom(ap.Addr(), bus.Bits())
}

// vethPower puts the reference payload process of board i behind a veth
// on the bench bridge, in a namespace of its own, and shapes its link on
// the host.
func vethPower(ctx context.Context, lab *netlab.Lab, b *bench.Bench, i int, proc *power.Process) (netlab.Link, error) {
	bc := b.Boards[i]
	v, err := lab.Veth(ctx, linkName(i), payloadAddr(b, bc))
	if err != nil {
		return nil, err
	}
	if err := shapeOnHost(ctx, v, b.Network.Shape); err != nil {
		return nil, err
	}
	proc.Within = v.Do
	return v, nil
}

// nicLink joins board i, a real board, to the bench bridge by the host
// NIC it is cabled to, and shapes that link on the host.
func nicLink(ctx context.Context, lab *netlab.Lab, b *bench.Bench, i int) (netlab.Link, error) {
	k, err := lab.NIC(ctx, b.Boards[i].NIC)
	if err != nil {
		return nil, fmt.Errorf("nic: %w", err)
	}
	if err := shapeOnHost(ctx, k, b.Network.Shape); err != nil {
		return nil, err
	}
	return k, nil
}

// shapeOnHost shapes k with s, all of it on this host: a payload whose
// network stack is not the bench's to configure (a process sharing this
// kernel, a real board) cannot take the rest, which without netem
// (sch_netem) is then an error. A shape is never silently dropped.
func shapeOnHost(ctx context.Context, k netlab.Link, s bench.Shape) error {
	rest, err := k.Shape(ctx, shape(s))
	if err != nil {
		return fmt.Errorf("network.shape: %w", err)
	}
	if !rest.IsZero() {
		return fmt.Errorf("network.shape: %s needs netem, which this host's kernel lacks (modprobe sch_netem; Ubuntu ships it in linux-modules-extra); a qemu board applies it inside its guest", rest)
	}
	return nil
}

// Guest paths of the files the bus gives a QEMU payload at each boot.
const (
	guestHostKey = "/etc/hil/host_key"
	guestBusKey  = "/etc/hil/bus_key.pub"
)

// qemuPower builds board i's QEMU payload: a tap on the bench bridge,
// shaped (what the host cannot apply goes to netem in the guest), and a
// machine booting the payload image with the board's configuration laid
// over it; root is a host directory whose tree is laid over the guest's
// too (the app's files).
func qemuPower(ctx context.Context, lab *netlab.Lab, b *bench.Bench, i int, dir, root string, console *os.File) (*qemu.Machine, netlab.Link, error) {
	bc := b.Boards[i]
	tap, err := lab.Tap(ctx, linkName(i))
	if err != nil {
		return nil, nil, err
	}
	rest, err := tap.Shape(ctx, shape(b.Network.Shape))
	if err != nil {
		return nil, nil, fmt.Errorf("network.shape: %w", err)
	}
	hostKey, err := os.ReadFile(bc.Power.HostKey)
	if err != nil {
		return nil, nil, fmt.Errorf("power.host_key: %w", err)
	}
	rc, err := RemoteConfig(bc)
	if err != nil {
		return nil, nil, err
	}
	_, sshPort, _ := net.SplitHostPort(bc.Address)
	args := []string{"--root", "/", "--listen", ":" + sshPort, "--host-key", guestHostKey,
		"--authorized-key", guestBusKey, "--user", bc.SSH.User}
	if bc.OORT.Address != "" {
		_, port, _ := net.SplitHostPort(bc.OORT.Address)
		args = append(args, "--oort-listen", ":"+port)
	}
	if bc.RunsApp() {
		args = append(args, "--app")
	}
	busAddr, _ := netip.ParsePrefix(b.Network.BusAddress)
	ip := guest.IP{Addr: payloadAddr(b, bc), Gateway: busAddr.Addr()}
	gc := guest.Config{Args: args}
	if !rest.IsZero() {
		// netlab applies the rate on the host always; the rest goes here.
		gc.Netem = &guest.Netem{DelayUS: uint32(rest.Delay.Microseconds()), JitterUS: uint32(rest.Jitter.Microseconds()), Loss: rest.Loss}
	}
	if err := gc.Validate(); err != nil {
		return nil, nil, err
	}
	cfgJSON, err := json.MarshalIndent(gc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	q := bc.Power.QEMU
	m, err := qemu.New(qemu.Config{
		Name: bc.Name, Kernel: q.Kernel, Initrd: q.Initrd, CPU: q.CPU, SMP: q.SMP, Memory: q.Memory,
		Tap: tap.File,
		Files: map[string]qemu.File{
			guest.ConfigPath: {Data: cfgJSON},
			guestHostKey:     {Data: hostKey, Mode: 0o600},
			guestBusKey:      {Data: ssh.MarshalAuthorizedKey(rc.Signer.PublicKey())},
		},
		Overlay: root,
		Append:  []string{ip.String()},
		Dir:     filepath.Join(dir, "qemu"),
		Console: console,
	})
	if err != nil {
		return nil, nil, err
	}
	return m, tap, nil
}

// CutLink takes board's Ethernet down, as the bus may in orbit after the
// start signal: the payload can no longer be reached, nor reach the bus.
func (b *Bus) CutLink(ctx context.Context, board string) error {
	return b.switchLink(ctx, board, false)
}

// RestoreLink brings board's Ethernet back up.
func (b *Bus) RestoreLink(ctx context.Context, board string) error {
	return b.switchLink(ctx, board, true)
}

func (b *Bus) switchLink(ctx context.Context, board string, up bool) error {
	bd := b.Boards[board]
	if bd == nil {
		return fmt.Errorf("bus: no board %q", board)
	}
	if bd.Link == nil {
		return fmt.Errorf("bus: board %s has no link of the bench's to cut: bench %s has no network section", board, b.Bench.File)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	name, err := "down", error(nil)
	if up {
		name, err = "up", bd.Link.Up(ctx)
	} else {
		err = bd.Link.Down(ctx)
	}
	if err != nil {
		b.Log.Append(Event{Board: board, Kind: KindError, Name: "link " + name, Detail: err.Error()})
		return fmt.Errorf("bus: board %s: link %s: %w", board, name, err)
	}
	b.Log.Append(Event{Board: board, Kind: KindLink, Name: name, Detail: bd.Link.String()})
	return nil
}

// HTTPClient returns the client that reaches HTTP servers on the
// payloads (the OORT agent): nil, the default, on loopback.
func (b *Bus) HTTPClient() *http.Client {
	if b.dial == nil {
		return nil
	}
	return &http.Client{Timeout: oort.DefaultHTTPTimeout, Transport: &http.Transport{Proxy: nil, DialContext: b.dial}}
}

// Network returns the bench network's prefix, with the bus's address;
// the zero Prefix on loopback.
func (b *Bus) Network() netip.Prefix {
	p, _ := netip.ParsePrefix(b.Bench.Network.BusAddress)
	return p
}
