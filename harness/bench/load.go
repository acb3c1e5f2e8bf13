package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/satbench/hil/harness/netlab"
	"github.com/satbench/hil/harness/relay"
)

// Defaults documented on the types.
const (
	defaultSignaling        = "v1"
	defaultStoreKind        = "embedded"
	defaultAccessKeyEnv     = "HIL_S3_ACCESS_KEY"
	defaultSecretKeyEnv     = "HIL_S3_SECRET_KEY"
	defaultBoardsDir        = "../boards"
	defaultConfigureTimeout = Duration(15 * time.Second)
	defaultShutdownGrace    = Duration(5 * time.Second)
	defaultBootTimeout      = Duration(30 * time.Second)
	// The OORT contract's TTL stages.
	defaultTTLUrgent  = Duration(9000 * time.Second)
	defaultTTLBulk    = Duration(43200 * time.Second)
	defaultTTLSurplus = Duration(172800 * time.Second)
	defaultUploads    = 4
	defaultRetryMin   = Duration(100 * time.Millisecond)
	defaultRetryMax   = Duration(5 * time.Second)
	// The Payload Interface: the contract's port, then the bench's own
	// choices.
	defaultListen         = ":50051"
	defaultHealthInterval = Duration(5 * time.Second)
	defaultHealthFailures = 5
	defaultCallTimeout    = Duration(3 * time.Second)
	defaultDeadlineUnit   = "s"
	defaultAltitudeKm     = 550.0
	defaultInclinationDeg = 97.6
	defaultAppID          = 1
	defaultOffTime        = Duration(2 * time.Second)
	defaultWatch          = Duration(time.Second)
	defaultRelayTimeout   = Duration(time.Second)
	defaultExecTimeout    = Duration(10 * time.Second)
	defaultQEMUKernel     = "../build/image/Image"
	defaultQEMUInitrd     = "../build/image/initramfs.cpio.gz"
	defaultQEMUCPU        = "cortex-a57"
	defaultQEMUSMP        = 2
	defaultQEMUMemory     = "256M"
	maxAppID              = 999
	maxHWID               = math.MaxInt32 // hw_id is an int32 on the wire
	exampleCallback       = "192.0.2.10:50053"
)

var relayProtocols = orList(relay.Protocols())

// Load reads the bench at path and the boards it names, applies the
// documented defaults and checks every rule. Each error is an *Error that
// names the file, line and field at fault.
func Load(path string) (*Bench, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	b := &Bench{
		File:      path,
		Signaling: defaultSignaling,
		Store: Store{
			Kind:         defaultStoreKind,
			AccessKeyEnv: defaultAccessKeyEnv,
			SecretKeyEnv: defaultSecretKeyEnv,
		},
		BoardsDir: defaultBoardsDir,
		Timing: Timing{
			ConfigureTimeout: defaultConfigureTimeout,
			ShutdownGrace:    defaultShutdownGrace,
		},
		Downlink: Downlink{
			TTL:     TTL{Urgent: defaultTTLUrgent, Bulk: defaultTTLBulk, Surplus: defaultTTLSurplus},
			Uploads: defaultUploads,
			Retry:   Backoff{Min: defaultRetryMin, Max: defaultRetryMax},
		},
		PayloadInterface: PayloadInterface{
			Listen:       defaultListen,
			HealthCheck:  HealthCheck{Interval: defaultHealthInterval, Failures: defaultHealthFailures},
			CallTimeout:  defaultCallTimeout,
			DeadlineUnit: defaultDeadlineUnit,
			Orbit:        Orbit{AltitudeKm: defaultAltitudeKm, InclinationDeg: defaultInclinationDeg},
		},
	}
	fields := benchFields(b)
	d, root, err := parse(path, data, "a bench: a mapping with keys "+keys(fields))
	if err != nil {
		return nil, err
	}
	if err := d.mapping("", root.Line, root, fields); err != nil {
		return nil, err
	}
	if err := d.checkBench(b); err != nil {
		return nil, err
	}
	routeDefaults(b)
	if err := d.loadBoards(b); err != nil {
		return nil, err
	}
	return b, nil
}

// readError reports a file that cannot be read, keeping the cause
// reachable for errors.Is.
func readError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is already in the *Error
	}
	return &Error{File: path, Err: fmt.Errorf("cannot read the file: %w", err)}
}

func benchFields(b *Bench) []field {
	return []field{
		{key: "name", required: true, want: "the bench's name, e.g. sim", into: &b.Name},
		{key: "satellite", required: true, want: "the satellite id used in S3 keys, e.g. FM1", into: &b.Satellite},
		{key: "signaling", want: "v1 or v2", into: &b.Signaling},
		{key: "store", required: true, want: "a mapping with at least a bucket, e.g. {bucket: hil-downlink}", into: []field{
			{key: "kind", want: "embedded, minio or s3", into: &b.Store.Kind},
			{key: "endpoint", want: "host:port of the S3 endpoint, e.g. minio.lab:9000", into: &b.Store.Endpoint},
			{key: "secure", want: "true or false", into: &b.Store.Secure},
			{key: "region", want: "an S3 region, e.g. us-east-1", into: &b.Store.Region},
			{key: "bucket", required: true, want: "an S3 bucket name, e.g. hil-downlink", into: &b.Store.Bucket},
			{key: "prefix", want: "a key prefix, e.g. customer/a", into: &b.Store.Prefix},
			{key: "access_key_env", want: "an environment variable name, e.g. " + defaultAccessKeyEnv, into: &b.Store.AccessKeyEnv},
			{key: "secret_key_env", want: "an environment variable name, e.g. " + defaultSecretKeyEnv, into: &b.Store.SecretKeyEnv},
		}},
		{key: "boards", required: true, want: "a list of board names, e.g. [refpayload]", item: "a board name, e.g. refpayload", into: &b.BoardNames},
		{key: "boards_dir", want: "a directory relative to the bench file, e.g. " + defaultBoardsDir, into: &b.BoardsDir},
		// Durations, rates, sizes, fractions and optional mappings
		// describe themselves in errors.
		{key: "timing", into: []field{
			{key: "configure_timeout", into: &b.Timing.ConfigureTimeout},
			{key: "pre_buffer", into: &b.Timing.PreBuffer},
			{key: "shutdown_grace", into: &b.Timing.ShutdownGrace},
		}},
		{key: "downlink", into: downlinkFields(&b.Downlink)},
		{key: "payload_interface", into: payloadInterfaceFields(&b.PayloadInterface)},
		{key: "tags", want: `a godog tag expression, e.g. "~@network && ~@slow"`, into: &b.Tags},
		{key: "network", into: []field{
			{key: "bus_address", required: true, want: `the bus's IPv4 address and prefix length on the bench bridge, e.g. "10.42.0.1/24"`, into: &b.Network.BusAddress},
			{key: "shape", into: []field{
				{key: "rate", into: &b.Network.Shape.Rate},
				{key: "delay", into: &b.Network.Shape.Delay},
				{key: "jitter", into: &b.Network.Shape.Jitter},
				{key: "loss", into: (*fraction)(&b.Network.Shape.Loss)},
			}},
		}},
	}
}

