package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDN3olJZBw4hX/6lXvoULs3YIBvgnVgAtNnXwYVojzoV hil bench testdata key"

// Messages repeated across cases.
const (
	benchKeys    = "name, satellite, signaling, store, boards, boards_dir, timing"
	storeKeys    = "kind, endpoint, secure, region, bucket, prefix, access_key_env, secret_key_env"
	wantDuration = `want a number and a unit, like "15s", "500ms" or "2m"`
	wantName     = "want letters, digits, dots, hyphens and underscores, starting with a letter or digit"
	wantPrefix   = `want slash-separated names, e.g. "customer/a"`
	wantHostKey  = `want the payload's public host key as one authorized_keys line, e.g. "ssh-ed25519 AAAA... comment"`
)

// Each case is one file under testdata/benches; want is the whole error.
var loadErrorTests = []struct {
	file string
	want string
}{
	// Unknown keys.
	{"unknown_key", `:6: board_dir: unknown key "board_dir"; want one of ` + benchKeys},
	{"unknown_store_key", `:4: store.bukket: unknown key "bukket"; want one of ` + storeKeys},
	{"duplicate_key", `:5: satellite: set again (first at line 2); want each key once`},

	// Wrong types.
	{"boards_not_list", `:5: boards: got the string "refpayload", want a list of board names, e.g. [refpayload]`},
	{"board_not_name", `:7: boards[1]: got a mapping, want a board name, e.g. refpayload`},
	{"store_not_mapping", `:3: store: got the string "hil-downlink", want a mapping with keys ` + storeKeys},
	{"root_list", `:1: got a list, want a mapping with keys ` + benchKeys},
	{"secure_not_bool", `:6: store.secure: got the string "yes", want true or false`},
	{"bad_duration", `:7: timing.configure_timeout: "15" is not a duration; ` + wantDuration},
	{"bad_duration_words", `:7: timing.shutdown_grace: "5 seconds" is not a duration; ` + wantDuration},

	// Missing or empty required fields: the line is the enclosing mapping's.
	{"missing_satellite", `:2: satellite: missing; want the satellite id used in S3 keys, e.g. FM1`},
	{"missing_bucket", `:3: store.bucket: missing; want an S3 bucket name, e.g. hil-downlink`},
	{"missing_store", `:1: store: missing; want a mapping with at least a bucket, e.g. {bucket: hil-downlink}`},
	{"endpoint_missing", `:3: store.endpoint: missing; kind s3 needs the host:port of the S3 endpoint, e.g. minio.lab:9000`},
	{"null_name", `:1: name: has no value; want the bench's name, e.g. sim`},
	{"empty_name", `:1: name: is empty; want the bench's name, e.g. sim`},
	{"boards_empty", `:5: boards: is an empty list; want at least one board name, e.g. [refpayload]`},

	// Invalid values.
	{"bad_satellite", `:2: satellite: "FM1/x" is not a valid satellite id; ` + wantName + `, e.g. FM1`},
	{"bad_signaling", `:3: signaling: "v3" is not a signaling version; want v1 or v2`},
	{"bad_store_kind", `:4: store.kind: "minio" is not a store kind; want embedded or s3`},
	{"bad_bucket", `:7: store.bucket: "Bad_Bucket" is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)`},
	{"bad_bucket_ip", `:4: store.bucket: "192.168.1.1" is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens; not an IP address)`},
	{"prefix_leading_slash", `:5: store.prefix: "/customer/a" starts or ends with a slash; ` + wantPrefix},
	{"prefix_trailing_slash", `:5: store.prefix: "customer/a/" starts or ends with a slash; ` + wantPrefix},
	{"prefix_dotdot", `:5: store.prefix: "customer/../b" has a ".." segment; ` + wantPrefix},
	{"prefix_empty_segment", `:5: store.prefix: "customer//a" has an empty segment ("//"); ` + wantPrefix},
	{"endpoint_not_hostport", `:5: store.endpoint: "minio.lab" is not host:port (missing port in address); want e.g. "minio.lab:9000"`},
	{"endpoint_port_zero", `:5: store.endpoint: "minio.lab:0" has port "0"; want a number from 1 to 65535, e.g. "minio.lab:9000"`},
	{"endpoint_embedded", `:4: store.endpoint: set to "minio.lab:9000", but kind embedded picks its own loopback endpoint; remove it or set store.kind: s3`},
	{"bad_env_name", `:5: store.access_key_env: "HIL-KEY" is not an environment variable name; want letters, digits and underscores, e.g. HIL_S3_ACCESS_KEY`},
	{"zero_configure_timeout", `:7: timing.configure_timeout: is 0s; want more than zero, e.g. "15s"`},
	{"negative_pre_buffer", `:7: timing.pre_buffer: is -1s; want zero or more, e.g. "0s"`},

	// The boards the bench names.
	{"board_bad_name", `:5: boards[0]: "../alpha" is not a valid board name; ` + wantName + `, e.g. refpayload`},
	{"board_twice", `:8: boards[2]: board "alpha" is already named at boards[0] (line 6); name each board once`},
	{"board_missing", `:5: boards[1]: board "nope": testdata/boards/nope.yaml does not exist; want a board file there (boards_dir is "../boards")`},
	{"boards_dir_missing", `:5: boards[0]: board "alpha": testdata/bords/alpha.yaml does not exist; want a board file there (boards_dir is "../bords")`},

	// The file as a whole.
	{"empty", `:1: file is empty; want a bench: a mapping with keys ` + benchKeys},
	{"comments_only", `:1: file is empty; want a bench: a mapping with keys ` + benchKeys},
	{"document_empty", `:1: document is empty; want a bench: a mapping with keys ` + benchKeys},
	{"syntax_error", `:5: invalid YAML: mapping values are not allowed in this context`},
	{"tab_indent", `:4: invalid YAML: found character that cannot start any token`},
	{"two_documents", `:6: a second YAML document starts here; want one document per file`},
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range loadErrorTests {
		t.Run(tt.file, func(t *testing.T) {
			file := "testdata/benches/" + tt.file + ".yaml"
			checkError(t, file, tt.want)
		})
	}
}

