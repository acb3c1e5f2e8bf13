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
	// Downlink is how files travel from the bus to S3.
	Downlink Downlink `yaml:"downlink"`
	// PayloadInterface is the bus's Payload Controller, the gRPC server
	// payload apps talk to. Its defaults are filled in whether or not the
	// file has the section, so a bench without one serves on the
	// contract's port.
	PayloadInterface PayloadInterface `yaml:"payload_interface"`
	// Network is the bench's Ethernet. Without the section (the sim
	// bench) the bus reaches its payloads on loopback.
	Network Network `yaml:"network"`
	// Tags selects the scenarios this bench can run, as a godog tag
	// expression ("~@network", "@qemu && ~@slow"); hil run adds it to its
	// --tags. Default: every scenario.
	Tags string `yaml:"tags"`

	Boards []*Board `yaml:"-"` // loaded, in BoardNames order
}

// Network is the Ethernet between the bus and its payloads, built for
// each run in a network namespace of its own (harness/netlab): a bridge
// holding the bus's address, a tap per QEMU payload and a veth per
// process payload. It needs root. Every board's addresses are then on
// that network, with real ports.
type Network struct {
	// BusAddress is the bus's IPv4 address on the bridge with the
	// network's prefix length, e.g. "10.42.0.1/24". Required in the
	// section; a bench without the section has no network.
	BusAddress string `yaml:"bus_address"`
	// Shape shapes every payload's link both ways. Default none.
	Shape Shape `yaml:"shape"`
}

// Enabled reports whether the bench has a network of its own.
func (n Network) Enabled() bool { return n.BusAddress != "" }

// Shape is what a payload's link does to its traffic, in each direction.
// The zero Shape passes everything at once.
type Shape struct {
	Rate   BitRate  `yaml:"rate"`   // 0 (default): unlimited
	Delay  Duration `yaml:"delay"`  // one way; not negative
	Jitter Duration `yaml:"jitter"` // at most delay
	// Loss is the fraction of packets lost, "0.01" or "1%"; at least 0,
	// less than 1.
	Loss float64 `yaml:"loss"`
}

// PayloadInterface configures the Payload Controller: where it serves, how
// it watches registered apps and what it tells them about the orbit.
type PayloadInterface struct {
	// Listen is host:port the Payload Controller serves on; default
	// ":50051" (every interface, the contract's port). Port 0: a free port
	// picked when the bench opens. No board's SSH, OORT or callback
	// address may use it.
	Listen string `yaml:"listen"`
	// TLS makes the Payload Controller serve TLS: the bench makes a CA and
	// certificates and writes the app-side files. Default false.
	TLS         bool        `yaml:"tls"`
	HealthCheck HealthCheck `yaml:"health_check"`
	// CallTimeout is the deadline of each call from the controller to an
	// app; default 3s; more than zero.
	CallTimeout Duration `yaml:"call_timeout"`
	// DeadlineUnit is the unit of StartSequence's scheduled_deadline on
	// the wire: "s" (default, seconds since the Unix epoch) or "ms"
	// (milliseconds since the epoch).
	DeadlineUnit string `yaml:"deadline_unit"`
	Orbit        Orbit  `yaml:"orbit"`
}

// HealthCheck is how the Payload Controller watches each registered app.
type HealthCheck struct {
	Interval Duration `yaml:"interval"` // between checks of one app; default 5s; more than zero
	// Failures is how many checks in a row must fail for the app's
	// health_check_fail_action to be taken; default 5; at least 1.
	Failures int `yaml:"failures"`
}

// Orbit is the circular orbit the Payload Controller reports positions on.
type Orbit struct {
	AltitudeKm float64 `yaml:"altitude_km"` // default 550; from 100 to 100000
	// InclinationDeg is the orbit's inclination in degrees; default 97.6
	// (sun-synchronous at 550 km); from 0 to 180. An explicit 0 (an
	// equatorial orbit) is kept: only a key left out, or left without a
	// value, gets the default.
	InclinationDeg float64 `yaml:"inclination_deg"`
}