func payloadInterfaceFields(pi *PayloadInterface) []field {
	return []field{
		{key: "listen", want: `host:port the Payload Controller serves on, e.g. "` + defaultListen + `" or "127.0.0.1:0"`, into: &pi.Listen},
		{key: "tls", want: "true or false", into: &pi.TLS},
		{key: "health_check", into: []field{
			{key: "interval", into: &pi.HealthCheck.Interval},
			{key: "failures", want: fmt.Sprintf("a whole number of failed checks in a row, at least 1, e.g. %d", defaultHealthFailures), into: &pi.HealthCheck.Failures},
		}},
		{key: "call_timeout", into: &pi.CallTimeout},
		{key: "deadline_unit", want: "s or ms", into: &pi.DeadlineUnit},
		{key: "orbit", into: []field{
			{key: "altitude_km", want: fmt.Sprintf("the orbit's altitude in km, a number from 100 to 100000, e.g. %v", defaultAltitudeKm), into: &pi.Orbit.AltitudeKm},
			{key: "inclination_deg", want: fmt.Sprintf("the orbit's inclination in degrees, a number from 0 to 180, e.g. %v", defaultInclinationDeg), into: &pi.Orbit.InclinationDeg},
		}},
	}
}

func downlinkFields(dl *Downlink) []field {
	return []field{
		{key: "topics", want: "a list of OORT topics, e.g. [images, telemetry]", item: "an OORT topic, e.g. images", into: &dl.Topics},
		{key: "routes", want: "a list of routes, e.g. [{topic: images, bucket: hil-images}]", into: listOf(&dl.Routes, routeFields)},
		{key: "ttl", into: []field{
			{key: "urgent", into: &dl.TTL.Urgent},
			{key: "bulk", into: &dl.TTL.Bulk},
			{key: "surplus", into: &dl.TTL.Surplus},
		}},
		{key: "uploads", want: fmt.Sprintf("a whole number of uploads at once, at least 1, e.g. %d", defaultUploads), into: &dl.Uploads},
		{key: "retry", into: []field{
			{key: "min", into: &dl.Retry.Min},
			{key: "max", into: &dl.Retry.Max},
		}},
		{key: "link", into: []field{
			{key: "rate", into: &dl.Link.Rate},
			{key: "latency", into: &dl.Link.Latency},
			{key: "loss", into: (*fraction)(&dl.Link.Loss)},
			{key: "budget", into: &dl.Link.Budget},
			{key: "contacts", into: []field{
				{key: "start", into: &dl.Link.Contacts.Start},
				{key: "duration", into: &dl.Link.Contacts.Duration},
				{key: "period", into: &dl.Link.Contacts.Period},
			}},
		}},
	}
}

func routeFields(r *Route) []field {
	return []field{
		{key: "topic", required: true, want: "the OORT topic to route, e.g. images", into: &r.Topic},
		{key: "bucket", want: "an S3 bucket name, e.g. hil-images", into: &r.Bucket},
		{key: "prefix", want: "a key prefix, e.g. customer/a/images", into: &r.Prefix},
	}
}

// checkBench checks the rules that go beyond a field's type, in the order
// the fields are documented, and reports the first broken one.
func (d *decoder) checkBench(b *Bench) error {
	return first(
		d.at("satellite", checkName(b.Satellite, "satellite id", "FM1")),
		d.at("signaling", oneOf(b.Signaling, "signaling version", "v1", "v2")),
		d.at("store.kind", oneOf(b.Store.Kind, "store kind", "embedded", "minio", "s3")),
		d.checkEndpoint(b.Store),
		d.at("store.bucket", checkBucket(b.Store.Bucket)),
		d.at("store.prefix", checkPrefix(b.Store.Prefix)),
		d.at("store.access_key_env", checkEnvName(b.Store.AccessKeyEnv, defaultAccessKeyEnv)),
		d.at("store.secret_key_env", checkEnvName(b.Store.SecretKeyEnv, defaultSecretKeyEnv)),
		d.checkBoardNames(b.BoardNames),
		d.at("boards_dir", notEmpty(b.BoardsDir, "a directory relative to the bench file, e.g. "+defaultBoardsDir)),
		d.at("timing.configure_timeout", positive(b.Timing.ConfigureTimeout, defaultConfigureTimeout)),
		d.at("timing.pre_buffer", notNegative(b.Timing.PreBuffer)),
		d.at("timing.shutdown_grace", notNegative(b.Timing.ShutdownGrace)),
		d.checkUnique(b.Downlink.Topics, indexed("downlink.topics[%d]"), checkTopic,
			"topic %q is already listed at %s (line %d); list each topic once"),
		d.checkRoutes(b.Downlink.Routes),
		d.at("downlink.ttl.urgent", notNegative(b.Downlink.TTL.Urgent)),
		d.at("downlink.ttl.bulk", notNegative(b.Downlink.TTL.Bulk)),
		d.at("downlink.ttl.surplus", notNegative(b.Downlink.TTL.Surplus)),
		d.at("downlink.uploads", atLeastOne(b.Downlink.Uploads, defaultUploads)),
		d.at("downlink.retry.min", positive(b.Downlink.Retry.Min, defaultRetryMin)),
		d.checkRetryMax(b.Downlink.Retry),
		d.at("downlink.link.latency", notNegative(b.Downlink.Link.Latency)),
		d.checkContacts(b.Downlink.Link.Contacts),
		d.checkPayloadInterface(b.PayloadInterface),
		d.checkNetwork(b),
	)
}

