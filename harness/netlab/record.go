//go:build linux

package netlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RecordDir is where each Lab writes its owner record, <name>.json, and
// where Leftovers looks for them. Tests point it elsewhere.
var RecordDir = "/run/hil/netlab"

// record says which process owns a lab's namespaces.
type record struct {
	PID        int      `json:"pid"`
	StartTime  uint64   `json:"start_time"`     // of PID, field 22 of /proc/<pid>/stat: tells a reused pid
	Created    string   `json:"created"`        // RFC 3339
	Namespaces []string `json:"namespaces"`     // the bus namespace first
	NICs       []string `json:"nics,omitempty"` // the host's, borrowed into the bus namespace
}

// startTime returns field 22 of /proc/<pid>/stat, the time the process
// started, in clock ticks after boot.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Field 2, the command, is in parentheses and may hold anything.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:])) // from field 3
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields, want 22 or more", pid, len(f)+2)
	}
	return strconv.ParseUint(f[22-3], 10, 64)
}

// alive reports whether the owner of r is still running.
func (r record) alive() bool {
	st, err := startTime(r.PID)
	return err == nil && st == r.StartTime
}

// createRecord writes r to path, unless a record there belongs to a live
// process. It is written whole and then linked into place, so that a
// reader never sees part of one and two labs cannot both take a name.
func createRecord(path string, r record) error {
	tmp, err := writeTemp(path, r)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	if errors.Is(err, os.ErrExist) {
		if old, rerr := readRecord(path); rerr == nil && old.alive() {
			return fmt.Errorf("netlab: lab name %s is taken: %s belongs to pid %d, which is running", strings.TrimSuffix(filepath.Base(path), ".json"), path, old.PID)
		}
		err = os.Rename(tmp, path) // a dead owner's
	}
	if err != nil {
		return fmt.Errorf("netlab: writing owner record: %w", err)
	}
	return nil
}

// writeRecord replaces the record at path with r.
func writeRecord(path string, r record) error {
	tmp, err := writeTemp(path, r)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("netlab: writing owner record: %w", err)
	}
	return nil
}

// writeTemp writes r to a new file next to path and returns its name,
// which does not end in .json.
func writeTemp(path string, r record) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("netlab: owner records: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("netlab: writing owner record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("netlab: writing owner record: %w", err)
	}
	return f.Name(), nil
}

