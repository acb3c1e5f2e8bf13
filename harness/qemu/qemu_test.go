package qemu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/satbench/hil/fixtures/image/guest"
	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/power/powertest"
	"github.com/satbench/hil/harness/qemu"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/internal/testenv"
)

const imageDir = "../../build/image"

// syncBuffer is a console that tests read while QEMU writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// keys returns the bench's test keys: the payload's host key file, the
// bus's signer and the host key the bus pins.
func keys(t testing.TB) (hostKey []byte, bus ssh.Signer, pinned ssh.PublicKey) {
	t.Helper()
	hostKey, err := os.ReadFile("../../boards/keys/refpayload_host_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	hs, err := ssh.ParsePrivateKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../boards/keys/bus_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	bus, err = ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return hostKey, bus, hs.PublicKey()
}

// config is a machine booting the payload image as 10.42.0.2 on tap (nil:
// no network), serving SSH to the bench's test keys.
func config(t testing.TB, name string, tap *os.File, console *syncBuffer) qemu.Config {
	t.Helper()
	hostKey, bus, _ := keys(t)
	gc, err := json.Marshal(guest.Config{
		Args: []string{"--root", "/", "--listen", ":22", "--host-key", "/etc/hil/host_key",
			"--authorized-key", "/etc/hil/bus_key.pub", "--user", "signaling"}})
	if err != nil {
		t.Fatal(err)
	}
	return qemu.Config{
		Name: name, Kernel: filepath.Join(imageDir, "Image"), Initrd: filepath.Join(imageDir, "initramfs.cpio.gz"),
		Tap: tap, Dir: t.TempDir(), Console: console,
		Append: []string{guest.IP{Addr: netip.MustParsePrefix("10.42.0.2/24"), Gateway: netip.MustParseAddr("10.42.0.1")}.String()},
		Files: map[string]qemu.File{
			guest.ConfigPath:       {Data: gc},
			"/etc/hil/host_key":    {Data: hostKey, Mode: 0o600},
			"/etc/hil/bus_key.pub": {Data: ssh.MarshalAuthorizedKey(bus.PublicKey())},
		},
	}
}

func TestConformance(t *testing.T) {
	testenv.RequireQEMU(t, "../..")
	powertest.Run(t, func(t *testing.T) power.Power {
		m, err := qemu.New(config(t, "conformance", nil, &syncBuffer{}))
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "Image")
	os.WriteFile(kernel, nil, 0o644)
	tests := []struct {
		name string
		cfg  qemu.Config
		want string
	}{
		{"no name", qemu.Config{Kernel: kernel, Initrd: kernel, Dir: dir}, "qemu : no name"},
		{"no dir", qemu.Config{Name: "p", Kernel: kernel, Initrd: kernel}, "qemu p: no directory"},
		{"no kernel", qemu.Config{Name: "p", Initrd: kernel, Dir: dir}, "qemu p: no kernel"},
		{"kernel missing", qemu.Config{Name: "p", Kernel: filepath.Join(dir, "nope"), Initrd: kernel, Dir: dir}, "(build the payload image with `make image`)"},
		{"no binary", qemu.Config{Name: "p", Kernel: kernel, Initrd: kernel, Dir: dir, Binary: "qemu-system-nope"}, "apt-get install qemu-system-arm"},
		{"argument with a space", qemu.Config{Name: "p", Kernel: kernel, Initrd: kernel, Dir: dir, Append: []string{"ip=10.42.0.2 quiet"}},
			`qemu p: kernel argument "ip=10.42.0.2 quiet": want one word, without spaces or quotes`},
		{"empty argument", qemu.Config{Name: "p", Kernel: kernel, Initrd: kernel, Dir: dir, Append: []string{""}}, `kernel argument ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := qemu.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// bootLab is a bench network with one QEMU payload on it.
type bootLab struct {
	lab     *netlab.Lab
	m       *qemu.Machine
	console *syncBuffer
	rc      remote.Config
}

func newBootLab(t testing.TB) *bootLab {
	testenv.RequireNetlab(t)
	testenv.RequireQEMU(t, "../..")
	ctx := context.Background()
	lab, err := netlab.Create(ctx, netlab.Config{BusAddr: netip.MustParsePrefix("10.42.0.1/24")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	tap, err := lab.Tap(ctx, "qtap0")
	if err != nil {
		t.Fatal(err)
	}
	console := &syncBuffer{}
	m, err := qemu.New(config(t, "boot", tap.File, console))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Off(context.Background()) })
	_, bus, pinned := keys(t)
	rc := remote.Config{Address: "10.42.0.2:22", User: "signaling", Signer: bus, HostKey: pinned, Dial: lab.Dial}
	return &bootLab{lab: lab, m: m, console: console, rc: rc}
}

// boot powers the machine on and returns an SSH client once it answers.
func (l *bootLab) boot(t testing.TB) *remote.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.m.On(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := remote.Wait(ctx, l.rc)
	if err != nil {
		t.Fatalf("no SSH: %v; console:\n%s", err, l.console)
	}
	return c
}

// TestBoot: the image boots to a payload that serves SSH at its bench
// address over the tap, runs commands, and, halted, powers itself off.
func TestBoot(t *testing.T) {
	l := newBootLab(t)
	c := l.boot(t)
	defer c.Close()
	ctx := context.Background()
	if err := c.Run(ctx, "/usr/bin/writefile /tmp/hello hi", nil); err != nil {
		t.Fatalf("writefile: %v", err)
	}
	err := c.Run(ctx, "/usr/bin/exit 3 no", nil)
	if ee, ok := err.(*remote.ExitError); !ok || ee.Status != 3 {
		t.Fatalf("exit 3 = %v, want exit status 3", err)
	}
	for _, want := range []string{"guest:", "eth0", "payload: listening on"} {
		if !strings.Contains(l.console.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, l.console)
		}
	}
	stopped := l.m.Stopped()
	c.Run(ctx, "/sbin/halt", nil) // the payload goes away while answering
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatalf("the machine did not power off after /sbin/halt; console:\n%s", l.console)
	}
	if st, err := l.m.State(ctx); err != nil || st != power.Off {
		t.Fatalf("State after halt = %v, %v; want off", st, err)
	}
}

// BenchmarkColdBoot measures power-on to SSH-ready, each iteration a cold
// boot, and reports the median.
func BenchmarkColdBoot(b *testing.B) {
	l := newBootLab(b)
	var boots []time.Duration
	for b.Loop() {
		start := time.Now()
		c := l.boot(b)
		boots = append(boots, time.Since(start))
		c.Close()
		if err := l.m.Off(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(boots)
	b.ReportMetric(float64(boots[len(boots)/2].Milliseconds()), "ms-median/boot")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSFTPFromGuest measures a file's pull from the guest over SFTP,
// as the downlink sweep pulls the outbox.
func BenchmarkSFTPFromGuest(b *testing.B) {
	l := newBootLab(b)
	c := l.boot(b)
	defer c.Close()
	ctx := context.Background()
	const size = 16 << 20
	if err := c.Run(ctx, fmt.Sprintf("/usr/bin/mkfile /tmp/pull.bin %d 1", size), nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		var buf bytes.Buffer
		if _, err := c.Get(ctx, "/tmp/pull.bin", &buf); err != nil {
			b.Fatal(err)
		}
		if buf.Len() != size {
			b.Fatalf("pulled %d bytes, want %d", buf.Len(), size)
		}
	}
}

// BenchmarkSSHHandshake measures one SSH connection to a booted guest: TCP,
// key exchange and public-key login, on the emulated CPU.
func BenchmarkSSHHandshake(b *testing.B) {
	l := newBootLab(b)
	l.boot(b).Close()
	ctx := context.Background()
	var slowest time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := remote.Dial(ctx, l.rc)
		if err != nil {
			b.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		c.Close()
	}
	b.ReportMetric(slowest.Seconds(), "slowest-s")
}