// checkNetwork checks the bench's network, if it has one: an IPv4 bus
// address inside its prefix, a shape netem can apply, and a Payload
// Controller that payloads on the network can reach.
func (d *decoder) checkNetwork(b *Bench) error {
	n := b.Network
	if !n.Enabled() {
		return nil
	}
	const example = "10.42.0.1/24"
	p, err := netip.ParsePrefix(n.BusAddress)
	switch {
	case err != nil:
		return d.at("network.bus_address", fmt.Errorf("%q is not an address with a prefix length; want e.g. %q", n.BusAddress, example))
	case !p.Addr().Is4():
		return d.at("network.bus_address", fmt.Errorf("%q is not IPv4; want e.g. %q", n.BusAddress, example))
	case p.Bits() > 30:
		return d.at("network.bus_address", fmt.Errorf("%q leaves no room for payloads; want a prefix length of at most 30, e.g. %q", n.BusAddress, example))
	case p.Addr() == p.Masked().Addr():
		return d.at("network.bus_address", fmt.Errorf("%q is the network's own address; want a host address in it, e.g. %q", n.BusAddress, example))
	}
	if n.Shape.Jitter > n.Shape.Delay {
		return d.at("network.shape.jitter", fmt.Errorf("is %s, more than shape.delay %s; want at most the delay", n.Shape.Jitter, n.Shape.Delay))
	}
	if err := first(
		d.at("network.shape.delay", notNegative(n.Shape.Delay)),
		d.at("network.shape.jitter", notNegative(n.Shape.Jitter)),
	); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(b.PayloadInterface.Listen)
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified() && ip != p.Addr()) {
		return d.at("payload_interface.listen", fmt.Errorf("%q is not on the bench network, where payload apps dial it; want the bus address, e.g. %q, or no host, e.g. %q",
			b.PayloadInterface.Listen, net.JoinHostPort(p.Addr().String(), "50051"), defaultListen))
	}
	return nil
}

// checkPayloadInterface checks the Payload Controller's settings. Whether
// a board's address takes listen's port is checked as the boards load.
func (d *decoder) checkPayloadInterface(pi PayloadInterface) error {
	const p = "payload_interface"
	return first(
		d.at(p+".listen", checkListen(pi.Listen, defaultListen)),
		d.at(p+".health_check.interval", positive(pi.HealthCheck.Interval, defaultHealthInterval)),
		d.at(p+".health_check.failures", atLeastOne(pi.HealthCheck.Failures, defaultHealthFailures)),
		d.at(p+".call_timeout", positive(pi.CallTimeout, defaultCallTimeout)),
		d.at(p+".deadline_unit", oneOf(pi.DeadlineUnit, "deadline unit", "s", "ms")),
		d.at(p+".orbit.altitude_km", inRange(pi.Orbit.AltitudeKm, 100, 100000, defaultAltitudeKm)),
		d.at(p+".orbit.inclination_deg", inRange(pi.Orbit.InclinationDeg, 0, 180, defaultInclinationDeg)),
	)
}

// checkEndpoint requires an endpoint for kind s3 and refuses one for kinds
// embedded and minio, which serve on a loopback port of their own choosing.
func (d *decoder) checkEndpoint(s Store) error {
	switch {
	case s.Kind == "s3" && s.Endpoint == "":
		return d.errorf(d.lines["store"], "store.endpoint", "missing; kind s3 needs the host:port of the S3 endpoint, e.g. minio.lab:9000")
	case s.Kind == "s3":
		return d.at("store.endpoint", checkHostPort(s.Endpoint, "minio.lab:9000", false))
	case s.Endpoint != "":
		return d.at("store.endpoint", fmt.Errorf("set to %q, but kind %s picks its own loopback endpoint; remove it or set store.kind: s3", s.Endpoint, s.Kind))
	}
	return nil
}

// checkBoardNames checks that boards names at least one board, each once,
// by a name that can be a file's base name.
func (d *decoder) checkBoardNames(names []string) error {
	if len(names) == 0 {
		return d.at("boards", errors.New("is an empty list; want at least one board name, e.g. [refpayload]"))
	}
	isName := func(name string) error { return checkName(name, "board name", "refpayload") }
	return d.checkUnique(names, indexed("boards[%d]"), isName, "board %q is already named at %s (line %d); name each board once")
}

// checkUnique checks each of values, written at field(i), with check, and
// that none repeats an earlier one. repeated is the format of a repeat's
// error, given the value, the field of its first occurrence and that
// field's line.
func (d *decoder) checkUnique(values []string, field func(i int) string, check func(string) error, repeated string) error {
	seen := make(map[string]int)
	for i, v := range values {
		if err := check(v); err != nil {
			return d.at(field(i), err)
		}
		if j, dup := seen[v]; dup {
			return d.at(field(i), fmt.Errorf(repeated, v, field(j), d.lines[field(j)]))
		}
		seen[v] = i
	}
	return nil
}

// indexed returns the function that names item i of a list, given the
// list's field path followed by [%d].
func indexed(format string) func(i int) string {
	return func(i int) string { return fmt.Sprintf(format, i) }
}

// checkRoutes checks each route in turn: its topic, routed once, then its
// bucket and prefix.
func (d *decoder) checkRoutes(routes []Route) error {
	route := indexed("downlink.routes[%d]")
	seen := make(map[string]int)
	for i, r := range routes {
		field := route(i)
		if err := checkTopic(r.Topic); err != nil {
			return d.at(field+".topic", err)
		}
		if j, dup := seen[r.Topic]; dup {
			return d.at(field+".topic", fmt.Errorf("topic %q already has a route at %s (line %d); route each topic once", r.Topic, route(j), d.lines[route(j)]))
		}
		seen[r.Topic] = i
		if r.Bucket != "" {
			if err := checkBucket(r.Bucket); err != nil {
				return d.at(field+".bucket", err)
			}
		}
		if err := checkPrefix(r.Prefix); err != nil {
			return d.at(field+".prefix", err)
		}
	}
	return nil
}