func readRecord(path string) (record, error) {
	var r record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// records returns the owner records in RecordDir by file name. One that
// cannot be read is left out: its namespaces have no owner record.
func records() (map[string]record, error) {
	paths, err := filepath.Glob(filepath.Join(RecordDir, "*.json"))
	if err != nil {
		return nil, err
	}
	recs := map[string]record{}
	for _, p := range paths {
		if r, err := readRecord(p); err == nil {
			recs[p] = r
		}
	}
	return recs, nil
}

// addNamespace adds name to the lab's owner record, before the namespace
// is made.
func (l *Lab) addNamespace(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rec
	r.Namespaces = append(slices.Clip(r.Namespaces), name)
	if err := writeRecord(l.recPath, r); err != nil {
		return err
	}
	l.rec = r
	return nil
}

// setNICs records the NICs the lab borrows from the host, before it
// borrows them.
func (l *Lab) setNICs(names []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rec
	r.NICs = names
	if err := writeRecord(l.recPath, r); err != nil {
		return err
	}
	l.rec = r
	return nil
}

// dropNamespace takes name out of the lab's owner record again.
func (l *Lab) dropNamespace(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rec
	i := slices.Index(r.Namespaces, name)
	if i < 0 {
		return nil
	}
	r.Namespaces = slices.Delete(slices.Clone(r.Namespaces), i, i+1)
	if err := writeRecord(l.recPath, r); err != nil {
		return err
	}
	l.rec = r
	return nil
}

// A Leftover is a network namespace a Lab made whose owner is gone
// without closing it (killed, say): see Leftovers.
type Leftover struct {
	Namespace string
	Owner     int    // the owner's pid; 0 when there is no owner record
	Why       string // "owner pid 123 is gone", "no owner record"
	// NICs are the host's interfaces the run borrowed into the namespace
	// (Lab.NIC). Removing it returns a physical NIC to the host's initial
	// namespace and deletes a virtual one (a VLAN).
	NICs []string
}

// Leftovers returns the leftover namespaces, sorted by name: the named
// network namespaces (in /run/netns) whose names start with Prefix and
// whose owner record in RecordDir is missing, or names a process that is
// gone (the pid is dead, or is another process now).
func Leftovers() ([]Leftover, error) {
	ents, err := os.ReadDir(nsRunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: listing network namespaces: %w", err)
	}
	recs, err := records()
	if err != nil {
		return nil, fmt.Errorf("netlab: owner records: %w", err)
	}
	var out []Leftover
	for _, e := range ents { // sorted by name
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		if l, ok := leftover(e.Name(), recs); ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// leftover reports whether the namespace name is a leftover, by recs.
func leftover(name string, recs map[string]record) (Leftover, bool) {
	for _, r := range recs {
		if slices.Contains(r.Namespaces, name) {
			if r.alive() {
				return Leftover{}, false
			}
			l := Leftover{Namespace: name, Owner: r.PID, Why: fmt.Sprintf("owner pid %d is gone", r.PID)}
			if name == r.Namespaces[0] { // the bus namespace
				l.NICs = r.NICs
			}
			return l, true
		}
	}
	return Leftover{Namespace: name, Why: "no owner record"}, true
}

// Clean removes the leftover l: it kills (SIGKILL) every process in the
// namespace, deletes the namespace, and takes it out of its owner record,
// removing the record with its last namespace. It checks again first, and
// refuses a namespace that has a live owner.
func Clean(l Leftover) error {
	name := l.Namespace
	if err := checkNsName(name); err != nil {
		return fmt.Errorf("netlab: clean: %w", err)
	}
	recs, err := records()
	if err != nil {
		return fmt.Errorf("netlab: clean %s: owner records: %w", name, err)
	}
	if _, ok := leftover(name, recs); !ok {
		return fmt.Errorf("netlab: clean %s: not a leftover: its owner is running", name)
	}
	path := filepath.Join(nsRunDir, name)
	id, err := nsIDOf(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Gone already: only the record is left to clean.
	case err != nil:
		return fmt.Errorf("netlab: clean %s: %w", name, err)
	case !isNsfs(path):
		// A file left by a failed mount: there is nothing in it to kill.
	default:
		if err := killIn(id); err != nil {
			return fmt.Errorf("netlab: clean %s: %w", name, err)
		}
	}
	if err := deleteNamedNs(name); err != nil {
		return fmt.Errorf("netlab: clean %s: %w", name, err)
	}
	for p, r := range recs {
		if !slices.Contains(r.Namespaces, name) {
			continue
		}
		// Keep the namespaces that are still there; one that is gone needs
		// no owner.
		r.Namespaces = slices.DeleteFunc(r.Namespaces, func(n string) bool {
			_, err := os.Lstat(filepath.Join(nsRunDir, n))
			return n == name || err != nil
		})
		if len(r.Namespaces) == 0 {
			err = os.Remove(p)
		} else {
			err = writeRecord(p, r)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("netlab: clean %s: owner record: %w", name, err)
		}
	}
	return nil
}

// checkNsName checks the name of one of the labs' namespaces: it has
// Prefix and is a plain file name.
func checkNsName(name string) error {
	if !strings.HasPrefix(name, Prefix) {
		return fmt.Errorf("namespace %q is not a lab's: its name does not start with %q", name, Prefix)
	}
	if strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("namespace name %q is not a file name", name)
	}
	return nil
}

// isNsfs reports whether path is a namespace file (a bind mount of one).
func isNsfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
