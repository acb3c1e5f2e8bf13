// Package bench loads a bench (benches/*.yaml) and the boards it names
// (boards/*.yaml) into a validated Bench. Decoding is strict: every error
// names the file, the line and the field, and says what would be right.
package bench

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Bench is one Linux host emulating one satellite bus, wired to boards.
type Bench struct {
	File      string // path the bench was loaded from
	Name      string `yaml:"name"`      // required
	Satellite string `yaml:"satellite"` // satellite id used in S3 keys, e.g. FM1; required
	Signaling string `yaml:"signaling"` // "v1" (default) or "v2"
	Store     Store  `yaml:"store"`
	// BoardNames lists board profiles by name; each is loaded from
	// <BoardsDir>/<name>.yaml.
	BoardNames []string `yaml:"boards"` // at least one
	// BoardsDir is relative to the bench file; default "../boards".
	BoardsDir string `yaml:"boards_dir"`
	// Timing scales the orbit's timing so tests run fast.
	Timing Timing `yaml:"timing"`

	Boards []*Board `yaml:"-"` // loaded, in BoardNames order
}

// Store says where downlinked files land.
type Store struct {
	// Kind is "embedded" (default: an in-process S3 endpoint on loopback,
	// data under the run's temp dir) or "s3" (any S3 endpoint: MinIO, AWS).
	Kind     string `yaml:"kind"`
	Endpoint string `yaml:"endpoint"` // host:port; required for kind s3
	Secure   bool   `yaml:"secure"`   // https
	Region   string `yaml:"region"`
	Bucket   string `yaml:"bucket"` // required; a valid S3 bucket name
	Prefix   string `yaml:"prefix"` // customer prefix, e.g. "a/directory"; no leading or trailing slash
	// Credentials come from these environment variables, never from the
	// file. Defaults HIL_S3_ACCESS_KEY and HIL_S3_SECRET_KEY. Unused for
	// kind embedded.
	AccessKeyEnv string `yaml:"access_key_env"`
	SecretKeyEnv string `yaml:"secret_key_env"`
}

// Timing holds the bus timings that differ from orbit on a bench.
// ConfigureTimeout must be more than zero; the others may be zero.
type Timing struct {
	ConfigureTimeout Duration `yaml:"configure_timeout"` // default 15s (the contract)
	PreBuffer        Duration `yaml:"pre_buffer"`        // power-on before window start; default 0
	ShutdownGrace    Duration `yaml:"shutdown_grace"`    // after the shutdown command, before power is cut; default 5s
}

// Board is one payload profile.
type Board struct {
	File string // path the board was loaded from
	Name string `yaml:"name"` // required; must equal the file's base name without .yaml
	// Address is host:port of the payload's SSH server. Port 0 is allowed
	// only for power kind "process": the bench picks a free loopback port.
	Address string `yaml:"address"` // required
	SSH     SSH    `yaml:"ssh"`
	Power   Power  `yaml:"power"`
	// BootTimeout bounds power-on to SSH answering; default 30s; more
	// than zero.
	BootTimeout Duration `yaml:"boot_timeout"`
}

// SSH is how the bus logs into the payload.
type SSH struct {
	User string `yaml:"user"` // required; the signaling user
	// Key is the bus's private key file (OpenSSH format), relative to the
	// board file. Required. After Load it holds the path resolved against
	// the board file's directory, and the file exists.
	Key string `yaml:"key"`
	// HostKey is the payload's pinned public host key in authorized_keys
	// format ("ssh-ed25519 AAAA..."). Required; any other key is refused.
	HostKey string `yaml:"host_key"`
}

// Power says how the payload is switched.
type Power struct {
	// Kind is "process" (the reference payload started as a local process;
	// the sim bench). Later issues add relay, qemu and exec.
	Kind string `yaml:"kind"` // required
	// HostKey is the private host key file the reference payload serves,
	// relative to the board file (kind process only; required there).
	// After Load it holds the path resolved against the board file's
	// directory, and the file exists.
	HostKey string `yaml:"host_key"`
}

// Duration is a time.Duration written as "15s", "500ms", "2m" in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d in time.Duration's format, e.g. "15s".
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a duration in time.ParseDuration's format. A bare
// number other than 0 is refused: "15" could mean seconds or nanoseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	const want = `want a number and a unit, like "15s", "500ms" or "2m"`
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("got %s, %s", describe(n), want)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration; %s", n.Value, want)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as UnmarshalYAML reads it.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
