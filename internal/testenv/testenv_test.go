package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records a skip or a failure instead of
// ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any)                 { r.failed = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestRequireMinIO(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "minio")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const skip = "MinIO not installed: run `make minio` or set HIL_MINIO; CI runs these"
	for _, tc := range []struct {
		name              string
		hilMinIO, require string
		want              string // the path returned
		skipped, failed   string // text in the skip or failure; "" for none
	}{
		{"installed", bin, "", bin, "", ""},
		{"installed in CI", bin, "1", bin, "", ""},
		{"missing", "", "", "", skip, ""},
		{"missing in CI", "", "1", "", "", "HIL_REQUIRE_MINIO=1 forbids skipping: store: MinIO server not installed"},
		{"HIL_MINIO wrong", filepath.Join(dir, "nothing"), "", "", "", "HIL_MINIO=" + filepath.Join(dir, "nothing")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HIL_MINIO", tc.hilMinIO)
			t.Setenv("HIL_REQUIRE_MINIO", tc.require)
			t.Setenv("PATH", dir+"/empty")
			t.Setenv("XDG_CACHE_HOME", dir+"/empty")
			r := &recorder{TB: t}
			got := RequireMinIO(r)
			if got != tc.want {
				t.Errorf("RequireMinIO = %q, want %q", got, tc.want)
			}
			if tc.skipped == "" && r.skipped != "" || !strings.Contains(r.skipped, tc.skipped) {
				t.Errorf("skipped with %q, want %q", r.skipped, tc.skipped)
			}
			if tc.failed == "" && r.failed != "" || !strings.Contains(r.failed, tc.failed) {
				t.Errorf("failed with %q, want text %q", r.failed, tc.failed)
			}
			if strings.Contains(r.skipped, "\n") {
				t.Errorf("skip message %q is more than one line", r.skipped)
			}
		})
	}
}

func TestRequireNetlab(t *testing.T) {
	noRoot := errors.New("netlab: creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root or use the sim bench")
	for _, tc := range []struct {
		name            string
		available       error
		require         string
		skipped, failed string // text in the skip or failure; "" for none
	}{
		{"available", nil, "", "", ""},
		{"available in CI", nil, "1", "", ""},
		{"missing", noRoot, "", noRoot.Error() + "; CI runs these", ""},
		{"missing in CI", noRoot, "1", "", "HIL_REQUIRE_NETLAB=1 forbids skipping: " + noRoot.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(f func() error) { netlabAvailable = f }(netlabAvailable)
			netlabAvailable = func() error { return tc.available }
			t.Setenv("HIL_REQUIRE_NETLAB", tc.require)
			r := &recorder{TB: t}
			RequireNetlab(r)
			if tc.skipped == "" && r.skipped != "" || !strings.Contains(r.skipped, tc.skipped) {
				t.Errorf("skipped with %q, want %q", r.skipped, tc.skipped)
			}
			if tc.failed == "" && r.failed != "" || !strings.Contains(r.failed, tc.failed) {
				t.Errorf("failed with %q, want text %q", r.failed, tc.failed)
			}
			if strings.Contains(r.skipped, "\n") {
				t.Errorf("skip message %q is more than one line", r.skipped)
			}
		})
	}
}
