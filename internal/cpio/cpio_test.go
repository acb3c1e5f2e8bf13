package cpio

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/sample.cpio")

// entry is one parsed archive member.
type entry struct {
	Name         string
	Ino, Mode    uint32
	UID, GID     uint32
	Nlink, Mtime uint32
	RMaj, RMin   uint32
	Data         string
}

// parse reads a newc archive strictly: magic, zero check field, 4-byte
// alignment and zero padding, and a trailer as the last entry.
func parse(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	off := 0
	for {
		if len(b)-off < 110 {
			t.Fatalf("offset %d: short header", off)
		}
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("offset %d: magic %q", off, h[:6])
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("offset %d: field %d: %v", off, i, err)
			}
			f[i] = uint32(v)
		}
		size, namesize := int(f[6]), int(f[11])
		if f[12] != 0 {
			t.Fatalf("offset %d: check field %d", off, f[12])
		}
		nameEnd := off + 110 + namesize
		if b[nameEnd-1] != 0 {
			t.Fatalf("offset %d: name not NUL-terminated", off)
		}
		name := string(b[off+110 : nameEnd-1])
		dataStart := nameEnd + pad(nameEnd)
		checkZero(t, b[nameEnd:dataStart], name)
		dataEnd := dataStart + size
		next := dataEnd + pad(dataEnd)
		checkZero(t, b[dataEnd:next], name)
		if name == "TRAILER!!!" {
			if next != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-next)
			}
			return out
		}
		out = append(out, entry{
			Name: name, Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], Nlink: f[4], Mtime: f[5],
			RMaj: f[9], RMin: f[10], Data: string(b[dataStart:dataEnd]),
		})
		if f[7] != 0 || f[8] != 0 {
			t.Errorf("%s: dev %d,%d, want 0,0", name, f[7], f[8])
		}
		off = next
	}
}

func checkZero(t *testing.T, b []byte, name string) {
	t.Helper()
	if len(b) > 3 || !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("%s: bad padding %q", name, b)
	}
}

// sample writes the archive that the tests check.
func sample(w *Writer) error {
	w.Mkdir("/dev", 0o755)
	w.Mknod("/dev/console", 0o600|fs.ModeDevice|fs.ModeCharDevice, 5, 1)
	w.Mknod("/dev/vda", 0o660|fs.ModeDevice, 254, 0)
	w.Mkdir("/tmp", 0o777|fs.ModeSticky)
	w.Add("/init", 0o755, []byte("#!/bin/sh\n"))
	w.Add("/empty", 0o644, nil)
	w.Add("abc", 0o600, []byte("abc"))
	w.Symlink("/sbin", "usr/bin")
	return w.Close()
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := sample(NewWriter(&buf)); err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{Name: "dev", Ino: 1, Mode: 0o040755, Nlink: 2},
		{Name: "dev/console", Ino: 2, Mode: 0o020600, Nlink: 1, RMaj: 5, RMin: 1},
		{Name: "dev/vda", Ino: 3, Mode: 0o060660, Nlink: 1, RMaj: 254},
		{Name: "tmp", Ino: 4, Mode: 0o041777, Nlink: 2},
		{Name: "init", Ino: 5, Mode: 0o100755, Nlink: 1, Data: "#!/bin/sh\n"},
		{Name: "empty", Ino: 6, Mode: 0o100644, Nlink: 1},
		{Name: "abc", Ino: 7, Mode: 0o100600, Nlink: 1, Data: "abc"},
		{Name: "sbin", Ino: 8, Mode: 0o120777, Nlink: 1, Data: "usr/bin"},
	}
	got := parse(t, buf.Bytes())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}

	// The bytes are pinned too: the image's hash depends on them.
	golden := filepath.Join("testdata", "sample.cpio")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantBytes, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), wantBytes) {
		t.Errorf("archive differs from %s (go test -update rewrites it)", golden)
	}

	// GNU cpio, when installed, is an independent reader.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		var names []string
		for _, e := range want {
			names = append(names, e.Name)
		}
		if got, want := strings.Fields(string(out)), names; !reflect.DeepEqual(got, want) {
			t.Errorf("cpio -t lists %q, want %q", got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		write func(w *Writer) error
		want  string
	}{
		{"empty name", func(w *Writer) error { return w.Add("", 0o644, nil) }, `bad name ""`},
		{"root", func(w *Writer) error { return w.Mkdir("/", 0o755) }, `bad name "/"`},
		{"dot", func(w *Writer) error { return w.Add("./a", 0o644, nil) }, `bad name "./a"`},
		{"dotdot", func(w *Writer) error { return w.Add("/../a", 0o644, nil) }, `bad name "/../a"`},
		{"double slash", func(w *Writer) error { return w.Add("a//b", 0o644, nil) }, `bad name "a//b"`},
		{"trailing slash", func(w *Writer) error { return w.Mkdir("a/", 0o755) }, `bad name "a/"`},
		{"trailer name", func(w *Writer) error { return w.Add("TRAILER!!!", 0o644, nil) }, `bad name "TRAILER!!!"`},
		{"duplicate", func(w *Writer) error {
			w.Mkdir("/etc", 0o755)
			return w.Add("etc", 0o644, nil)
		}, `add "etc": already in the archive`},
		{"not a device", func(w *Writer) error { return w.Mknod("/dev/x", 0o600, 1, 3) }, `mknod "/dev/x": mode -rw------- is not a device`},
		{"empty symlink", func(w *Writer) error { return w.Symlink("/x", "") }, `symlink "/x": empty target`},
		{"after close", func(w *Writer) error {
			w.Close()
			return w.Add("a", 0o644, nil)
		}, `add "a": archive closed`},
		{"sticky first error", func(w *Writer) error {
			w.Add("", 0o644, nil)
			w.Add("fine", 0o644, nil)
			return w.Close()
		}, `bad name ""`},
		{"write error", func(w *Writer) error {
			w.w = failWriter{}
			w.Add("a", 0o644, []byte("x"))
			return w.Close()
		}, `write "a": disk full`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.write(NewWriter(new(bytes.Buffer)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestConcatenated checks that two archives one after the other parse as
// two, which is how the image and a per-boot overlay are passed.
func TestConcatenated(t *testing.T) {
	var a, b bytes.Buffer
	wa := NewWriter(&a)
	wa.Mkdir("etc", 0o755)
	if err := wa.Close(); err != nil {
		t.Fatal(err)
	}
	wb := NewWriter(&b)
	wb.Add("etc/x", 0o600, []byte("12345"))
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
	for i, buf := range []*bytes.Buffer{&a, &b} {
		if buf.Len()%4 != 0 {
			t.Errorf("archive %d is %d bytes, not a multiple of 4", i, buf.Len())
		}
	}
	got := fmt.Sprint(parse(t, a.Bytes()), parse(t, b.Bytes()))
	want := fmt.Sprint([]entry{{Name: "etc", Ino: 1, Mode: 0o040755, Nlink: 2}},
		[]entry{{Name: "etc/x", Ino: 1, Mode: 0o100600, Nlink: 1, Data: "12345"}})
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
