// Package qemu powers a payload that is a QEMU aarch64 virtual machine
// booting the payload image (fixtures/image): power on boots it, power off
// stops it dead through QMP, as pulling the power would. The serial
// console goes to a file per board, and the machine's Ethernet is a tap on
// the bench bridge (harness/netlab), handed to QEMU as a file descriptor.
//
// Each boot gets a fresh overlay: the files the bus gives the payload
// (its network and payload configuration, keys, the app's files) are
// packed into a cpio archive the kernel unpacks after the image's own,
// so the image stays the same for every board and every run.
package qemu

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/internal/cpio"
)

// Config is one virtual payload. Name, Kernel, Initrd and Dir are
// required; the zero value of every other field works.
type Config struct {
	Name   string // the board, for errors and the VM's name
	Binary string // default "qemu-system-aarch64", from PATH
	Kernel string // the image's arm64 kernel (build/image/Image)
	Initrd string // the image's initramfs (build/image/initramfs.cpio.gz)
	// CPU is the emulated CPU model; default cortex-a57, which boots
	// several times faster under emulation than "max".
	CPU    string
	SMP    int    // vCPUs; default 2
	Memory string // default "256M"
	// Tap is the bench bridge's tap for this payload, nil for none. It
	// stays open across boots; QEMU gets a duplicate each time.
	Tap *os.File
	// Files are put into the guest's filesystem at every boot, by
	// absolute guest path: its configuration, keys. Overlay is a host
	// directory whose tree is put there too (the app's files the bench
	// writes), read at each boot.
	Files   map[string]File
	Overlay string
	// Append are kernel arguments after the machine's own (console,
	// panic): the payload image takes eth0's address from one, ip= (see
	// fixtures/image/guest.IP), as a real board's boot loader passes it.
	Append  []string
	Dir     string    // the machine's own files: QMP socket, boot archive
	Console io.Writer // the serial console and QEMU's own messages; nil discards
}

// File is one file of the guest's overlay.
type File struct {
	Data []byte
	Mode fs.FileMode // permission bits; 0 means 0644
}

// Machine is a Config's virtual payload, a power.Power. Its zero value
// is not usable: call New.
type Machine struct {
	cfg Config
	// proc is QEMU itself: its start, its exit (Stopped), and the kill
	// when QMP does not answer.
	proc *power.Process

	mu sync.Mutex // serialises On: each boot rewrites the boot archive
	// QEMU serves one QMP client at a time: one connection per QEMU, one
	// command at a time on it.
	qmu sync.Mutex
	q   *qmp
}

var (
	_ power.Power   = (*Machine)(nil)
	_ power.Stopper = (*Machine)(nil)
)

// New checks cfg and returns its machine, off.
func New(cfg Config) (*Machine, error) {
	fail := func(err error) (*Machine, error) { return nil, fmt.Errorf("qemu %s: %w", cfg.Name, err) }
	if cfg.Name == "" {
		return fail(errors.New("no name"))
	}
	if cfg.Dir == "" {
		return fail(errors.New("no directory for the machine's files"))
	}
	for _, f := range []struct{ what, name string }{{"kernel", cfg.Kernel}, {"initrd", cfg.Initrd}} {
		if f.name == "" {
			return fail(fmt.Errorf("no %s", f.what))
		}
		if _, err := os.Stat(f.name); err != nil {
			return fail(fmt.Errorf("%s: %w (build the payload image with `make image`)", f.what, err))
		}
	}
	for _, a := range cfg.Append {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || !unicode.IsPrint(r) }) {
			return fail(fmt.Errorf("kernel argument %q: want one word, without spaces or quotes", a))
		}
	}
	binary := cfg.Binary
	if binary == "" {
		binary = "qemu-system-aarch64"
	}
	bin, err := exec.LookPath(binary)
	if err != nil {
		return fail(fmt.Errorf("%w (Debian: apt-get install qemu-system-arm)", err))
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fail(err)
	}
	m := &Machine{cfg: cfg}
	m.proc = &power.Process{Name: cfg.Name, Path: bin, Args: m.args(), Console: cfg.Console}
	if cfg.Tap != nil {
		m.proc.ExtraFiles = []*os.File{cfg.Tap} // fd 3 in args
	}
	return m, nil
}

func (m *Machine) String() string { return "qemu " + m.cfg.Name }

func (m *Machine) qmpPath() string    { return filepath.Join(m.cfg.Dir, "qmp.sock") }
func (m *Machine) initrdPath() string { return filepath.Join(m.cfg.Dir, "initrd") }

// args is QEMU's command line: the boot archive, the QMP socket, the tap.
func (m *Machine) args() []string {
	c := m.cfg
	cpu, smp, mem := c.CPU, c.SMP, c.Memory
	if cpu == "" {
		cpu = "cortex-a57"
	}
	if smp == 0 {
		smp = 2
	}
	if mem == "" {
		mem = "256M"
	}
	args := []string{
		"-name", "hil-" + c.Name,
		"-M", "virt", "-cpu", cpu, "-smp", strconv.Itoa(smp), "-m", mem,
		"-kernel", c.Kernel, "-initrd", m.initrdPath(), "-append", strings.Join(append([]string{"console=ttyAMA0 panic=-1 loglevel=4"}, c.Append...), " "),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-qmp", "unix:" + m.qmpPath() + ",server=on,wait=off",
		// A reboot or a panic ends the process: the payload is off.
		"-no-reboot",
		// Without entropy the guest blocks in getrandom() at SSH start.
		"-device", "virtio-rng-pci",
		"-nic", "none",
	}
	if c.Tap != nil {
		// fd 3: the first of cmd.ExtraFiles. romfile= because Debian's
		// qemu-system-arm has no iPXE ROM without ipxe-qemu.
		args = append(args, "-netdev", "tap,id=n0,fd=3",
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+m.mac())
	}
	return args
}