// routeDefaults gives each route that has no bucket or prefix of its own
// store.bucket and <store.prefix>/oort/<topic>.
func routeDefaults(b *Bench) {
	for i := range b.Downlink.Routes {
		r := &b.Downlink.Routes[i]
		if r.Bucket == "" {
			r.Bucket = b.Store.Bucket
		}
		if r.Prefix == "" {
			// Checked: no empty, "." or ".." segments for Join to clean.
			r.Prefix = path.Join(b.Store.Prefix, "oort", r.Topic)
		}
	}
}

// checkRetryMax checks that retry.max is at least retry.min. When max was
// not written, the min just written is the one at fault.
func (d *decoder) checkRetryMax(r Backoff) error {
	switch {
	case r.Max >= r.Min:
		return nil
	case !d.written("downlink.retry.max"):
		return d.at("downlink.retry.min", fmt.Errorf("is %s, more than retry.max, which defaults to %s; want at most %s, or set downlink.retry.max to at least %s", r.Min, r.Max, r.Max, r.Min))
	}
	return d.at("downlink.retry.max", fmt.Errorf("is %s, less than retry.min %s; want at least retry.min, e.g. %q", r.Max, r.Min, r.Min.String()))
}

// checkContacts checks the contact schedule: no negative times, and a
// period, at least as long as a contact, exactly when contacts have a
// duration.
func (d *decoder) checkContacts(c Contacts) error {
	const p = "downlink.link.contacts"
	// About one low Earth orbit, or the contact if that is longer.
	example := max(Duration(95*time.Minute), c.Duration)
	switch {
	case c.Start < 0:
		return d.at(p+".start", notNegative(c.Start))
	case c.Duration < 0:
		return d.at(p+".duration", notNegative(c.Duration))
	case c.Period < 0:
		return d.at(p+".period", notNegative(c.Period))
	case c.Duration == 0 && c.Period != 0:
		return d.at(p+".period", fmt.Errorf("is %s, but contacts.duration is 0s (always in contact); set contacts.duration too, or remove period", c.Period))
	case c.Duration > 0 && !d.written(p+".period"):
		return d.errorf(d.lines[p], p+".period", "missing; contacts.duration %s needs a period, from one contact's start to the next's, at least the duration, e.g. %q", c.Duration, example.String())
	case c.Period < c.Duration:
		return d.at(p+".period", fmt.Errorf("is %s, less than contacts.duration %s; want at least the duration, e.g. %q", c.Period, c.Duration, example.String()))
	}
	return nil
}

// written reports whether field was written in the file, even with no value.
func (d *decoder) written(field string) bool {
	_, ok := d.lines[field]
	return ok
}

// loadBoards loads the boards b names, from b.BoardsDir, and checks that
// no two of their SSH servers, OORT agents and app callback servers listen
// on the same address, nor on the Payload Controller's, and that no two
// apps share a key or an hw_id.
func (d *decoder) loadBoards(b *Bench) error {
	dir := d.resolve(b.BoardsDir)
	used := make(addresses)
	apps := apps{keys: make(map[string]boardUse), hwIDs: make(map[int]boardUse)}
	for i, name := range b.BoardNames {
		field := fmt.Sprintf("boards[%d]", i)
		file := filepath.Join(dir, name+".yaml")
		board, bd, err := loadBoard(file)
		if errors.Is(err, fs.ErrNotExist) {
			return d.at(field, fmt.Errorf("board %q: %s does not exist; want a board file there (boards_dir is %q)", name, file, b.BoardsDir))
		}
		if err != nil {
			return err
		}
		for _, a := range boardAddresses(board) {
			if err := first(
				used.claim(bd, board, a.field, a.addr, b.File),
				d.checkListenClash(b, bd, board, a.field, a.addr),
			); err != nil {
				return err
			}
		}
		if err := apps.claim(bd, board, b.File); err != nil {
			return err
		}
		if err := d.checkOnNetwork(b, bd, board, field); err != nil {
			return err
		}
		b.Boards = append(b.Boards, board)
	}
	return nil
}

// checkOnNetwork checks board, named at field of the bench and loaded by
// bd, against the bench's network: a QEMU payload needs one, as does a
// NIC; on a bench with one, every payload is a QEMU payload, a process
// behind a veth, or a real board on a NIC of its own, with each address on
// the network and a real port.
func (d *decoder) checkOnNetwork(b *Bench, bd *decoder, board *Board, field string) error {
	n := b.Network
	if !n.Enabled() {
		switch {
		case board.Power.Kind == "qemu":
			return d.at(field, fmt.Errorf("board %q has power kind qemu, whose Ethernet is a tap on the bench bridge, but bench %s has no network section; add one, e.g. network: {bus_address: 10.42.0.1/24}", board.Name, b.File))
		case board.NIC != "":
			return bd.at("nic", fmt.Errorf("is %s, but bench %s has no network section, whose bridge it would join; remove it, or add one, e.g. network: {bus_address: 10.42.0.1/24}", board.NIC, b.File))
		}
		return nil
	}
	switch {
	case board.Power.Kind == "relay" && board.Power.Relay.Simulate:
		return bd.at("power.relay.simulate", fmt.Errorf("is true, but bench %s has a network, which does not join a simulated relay's payload; use power kind process, or a real relay board with nic", b.File))
	case !board.Power.StartsPayload() && board.NIC == "":
		return bd.at("power.kind", fmt.Errorf("is %s: a real board, which joins the network of bench %s by the host NIC it is cabled to; set nic, e.g. nic: enp3s0", board.Power.Kind, b.File))
	}
	for _, o := range b.Boards {
		if board.NIC != "" && o.NIC == board.NIC {
			return bd.at("nic", fmt.Errorf("board %q has nic %s, already that of board %q (%s) on bench %s; cable each board to a NIC of its own", board.Name, board.NIC, o.Name, o.File, b.File))
		}
	}
	bus, _ := netip.ParsePrefix(n.BusAddress)
	for _, a := range boardAddresses(board) {
		if a.addr == "" {
			continue
		}
		host, port, _ := net.SplitHostPort(a.addr)
		example := net.JoinHostPort(bus.Addr().Next().String(), "22")
		ip, err := netip.ParseAddr(host)
		switch {
		case port == "0":
			return bd.at(a.field, fmt.Errorf("%q has port 0, but on bench %s, which has a network, the payload serves on fixed ports; give a port, e.g. %q", a.addr, b.File, example))
		case err != nil || !bus.Contains(ip):
			return bd.at(a.field, fmt.Errorf("%q is not on network %s of bench %s; want an address in it, e.g. %q", a.addr, bus.Masked(), b.File, example))
		case ip == bus.Addr():
			return bd.at(a.field, fmt.Errorf("%q is the bus's own address on bench %s; want another address in %s, e.g. %q", a.addr, b.File, bus.Masked(), example))
		}
	}
	return nil
}