// Store says where downlinked files land.
type Store struct {
	// Kind is "embedded" (default: an in-process S3 endpoint on loopback,
	// data under the run's temp dir), "minio" (a MinIO server the bench
	// starts on loopback, data under the run's temp dir; the binary comes
	// from HIL_MINIO or `make minio`) or "s3" (any S3 endpoint: MinIO, AWS).
	Kind     string `yaml:"kind"`
	Endpoint string `yaml:"endpoint"` // host:port; required for kind s3, refused for the others
	Secure   bool   `yaml:"secure"`   // https
	Region   string `yaml:"region"`
	Bucket   string `yaml:"bucket"` // required; a valid S3 bucket name
	Prefix   string `yaml:"prefix"` // customer prefix, e.g. "a/directory"; no leading or trailing slash
	// Credentials come from these environment variables, never from the
	// file. Defaults HIL_S3_ACCESS_KEY and HIL_S3_SECRET_KEY. Unused for
	// kinds embedded and minio.
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
	// NIC is the host's network interface the board's Ethernet is cabled
	// to, e.g. enp3s0. On a bench with a network it is required for a
	// real board (power kind relay or exec), which joins the bench bridge
	// by it, and refused elsewhere. The bench takes it from the host while
	// it runs: it must carry no address.
	NIC string `yaml:"nic"`
	// OORT is the payload's OORT agent, if it runs one.
	OORT OORT `yaml:"oort"`
	// PayloadInterface is the payload app the board runs, if it runs one
	// (see RunsApp). A board file without the section runs no app, and
	// PayloadInterface is then the zero value.
	PayloadInterface BoardPayloadInterface `yaml:"payload_interface"`
}

// RunsApp reports whether the board runs a payload app, which registers
// with the Payload Controller: whether its file has a payload_interface
// section (which must hold a key).
func (b *Board) RunsApp() bool { return b.PayloadInterface.Key != "" }

// BoardPayloadInterface is the payload app running on a board. Across the
// boards of a bench, no two apps share a key or a callback address, and
// no two share an hw_id.
type BoardPayloadInterface struct {
	// Key is the app's authentication key: exactly 20 characters, each an
	// ASCII letter or digit. Required in the section. Errors never quote
	// it.
	Key string `yaml:"key"`
	// AppID is the app's id, from 0 to 999; default 1.
	AppID int `yaml:"app_id"`
	// Callback is host:port of the app's callback server. Empty (default):
	// the IP address PC_register was called from, port 50053. Port 0 is
	// allowed only for power kind "process": the bench picks a free port.
	// It differs from every SSH, OORT and callback address on the bench.
	Callback string `yaml:"callback"`
	// HWID is the hw_id with which PayloadPowerControl switches this
	// board's power; default 0; from 0 to 2147483647 (an int32 on the
	// wire). Only boards that run an app have one (see Bench.PowerBoard).
	HWID int `yaml:"hw_id"`
}

// Cookie returns the app's cookie, as config.json holds it: the key
// followed by the app id in three digits, e.g. "AbCdEfGhIjKlMnOpQrSt001".
func (p BoardPayloadInterface) Cookie() string {
	return p.Key + fmt.Sprintf("%03d", p.AppID)
}

// PowerBoard returns the board whose power PayloadPowerControl switches
// with hwID: the board running an app with that hw_id, or nil. Boards
// that run no app have no hw_id, whatever their HWID field holds.
func (b *Bench) PowerBoard(hwID int) *Board {
	for _, board := range b.Boards {
		if board.RunsApp() && board.PayloadInterface.HWID == hwID {
			return board
		}
	}
	return nil
}

// OORT says where a payload's OORT agent listens.
type OORT struct {
	// Address is host:port of the agent's HTTP API (2005 in orbit). Empty:
	// the payload runs no agent and the bus collects nothing from it. Port
	// 0 is allowed only for power kind "process": the bench picks a port.
	Address string `yaml:"address"`
}