// mac is the guest's MAC address: QEMU's prefix and three bytes of the
// board's name, the same at every boot so the bus's ARP cache stays right.
func (m *Machine) mac() string {
	h := sha256.Sum256([]byte(m.cfg.Name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// On boots the machine unless it is running: it returns once QEMU runs
// the guest, not once the payload answers (the bus waits for SSH).
func (m *Machine) On(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st, _ := m.proc.State(ctx); st == power.On {
		return nil
	}
	fail := func(err error) error { return &power.Error{Op: "on", Power: m.String(), Err: err} }
	if err := ctx.Err(); err != nil {
		return fail(context.Cause(ctx))
	}
	if err := m.writeInitrd(); err != nil {
		return fail(err)
	}
	os.Remove(m.qmpPath())
	m.qmu.Lock()
	if m.q != nil {
		m.q.Close() // the last QEMU's
		m.q = nil
	}
	m.qmu.Unlock()
	if err := m.proc.On(ctx); err != nil {
		return fail(cause(err))
	}
	// Running means QMP answers "running"; QEMU refusing its command line
	// exits at once instead.
	exited := m.proc.Stopped()
	for {
		if st, err := m.status(ctx); err == nil && st == "running" {
			return nil
		}
		select {
		case <-exited:
			return fail(errors.New("QEMU exited at start: see the console"))
		case <-ctx.Done():
			m.proc.Off(context.Background()) // a kill, waited for
			return fail(context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cause is what a power.Error of proc says, for the Machine's own.
func cause(err error) error {
	var pe *power.Error
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// command runs a QMP command on the current QEMU.
func (m *Machine) command(ctx context.Context, command string, ret any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if m.q == nil {
		q, err := dialQMP(ctx, m.qmpPath())
		if err != nil {
			return err
		}
		m.q = q
	}
	err := m.q.run(ctx, command, ret)
	if err != nil {
		// A reply may still be on its way: it would answer the next
		// command. The next one connects afresh.
		m.q.Close()
		m.q = nil
	}
	return err
}

// status asks QMP for the VM's run state ("running", "paused",
// "shutdown", ...).
func (m *Machine) status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := m.command(ctx, "query-status", &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Off stops the machine dead (QMP quit, which ends QEMU at once; a QEMU
// that does not answer is killed) and waits for it to be gone.
func (m *Machine) Off(ctx context.Context) error {
	if st, _ := m.proc.State(ctx); st == power.Off {
		return nil
	}
	// QEMU may close the connection before it answers quit.
	if m.command(ctx, "quit", nil) == nil {
		select {
		case <-m.proc.Stopped():
			return nil
		case <-ctx.Done():
		}
	}
	if err := m.proc.Off(ctx); err != nil {
		return &power.Error{Op: "off", Power: m.String(), Err: cause(err)}
	}
	return nil
}

// Cycle stops the machine and boots it again after off.
func (m *Machine) Cycle(ctx context.Context, off time.Duration) error {
	return power.OffOn(ctx, m, off)
}

// State is On while QEMU runs the guest; a guest that is paused or shut
// down, or no QEMU, is Off.
func (m *Machine) State(ctx context.Context) (power.State, error) {
	if st, _ := m.proc.State(ctx); st == power.Off {
		return power.Off, nil
	}
	st, err := m.status(ctx)
	switch {
	case err == nil && st == "running":
		return power.On, nil
	case err == nil:
		return power.Off, nil
	}
	if st, _ := m.proc.State(ctx); st == power.Off {
		return power.Off, nil // it exited while asked
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return power.Unknown, &power.Error{Op: "state", Power: m.String(), Err: err}
}

// Stopped returns a channel closed when the current QEMU has exited: the
// guest powered off, rebooted, panicked, or was switched off.
func (m *Machine) Stopped() <-chan struct{} { return m.proc.Stopped() }

// writeInitrd writes the boot archive: the image's initramfs, then an
// uncompressed overlay archive of Overlay's tree and Files, which the
// kernel unpacks over it.
func (m *Machine) writeInitrd() error {
	name := m.initrdPath()
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	img, err := os.Open(m.cfg.Initrd)
	if err != nil {
		f.Close()
		return fmt.Errorf("initrd: %w", err)
	}
	n, err := io.Copy(f, img)
	img.Close()
	if err == nil {
		// The kernel finds the next archive only at a 4-byte boundary,
		// and skips zeros to get there.
		_, err = f.Write(make([]byte, (4-n%4)%4))
	}
	if err == nil {
		err = m.writeOverlay(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("boot archive %s: %w", name, err)
	}
	return nil
}

func (m *Machine) writeOverlay(w io.Writer) error {
	files := map[string]File{}
	if m.cfg.Overlay != "" {
		err := filepath.WalkDir(m.cfg.Overlay, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("overlay %s: only regular files are copied into the guest", p)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(m.cfg.Overlay, p)
			files["/"+filepath.ToSlash(rel)] = File{Data: data, Mode: info.Mode().Perm()}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for name, f := range m.cfg.Files {
		files[name] = f
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if !path.IsAbs(name) {
			return fmt.Errorf("overlay file %q: want an absolute guest path", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	cw := cpio.NewWriter(w)
	dirs := map[string]bool{"/": true}
	var mkdirs func(dir string) error
	mkdirs = func(dir string) error {
		if dirs[dir] {
			return nil
		}
		if err := mkdirs(path.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return cw.Mkdir(dir[1:], 0o755)
	}
	for _, name := range names {
		f := files[name]
		if err := mkdirs(path.Dir(name)); err != nil {
			return err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := cw.Add(name[1:], mode, f.Data); err != nil {
			return err
		}
	}
	return cw.Close()
}