// A boardAddress is a board field that holds an address, and the address.
type boardAddress struct{ field, addr string }

// boardAddresses returns the addresses board's servers listen on, empty
// ones included, in the order they are checked.
func boardAddresses(board *Board) []boardAddress {
	return []boardAddress{
		{"address", board.Address},
		{"oort.address", board.OORT.Address},
		{"payload_interface.callback", board.PayloadInterface.Callback},
	}
}

// addresses maps each address in use, as addressKey writes it, to the
// board field that uses it.
type addresses map[string]boardUse

// A boardUse is the board field that first has a value that must be
// unique among a bench's boards, and the line where it was written.
type boardUse struct {
	board *Board
	field string // e.g. "address", "oort.address"
	line  int
}

// addressNames names the board fields that hold an address, for messages.
var addressNames = map[string]string{
	"address":                    "SSH address",
	"oort.address":               "OORT address",
	"payload_interface.callback": "app callback address",
}

// claim records that field of board, loaded by bd onto bench, uses addr,
// or reports the field that already does.
func (used addresses) claim(bd *decoder, board *Board, field, addr, bench string) error {
	key, ok := addressKey(addr)
	if !ok {
		return nil
	}
	o, dup := used[key]
	if !dup {
		used[key] = boardUse{board, field, bd.lines[field]}
		return nil
	}
	if field == "address" && o.field == "address" {
		return bd.at(field, fmt.Errorf("board %q has address %q, already used by board %q (%s:%d) on bench %s; give each board its own address",
			board.Name, addr, o.board.Name, o.board.File, o.line, bench))
	}
	return bd.at(field, fmt.Errorf("board %q has %s %q, already the %s of board %q (%s:%d) on bench %s; give each SSH server, OORT agent and app callback server its own address",
		board.Name, addressNames[field], addr, addressNames[o.field], o.board.Name, o.board.File, o.line, bench))
}

// addressKey returns addr in a form where equal addresses are equal
// strings. Port 0 means "any free port", which never collides.
func addressKey(addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(host), port), true
}

// checkListenClash checks that addr, the value of field of board (loaded
// by bd), does not take the port the Payload Controller listens on. The
// bench's listen is at fault when the file sets it; when it is the
// default, the board is.
func (d *decoder) checkListenClash(b *Bench, bd *decoder, board *Board, field, addr string) error {
	listen := b.PayloadInterface.Listen
	if !clashes(listen, addr) {
		return nil
	}
	if d.written("payload_interface.listen") {
		return d.at("payload_interface.listen", fmt.Errorf("%q takes the port of the %s %q of board %q (%s:%d); want an address no board uses, or port 0 for a free port",
			listen, addressNames[field], addr, board.Name, board.File, bd.lines[field]))
	}
	return bd.at(field, fmt.Errorf("board %q has %s %q, which takes the port of the Payload Controller's default listen address %q on bench %s; give the board another port, or set payload_interface.listen on the bench",
		board.Name, addressNames[field], addr, listen, b.File))
}

// clashes reports whether servers on listen and on addr would take the
// same port: their addresses are equal, or one is on every interface
// (":50051", "0.0.0.0:50051") and the other on this host ("127.0.0.1",
// "localhost"). Port 0, a free port, never clashes.
func clashes(listen, addr string) bool {
	lk, ok := addressKey(listen)
	ak, ok2 := addressKey(addr)
	if !ok || !ok2 {
		return false
	}
	lh, lp, _ := net.SplitHostPort(lk)
	ah, ap, _ := net.SplitHostPort(ak)
	return lp == ap && (lh == ah || anyHost(lh) && thisHost(ah) || anyHost(ah) && thisHost(lh))
}

// anyHost reports whether host, in a listen address, means every
// interface.
func anyHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// thisHost reports whether host, in an address, is the bench's own host
// for certain: a loopback or unspecified address, which a server on every
// interface takes too.
func thisHost(host string) bool {
	ip := net.ParseIP(host)
	return anyHost(host) || host == "localhost" || ip != nil && ip.IsLoopback()
}

// apps maps the key and the hw_id of each payload app on a bench to the
// board that runs it.
type apps struct {
	keys  map[string]boardUse
	hwIDs map[int]boardUse
}

// claim records board's app, if it runs one, or reports the board whose
// app already has its key or hw_id. The key is never quoted: it
// authenticates the app.
func (a apps) claim(bd *decoder, board *Board, bench string) error {
	if !board.RunsApp() {
		return nil
	}
	const keyField, hwField = "payload_interface.key", "payload_interface.hw_id"
	p := board.PayloadInterface
	if o, dup := a.keys[p.Key]; dup {
		return bd.at(keyField, fmt.Errorf("board %q has the key of board %q (%s:%d) on bench %s; give each payload app its own key",
			board.Name, o.board.Name, o.board.File, o.line, bench))
	}
	a.keys[p.Key] = boardUse{board, keyField, bd.lines[keyField]}
	if o, dup := a.hwIDs[p.HWID]; dup {
		free := 0
		for _, taken := a.hwIDs[free]; taken; _, taken = a.hwIDs[free] {
			free++
		}
		return bd.errorf(bd.near(hwField), hwField, "board %q has hw_id %d%s, already the hw_id of board %q (%s:%d) on bench %s; give each board that runs an app its own hw_id, e.g. %d",
			board.Name, p.HWID, bd.ifDefault(hwField), o.board.Name, o.board.File, o.line, bench, free)
	}
	a.hwIDs[p.HWID] = boardUse{board, hwField, bd.near(hwField)}
	return nil
}

