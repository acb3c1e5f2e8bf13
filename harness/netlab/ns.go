//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// nsRunDir is where named network namespaces are bind-mounted, as `ip
// netns` does, so that they outlive the threads in them and others can
// find them by name.
const nsRunDir = "/run/netns"

// errAborted is doIn's error when f ended its goroutine with
// runtime.Goexit (a t.FailNow inside a Do, say) instead of returning.
var errAborted = errors.New("netlab: function run in a namespace exited its goroutine")

// doIn runs f on a new OS thread in the network namespace ns (an open
// namespace file descriptor; -1 leaves the namespace as it is) and returns
// f's error. The thread is locked to the goroutine and never unlocked, so
// the runtime ends it with the goroutine: no other goroutine ever runs in
// the namespace, and there is no switching back that could fail and leave
// a thread behind in the wrong one. A panic in f is raised again in the
// caller.
func doIn(ns int, f func() error) error {
	type result struct {
		err      error
		panicked bool
		p        any
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		r := result{err: errAborted}
		defer func() {
			if p := recover(); p != nil {
				r = result{panicked: true, p: p}
			}
			c <- r
		}()
		if ns >= 0 {
			if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
				r.err = fmt.Errorf("entering network namespace: %w", err)
				return
			}
		}
		r.err = f()
	}()
	r := <-c
	if r.panicked {
		panic(r.p)
	}
	return r.err
}

// newNamedNs makes a network namespace, bind-mounts it at
// /run/netns/name, and returns an open file descriptor of it. It fails if
// the name is taken, and then leaves what has it alone.
func newNamedNs(name string) (int, error) {
	if err := os.MkdirAll(nsRunDir, 0o755); err != nil {
		return -1, err
	}
	path := filepath.Join(nsRunDir, name)
	fd := -1
	err := doIn(-1, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		// The file is created exclusively first: if the name is taken, the
		// mount already there is someone else's.
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s already exists (a leftover? see `hil doctor`)", path)
			}
			return err
		}
		f.Close()
		self := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			os.Remove(path)
			return fmt.Errorf("bind-mounting it at %s: %w", path, err)
		}
		fd, err = unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Unmount(path, unix.MNT_DETACH)
			os.Remove(path)
			return err
		}
		return nil
	})
	return fd, err
}

// deleteNamedNs removes /run/netns/name, as netns.DeleteNamed does, and
// succeeds when it is already gone or was never mounted. The namespace
// itself goes when nothing else holds it.
func deleteNamedNs(name string) error {
	path := filepath.Join(nsRunDir, name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil && !errors.Is(err, unix.EINVAL): // EINVAL: not a mount, a file left by a failed newNamedNs
		return fmt.Errorf("netlab: unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: %w", err)
	}
	return nil
}

// nsID identifies a namespace, as the inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

func nsIDOf(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{st.Dev, st.Ino}, nil
}

func nsIDOfFd(fd int) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nsID{}, err
	}
	return nsID{st.Dev, st.Ino}, nil
}

// killIn sends SIGKILL to every process (other than this one) whose network
// namespace is id.
func killIn(id nsID) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		got, err := nsIDOf("/proc/" + e.Name() + "/ns/net")
		if err != nil || got != id {
			continue // gone, or a kernel thread
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("netlab: killing pid %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// Capability bits of CAP_NET_ADMIN and CAP_SYS_ADMIN (linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
)

// hasCaps reports whether the CapEff line of status (/proc/self/status)
// has CAP_NET_ADMIN and CAP_SYS_ADMIN.
func hasCaps(status string) bool {
	for line := range strings.Lines(status) {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return false
		}
		const need = 1<<capNetAdmin | 1<<capSysAdmin
		return eff&need == need
	}
	return false
}

// Available reports nil if this process can create labs: it has the
// privileges, the kernel has network namespaces and /dev/net/tun is there.
// Otherwise its one-line error says what is missing, wrapping ErrNeedRoot
// where privileges are. The answer is worked out once per process.
func Available() error { return available() }

var available = sync.OnceValue(func() error {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("netlab: reading capabilities: %w", err)
	}
	if !hasCaps(string(status)) {
		return &needRootError{"creating network namespaces"}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return errors.New("netlab: this kernel has no network namespaces (/proc/self/ns/net is missing)")
	}
	if fi, err := os.Stat("/dev/net/tun"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return errors.New("netlab: /dev/net/tun is missing: the kernel needs tun (modprobe tun), a container the device")
	}
	// Privileges can still be denied (a seccomp filter, a user namespace):
	// make a namespace, which goes with the thread.
	err = doIn(-1, func() error { return unix.Unshare(unix.CLONE_NEWNET) })
	if errors.Is(err, unix.EPERM) {
		return &needRootError{"creating network namespaces"}
	}
	if err != nil {
		return fmt.Errorf("netlab: creating a network namespace: %w", err)
	}
	return nil
})