// Errors found in a board file name the board file, not the bench.
func TestLoadBoardErrors(t *testing.T) {
	tests := []struct {
		bench string
		want  string
	}{
		{"board_misnamed", `testdata/boards/misnamed.yaml:1: name: "other" differs from the file's base name; want name: misnamed, or rename the file to other.yaml`},
		{"board_invalid", `testdata/boards/port0_relay.yaml:2: address: port 0 (a free port the bench picks) needs power kind process, the only kind whose payload the bench starts itself; power.kind is "relay": give the payload's real port, e.g. "192.0.2.10:22"`},
		{"duplicate_address", `testdata/boards/beta-twin.yaml:2: address: board "beta-twin" has address "127.0.0.1:2222", already used by board "beta" (testdata/boards/beta.yaml:2) on bench testdata/benches/duplicate_address.yaml; give each board its own address`},
	}
	for _, tt := range tests {
		t.Run(tt.bench, func(t *testing.T) {
			b, err := Load("testdata/benches/" + tt.bench + ".yaml")
			if err == nil {
				t.Fatalf("Load = %+v, want error %s", b, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Load error:\n got  %s\n want %s", got, tt.want)
			}
		})
	}
}

// Each case is one board file under testdata/boards, whose name is the
// case's; loadBoard is what Load runs on each board the bench names.
func TestBoardErrors(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"unknown_ssh_key", `:6: ssh.hostkey: unknown key "hostkey"; want one of user, key, host_key`},
		{"missing_user", `:3: ssh.user: missing; want the signaling user, e.g. signaling`},
		{"missing_power", `:1: power: missing; want a mapping with keys kind, host_key`},
		{"missing_power_host_key", `:7: power.host_key: missing; power kind process needs the payload's private host key file, relative to the board file, e.g. keys/refpayload_host_ed25519`},
		{"bad_address", `:2: address: "payload.local" is not host:port (missing port in address); want e.g. "192.0.2.10:22"`},
		{"bad_port", `:2: address: "192.0.2.10:ssh" has port "ssh"; want a number from 0 to 65535, e.g. "192.0.2.10:22"`},
		{"no_host", `:2: address: ":22" has no host; want e.g. "192.0.2.10:22"`},
		{"port0_relay", `:2: address: port 0 (a free port the bench picks) needs power kind process, the only kind whose payload the bench starts itself; power.kind is "relay": give the payload's real port, e.g. "192.0.2.10:22"`},
		{"bad_power_kind", `:8: power.kind: "relay" is not a power kind; want process`},
		{"bad_host_key", `:6: ssh.host_key: "ssh-ed25519 notbase64" is not an authorized_keys line (ssh: no key found; last parsing error for ignored line: illegal base64 data at input byte 8); ` + wantHostKey},
		{"host_key_options", `:6: ssh.host_key: has options "from=\"10.0.0.1\""; ` + wantHostKey},
		{"missing_key_file", `:5: ssh.key: keys/nope (testdata/boards/keys/nope) does not exist; want the bus's private key file, relative to the board file`},
		{"key_is_dir", `:5: ssh.key: keys (testdata/boards/keys) is not a regular file; want the bus's private key file`},
		{"missing_host_key_file", `:9: power.host_key: keys/nope (testdata/boards/keys/nope) does not exist; want the payload's private host key file, relative to the board file`},
		{"bad_boot_timeout", `:10: boot_timeout: "10" is not a duration; ` + wantDuration},
		{"zero_boot_timeout", `:10: boot_timeout: is 0s; want more than zero, e.g. "30s"`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			file := "testdata/boards/" + tt.file + ".yaml"
			b, _, err := loadBoard(file)
			if err == nil {
				t.Fatalf("loadBoard(%s) = %+v, want error %s", file, b, file+tt.want)
			}
			checkErrorText(t, err, file+tt.want)
		})
	}
}

