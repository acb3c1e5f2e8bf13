// Package signal is the bus side of the Spire Signaling API: it places
// window configs and uplinked files on a payload and sends the configure,
// start and shutdown signals over SSH (../shared/contracts/signaling.md).
package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"time"
)

// Paths and programs fixed by the contract.
const (
	PayloadExec      = "/usr/bin/payload_exec"
	WindowConfigDir  = "/signaling/window_configs"
	InboxDir         = "/signaling/inbox"
	OutboxDir        = "/outbox"
	ConfigureTimeout = 15 * time.Second
	// ShutdownCommand ends a window: the payload halts, then power is cut.
	ShutdownCommand = "sudo /sbin/halt"
)

// Transport runs commands on and moves files to a payload; *remote.Client
// implements it.
type Transport interface {
	Run(ctx context.Context, cmd string, stdout io.Writer) error
	Put(ctx context.Context, name string, r io.Reader, mode fs.FileMode) error
	Stat(ctx context.Context, name string) (fs.FileInfo, error)
}

var (
	userRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$`)
	windowRE = regexp.MustCompile(`^[0-9]{1,19}$`)
	fileRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$`)
)

// CheckUser reports whether user is a plain identifier: it lands in
// command lines and paths on the payload, so anything else is refused.
func CheckUser(user string) error {
	if !userRE.MatchString(user) {
		return fmt.Errorf("signal: user %q is not a plain identifier (letters, digits, _ and -, not starting with -, at most 64)", user)
	}
	return nil
}

// CheckWindow reports whether id is a window id the contract allows (an integer).
func CheckWindow(id string) error {
	if !windowRE.MatchString(id) {
		return fmt.Errorf("signal: window id %q is not a plain identifier (the contract's window id is an integer of at most 19 digits)", id)
	}
	return nil
}

// CheckUplinkName reports whether name can be placed in the inbox.
func CheckUplinkName(name string) error {
	if !fileRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("signal: uplink file name %q is not a plain file name (letters, digits, _ . -, not starting with . or -)", name)
	}
	return nil
}

// Uplink is a file the ground sends to the payload for a window.
type Uplink struct {
	Name            string // base name in the inbox
	Data            []byte
	DestinationPath string // where payload_exec moves it at configure; empty: it stays in the inbox
	Executable      bool
}

// Window is what the signals need to know about a window.
type Window struct {
	ID   string
	User string
	End  time.Time
	// Tasking holds the window's Tasking API parameters, passed to the
	// payload as tasking_parameters.
	Tasking map[string]any
	Uplinks []Uplink
}

// Check refuses a window whose identifiers could smuggle anything into a
// command line or a path, before anything is sent.
func (w *Window) Check() error {
	if err := CheckWindow(w.ID); err != nil {
		return err
	}
	if err := CheckUser(w.User); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, u := range w.Uplinks {
		if err := CheckUplinkName(u.Name); err != nil {
			return err
		}
		if seen[u.Name] {
			return fmt.Errorf("signal: uplink file %q named twice", u.Name)
		}
		seen[u.Name] = true
		if u.DestinationPath != "" && (!path.IsAbs(u.DestinationPath) || path.Clean(u.DestinationPath) != u.DestinationPath) {
			return fmt.Errorf("signal: uplink %q: destination_path %q must be a clean absolute path", u.Name, u.DestinationPath)
		}
	}
	return nil
}

// ConfigPath is where the window's config is placed on the payload.
func ConfigPath(window string) string { return path.Join(WindowConfigDir, window+".json") }

// InboxPath is where an uplinked file lands on the payload.
func InboxPath(user, name string) string { return path.Join(InboxDir, user, name) }

// ConfigV1 is the Signaling API v1 window config.
type ConfigV1 struct {
	Version          int          `json:"version"`
	SignalParameters SignalParams `json:"signal_parameters"`
}

