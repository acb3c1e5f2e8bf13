package signal

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestCheckIdentifiers(t *testing.T) {
	tests := []struct {
		check func(string) error
		in    string
		ok    bool
	}{
		{CheckUser, "alice", true},
		{CheckUser, "team_7-b", true},
		{CheckUser, "0ps", true},
		{CheckUser, "", false},
		{CheckUser, "-e", false},
		{CheckUser, "al ice", false},
		{CheckUser, "alice;reboot", false},
		{CheckUser, "../etc", false},
		{CheckUser, "a.b", false},
		{CheckUser, "$(id)", false},
		{CheckUser, "alice\n", false},
		{CheckUser, strings.Repeat("a", 64), true},
		{CheckUser, strings.Repeat("a", 65), false},
		{CheckWindow, "1001", true},
		{CheckWindow, "0", true},
		{CheckWindow, "", false},
		{CheckWindow, "-1", false},
		{CheckWindow, "42;halt", false},
		{CheckWindow, "1 2", false},
		{CheckWindow, "abc", false},
		{CheckWindow, "12345678901234567890", false},
		{CheckUplinkName, "plan.txt", true},
		{CheckUplinkName, ".hidden", false},
		{CheckUplinkName, "..", false},
		{CheckUplinkName, "a/b", false},
		{CheckUplinkName, "-rf", false},
	}
	for _, tt := range tests {
		err := tt.check(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("check(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "not a plain") {
			t.Errorf("check(%q) error %q does not say what is wrong", tt.in, err)
		}
	}
}

func TestWindowCheck(t *testing.T) {
	tests := []struct {
		name string
		w    Window
		want string // substring of the error; empty: ok
	}{
		{"ok", Window{ID: "7", User: "alice", Uplinks: []Uplink{{Name: "a.bin", DestinationPath: "/opt/a.bin"}}}, ""},
		{"bad id", Window{ID: "7;", User: "alice"}, `window id "7;"`},
		{"bad user", Window{ID: "7", User: "a b"}, `user "a b"`},
		{"bad uplink", Window{ID: "7", User: "alice", Uplinks: []Uplink{{Name: "../x"}}}, `uplink file name "../x"`},
		{"twice", Window{ID: "7", User: "alice", Uplinks: []Uplink{{Name: "a"}, {Name: "a"}}}, `named twice`},
		{"relative dest", Window{ID: "7", User: "alice", Uplinks: []Uplink{{Name: "a", DestinationPath: "opt/a"}}}, `clean absolute path`},
		{"unclean dest", Window{ID: "7", User: "alice", Uplinks: []Uplink{{Name: "a", DestinationPath: "/opt/../etc/a"}}}, `clean absolute path`},
	}
	for _, tt := range tests {
		err := tt.w.Check()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestWire pins the exact bytes the bus sends: command lines and the v1
// window config.
func TestWire(t *testing.T) {
	w := Window{
		ID: "1001", User: "alice",
		End:     time.Date(2021, 9, 6, 4, 32, 29, 0, time.UTC),
		Tasking: map[string]any{"user_command": map[string]any{"executable": "/usr/bin/capture", "executable_arguments": []string{"-n", "3"}}, "gain_db": 42},
		Uplinks: []Uplink{{Name: "app.bin", DestinationPath: "/opt/app/app.bin", Executable: true}, {Name: "plan.txt"}, {Name: "notes.txt", DestinationPath: "/home/alice/notes.txt"}},
	}
	cfg, err := w.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	got := "configure: " + w.ConfigureCommand() + "\nstart: " + w.StartCommand() +
		"\nshutdown: " + ShutdownCommand + "\nconfig " + ConfigPath(w.ID) + ":\n" + string(cfg)
	golden := filepath.Join("testdata", "wire.golden")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("wire bytes changed (go test -update to accept):\ngot:\n%s\nwant:\n%s", got, want)
	}
}