// checkError loads the bench file and checks that it fails with
// file+want.
func checkError(t *testing.T, file, want string) {
	t.Helper()
	b, err := Load(file)
	if err == nil {
		t.Fatalf("Load(%s) = %+v, want error %s", file, b, file+want)
	}
	checkErrorText(t, err, file+want)
}

// checkErrorText checks that err is an *Error reading want.
func checkErrorText(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("error %v is a %T, want an *Error", err, err)
	}
	if got := err.Error(); got != want {
		t.Errorf("error:\n got  %s\n want %s", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	checkError(t, "testdata/benches/nope.yaml", ": cannot read the file: no such file or directory")
	if _, err := Load("testdata/benches/nope.yaml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error %v is not fs.ErrNotExist", err)
	}
}

func TestErrorFields(t *testing.T) {
	_, err := Load("testdata/benches/bad_duration.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Load error %v is a %T, want an *Error", err, err)
	}
	want := Error{File: "testdata/benches/bad_duration.yaml", Line: 7, Field: "timing.configure_timeout"}
	if e.File != want.File || e.Line != want.Line || e.Field != want.Field {
		t.Errorf("Error = {%q %d %q}, want {%q %d %q}", e.File, e.Line, e.Field, want.File, want.Line, want.Field)
	}
}

// A minimal bench gets every documented default, and its boards' key
// paths are resolved against the board files' directory.
func TestLoadDefaults(t *testing.T) {
	got, err := Load("testdata/benches/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	board := func(name, address string, boot time.Duration) *Board {
		return &Board{
			File:        "testdata/boards/" + name + ".yaml",
			Name:        name,
			Address:     address,
			SSH:         SSH{User: "signaling", Key: "testdata/boards/keys/bus", HostKey: testHostKey},
			Power:       Power{Kind: "process", HostKey: "testdata/boards/keys/host"},
			BootTimeout: Duration(boot),
		}
	}
	want := &Bench{
		File:      "testdata/benches/good.yaml",
		Name:      "good",
		Satellite: "FM1",
		Signaling: "v1",
		Store: Store{
			Kind:         "embedded",
			Bucket:       "hil-downlink",
			AccessKeyEnv: "HIL_S3_ACCESS_KEY",
			SecretKeyEnv: "HIL_S3_SECRET_KEY",
		},
		BoardNames: []string{"alpha", "beta"},
		BoardsDir:  "../boards",
		Timing: Timing{
			ConfigureTimeout: Duration(15 * time.Second),
			ShutdownGrace:    Duration(5 * time.Second),
		},
		Boards: []*Board{
			board("alpha", "127.0.0.1:0", 30*time.Second),
			board("beta", "127.0.0.1:2222", 10*time.Second),
		},
	}
	checkBench(t, got, want)
}

// Every field set in the file overrides its default, zero durations
// included.
func TestLoadFull(t *testing.T) {
	got, err := Load("testdata/benches/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Bench{
		File:      "testdata/benches/full.yaml",
		Name:      "full",
		Satellite: "FM2",
		Signaling: "v2",
		Store: Store{
			Kind:         "s3",
			Endpoint:     "minio.lab:9000",
			Secure:       true,
			Region:       "eu-west-1",
			Bucket:       "hil.downlink-2",
			Prefix:       "customer/b/raw",
			AccessKeyEnv: "LAB_ACCESS",
			SecretKeyEnv: "LAB_SECRET",
		},
		BoardNames: []string{"gamma"},
		BoardsDir:  "../moreboards",
		Timing: Timing{
			ConfigureTimeout: Duration(2 * time.Second),
			PreBuffer:        Duration(500 * time.Millisecond),
			ShutdownGrace:    0,
		},
		Boards: []*Board{{
			File:        "testdata/moreboards/gamma.yaml",
			Name:        "gamma",
			Address:     "192.0.2.10:22",
			SSH:         SSH{User: "signaling", Key: "testdata/boards/keys/bus", HostKey: testHostKey},
			Power:       Power{Kind: "process", HostKey: "testdata/boards/keys/host"},
			BootTimeout: Duration(90 * time.Second),
		}},
	}
	checkBench(t, got, want)
}

