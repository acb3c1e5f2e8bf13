package bus_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/fixtures/payload"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/internal/testenv"
)

// TestRealBoardOnNIC: a real board, cabled to a host NIC and switched by
// exec commands, runs a window over the bench network as the bench's own
// payloads do, and its NIC goes back to the host when the bus closes. The
// board is the reference payload in a namespace of its own behind a veth
// whose host end is the NIC, on a host of the test's own.
func TestRealBoardOnNIC(t *testing.T) {
	if !testenv.OwnHost(t) {
		return
	}
	b, err := bench.Load("../../benches/netns.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bc := *b.Boards[0]
	hostKeyFile := bc.Power.HostKey
	bc.NIC = "nic0"
	bc.Power = bench.Power{Kind: "exec", Exec: bench.Exec{On: "true", Off: "true", Timeout: bench.Duration(10 * time.Second)},
		OffTime: bc.Power.OffTime, Watch: bc.Power.Watch}
	bc.OORT, bc.PayloadInterface = bench.OORT{}, bench.BoardPayloadInterface{}
	b.Boards[0] = &bc

	// The board, always on: exec power switches nothing here.
	do := testenv.Cable(t, "nic0", netip.MustParsePrefix("10.42.0.2/24"))
	var ln net.Listener
	if err := do(func() (err error) {
		ln, err = net.Listen("tcp", bc.Address)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(hostKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := bus.RemoteConfig(&bc) // the bus's key
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- payload.Serve(ctx, payload.Config{Root: t.TempDir(), Listener: ln, HostKey: hostKey,
			AuthorizedKeys: []ssh.PublicKey{rc.Signer.PublicKey()}, Logf: t.Logf})
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("payload.Serve: %v", err)
		}
	}()

	bs, err := bus.Open(context.Background(), b, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("nic0"); err == nil {
		t.Error("nic0 is still on the host while the bus runs")
	}
	w := bus.Window{ID: "1", User: "alice", Board: bc.Name, Start: time.Now(), Duration: time.Second,
		Tasking: map[string]any{"user_command": cmd("/usr/bin/writefile", "/outbox/hello.txt", "hello")}}
	r := bs.Run(context.Background(), w)
	want := []bus.State{bus.Scheduled, bus.Powering, bus.Booting, bus.Uplinking, bus.Configuring, bus.Started, bus.Ending, bus.Off, bus.Downlinking, bus.Delivered}
	if got := states(bs.Log, w.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("states %v (%s), want %v", got, r.Reason, want)
	}
	if len(r.Objects) != 1 {
		t.Errorf("%d objects delivered, want 1", len(r.Objects))
	}
	if err := bs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("nic0"); err != nil {
		t.Errorf("nic0 is not back on the host after the bus closed: %v", err)
	}
}