// Downlink describes the path from the bus to the ground: the queue, the
// space link and where each file lands.
type Downlink struct {
	// Topics are the OORT topics the payload may send on; the collector
	// gives them to the agent (POST /collector/v1/info). Empty allows all.
	// Each matches ^[-_A-Za-z0-9]+$.
	Topics []string `yaml:"topics"`
	// Routes send an OORT topic to a bucket and prefix of its own. A topic
	// without a route lands in store.bucket under <store.prefix>/oort/<topic>.
	// Outbox files always follow the contract's layout under store.prefix.
	Routes []Route `yaml:"routes"`
	// TTL is the TTL stages given to outbox and staged files; OORT files
	// carry their own in their meta. Default 9000s, 43200s, 172800s.
	TTL TTL `yaml:"ttl"`
	// Uploads is how many S3 uploads run at once; default 4, at least 1.
	Uploads int `yaml:"uploads"`
	// Retry bounds the backoff between attempts at a failed upload;
	// default 100ms to 5s.
	Retry Backoff `yaml:"retry"`
	// Link is the space link's model.
	Link Link `yaml:"link"`
}

// Route sends one OORT topic to a bucket and key prefix. After Load, a
// route written without a bucket has store.bucket, and one without a prefix
// has <store.prefix>/oort/<topic> (oort/<topic> when store.prefix is empty),
// so neither is ever empty.
type Route struct {
	Topic  string `yaml:"topic"`  // required; ^[-_A-Za-z0-9]+$, each topic once
	Bucket string `yaml:"bucket"` // default store.bucket; a valid S3 bucket name
	Prefix string `yaml:"prefix"` // like store.prefix; default <store.prefix>/oort/<topic>
}

// TTL is how long a file may wait in each stage of the downlink queue
// before it moves to the next; after surplus it is dropped. A zero stage
// is skipped. Not negative.
type TTL struct {
	Urgent  Duration `yaml:"urgent"`
	Bulk    Duration `yaml:"bulk"`
	Surplus Duration `yaml:"surplus"`
}

// Backoff bounds an exponential backoff: Min > 0, Max >= Min.
type Backoff struct {
	Min Duration `yaml:"min"`
	Max Duration `yaml:"max"`
}

// Link models the space link between the bus and the ground station.
// The zero Link is always in contact, with no rate limit, latency or loss.
type Link struct {
	Rate    BitRate  `yaml:"rate"`    // "1Mbit/s", "9600bit/s"; 0 (default) = unlimited
	Latency Duration `yaml:"latency"` // one way; not negative
	// Loss is the fraction of frames lost (and sent again), written
	// "0.01" or "1%"; at least 0 and less than 1.
	Loss float64 `yaml:"loss"`
	// Budget is how many bytes one contact can carry ("100MB", "64KiB");
	// 0 (default) = no limit.
	Budget   ByteSize `yaml:"budget"`
	Contacts Contacts `yaml:"contacts"`
}

// Contacts is a periodic contact schedule: contact k is open from
// Start + k*Period for Duration. The schedule starts when the bus opens.
type Contacts struct {
	Start    Duration `yaml:"start"`    // first contact's start; default 0; not negative
	Duration Duration `yaml:"duration"` // 0 (default): always in contact
	Period   Duration `yaml:"period"`   // required when Duration > 0; at least Duration
}

// BitRate is a link rate in bits per second, written as a whole number of
// bit/s (9600) or with a unit: "9600bit/s", "250kbit/s", "1.5Mbit/s",
// "10Gbit/s" (k, M, G are 1e3, 1e6, 1e9; see ParseBitRate).
type BitRate int64