// near returns the line where field was written or, if it was not, where
// the nearest mapping around it was.
func (d *decoder) near(field string) int {
	for {
		if line, ok := d.lines[field]; ok {
			return line
		}
		i := strings.LastIndex(field, ".")
		if i < 0 {
			return 0
		}
		field = field[:i]
	}
}

// ifDefault returns " (the default)" if field was not written, for
// messages about its value.
func (d *decoder) ifDefault(field string) string {
	if d.written(field) {
		return ""
	}
	return " (the default)"
}

// loadBoard reads and checks the board file at path. It also returns the
// file's decoder, whose lines place errors found across boards.
func loadBoard(path string) (*Board, *decoder, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, readError(path, err)
	}
	b := &Board{
		File:        path,
		BootTimeout: defaultBootTimeout,
		Power: Power{OffTime: defaultOffTime, Watch: defaultWatch,
			Relay: Relay{Timeout: defaultRelayTimeout}, Exec: Exec{Timeout: defaultExecTimeout}},
		PayloadInterface: BoardPayloadInterface{AppID: defaultAppID},
	}
	b.Power.QEMU = QEMU{Kernel: defaultQEMUKernel, Initrd: defaultQEMUInitrd, CPU: defaultQEMUCPU, SMP: defaultQEMUSMP, Memory: defaultQEMUMemory}
	fields := boardFields(b)
	d, root, err := parse(path, data, "a board: a mapping with keys "+keys(fields))
	if err != nil {
		return nil, nil, err
	}
	if err := d.mapping("", root.Line, root, fields); err != nil {
		return nil, nil, err
	}
	if !b.RunsApp() {
		b.PayloadInterface = BoardPayloadInterface{} // no app, no defaults
	}
	if err := d.checkBoard(b); err != nil {
		return nil, nil, err
	}
	b.SSH.Key = d.resolve(b.SSH.Key)
	b.Power.HostKey = d.resolve(b.Power.HostKey)
	if b.Power.Kind == "qemu" {
		b.Power.QEMU.Kernel = d.resolve(b.Power.QEMU.Kernel)
		b.Power.QEMU.Initrd = d.resolve(b.Power.QEMU.Initrd)
	} else {
		b.Power.QEMU = QEMU{}
	}
	// No section, no defaults, as for payload_interface.
	if b.Power.Kind != "relay" {
		b.Power.Relay = Relay{}
	} else if b.Power.Relay.Channels == 0 {
		b.Power.Relay.Channels = relay.DefaultChannels(b.Power.Relay.Protocol)
	}
	if b.Power.Kind != "exec" {
		b.Power.Exec = Exec{}
	}
	return b, d, nil
}

func boardFields(b *Board) []field {
	return []field{
		{key: "name", required: true, want: "the file's base name, " + boardName(b.File), into: &b.Name},
		{key: "address", required: true, want: `host:port of the payload's SSH server, e.g. "192.0.2.10:22"`, into: &b.Address},
		{key: "ssh", required: true, want: "a mapping with keys user, key, host_key", into: []field{
			{key: "user", required: true, want: "the signaling user, e.g. signaling", into: &b.SSH.User},
			{key: "key", required: true, want: "the bus's private key file, relative to the board file, e.g. keys/bus_ed25519", into: &b.SSH.Key},
			{key: "host_key", required: true, want: `the payload's public host key, e.g. "ssh-ed25519 AAAA..."`, into: &b.SSH.HostKey},
		}},
		{key: "power", required: true, want: "a mapping with keys kind, host_key, off_time, watch, relay, exec, qemu", into: []field{
			{key: "kind", required: true, want: "process, relay, exec or qemu", into: &b.Power.Kind},
			{key: "host_key", want: "the payload's private host key file, relative to the board file", into: &b.Power.HostKey},
			{key: "off_time", into: &b.Power.OffTime},
			{key: "watch", into: &b.Power.Watch},
			{key: "relay", want: "a mapping with keys protocol, port, serial, channels, channel, invert, gap, timeout, simulate", into: []field{
				{key: "protocol", required: true, want: relayProtocols, into: &b.Power.Relay.Protocol},
				{key: "port", want: "the board's serial port by a stable path, e.g. /dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0", into: &b.Power.Relay.Port},
				{key: "serial", want: `the board's USB serial number, e.g. "A50285BI"`, into: &b.Power.Relay.Serial},
				{key: "channels", want: "the number of relays on the board, e.g. 8", into: &b.Power.Relay.Channels},
				{key: "channel", required: true, want: "the relay that powers this payload, e.g. 1", into: &b.Power.Relay.Channel},
				{key: "invert", want: "true for normally-closed wiring, else false", into: &b.Power.Relay.Invert},
				{key: "gap", into: &b.Power.Relay.Gap},
				{key: "timeout", into: &b.Power.Relay.Timeout},
				{key: "simulate", want: "true to run a simulated board wired to the reference payload, else false", into: &b.Power.Relay.Simulate},
			}},
			{key: "exec", want: "a mapping with keys on, off, status, timeout", into: []field{
				{key: "on", required: true, want: `a shell command that switches the payload on, e.g. "pdu-ctl outlet 3 on"`, into: &b.Power.Exec.On},
				{key: "off", required: true, want: `a shell command that switches the payload off, e.g. "pdu-ctl outlet 3 off"`, into: &b.Power.Exec.Off},
				{key: "status", want: `a shell command that prints on or off, e.g. "pdu-ctl outlet 3 status"`, into: &b.Power.Exec.Status},
				{key: "timeout", into: &b.Power.Exec.Timeout},
			}},
			{key: "qemu", want: "a mapping with keys kernel, initrd, cpu, smp, memory", into: []field{
				{key: "kernel", want: "the payload image's kernel, relative to the board file, e.g. " + defaultQEMUKernel, into: &b.Power.QEMU.Kernel},
				{key: "initrd", want: "the payload image's initramfs, relative to the board file, e.g. " + defaultQEMUInitrd, into: &b.Power.QEMU.Initrd},
				{key: "cpu", want: "a QEMU aarch64 CPU model, e.g. " + defaultQEMUCPU, into: &b.Power.QEMU.CPU},
				{key: "smp", want: "a whole number of vCPUs from 1 to 8, e.g. 2", into: &b.Power.QEMU.SMP},
				{key: "memory", want: `the guest's memory, e.g. "256M" or "1G"`, into: &b.Power.QEMU.Memory},
			}},
		}},
		{key: "boot_timeout", into: &b.BootTimeout},
		{key: "nic", want: "the host's network interface the board is cabled to, e.g. enp3s0", into: &b.NIC},
		{key: "oort", into: []field{
			{key: "address", required: true, want: `host:port of the payload's OORT agent, e.g. "192.0.2.10:2005"`, into: &b.OORT.Address},
		}},
		{key: "payload_interface", into: []field{
			{key: "key", required: true, want: `the app's 20-character auth key, e.g. "AbCdEfGhIjKlMnOpQrSt"`, into: &b.PayloadInterface.Key},
			{key: "app_id", want: fmt.Sprintf("a whole number from 0 to %d, e.g. %d", maxAppID, defaultAppID), into: &b.PayloadInterface.AppID},
			{key: "callback", want: `host:port of the app's callback server, e.g. "` + exampleCallback + `"`, into: &b.PayloadInterface.Callback},
			{key: "hw_id", want: fmt.Sprintf("a whole number from 0 to %d, e.g. 0", maxHWID), into: &b.PayloadInterface.HWID},
		}},
	}
}

