package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The port lock: one lock file per physical port, taken with flock by
// every exchange of every hil process on the host, so that two runs never
// interleave frames on one board. flock locks belong to an open file, so
// they also keep apart two Boards on one port within a process, and the
// kernel drops them with the process: a crashed run leaves no stale lock.

// lockBackoff bounds the wait between two tries of a busy lock. A
// blocking flock cannot be cancelled, so the lock is polled.
const lockBackoff = 20 * time.Millisecond

// BusyError is a port whose lock another exchange held until the context
// ended.
type BusyError struct {
	Port   string // the port's device path
	Holder string // who holds it: pid, what it is doing, since when
	Err    error  // why the wait ended: the context's cause
}

func (e *BusyError) Error() string { return "relay port " + e.Port + " is in use by " + e.Holder }
func (e *BusyError) Unwrap() error { return e.Err }

// lockRecord is the lock file's content, written by the holder once it
// has the lock: who it is for others who find the port busy, and when the
// board had its last command, for the gap before the next.
type lockRecord struct {
	PID      int       `json:"pid"`
	Hostname string    `json:"hostname,omitempty"`
	Holder   string    `json:"holder,omitempty"`
	Since    time.Time `json:"since"`
	LastEnd  time.Time `json:"last_end,omitzero"`
}

func (r lockRecord) String() string {
	s := fmt.Sprintf("pid %d", r.PID)
	if host, _ := os.Hostname(); r.Hostname != "" && r.Hostname != host {
		s += " on " + r.Hostname
	}
	if r.Holder != "" {
		s += " (" + r.Holder + ")"
	}
	if !r.Since.IsZero() {
		since, layout := r.Since.Local(), "15:04:05"
		if since.Format(time.DateOnly) != time.Now().Format(time.DateOnly) {
			layout = time.DateTime
		}
		s += " since " + since.Format(layout)
	}
	return s
}

type portLock struct {
	f   *os.File
	rec lockRecord
}

// lockDir is the directory of the port locks.
func lockDir() string { return filepath.Join(os.TempDir(), "hil-locks") }

// lockPort takes the lock of the port at path, retrying until ctx is
// done. onWait, if not nil, is called once if the lock is busy.
func lockPort(ctx context.Context, path, holder string, onWait func(string)) (*portLock, error) {
	name, err := lockName(path)
	if err != nil {
		return nil, err
	}
	dir, err := makeLockDir()
	if err != nil {
		return nil, err
	}
	f, err := openLockFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("lock port %s: %w", path, err)
	}
	backoff := time.Millisecond
	waited := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock port %s: flock %s: %w", path, f.Name(), err)
		}
		if !waited {
			waited = true
			if onWait != nil {
				onWait(holderOf(f))
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			err := &BusyError{Port: path, Holder: holderOf(f), Err: context.Cause(ctx)}
			f.Close()
			return nil, err
		}
		backoff = min(2*backoff, lockBackoff)
	}
	prev, _ := readRecord(f)
	host, _ := os.Hostname()
	l := &portLock{f: f, rec: lockRecord{PID: os.Getpid(), Hostname: host, Holder: holder, Since: time.Now(), LastEnd: prev.LastEnd}}
	if err := l.write(); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock port %s: %w", path, err)
	}
	return l, nil
}

// waitGap waits until gap has passed since the last command on the port.
func (l *portLock) waitGap(ctx context.Context, gap time.Duration) error {
	if l.rec.LastEnd.IsZero() {
		return nil
	}
	// Bounded: a clock set back must not stall the port. LastEnd may be
	// a little ahead, by the time a command takes to reach the board.
	wait := min(time.Until(l.rec.LastEnd.Add(gap)), gap+time.Second)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting out the %v gap between commands: %w", gap, context.Cause(ctx))
	}
}

// unlock records end, if not zero, as when the board had the last
// command on the port, and releases the lock.
func (l *portLock) unlock(end time.Time) {
	if !end.IsZero() {
		l.rec.LastEnd = end
		// Best effort: a record that cannot be written costs the next
		// exchange its gap, not this one its result.
		l.write()
	}
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}

func (l *portLock) write() error {
	data, err := json.Marshal(l.rec)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := l.f.WriteAt(data, 0); err != nil {
		return err
	}
	return l.f.Truncate(int64(len(data)))
}

func readRecord(f *os.File) (lockRecord, error) {
	var r lockRecord
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<10))
	if err != nil {
		return r, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return r, errors.New("empty")
	}
	return r, json.Unmarshal(data, &r)
}

// holderOf describes who holds the lock of f, as its holder wrote it.
func holderOf(f *os.File) string {
	r, err := readRecord(f)
	if err != nil || r.PID == 0 {
		// The holder took the lock and has not written its record yet,
		// or is an older hil.
		return fmt.Sprintf("another process (%s names none)", f.Name())
	}
	return r.String()
}

// lockName names the lock file of the port at path after the device, so
// that two names of one port (/dev/ttyUSB0, /dev/serial/by-path/...)
// share a lock.
func lockName(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		perr := &fs.PathError{Op: "stat", Path: path, Err: err}
		if errors.Is(err, fs.ErrNotExist) {
			return "", gone(path, perr)
		}
		return "", perr
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR {
		rdev := uint64(st.Rdev)
		return fmt.Sprintf("tty-%d-%d.lock", unix.Major(rdev), unix.Minor(rdev)), nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	return "path-" + url.PathEscape(real) + ".lock", nil
}

// makeLockDir creates the lock directory, writable by all as /tmp is, so
// that every user's hil shares it.
func makeLockDir() (string, error) {
	dir := lockDir()
	const mode = 0o777 | os.ModeSticky
	err := os.Mkdir(dir, mode)
	switch {
	case err == nil:
		// Mkdir's mode went through the umask.
		if err := os.Chmod(dir, mode); err != nil {
			return "", err
		}
	case !errors.Is(err, fs.ErrExist):
		return "", err
	}
	return dir, nil
}

// openLockFile opens the lock file name, creating it if need be.
func openLockFile(name string) (*os.File, error) {
	for {
		// Open an existing file without O_CREAT: where
		// fs.protected_regular is set, O_CREAT on another user's file in a
		// sticky world-writable directory fails even though it exists.
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue // created meanwhile by another process
		}
		if err != nil {
			return nil, err
		}
		// The umask applied; other users' hil must open it too.
		if err := f.Chmod(0o666); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
}
