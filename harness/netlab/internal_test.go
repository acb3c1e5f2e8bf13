//go:build linux

package netlab

import (
	"os"
	"strings"
	"testing"
)

func TestHasCaps(t *testing.T) {
	for _, tc := range []struct {
		capEff string
		want   bool
	}{
		{"000001ffffffffff", true},  // root
		{"0000000000201000", true},  // CAP_SYS_ADMIN and CAP_NET_ADMIN only
		{"0000000000001000", false}, // CAP_NET_ADMIN only
		{"0000000000200000", false}, // CAP_SYS_ADMIN only
		{"0000000000000000", false},
		{"garbage", false},
	} {
		status := "Name:\tnetlab.test\nCapInh:\t0000000000000000\nCapEff:\t" + tc.capEff + "\nCapBnd:\t000001ffffffffff\n"
		if got := hasCaps(status); got != tc.want {
			t.Errorf("hasCaps(CapEff %s) = %v, want %v", tc.capEff, got, tc.want)
		}
	}
	if hasCaps("Name:\tx\n") {
		t.Error("hasCaps without a CapEff line = true")
	}
}

func TestStartTime(t *testing.T) {
	st, err := startTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("startTime(self) = %d, %v", st, err)
	}
	r := record{PID: os.Getpid(), StartTime: st}
	if !r.alive() {
		t.Error("this process's record is not alive")
	}
	r.StartTime++
	if r.alive() {
		t.Error("a record of this pid with another start time is alive")
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"br0", ""},
		{"hil-123-1", ""},
		{"a.b_c-D9", ""},
		{"", "is empty"},
		{"0123456789abcdef", "is 16 bytes, more than 15"},
		{"..", "is not a name"},
		{"a b", "has ' '"},
		{"a/b", "has '/'"},
		{"é", "has 'é'"},
	} {
		err := CheckName("link", tc.name)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckName(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}
