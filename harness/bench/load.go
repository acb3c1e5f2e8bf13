package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
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
)

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
			{key: "kind", want: "embedded or s3", into: &b.Store.Kind},
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
		// Durations and optional mappings describe themselves in errors.
		{key: "timing", into: []field{
			{key: "configure_timeout", into: &b.Timing.ConfigureTimeout},
			{key: "pre_buffer", into: &b.Timing.PreBuffer},
			{key: "shutdown_grace", into: &b.Timing.ShutdownGrace},
		}},
	}
}

// checkBench checks the rules that go beyond a field's type, in the order
// the fields are documented, and reports the first broken one.
func (d *decoder) checkBench(b *Bench) error {
	return first(
		d.at("satellite", checkName(b.Satellite, "satellite id", "FM1")),
		d.at("signaling", oneOf(b.Signaling, "signaling version", "v1", "v2")),
		d.at("store.kind", oneOf(b.Store.Kind, "store kind", "embedded", "s3")),
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
	)
}

// checkEndpoint requires an endpoint for kind s3 and refuses one for kind
// embedded, which serves on a loopback port of its own choosing.
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
	seen := make(map[string]int)
	for i, name := range names {
		field := fmt.Sprintf("boards[%d]", i)
		if err := checkName(name, "board name", "refpayload"); err != nil {
			return d.at(field, err)
		}
		if j, dup := seen[name]; dup {
			return d.at(field, fmt.Errorf("board %q is already named at boards[%d] (line %d); name each board once", name, j, d.lines[fmt.Sprintf("boards[%d]", j)]))
		}
		seen[name] = i
	}
	return nil
}

// loadBoards loads the boards b names, from b.BoardsDir, and checks that
// no two of them listen on the same address.
func (d *decoder) loadBoards(b *Bench) error {
	dir := d.resolve(b.BoardsDir)
	type owner struct {
		board *Board
		line  int
	}
	byAddress := make(map[string]owner)
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
		if key, ok := addressKey(board.Address); ok {
			if o, dup := byAddress[key]; dup {
				return bd.at("address", fmt.Errorf("board %q has address %q, already used by board %q (%s:%d) on bench %s; give each board its own address",
					board.Name, board.Address, o.board.Name, o.board.File, o.line, b.File))
			}
			byAddress[key] = owner{board, bd.lines["address"]}
		}
		b.Boards = append(b.Boards, board)
	}
	return nil
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

// loadBoard reads and checks the board file at path. It also returns the
// file's decoder, whose lines place errors found across boards.
func loadBoard(path string) (*Board, *decoder, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, readError(path, err)
	}
	b := &Board{File: path, BootTimeout: defaultBootTimeout}
	fields := boardFields(b)
	d, root, err := parse(path, data, "a board: a mapping with keys "+keys(fields))
	if err != nil {
		return nil, nil, err
	}
	if err := d.mapping("", root.Line, root, fields); err != nil {
		return nil, nil, err
	}
	if err := d.checkBoard(b); err != nil {
		return nil, nil, err
	}
	b.SSH.Key = d.resolve(b.SSH.Key)
	b.Power.HostKey = d.resolve(b.Power.HostKey)
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
		{key: "power", required: true, want: "a mapping with keys kind, host_key", into: []field{
			{key: "kind", required: true, want: "process", into: &b.Power.Kind},
			{key: "host_key", want: "the payload's private host key file, relative to the board file", into: &b.Power.HostKey},
		}},
		{key: "boot_timeout", into: &b.BootTimeout},
	}
}

// boardName is the name a board file must declare: its base name.
func boardName(file string) string {
	return strings.TrimSuffix(filepath.Base(file), ".yaml")
}

// checkBoard checks the rules that go beyond a field's type. The address
// comes before power.kind so that port 0 is explained to whoever picks
// another power kind.
func (d *decoder) checkBoard(b *Board) error {
	return first(
		d.checkBoardName(b),
		d.at("address", checkHostPort(b.Address, "192.0.2.10:22", true)),
		d.checkPortZero(b),
		d.checkKeyFile("ssh.key", b.SSH.Key, "the bus's private key file"),
		d.at("ssh.host_key", checkHostKey(b.SSH.HostKey)),
		d.at("power.kind", oneOf(b.Power.Kind, "power kind", "process")),
		d.checkPowerHostKey(b.Power),
		d.at("boot_timeout", positive(b.BootTimeout, defaultBootTimeout)),
	)
}

func (d *decoder) checkBoardName(b *Board) error {
	if want := boardName(b.File); b.Name != want {
		return d.at("name", fmt.Errorf("%q differs from the file's base name; want name: %s, or rename the file to %s.yaml", b.Name, want, b.Name))
	}
	return nil
}

// checkPortZero allows port 0 only where the bench starts the payload
// itself and so can tell it which free port to take.
func (d *decoder) checkPortZero(b *Board) error {
	if _, port, _ := net.SplitHostPort(b.Address); port != "0" || b.Power.Kind == "process" {
		return nil
	}
	return d.at("address", fmt.Errorf("port 0 (a free port the bench picks) needs power kind process, the only kind whose payload the bench starts itself; power.kind is %q: give the payload's real port, e.g. \"192.0.2.10:22\"", b.Power.Kind))
}

// checkPowerHostKey requires power.host_key for kind process: the reference
// payload cannot serve SSH without it.
func (d *decoder) checkPowerHostKey(p Power) error {
	if p.Kind != "process" {
		return nil
	}
	if p.HostKey == "" {
		return d.errorf(d.lines["power"], "power.host_key", "missing; power kind process needs the payload's private host key file, relative to the board file, e.g. keys/refpayload_host_ed25519")
	}
	return d.checkKeyFile("power.host_key", p.HostKey, "the payload's private host key file")
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