// boardName is the name a board file must declare: its base name.
func boardName(file string) string {
	return strings.TrimSuffix(filepath.Base(file), ".yaml")
}

// checkBoard checks the rules that go beyond a field's type. The
// addresses come before power.kind so that port 0 is explained to whoever
// picks another power kind.
func (d *decoder) checkBoard(b *Board) error {
	return first(
		d.checkBoardName(b),
		d.at("address", checkHostPort(b.Address, "192.0.2.10:22", true)),
		d.checkPortZero(b, "address", b.Address, "payload's", "192.0.2.10:22"),
		d.checkOORTAddress(b),
		d.checkCallback(b),
		d.checkKeyFile("ssh.key", b.SSH.Key, "the bus's private key file"),
		d.at("ssh.host_key", checkHostKey(b.SSH.HostKey)),
		d.at("power.kind", oneOf(b.Power.Kind, "power kind", "process", "relay", "exec", "qemu")),
		d.checkPower(b.Power),
		d.checkPowerHostKey(b.Power),
		d.at("boot_timeout", positive(b.BootTimeout, defaultBootTimeout)),
		d.checkNIC(b),
		d.checkApp(b.PayloadInterface),
	)
}

// checkNIC checks the name of the board's NIC, if it has one, and that
// the board is a real one: the bench starts the others behind links of
// their own.
func (d *decoder) checkNIC(b *Board) error {
	if !d.written("nic") {
		return nil
	}
	if err := netlab.CheckName("nic", b.NIC); err != nil {
		return d.at("nic", fmt.Errorf("%w; want the host's network interface the board is cabled to, e.g. enp3s0", err))
	}
	if b.Power.StartsPayload() {
		return d.at("nic", fmt.Errorf("is set, but the bench starts this board's payload itself (power kind %s) behind a link of its own; remove it (nic is for a real board: power kind relay or exec)", b.Power.Kind))
	}
	return nil
}

func (d *decoder) checkBoardName(b *Board) error {
	if want := boardName(b.File); b.Name != want {
		return d.at("name", fmt.Errorf("%q differs from the file's base name; want name: %s, or rename the file to %s.yaml", b.Name, want, b.Name))
	}
	return nil
}

// checkPortZero allows port 0 in addr, the value of field, only where the
// bench starts the payload itself and so can tell it which free port to
// take. whose and example are for the message: "payload's", "192.0.2.10:22".
func (d *decoder) checkPortZero(b *Board, field, addr, whose, example string) error {
	if _, port, _ := net.SplitHostPort(addr); port != "0" || b.Power.LocalProcess() {
		return nil
	}
	return d.at(field, fmt.Errorf("port 0 (a free port the bench picks) needs power kind process or a simulated relay, whose payload the bench starts itself; power.kind is %q: give the %s real port, e.g. %q", b.Power.Kind, whose, example))
}

// checkOORTAddress checks the OORT agent's address, if the board has one,
// like the SSH server's, and that the two differ.
func (d *decoder) checkOORTAddress(b *Board) error {
	addr := b.OORT.Address
	if addr == "" {
		return nil
	}
	if err := first(
		d.at("oort.address", checkHostPort(addr, "192.0.2.10:2005", true)),
		d.checkPortZero(b, "oort.address", addr, "agent's", "192.0.2.10:2005"),
	); err != nil {
		return err
	}
	if key, ok := addressKey(addr); ok {
		if ssh, _ := addressKey(b.Address); key == ssh {
			return d.at("oort.address", fmt.Errorf("%q is also the board's SSH address (line %d); give the OORT agent a port of its own, e.g. %q", addr, d.lines["address"], "192.0.2.10:2005"))
		}
	}
	return nil
}

// checkCallback checks the app's callback address, if the board has one,
// like the SSH server's, and that it differs from the board's other
// addresses.
func (d *decoder) checkCallback(b *Board) error {
	const field = "payload_interface.callback"
	addr := b.PayloadInterface.Callback
	if addr == "" {
		return nil // the caller's IP address, port 50053
	}
	if err := first(
		d.at(field, checkHostPort(addr, exampleCallback, true)),
		d.checkPortZero(b, field, addr, "app's", exampleCallback),
	); err != nil {
		return err
	}
	key, ok := addressKey(addr)
	if !ok {
		return nil
	}
	for _, a := range boardAddresses(b) {
		if other, _ := addressKey(a.addr); a.field != field && key == other {
			return d.at(field, fmt.Errorf("%q is also the board's %s (line %d); give the app's callback server a port of its own, e.g. %q", addr, addressNames[a.field], d.lines[a.field], exampleCallback))
		}
	}
	return nil
}