// ByteSize is a number of bytes, written as a whole number (65536) or with
// a unit: "512B", "100MB", "64KiB", "1GiB" (see ParseByteSize).
type ByteSize int64

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
	// the sim bench), "relay" (a channel of a USB/serial relay board) or
	// "exec" (commands that switch a PDU or anything else).
	Kind string `yaml:"kind"` // required
	// HostKey is the private host key file the reference payload serves,
	// relative to the board file: required where the bench starts the
	// reference payload itself (see StartsPayload), refused elsewhere.
	// After Load it holds the path resolved against the board file's
	// directory, and the file exists.
	HostKey string `yaml:"host_key"`
	// OffTime is how long a power cycle (the health-check reboot, hil
	// power cycle) keeps the payload off; default 2s; more than zero.
	OffTime Duration `yaml:"off_time"`
	// Watch is how often the bus reads the payload's power while a window
	// runs, so that power lost mid-window (a relay board unplugged, a
	// payload that died) aborts it with the reason; default 1s.
	Watch Duration `yaml:"watch"`
	Relay Relay    `yaml:"relay"` // kind relay only
	Exec  Exec     `yaml:"exec"`  // kind exec only
	QEMU  QEMU     `yaml:"qemu"`  // kind qemu only
}

// StartsPayload reports whether the bench starts the payload itself, as
// the reference payload: power kind process, a simulated relay wired to
// that process, or kind qemu, a virtual machine booting it.
func (p Power) StartsPayload() bool {
	return p.LocalProcess() || p.Kind == "qemu"
}

// LocalProcess reports whether the payload is the reference payload as a
// local process, whose filesystem is a directory of the bench's: power
// kind process, or a simulated relay wired to that process.
func (p Power) LocalProcess() bool {
	return p.Kind == "process" || p.Kind == "relay" && p.Relay.Simulate
}

// QEMU is a payload that is a QEMU aarch64 virtual machine booting the
// payload image (power kind qemu): power on boots it, power off stops it
// dead. It needs a bench with a network: its Ethernet is a tap on the
// bench bridge.
type QEMU struct {
	// Kernel and Initrd are the image `make image` builds, relative to
	// the board file; default ../build/image/Image and
	// ../build/image/initramfs.cpio.gz. After Load they hold the paths
	// resolved against the board file's directory.
	Kernel string `yaml:"kernel"`
	Initrd string `yaml:"initrd"`
	CPU    string `yaml:"cpu"`    // default cortex-a57
	SMP    int    `yaml:"smp"`    // vCPUs, from 1 to 8; default 2
	Memory string `yaml:"memory"` // e.g. "256M" (default), "1G"
}

// Relay is the relay channel that switches a payload (power kind relay).
type Relay struct {
	// Protocol is the board's: lcus, numato, kmtronic, denkovi or
	// devantech. Required.
	Protocol string `yaml:"protocol"`
	// Port is the board's serial port by a stable path
	// (/dev/serial/by-path/... or /dev/serial/by-id/...), never by
	// /dev/ttyUSBn, whose number follows plug-in order. Serial is the
	// board's USB serial number instead. Exactly one of the two, unless
	// Simulate.
	Port   string `yaml:"port"`
	Serial string `yaml:"serial"`
	// Channels is the board's size; default the protocol's most common.
	Channels int `yaml:"channels"`
	// Channel is the relay that powers this payload, in the protocol's
	// own numbering (numato from 0, the others from 1). Required.
	Channel int `yaml:"channel"`
	// Invert is for normally-closed wiring: the relay energised cuts power.
	Invert bool `yaml:"invert"`
	// Gap is the least time between two commands on the port; default
	// the protocol's (50ms for denkovi, 10ms for the others).
	Gap Duration `yaml:"gap"`
	// Timeout bounds each reply from the board; default 1s.
	Timeout Duration `yaml:"timeout"`
	// Simulate runs a simulator of this board on a pseudo-terminal, its
	// channel wired to the reference payload process (the sim bench):
	// the real driver, through a real tty, switches the payload.
	Simulate bool `yaml:"simulate"`
}

// Exec switches a payload with shell commands (power kind exec), run with
// sh -c and HIL_BOARD set to the board's name.
type Exec struct {
	On  string `yaml:"on"`  // required
	Off string `yaml:"off"` // required
	// Status prints "on" or "off". Empty: the state is the last one
	// switched by this run, unknown before.
	Status string `yaml:"status"`
	// Timeout bounds each command; default 10s.
	Timeout Duration `yaml:"timeout"`
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