// SignalParams holds the bus-provided keys and the tasking parameters.
type SignalParams struct {
	WindowID          string         `json:"window_id"`
	User              string         `json:"user"`
	WindowEnd         int64          `json:"window_end"`
	Uplinks           []UplinkEntry  `json:"uplinks,omitempty"`
	TaskingParameters map[string]any `json:"tasking_parameters"`
}

// UplinkEntry tells payload_exec where an inbox file goes at configure.
type UplinkEntry struct {
	File            string `json:"file"`
	DestinationPath string `json:"destination_path"`
	Executable      bool   `json:"executable"`
}

// ConfigJSON returns the v1 window config for w.
func (w *Window) ConfigJSON() ([]byte, error) {
	tp := w.Tasking
	if tp == nil {
		tp = map[string]any{}
	}
	c := ConfigV1{Version: 1, SignalParameters: SignalParams{
		WindowID: w.ID, User: w.User, WindowEnd: w.End.Unix(), TaskingParameters: tp,
	}}
	// Only files with a destination are listed: the rest stay in the inbox.
	for _, u := range w.Uplinks {
		if u.DestinationPath == "" {
			continue
		}
		c.SignalParameters.Uplinks = append(c.SignalParameters.Uplinks,
			UplinkEntry{File: u.Name, DestinationPath: u.DestinationPath, Executable: u.Executable})
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("signal: window %s: tasking parameters are not JSON: %w", w.ID, err)
	}
	return append(b, '\n'), nil
}

// ConfigureCommand is the configure signal (v1): synchronous, stdout discarded.
func (w *Window) ConfigureCommand() string {
	return fmt.Sprintf("%s -u %s -e -w %s > /dev/null", PayloadExec, w.User, w.ID)
}

// StartCommand is the window start signal (v1): detached, nothing captured.
func (w *Window) StartCommand() string {
	return fmt.Sprintf("nohup %s -u %s -w %s -t %s &> /dev/null &",
		PayloadExec, w.User, w.ID, strconv.FormatInt(w.End.Unix(), 10))
}

// CheckPrerequisites verifies what the contract requires of the payload
// before a window: an executable payload_exec.
func CheckPrerequisites(ctx context.Context, t Transport) error {
	fi, err := t.Stat(ctx, PayloadExec)
	if err != nil {
		return fmt.Errorf("signal: payload prerequisite: %s: %w", PayloadExec, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("signal: payload prerequisite: %s is not executable (mode %v)", PayloadExec, fi.Mode())
	}
	return nil
}

// PlaceConfig writes the window config on the payload.
func PlaceConfig(ctx context.Context, t Transport, w *Window) error {
	b, err := w.ConfigJSON()
	if err != nil {
		return err
	}
	return t.Put(ctx, ConfigPath(w.ID), bytes.NewReader(b), 0o644)
}

// PlaceUplink writes one uplinked file into the user's inbox.
func PlaceUplink(ctx context.Context, t Transport, w *Window, u Uplink) error {
	return t.Put(ctx, InboxPath(w.User, u.Name), bytes.NewReader(u.Data), 0o644)
}

// ErrConfigureTimeout is configure running past its deadline.
var ErrConfigureTimeout = errors.New("configure did not return in time")

// Configure sends the configure signal and waits at most timeout (the
// contract's 15 s when zero) for it to return.
func Configure(ctx context.Context, t Transport, w *Window, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = ConfigureTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("%w: %v", ErrConfigureTimeout, timeout))
	defer cancel()
	return t.Run(ctx, w.ConfigureCommand(), nil)
}

// Start sends the window start signal. It returns as soon as the payload
// has detached payload_exec.
func Start(ctx context.Context, t Transport, w *Window) error {
	return t.Run(ctx, w.StartCommand(), nil)
}

// Shutdown sends the window end signal.
func Shutdown(ctx context.Context, t Transport) error {
	return t.Run(ctx, ShutdownCommand, nil)
}