// checkApp checks the payload app's key, app id and hw_id, if the board
// runs an app.
func (d *decoder) checkApp(p BoardPayloadInterface) error {
	if p.Key == "" {
		return nil
	}
	return first(
		d.at("payload_interface.key", checkAppKey(p.Key)),
		d.at("payload_interface.app_id", inRange(p.AppID, 0, maxAppID, defaultAppID)),
		d.at("payload_interface.hw_id", inRange(p.HWID, 0, maxHWID, 0)),
	)
}

// checkPowerHostKey requires power.host_key where the bench starts the
// reference payload, which cannot serve SSH without it, and refuses it
// elsewhere, where nothing would read it.
func (d *decoder) checkPowerHostKey(p Power) error {
	if !p.StartsPayload() {
		if p.HostKey != "" {
			return d.at("power.host_key", fmt.Errorf("is set, but power kind %s does not start the reference payload; remove it (only kinds process and qemu, and a relay with simulate: true, use it)", p.Kind))
		}
		return nil
	}
	if p.HostKey == "" {
		what := "power kind " + p.Kind
		if p.Kind == "relay" {
			what = "a simulated relay (relay.simulate: true) starts the reference payload, and"
		}
		return d.errorf(d.lines["power"], "power.host_key", "missing; %s needs the payload's private host key file, relative to the board file, e.g. keys/refpayload_host_ed25519", what)
	}
	return d.checkKeyFile("power.host_key", p.HostKey, "the payload's private host key file")
}

// checkPower checks that the section of the power kind is there, that the
// other kind's is not, and the section's values.
func (d *decoder) checkPower(p Power) error {
	_, hasRelay := d.lines["power.relay"]
	_, hasExec := d.lines["power.exec"]
	_, hasQEMU := d.lines["power.qemu"]
	for _, s := range []struct {
		kind string
		has  bool
	}{{"relay", hasRelay}, {"exec", hasExec}, {"qemu", true}} {
		if s.kind == "qemu" {
			s.has = hasQEMU || p.Kind == "qemu" // every key has a default
		}
		switch {
		case s.kind == p.Kind && !s.has:
			return d.errorf(d.lines["power"], "power."+s.kind, "missing; power kind %s needs the %s section", p.Kind, s.kind)
		case s.kind != p.Kind && s.has:
			return d.at("power."+s.kind, fmt.Errorf("is set, but power.kind is %s; remove it, or set power.kind: %s", p.Kind, s.kind))
		}
	}
	if err := first(
		d.at("power.off_time", positive(p.OffTime, defaultOffTime)),
		d.at("power.watch", positive(p.Watch, defaultWatch)),
	); err != nil {
		return err
	}
	switch p.Kind {
	case "relay":
		return d.checkRelay(p.Relay)
	case "exec":
		return first(
			d.at("power.exec.on", notEmpty(p.Exec.On, "a shell command")),
			d.at("power.exec.off", notEmpty(p.Exec.Off, "a shell command")),
			d.at("power.exec.timeout", positive(p.Exec.Timeout, defaultExecTimeout)),
		)
	case "qemu":
		return first(
			d.at("power.qemu.kernel", notEmpty(p.QEMU.Kernel, "the payload image's kernel, e.g. "+defaultQEMUKernel)),
			d.at("power.qemu.initrd", notEmpty(p.QEMU.Initrd, "the payload image's initramfs, e.g. "+defaultQEMUInitrd)),
			d.at("power.qemu.cpu", notEmpty(p.QEMU.CPU, "a QEMU aarch64 CPU model, e.g. "+defaultQEMUCPU)),
			d.at("power.qemu.smp", inRange(p.QEMU.SMP, 1, 8, defaultQEMUSMP)),
			d.at("power.qemu.memory", checkMemory(p.QEMU.Memory)),
		)
	}
	return nil
}

// checkRelay checks a relay section against what the relay driver
// accepts, so that a bench that loads can be switched.
func (d *decoder) checkRelay(r Relay) error {
	if err := first(
		d.at("power.relay.protocol", oneOf(r.Protocol, "relay protocol", relay.Protocols()...)),
		d.at("power.relay.timeout", positive(r.Timeout, defaultRelayTimeout)),
		d.at("power.relay.gap", notNegative(r.Gap)),
	); err != nil {
		return err
	}
	if r.Simulate {
		for _, f := range []string{"power.relay.port", "power.relay.serial"} {
			if _, ok := d.lines[f]; ok {
				return d.at(f, errors.New("is set, but relay.simulate is true: the bench makes the simulated board's port itself; remove one of the two"))
			}
		}
	} else if err := relay.CheckPort(r.Protocol, relay.Port{Path: r.Port, Serial: r.Serial}); err != nil {
		field := "power.relay.port"
		if r.Port == "" && r.Serial != "" {
			field = "power.relay.serial"
		}
		if _, ok := d.lines[field]; !ok {
			return d.errorf(d.lines["power.relay"], field, "%v", err)
		}
		return d.at(field, err)
	}
	channels := r.Channels
	if _, ok := d.lines["power.relay.channels"]; ok {
		if err := relay.CheckChannels(r.Protocol, channels); err != nil {
			return d.at("power.relay.channels", err)
		}
	}
	return d.at("power.relay.channel", relay.CheckChannel(r.Protocol, channels, r.Channel))
}

// checkKeyFile checks that rel, the value of field, names an existing
// regular file once resolved against the board file's directory.
func (d *decoder) checkKeyFile(field, rel, what string) error {
	path := d.resolve(rel)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return d.at(field, fmt.Errorf("%s (%s) does not exist; want %s, relative to the board file", rel, path, what))
	case err != nil:
		return d.at(field, fmt.Errorf("cannot use %s: %v; want %s, readable", rel, err, what))
	case !fi.Mode().IsRegular():
		return d.at(field, fmt.Errorf("%s (%s) is not a regular file; want %s", rel, path, what))
	}
	return nil
}

// resolve returns rel, a path written in d's file, as a path from the
// working directory: relative paths are relative to the file's directory.
func (d *decoder) resolve(rel string) string {
	if rel == "" || filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(filepath.Dir(d.file), rel)
}

// first returns the first non-nil error of errs.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
