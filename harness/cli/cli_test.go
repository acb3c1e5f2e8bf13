package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMainErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		status int
		stderr string // substring of the one error line
	}{
		{"no command", nil, 2, "usage:"},
		{"unknown command", []string{"fly"}, 2, `unknown command "fly"`},
		{"unknown flag", []string{"run", "--bnech", "x"}, 2, "flag provided but not defined: -bnech"},
		{"bad format", []string{"run", "--format", "html"}, 2, `--format: "html" is not a format`},
		{"format without file", []string{"run", "--format", "junit:"}, 2, "empty file name"},
		{"format into a missing dir", []string{"run", "--format", "junit:/no/such/dir/r.xml"}, 2, "directory /no/such/dir does not exist"},
		{"missing feature path", []string{"run", "--bench", "../../benches/sim.yaml", "nope.feature"}, 2, "feature path nope.feature: no such file or directory"},
		{"missing bench", []string{"run", "--bench", "testdata/none.yaml", "testdata/undefined.feature"}, 2, "testdata/none.yaml"},
		{"broken bench", []string{"run", "--bench", "testdata/broken-bench.yaml", "testdata/undefined.feature"}, 2, `testdata/broken-bench.yaml:7: colour: unknown key "colour"`},
		{"all passed", []string{"run", "--bench", "../../benches/sim.yaml", "testdata/pass.feature"}, 0, ""},
		{"no scenario matched", []string{"run", "--bench", "../../benches/sim.yaml", "--tags", "@nothing", "testdata/undefined.feature"}, 1, `no scenario in testdata/undefined.feature matched tags "@nothing && ~@network"`},
		{"bench without a name", []string{"bench"}, 2, "want a benchmark name: downlink or pi"},
		{"unknown benchmark", []string{"bench", "uplink"}, 2, "want a benchmark name: downlink or pi"},
		{"bench pi no apps", []string{"bench", "pi", "--apps", "0"}, 2, "--apps 0: want 1 to 999"},
		{"bench pi too many apps", []string{"bench", "pi", "--apps", "1000"}, 2, "--apps 1000: want 1 to 999"},
		{"bench pi bad duration", []string{"bench", "pi", "--duration", "-1s"}, 2, "--duration -1s: want more than 0"},
		{"bench pi bad health", []string{"bench", "pi", "--health", "0s"}, 2, "--health 0s: want more than 0"},
		{"bench pi extra argument", []string{"bench", "pi", "now"}, 2, `unexpected argument "now"`},
		{"bench pi unknown flag", []string{"bench", "pi", "--colour"}, 2, "flag provided but not defined: -colour"},
		{"bench bad size", []string{"bench", "downlink", "--size", "0"}, 2, `--size "0": want a size above zero`},
		{"bench size without unit", []string{"bench", "downlink", "--size", "4mb"}, 2, `--size "4mb"`},
		{"bench no files", []string{"bench", "downlink", "--files", "0"}, 2, "--files 0: want 1 or more"},
		{"bench extra argument", []string{"bench", "downlink", "now"}, 2, `unexpected argument "now"`},
		{"bench broken bench", []string{"bench", "downlink", "--bench", "testdata/broken-bench.yaml"}, 2, `testdata/broken-bench.yaml:7: colour`},
		{"power without an operation", []string{"power"}, 2, "got nothing; want on, off, cycle or status, then a board"},
		{"power unknown operation", []string{"power", "toggle", "refpayload"}, 2, `got "toggle"; want on, off, cycle or status`},
		{"power without a board", []string{"power", "on", "--bench", "../../benches/sim.yaml"}, 2, "want one board, got 0 arguments"},
		{"power two boards", []string{"power", "on", "a", "b", "--bench", "../../benches/sim.yaml"}, 2, "want one board, got 2 arguments"},
		{"power unknown board", []string{"power", "on", "nosuch", "--bench", "../../benches/sim.yaml"}, 2, `has no board "nosuch"; its boards: [refpayload]`},
		{"power process board", []string{"power", "status", "refpayload", "--bench", "../../benches/sim.yaml"}, 2, "exists only during it"},
		{"power broken bench", []string{"power", "on", "x", "--bench", "testdata/broken-bench.yaml"}, 2, `testdata/broken-bench.yaml:7: colour`},
		{"power negative off", []string{"power", "cycle", "x", "--off", "-1s"}, 2, "want --off 0 or more"},
		{"power qemu board", []string{"power", "on", "refpayload", "--bench", "../../benches/qemu.yaml"}, 2, "(the reference payload process, or a QEMU machine) and exists only during it"},
		{"doctor extra argument", []string{"doctor", "now"}, 2, `unexpected argument "now"`},
		{"doctor unknown flag", []string{"doctor", "--fix"}, 2, "flag provided but not defined: -fix"},
		{"relaysim unknown protocol", []string{"relaysim", "--protocol", "sainsmart"}, 2, "sainsmart"},
		{"relaysim extra argument", []string{"relaysim", "--protocol", "lcus", "now"}, 2, `unexpected argument "now"`},
		{"undefined step fails", []string{"run", "--bench", "../../benches/sim.yaml", "--format", "progress", "testdata/undefined.feature"}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := Main(tt.args, &out, &errb); got != tt.status {
				t.Errorf("status %d, want %d\nstdout: %s\nstderr: %s", got, tt.status, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q, want it to contain %q", errb.String(), tt.stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if Main([]string{"version"}, &out, &out) != 0 || !strings.HasPrefix(out.String(), "hil ") {
		t.Errorf("hil version printed %q", out.String())
	}
}

func TestParseInterleaved(t *testing.T) {
	var out, errb bytes.Buffer
	// Flags after the feature paths are honoured too.
	if got := Main([]string{"run", "testdata/undefined.feature", "--bench", "testdata/broken-bench.yaml"}, &out, &errb); got != 2 || !strings.Contains(errb.String(), "colour") {
		t.Errorf("status %d, stderr %q: the trailing --bench was not used", got, errb.String())
	}
}

// TestNoColoursOffTerminal: output to a file or a pipe (CI logs) carries
// no ANSI escapes.
func TestNoColoursOffTerminal(t *testing.T) {
	var out, errb bytes.Buffer
	Main([]string{"run", "--bench", "../../benches/sim.yaml", "testdata/undefined.feature"}, &out, &errb)
	if !strings.Contains(out.String(), "undefined") {
		t.Fatalf("no report on stdout: %q", out.String())
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("stdout holds ANSI escapes:\n%q", out.String())
	}
}

// A bench whose MinIO is missing is one clear line, before any scenario.
func TestMinIOMissing(t *testing.T) {
	t.Setenv("HIL_MINIO", "")
	t.Setenv("PATH", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var out, errb bytes.Buffer
	got := Main([]string{"run", "--bench", "../../benches/sim-minio.yaml", "testdata/pass.feature"}, &out, &errb)
	if got != 2 || !strings.Contains(errb.String(), "make minio") || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("status %d, stderr %q; want 2 and one line saying to run make minio", got, errb.String())
	}
}

// TestPowerExec switches an exec board (a PDU whose state is a file) with
// hil power and reads what it prints.
func TestPowerExec(t *testing.T) {
	dir := t.TempDir()
	outlet := filepath.Join(dir, "outlet")
	key, err := filepath.Abs("../../boards/keys/bus_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "boards"), 0o755)
	os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte("name: pdu\nsatellite: FM1\nstore: {bucket: hil-downlink}\nboards_dir: boards\nboards: [cam]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "boards", "cam.yaml"), []byte(`name: cam
address: 192.0.2.10:22
ssh:
  user: signaling
  key: `+key+`
  host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMIji8XA38P8o9+6OVqGtQTUXQ+3nI8lCEl0ecTpr5Cb hil reference payload test key
power:
  kind: exec
  off_time: 10ms
  exec:
    on: echo on > `+outlet+`
    off: echo off > `+outlet+`
    status: cat `+outlet+`
`), 0o644)
	bench := filepath.Join(dir, "bench.yaml")
	for _, tt := range []struct {
		op, want string
	}{
		{"on", "cam: on (exec cam)\n"},
		{"status", "cam: on (exec cam)\n"},
		{"off", "cam: off (exec cam)\n"},
		{"cycle", "cam: on (exec cam)\n"},
	} {
		var out, errb bytes.Buffer
		if got := Main([]string{"power", tt.op, "cam", "--bench", bench}, &out, &errb); got != 0 || out.String() != tt.want {
			t.Errorf("hil power %s: status %d, printed %q (stderr %q); want 0 and %q", tt.op, got, out.String(), errb.String(), tt.want)
		}
	}
	os.WriteFile(outlet, []byte("tripped\n"), 0o644)
	var out, errb bytes.Buffer
	if got := Main([]string{"power", "status", "cam", "--bench", bench}, &out, &errb); got != 1 || !strings.Contains(errb.String(), `printed "tripped\n"; want on or off`) {
		t.Errorf("hil power status of a tripped outlet: status %d, stderr %q; want 1 and the status output quoted", got, errb.String())
	}
}

// TestDoctor: hil doctor lists what this machine can run, and exits 1
// exactly when it lists leftovers. (It is not run with --clean here: other
// tests' labs may be about.)
func TestDoctor(t *testing.T) {
	var out, errb bytes.Buffer
	got := Main([]string{"doctor", "--image", "../../build/image"}, &out, &errb)
	if clean := strings.Contains(out.String(), "leftovers: none") || strings.Contains(out.String(), "leftovers: not looked for"); clean != (got == 0) {
		t.Fatalf("status %d does not match the leftovers listed\nstdout: %s\nstderr: %s", got, out.String(), errb.String())
	}
	for _, want := range []string{"ok   sim bench", "network labs", "qemu-system-aarch64", "payload image in ../../build/image", "MinIO", "leftovers:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
