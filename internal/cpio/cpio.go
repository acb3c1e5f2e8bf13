// Package cpio writes cpio archives in the "newc" format (magic 070701),
// the format the Linux kernel unpacks as an initramfs.
//
// The output is deterministic: every entry has uid and gid 0, mtime 0 and
// an inode number counted from 1 in the order entries are added, so the
// same calls give the same bytes. Entries are written in the order they
// are added; the kernel creates each one as it reads it, so a directory
// must come before what it holds (sorting the names does that).
//
// The kernel also accepts several archives one after the other, each with
// its own trailer, and unpacks them in order: a later archive can add
// files to the directories of an earlier one or replace its files.
package cpio

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

const (
	magic   = "070701"
	trailer = "TRAILER!!!"

	// File type bits of st_mode, which newc stores as is.
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
	modeBlock   = 0o060000
)

// Writer writes one archive. Its methods return the first error any of them
// met, so a caller may check only Close's.
type Writer struct {
	w      io.Writer
	ino    uint32
	names  map[string]bool
	closed bool
	err    error
}

// NewWriter returns a Writer of an archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, names: make(map[string]bool)}
}

// Mkdir adds a directory. Only mode's permission bits (and setuid, setgid
// and sticky) are used.
func (w *Writer) Mkdir(name string, mode fs.FileMode) error {
	return w.add(name, modeDir|unixPerm(mode), 2, nil, 0, 0)
}

// Add adds a regular file holding data.
func (w *Writer) Add(name string, mode fs.FileMode, data []byte) error {
	return w.add(name, modeRegular|unixPerm(mode), 1, data, 0, 0)
}

// Symlink adds a symbolic link to target, which is stored as is.
func (w *Writer) Symlink(name, target string) error {
	if target == "" {
		return w.fail(fmt.Errorf("cpio: symlink %q: empty target", name))
	}
	return w.add(name, modeSymlink|0o777, 1, []byte(target), 0, 0)
}

// Mknod adds a device node: a character device if mode has
// fs.ModeCharDevice, else a block device if it has fs.ModeDevice.
func (w *Writer) Mknod(name string, mode fs.FileMode, major, minor uint32) error {
	var typ uint32
	switch {
	case mode&fs.ModeCharDevice != 0:
		typ = modeChar
	case mode&fs.ModeDevice != 0:
		typ = modeBlock
	default:
		return w.fail(fmt.Errorf("cpio: mknod %q: mode %v is not a device", name, mode))
	}
	return w.add(name, typ|unixPerm(mode), 1, nil, major, minor)
}

// Close writes the trailer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil || w.closed {
		return w.err
	}
	w.writeEntry(trailer, 0, 1, nil, 0, 0, 0)
	w.closed = true
	return w.err
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) add(name string, mode, nlink uint32, data []byte, major, minor uint32) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return w.fail(fmt.Errorf("cpio: add %q: archive closed", name))
	}
	clean, err := cleanName(name)
	if err != nil {
		return w.fail(err)
	}
	if w.names[clean] {
		return w.fail(fmt.Errorf("cpio: add %q: already in the archive", name))
	}
	if uint64(len(data)) > 0xffffffff {
		return w.fail(fmt.Errorf("cpio: add %q: %d bytes is over newc's 4 GiB limit", name, len(data)))
	}
	w.names[clean] = true
	w.ino++
	w.writeEntry(clean, w.ino, nlink, data, mode, major, minor)
	return w.err
}

// cleanName turns a name such as "/dev/console" into the archive's
// "dev/console": the kernel's own gen_init_cpio drops the leading slash too.
func cleanName(name string) (string, error) {
	clean := strings.TrimLeft(name, "/")
	if clean == "" || clean != path.Clean(clean) || clean == ".." || strings.HasPrefix(clean, "../") || clean == trailer || strings.ContainsRune(clean, 0) {
		return "", fmt.Errorf("cpio: bad name %q: want a clean path such as /dev/console", name)
	}
	return clean, nil
}

// unixPerm maps fs.FileMode's permission and special bits to st_mode's.
func unixPerm(mode fs.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

var zeros [4]byte

// writeEntry writes a header, the NUL-terminated name and data, each of the
// last two padded to a multiple of 4 bytes from the start of the entry.
func (w *Writer) writeEntry(name string, ino, nlink uint32, data []byte, mode, major, minor uint32) {
	if w.err != nil {
		return
	}
	// Fields: ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check.
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, zeros[:pad(len(buf))]...)
	if _, err := w.w.Write(buf); err != nil {
		w.err = fmt.Errorf("cpio: write %q: %w", name, err)
		return
	}
	if len(data) == 0 {
		return
	}
	if _, err := w.w.Write(data); err != nil {
		w.err = fmt.Errorf("cpio: write %q: %w", name, err)
		return
	}
	if _, err := w.w.Write(zeros[:pad(len(data))]); err != nil {
		w.err = fmt.Errorf("cpio: write %q: %w", name, err)
	}
}

// pad is how many bytes bring n to a multiple of 4. Headers are 110
// bytes, so padding the header and name together and the data alone keeps
// every entry 4-aligned.
func pad(n int) int { return (4 - n%4) % 4 }
