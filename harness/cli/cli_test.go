package cli

import (
	"bytes"
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
		{"no scenario matched", []string{"run", "--bench", "../../benches/sim.yaml", "--tags", "@nothing", "testdata/undefined.feature"}, 1, `no scenario in testdata/undefined.feature matched tags "@nothing"`},
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
