package power_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/satbench/hil/harness/power"
	"github.com/satbench/hil/harness/power/powertest"
)

// pdu returns an Exec whose commands keep the outlet's state in a file, as
// a PDU's tool keeps it in the PDU.
func pdu(t *testing.T, withStatus bool) *power.Exec {
	state := filepath.Join(t.TempDir(), "outlet")
	e := &power.Exec{
		Name:       "cam",
		OnCommand:  `echo "$HIL_BOARD on" >> ` + state + `.log && echo on > ` + state,
		OffCommand: `echo "$HIL_BOARD off" >> ` + state + `.log && echo off > ` + state,
	}
	if withStatus {
		e.StatusCommand = `cat ` + state + ` 2>/dev/null || echo OFF`
	}
	return e
}

func TestExecConformance(t *testing.T) {
	t.Run("Status", func(t *testing.T) {
		powertest.Run(t, func(t *testing.T) power.Power { return pdu(t, true) })
	})
	t.Run("Tracked", func(t *testing.T) {
		powertest.Run(t, func(t *testing.T) power.Power { return pdu(t, false) })
	})
}

func TestExecEnvironment(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	e := &power.Exec{Name: "cam", OnCommand: `echo "on $HIL_BOARD" > ` + log, OffCommand: "true"}
	if err := e.On(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); string(b) != "on cam\n" {
		t.Errorf("the on command saw %q, want HIL_BOARD=cam", b)
	}
}

func TestExecErrors(t *testing.T) {
	tests := []struct {
		name string
		exec *power.Exec
		op   string
		want string
	}{
		{name: "on fails", exec: &power.Exec{OnCommand: "echo outlet 3 locked >&2; exit 3", OffCommand: "true"}, op: "on",
			want: `power on exec pdu: command "echo outlet 3 locked >&2; exit 3" exited 3: outlet 3 locked`},
		{name: "off fails, message on stdout", exec: &power.Exec{OnCommand: "true", OffCommand: "echo no route to pdu; exit 1"}, op: "off",
			want: `power off exec pdu: command "echo no route to pdu; exit 1" exited 1: no route to pdu`},
		{name: "status garbage", exec: &power.Exec{OnCommand: "true", OffCommand: "true", StatusCommand: "echo 230V"}, op: "state",
			want: `power state exec pdu: status command "echo 230V" printed "230V\n"; want on or off`},
		{name: "status fails", exec: &power.Exec{OnCommand: "true", OffCommand: "true", StatusCommand: "exit 2"}, op: "state",
			want: `power state exec pdu: command "exit 2" exited 2: `},
		{name: "overruns", exec: &power.Exec{OnCommand: "sleep 60", OffCommand: "true", Timeout: 50 * time.Millisecond}, op: "on",
			want: `power on exec pdu: command "sleep 60": did not finish within 50ms`},
		{name: "forks and overruns", exec: &power.Exec{OnCommand: "sleep 60 & sleep 60", OffCommand: "true", Timeout: 50 * time.Millisecond}, op: "on",
			want: `power on exec pdu: command "sleep 60 & sleep 60": did not finish within 50ms`},
		{name: "no such program", exec: &power.Exec{OnCommand: "hil-no-such-pdu-tool 3 on", OffCommand: "true"}, op: "on",
			want: `power on exec pdu: command "hil-no-such-pdu-tool 3 on" exited 127: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.exec
			e.Name = "pdu"
			var err error
			switch tt.op {
			case "on":
				err = e.On(t.Context())
			case "off":
				err = e.Off(t.Context())
			case "state":
				_, err = e.State(t.Context())
			}
			var pe *power.Error
			if !errors.As(err, &pe) || pe.Op != tt.op {
				t.Fatalf("%s = %v; want a *power.Error with Op %s", tt.op, err, tt.op)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("%s error:\n got  %v\n want %s...", tt.op, err, tt.want)
			}
		})
	}
}

// A failed on leaves the tracked state unknown: the command may have
// switched the outlet before failing.
func TestExecFailureForgetsState(t *testing.T) {
	e := &power.Exec{Name: "pdu", OnCommand: "exit 1", OffCommand: "true"}
	if err := e.Off(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.On(t.Context()); err == nil {
		t.Fatal("On with a failing command succeeded")
	}
	if st, err := e.State(context.Background()); err != nil || st != power.Unknown {
		t.Errorf("State after a failed On = %v, %v; want unknown", st, err)
	}
}