// Port 0 means "any free port", so two boards may both have it.
func TestLoadPortZeroTwice(t *testing.T) {
	b, err := Load("testdata/benches/port0_twice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Boards) != 2 {
		t.Errorf("loaded %d boards, want 2", len(b.Boards))
	}
}

func checkBench(t *testing.T, got, want *Bench) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s):\n got  %s\n want %s", want.File, dump(got), dump(want))
	}
}

// dump shows b and its boards in full: %+v would print board pointers.
func dump(b *Bench) string {
	s := fmt.Sprintf("%+v", *b)
	for _, board := range b.Boards {
		s += fmt.Sprintf("\n       %+v", *board)
	}
	return s
}

// The bench the product ships with loads, and its pinned host key is the
// public half of the host key the reference payload serves.
func TestLoadSim(t *testing.T) {
	b, err := Load("../../benches/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "sim" || b.Satellite != "FM1" || b.Store.Kind != "embedded" ||
		b.Store.Bucket != "hil-downlink" || b.Store.Prefix != "customer/a" ||
		b.Timing.ConfigureTimeout.D() != 15*time.Second || b.Timing.ShutdownGrace.D() != 5*time.Second {
		t.Errorf("sim bench = %+v", b)
	}
	if len(b.Boards) != 1 {
		t.Fatalf("sim bench has %d boards, want 1 (refpayload)", len(b.Boards))
	}
	p := b.Boards[0]
	if p.File != "../../boards/refpayload.yaml" || p.Address != "127.0.0.1:0" || p.SSH.User != "signaling" ||
		p.Power.Kind != "process" || p.BootTimeout.D() != 10*time.Second {
		t.Errorf("refpayload board = %+v", p)
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.SSH.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	served := parsePrivateKey(t, p.Power.HostKey)
	if !reflect.DeepEqual(pinned.Marshal(), served.PublicKey().Marshal()) {
		t.Errorf("ssh.host_key %s is not the public key of power.host_key %s", p.SSH.HostKey, p.Power.HostKey)
	}
	parsePrivateKey(t, p.SSH.Key)
}

func parsePrivateKey(t *testing.T, path string) ssh.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return signer
}

func TestCheckBucket(t *testing.T) {
	for _, name := range []string{"abc", "hil-downlink", "hil.downlink-2", "a1b", strings.Repeat("a", 63)} {
		if err := checkBucket(name); err != nil {
			t.Errorf("checkBucket(%q) = %v, want nil", name, err)
		}
	}
	const rule = "3-63 lowercase letters, digits, dots, hyphens"
	for name, why := range map[string]string{
		"ab":                    "",
		strings.Repeat("a", 64): "",
		"Bad_Bucket":            "",
		"hil downlink":          "",
		"-hil":                  "; beginning and ending with a letter or digit",
		"hil.":                  "; beginning and ending with a letter or digit",
		"hil..downlink":         "; no dot next to a dot or hyphen",
		"hil.-downlink":         "; no dot next to a dot or hyphen",
		"hil-.downlink":         "; no dot next to a dot or hyphen",
		"10.0.0.1":              "; not an IP address",
	} {
		want := `"` + name + `" is not a valid S3 bucket name (` + rule + why + ")"
		if err := checkBucket(name); err == nil || err.Error() != want {
			t.Errorf("checkBucket(%q) = %v, want %s", name, err, want)
		}
	}
}

func TestDuration(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.D.D() != 90*time.Second || v.D.String() != "1m30s" {
		t.Errorf("d: 1m30s decoded as %v (%s)", v.D.D(), v.D)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 1m30s\n" {
		t.Errorf("Marshal = %q, %v; want %q", out, err, "d: 1m30s\n")
	}
	err = yaml.Unmarshal([]byte("d: 15\n"), &v)
	if want := `"15" is not a duration; ` + wantDuration; err == nil || err.Error() != want {
		t.Errorf("d: 15 gave error %v, want %s", err, want)
	}
}
