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
	benchKeys    = "name, satellite, signaling, store, boards, boards_dir, timing, downlink, payload_interface, tags, network"
	storeKeys    = "kind, endpoint, secure, region, bucket, prefix, access_key_env, secret_key_env"
	downlinkKeys = "topics, routes, ttl, uploads, retry, link"
	boardKeys    = "name, address, ssh, power, boot_timeout, nic, oort, payload_interface"
	piKeys       = "listen, tls, health_check, call_timeout, deadline_unit, orbit"
	appKeys      = "key, app_id, callback, hw_id"
	wantDuration = `want a number and a unit, like "15s", "500ms" or "2m"`
	wantName     = "want letters, digits, dots, hyphens and underscores, starting with a letter or digit"
	wantPrefix   = `want slash-separated names, e.g. "customer/a"`
	wantHostKey  = `want the payload's public host key as one authorized_keys line, e.g. "ssh-ed25519 AAAA... comment"`
	wantTopic    = "want letters, digits, hyphens and underscores, e.g. images"
	wantUploads  = "want a whole number of uploads at once, at least 1, e.g. 4"
	wantRate     = `want bit/s as a whole number or with a unit, like 9600, "250kbit/s", "1.5Mbit/s" or "10Gbit/s" (k, M, G are 1e3, 1e6, 1e9; bps, kbps, Mbps, Gbps and kbit work too); 0 for no limit`
	wantSize     = `want bytes as a whole number or with a unit, like 65536, "512B", "100MB", "64KiB" or "1GiB" (KB, MB, GB count in 1000s; KiB, MiB, GiB in 1024s); 0 for no limit`
	wantLoss     = `want a fraction at least 0 and less than 1, like 0.01, or a percentage like "1%"`
	wantAddrs    = "give each SSH server, OORT agent and app callback server its own address"
	wantListen   = "want an address no board uses, or port 0 for a free port"
	wantAltitude = "want the orbit's altitude in km, a number from 100 to 100000, e.g. 550"
	wantIncl     = "want the orbit's inclination in degrees, a number from 0 to 180, e.g. 97.6"
	wantAppKey   = `want exactly 20 ASCII letters or digits, e.g. "AbCdEfGhIjKlMnOpQrSt"`
	wantKeyField = `want the app's 20-character auth key, e.g. "AbCdEfGhIjKlMnOpQrSt"`
	wantAppID    = "want a whole number from 0 to 999, e.g. 1"
	wantHWID     = "want a whole number from 0 to 2147483647, e.g. 0"
	wantCallback = `give the app's callback server a port of its own, e.g. "192.0.2.10:50053"`
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
	{"bad_store_kind", `:4: store.kind: "gcs" is not a store kind; want embedded, minio or s3`},
	{"bad_bucket", `:7: store.bucket: "Bad_Bucket" is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)`},
	{"bad_bucket_ip", `:4: store.bucket: "192.168.1.1" is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens; not an IP address)`},
	{"prefix_leading_slash", `:5: store.prefix: "/customer/a" starts or ends with a slash; ` + wantPrefix},
	{"prefix_trailing_slash", `:5: store.prefix: "customer/a/" starts or ends with a slash; ` + wantPrefix},
	{"prefix_dotdot", `:5: store.prefix: "customer/../b" has a ".." segment; ` + wantPrefix},
	{"prefix_empty_segment", `:5: store.prefix: "customer//a" has an empty segment ("//"); ` + wantPrefix},
	{"endpoint_not_hostport", `:5: store.endpoint: "minio.lab" is not host:port (missing port in address); want e.g. "minio.lab:9000"`},
	{"endpoint_port_zero", `:5: store.endpoint: "minio.lab:0" has port "0"; want a number from 1 to 65535, e.g. "minio.lab:9000"`},
	{"endpoint_embedded", `:4: store.endpoint: set to "minio.lab:9000", but kind embedded picks its own loopback endpoint; remove it or set store.kind: s3`},
	{"endpoint_minio", `:5: store.endpoint: set to "127.0.0.1:9000", but kind minio picks its own loopback endpoint; remove it or set store.kind: s3`},
	{"bad_env_name", `:5: store.access_key_env: "HIL-KEY" is not an environment variable name; want letters, digits and underscores, e.g. HIL_S3_ACCESS_KEY`},
	{"zero_configure_timeout", `:7: timing.configure_timeout: is 0s; want more than zero, e.g. "15s"`},
	{"negative_pre_buffer", `:7: timing.pre_buffer: is -1s; want zero or more, e.g. "0s"`},

	// The boards the bench names.
	{"board_bad_name", `:5: boards[0]: "../alpha" is not a valid board name; ` + wantName + `, e.g. refpayload`},
	{"board_twice", `:8: boards[2]: board "alpha" is already named at boards[0] (line 6); name each board once`},
	{"board_missing", `:5: boards[1]: board "nope": testdata/boards/nope.yaml does not exist; want a board file there (boards_dir is "../boards")`},
	{"boards_dir_missing", `:5: boards[0]: board "alpha": testdata/bords/alpha.yaml does not exist; want a board file there (boards_dir is "../bords")`},

	// downlink: its shape.
	{"downlink_not_mapping", `:6: downlink: got a list, want a mapping with keys ` + downlinkKeys},
	{"unknown_downlink_key", `:7: downlink.upload: unknown key "upload"; want one of ` + downlinkKeys},
	{"ttl_not_mapping", `:7: downlink.ttl: got the string "9000s", want a mapping with keys urgent, bulk, surplus`},
	{"contacts_unknown_key", `:9: downlink.link.contacts.every: unknown key "every"; want one of start, duration, period`},

	// downlink.topics.
	{"topics_not_list", `:7: downlink.topics: got the string "images", want a list of OORT topics, e.g. [images, telemetry]`},
	{"topic_not_string", `:9: downlink.topics[1]: got a mapping, want an OORT topic, e.g. images`},
	{"bad_topic", `:7: downlink.topics[1]: "img/raw" is not a valid OORT topic; ` + wantTopic},
	{"topic_twice", `:10: downlink.topics[2]: topic "images" is already listed at downlink.topics[0] (line 8); list each topic once`},

	// downlink.routes.
	{"routes_not_list", `:8: downlink.routes: got a mapping, want a list of routes, e.g. [{topic: images, bucket: hil-images}]`},
	{"route_not_mapping", `:8: downlink.routes[0]: got the string "images", want a mapping with keys topic, bucket, prefix`},
	{"route_missing_topic", `:9: downlink.routes[1].topic: missing; want the OORT topic to route, e.g. images`},
	{"route_empty_topic", `:8: downlink.routes[0].topic: is empty; want the OORT topic to route, e.g. images`},
	{"route_unknown_key", `:9: downlink.routes[0].buckett: unknown key "buckett"; want one of topic, bucket, prefix`},
	{"route_bad_topic", `:8: downlink.routes[0].topic: "img.raw" is not a valid OORT topic; ` + wantTopic},
	{"route_twice", `:11: downlink.routes[2].topic: topic "images" already has a route at downlink.routes[0] (line 8); route each topic once`},
	{"route_bad_bucket", `:9: downlink.routes[0].bucket: "HIL_images" is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)`},
	{"route_bad_prefix", `:9: downlink.routes[0].prefix: "customer/a/" starts or ends with a slash; ` + wantPrefix},

	// downlink.ttl, uploads and retry.
	{"ttl_negative", `:9: downlink.ttl.bulk: is -1s; want zero or more, e.g. "0s"`},
	{"ttl_bad_duration", `:8: downlink.ttl.surplus: "2 days" is not a duration; ` + wantDuration},
	{"uploads_zero", `:7: downlink.uploads: is 0; want at least 1, e.g. 4`},
	{"uploads_fraction", `:7: downlink.uploads: got the number 2.5, ` + wantUploads},
	{"uploads_string", `:7: downlink.uploads: got the string "four", ` + wantUploads},
	{"uploads_quoted", `:7: downlink.uploads: got the string "4", ` + wantUploads},
	{"retry_min_zero", `:8: downlink.retry.min: is 0s; want more than zero, e.g. "100ms"`},
	{"retry_max_less", `:9: downlink.retry.max: is 50ms, less than retry.min 200ms; want at least retry.min, e.g. "200ms"`},
	{"retry_min_over_default", `:8: downlink.retry.min: is 10s, more than retry.max, which defaults to 5s; want at most 5s, or set downlink.retry.max to at least 10s`},

	// downlink.link.
	{"rate_bad", `:8: downlink.link.rate: "fast" is not a bit rate; ` + wantRate},
	{"rate_bad_unit", `:8: downlink.link.rate: "1mbit/s" is not a bit rate (unknown unit "mbit/s"); ` + wantRate},
	{"rate_negative", `:8: downlink.link.rate: "-9600" is negative; ` + wantRate},
	{"rate_fraction", `:8: downlink.link.rate: "1.5bit/s" is not a whole number of bit/s; ` + wantRate},
	{"rate_too_large", `:8: downlink.link.rate: "10000000000Gbit/s" is too large (at most 9223372036854775807 bit/s); ` + wantRate},
	{"rate_mapping", `:8: downlink.link.rate: got a mapping, ` + wantRate},
	{"budget_bad", `:8: downlink.link.budget: "lots" is not a size; ` + wantSize},
	{"budget_bad_unit", `:8: downlink.link.budget: "64kib" is not a size (unknown unit "kib"); ` + wantSize},
	{"budget_negative", `:8: downlink.link.budget: "-1MB" is negative; ` + wantSize},
	{"budget_fraction", `:8: downlink.link.budget: "0.5B" is not a whole number of bytes; ` + wantSize},
	{"loss_one", `:8: downlink.link.loss: "1" is 1 or more: every frame would be lost; ` + wantLoss},
	{"loss_percent_100", `:8: downlink.link.loss: "100%" is 100% or more: every frame would be lost; ` + wantLoss},
	{"loss_negative", `:8: downlink.link.loss: "-0.1" is negative; ` + wantLoss},
	{"loss_bad", `:8: downlink.link.loss: "often" is not a number or a percentage; ` + wantLoss},
	{"loss_list", `:8: downlink.link.loss: got a list, ` + wantLoss},
	{"latency_negative", `:8: downlink.link.latency: is -5ms; want zero or more, e.g. "0s"`},
	{"contacts_start_negative", `:9: downlink.link.contacts.start: is -1m0s; want zero or more, e.g. "0s"`},
	{"contacts_duration_negative", `:9: downlink.link.contacts.duration: is -1m0s; want zero or more, e.g. "0s"`},
	{"contacts_period_missing", `:8: downlink.link.contacts.period: missing; contacts.duration 10m0s needs a period, from one contact's start to the next's, at least the duration, e.g. "1h35m0s"`},
	{"contacts_period_short", `:10: downlink.link.contacts.period: is 5m0s, less than contacts.duration 10m0s; want at least the duration, e.g. "1h35m0s"`},
	{"contacts_period_long_contact", `:10: downlink.link.contacts.period: is 0s, less than contacts.duration 2h0m0s; want at least the duration, e.g. "2h0m0s"`},
	{"contacts_period_alone", `:9: downlink.link.contacts.period: is 1h30m0s, but contacts.duration is 0s (always in contact); set contacts.duration too, or remove period`},

	// payload_interface: its shape.
	{"pi_not_mapping", `:6: payload_interface: got the string "127.0.0.1:0", want a mapping with keys ` + piKeys},
	{"pi_unknown_key", `:8: payload_interface.tsl: unknown key "tsl"; want one of ` + piKeys},
	{"health_check_unknown_key", `:8: payload_interface.health_check.every: unknown key "every"; want one of interval, failures`},
	{"orbit_unknown_key", `:8: payload_interface.orbit.altitude: unknown key "altitude"; want one of altitude_km, inclination_deg`},
	{"orbit_not_mapping", `:7: payload_interface.orbit: got the number 550, want a mapping with keys altitude_km, inclination_deg`},

	// payload_interface.listen and tls.
	{"listen_bad", `:7: payload_interface.listen: "localhost" is not host:port (missing port in address); want e.g. ":50051"`},
	{"listen_bad_port", `:7: payload_interface.listen: ":99999" has port "99999"; want a number from 0 to 65535, e.g. ":50051"`},
	{"listen_empty", `:7: payload_interface.listen: "" is not host:port (missing port in address); want e.g. ":50051"`},
	{"listen_list", `:7: payload_interface.listen: got a list, want host:port the Payload Controller serves on, e.g. ":50051" or "127.0.0.1:0"`},
	{"tls_not_bool", `:7: payload_interface.tls: got the string "yes", want true or false`},

	// payload_interface: health checks, calls and deadlines.
	{"health_interval_zero", `:8: payload_interface.health_check.interval: is 0s; want more than zero, e.g. "5s"`},
	{"health_interval_bare", `:8: payload_interface.health_check.interval: "5" is not a duration; ` + wantDuration},
	{"failures_zero", `:8: payload_interface.health_check.failures: is 0; want at least 1, e.g. 5`},
	{"failures_fraction", `:8: payload_interface.health_check.failures: got the number 2.5, want a whole number of failed checks in a row, at least 1, e.g. 5`},
	{"call_timeout_negative", `:7: payload_interface.call_timeout: is -1s; want more than zero, e.g. "3s"`},
	{"deadline_unit_bad", `:7: payload_interface.deadline_unit: "h" is not a deadline unit; want s or ms`},
	{"deadline_unit_list", `:7: payload_interface.deadline_unit: got a list, want s or ms`},

	// payload_interface.orbit: finite numbers in range.
	{"altitude_low", `:8: payload_interface.orbit.altitude_km: is 99.5; want from 100 to 100000, e.g. 550`},
	{"altitude_high", `:8: payload_interface.orbit.altitude_km: is 100001; want from 100 to 100000, e.g. 550`},
	{"altitude_string", `:8: payload_interface.orbit.altitude_km: got the string "high", ` + wantAltitude},
	{"altitude_quoted", `:8: payload_interface.orbit.altitude_km: got the string "550", ` + wantAltitude},
	{"altitude_inf", `:8: payload_interface.orbit.altitude_km: got .inf, which is not a finite number; ` + wantAltitude},
	{"inclination_nan", `:8: payload_interface.orbit.inclination_deg: got .nan, which is not a finite number; ` + wantIncl},
	{"inclination_negative", `:8: payload_interface.orbit.inclination_deg: is -1; want from 0 to 180, e.g. 97.6`},
	{"inclination_over", `:8: payload_interface.orbit.inclination_deg: is 180.5; want from 0 to 180, e.g. 97.6`},

	// payload_interface.listen against the boards' addresses: the bench's
	// listen is at fault when it is written.
	{"listen_on_ssh", `:7: payload_interface.listen: "127.0.0.1:2222" takes the port of the SSH address "127.0.0.1:2222" of board "beta" (testdata/boards/beta.yaml:2); ` + wantListen},
	{"listen_any_on_oort", `:7: payload_interface.listen: ":2402" takes the port of the OORT address "127.0.0.1:2402" of board "kappa" (testdata/boards/kappa.yaml:11); ` + wantListen},
	{"listen_any_on_callback", `:7: payload_interface.listen: "0.0.0.0:2403" takes the port of the app callback address "127.0.0.1:2403" of board "kappa" (testdata/boards/kappa.yaml:15); ` + wantListen},

	// network: the bench's own Ethernet.
	{"net_bad_addr", `:7: network.bus_address: "10.42.0.1" is not an address with a prefix length; want e.g. "10.42.0.1/24"`},
	{"net_v6", `:7: network.bus_address: "fd00::1/64" is not IPv4; want e.g. "10.42.0.1/24"`},
	{"net_prefix31", `:7: network.bus_address: "10.42.0.1/31" leaves no room for payloads; want a prefix length of at most 30, e.g. "10.42.0.1/24"`},
	{"net_network_addr", `:7: network.bus_address: "10.42.0.0/24" is the network's own address; want a host address in it, e.g. "10.42.0.1/24"`},
	{"net_missing_addr", `:6: network.bus_address: missing; want the bus's IPv4 address and prefix length on the bench bridge, e.g. "10.42.0.1/24"`},
	{"net_jitter", `:8: network.shape.jitter: is 20ms, more than shape.delay 10ms; want at most the delay`},
	{"net_loss", `:8: network.shape.loss: "100%" is 100% or more: every frame would be lost; want a fraction at least 0 and less than 1, like 0.01, or a percentage like "1%"`},
	{"net_rate", `:8: network.shape.rate: "fast" is not a bit rate; want bit/s as a whole number or with a unit, like 9600, "250kbit/s", "1.5Mbit/s" or "10Gbit/s" (k, M, G are 1e3, 1e6, 1e9; bps, kbps, Mbps, Gbps and kbit work too); 0 for no limit`},
	{"net_listen_loopback", `:9: payload_interface.listen: "127.0.0.1:0" is not on the bench network, where payload apps dial it; want the bus address, e.g. "10.42.0.1:50051", or no host, e.g. ":50051"`},
	{"net_unknown", `:8: network.nic: unknown key "nic"; want one of bus_address, shape`},

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
		{"board_invalid", `testdata/boards/port0_relay.yaml:2: address: port 0 (a free port the bench picks) needs power kind process or a simulated relay, whose payload the bench starts itself; power.kind is "relay": give the payload's real port, e.g. "192.0.2.10:22"`},
		{"duplicate_address", `testdata/boards/beta-twin.yaml:2: address: board "beta-twin" has address "127.0.0.1:2222", already used by board "beta" (testdata/boards/beta.yaml:2) on bench testdata/benches/duplicate_address.yaml; give each board its own address`},
		{"oort_twice", `testdata/boards/delta-twin.yaml:11: oort.address: board "delta-twin" has OORT address "127.0.0.1:2005", already the OORT address of board "delta" (testdata/boards/delta.yaml:11) on bench testdata/benches/oort_twice.yaml; ` + wantAddrs},
		{"oort_on_ssh", `testdata/boards/epsilon.yaml:11: oort.address: board "epsilon" has OORT address "127.0.0.1:2222", already the SSH address of board "beta" (testdata/boards/beta.yaml:2) on bench testdata/benches/oort_on_ssh.yaml; ` + wantAddrs},
		{"ssh_on_oort", `testdata/boards/zeta.yaml:2: address: board "zeta" has SSH address "127.0.0.1:2005", already the OORT address of board "delta" (testdata/boards/delta.yaml:11) on bench testdata/benches/ssh_on_oort.yaml; ` + wantAddrs},

		// Payload apps across boards.
		{"board_app_invalid", `testdata/boards/app_key_symbol.yaml:11: payload_interface.key: has "-" at character 11; ` + wantAppKey},
		{"app_key_twice", `testdata/boards/kappa-key.yaml:11: payload_interface.key: board "kappa-key" has the key of board "kappa" (testdata/boards/kappa.yaml:13) on bench testdata/benches/app_key_twice.yaml; give each payload app its own key`},
		{"app_callback_twice", `testdata/boards/kappa-callback.yaml:12: payload_interface.callback: board "kappa-callback" has app callback address "127.0.0.1:2403", already the app callback address of board "kappa" (testdata/boards/kappa.yaml:15) on bench testdata/benches/app_callback_twice.yaml; ` + wantAddrs},
		{"callback_on_ssh", `testdata/boards/mu.yaml:12: payload_interface.callback: board "mu" has app callback address "127.0.0.1:2222", already the SSH address of board "beta" (testdata/boards/beta.yaml:2) on bench testdata/benches/callback_on_ssh.yaml; ` + wantAddrs},
		{"ssh_on_callback", `testdata/boards/kappa-ssh.yaml:2: address: board "kappa-ssh" has SSH address "127.0.0.1:2403", already the app callback address of board "kappa" (testdata/boards/kappa.yaml:15) on bench testdata/benches/ssh_on_callback.yaml; ` + wantAddrs},
		// alpha runs no app, so hw_id 0 is free.
		{"app_hw_id_twice", `testdata/boards/kappa-hw.yaml:13: payload_interface.hw_id: board "kappa-hw" has hw_id 1, already the hw_id of board "kappa" (testdata/boards/kappa.yaml:16) on bench testdata/benches/app_hw_id_twice.yaml; give each board that runs an app its own hw_id, e.g. 0`},
		// An hw_id left to its default is placed at the section.
		{"app_hw_id_default_twice", `testdata/boards/lambda-twin.yaml:10: payload_interface.hw_id: board "lambda-twin" has hw_id 0 (the default), already the hw_id of board "lambda" (testdata/boards/lambda.yaml:11) on bench testdata/benches/app_hw_id_default_twice.yaml; give each board that runs an app its own hw_id, e.g. 1`},
		// When the bench leaves listen to its default, the board is at fault.
		// Boards against the bench's network.
		{"qemu_no_network", `testdata/benches/qemu_no_network.yaml:5: boards[0]: board "qemu_good" has power kind qemu, whose Ethernet is a tap on the bench bridge, but bench testdata/benches/qemu_no_network.yaml has no network section; add one, e.g. network: {bus_address: 10.42.0.1/24}`},
		{"net_off", `testdata/boards/qemu_off_net.yaml:2: address: "10.43.0.2:22" is not on network 10.42.0.0/24 of bench testdata/benches/net_off.yaml; want an address in it, e.g. "10.42.0.2:22"`},
		{"net_bus_addr", `testdata/boards/qemu_bus_addr.yaml:2: address: "10.42.0.1:22" is the bus's own address on bench testdata/benches/net_bus_addr.yaml; want another address in 10.42.0.0/24, e.g. "10.42.0.2:22"`},
		{"net_port0", `testdata/boards/qemu_port0.yaml:2: address: port 0 (a free port the bench picks) needs power kind process or a simulated relay, whose payload the bench starts itself; power.kind is "qemu": give the payload's real port, e.g. "192.0.2.10:22"`},
		{"net_relay", `testdata/boards/relay_good.yaml:8: power.kind: is relay: a real board, which joins the network of bench testdata/benches/net_relay.yaml by the host NIC it is cabled to; set nic, e.g. nic: enp3s0`},
		{"net_sim_relay", `testdata/boards/relay_sim_net.yaml:13: power.relay.simulate: is true, but bench testdata/benches/net_sim_relay.yaml has a network, which does not join a simulated relay's payload; use power kind process, or a real relay board with nic`},
		{"net_nic_twice", `testdata/boards/nic_exec_twin.yaml:7: nic: board "nic_exec_twin" has nic enp4s0.100, already that of board "nic_exec" (testdata/boards/nic_exec.yaml) on bench testdata/benches/net_nic_twice.yaml; cable each board to a NIC of its own`},
		{"nic_no_network", `testdata/boards/nic_exec.yaml:7: nic: is enp4s0.100, but bench testdata/benches/nic_no_network.yaml has no network section, whose bridge it would join; remove it, or add one, e.g. network: {bus_address: 10.42.0.1/24}`},
		{"net_loopback_board", `testdata/boards/alpha.yaml:2: address: "127.0.0.1:0" has port 0, but on bench testdata/benches/net_loopback_board.yaml, which has a network, the payload serves on fixed ports; give a port, e.g. "10.42.0.2:22"`},
		{"listen_default_on_callback", `testdata/boards/nu.yaml:12: payload_interface.callback: board "nu" has app callback address "localhost:50051", which takes the port of the Payload Controller's default listen address ":50051" on bench testdata/benches/listen_default_on_callback.yaml; give the board another port, or set payload_interface.listen on the bench`},
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
		{"missing_power", `:1: power: missing; want a mapping with keys kind, host_key, off_time, watch, relay, exec, qemu`},
		{"missing_power_host_key", `:7: power.host_key: missing; power kind process needs the payload's private host key file, relative to the board file, e.g. keys/refpayload_host_ed25519`},
		{"bad_address", `:2: address: "payload.local" is not host:port (missing port in address); want e.g. "192.0.2.10:22"`},
		{"bad_port", `:2: address: "192.0.2.10:ssh" has port "ssh"; want a number from 0 to 65535, e.g. "192.0.2.10:22"`},
		{"no_host", `:2: address: ":22" has no host; want e.g. "192.0.2.10:22"`},
		{"port0_relay", `:2: address: port 0 (a free port the bench picks) needs power kind process or a simulated relay, whose payload the bench starts itself; power.kind is "relay": give the payload's real port, e.g. "192.0.2.10:22"`},
		{"qemu_smp", `:11: power.qemu.smp: is 9; want from 1 to 8, e.g. 2`},
		{"qemu_memory", `:11: power.qemu.memory: "256" is not a memory size QEMU can give the payload here; want a whole number and M or G, from "128M" to "8G", e.g. "256M"`},
		{"qemu_with_exec", `:10: power.qemu: is set, but power.kind is process; remove it, or set power.kind: qemu`},
		{"nic_bad_name", `:7: nic: nic name "enp3s0 (left)" has ' ': use letters, digits, '.', '_' and '-'; want the host's network interface the board is cabled to, e.g. enp3s0`},
		{"nic_on_qemu", `:7: nic: is set, but the bench starts this board's payload itself (power kind qemu) behind a link of its own; remove it (nic is for a real board: power kind relay or exec)`},
		{"qemu_no_host_key", `:7: power.host_key: missing; power kind qemu needs the payload's private host key file, relative to the board file, e.g. keys/refpayload_host_ed25519`},
		{"bad_power_kind", `:8: power.kind: "pdu" is not a power kind; want process, relay, exec or qemu`},
		{"bad_host_key", `:6: ssh.host_key: "ssh-ed25519 notbase64" is not an authorized_keys line (ssh: no key found; last parsing error for ignored line: illegal base64 data at input byte 8); ` + wantHostKey},
		{"host_key_options", `:6: ssh.host_key: has options "from=\"10.0.0.1\""; ` + wantHostKey},
		{"missing_key_file", `:5: ssh.key: keys/nope (testdata/boards/keys/nope) does not exist; want the bus's private key file, relative to the board file`},
		{"key_is_dir", `:5: ssh.key: keys (testdata/boards/keys) is not a regular file; want the bus's private key file`},
		{"missing_host_key_file", `:9: power.host_key: keys/nope (testdata/boards/keys/nope) does not exist; want the payload's private host key file, relative to the board file`},
		{"bad_boot_timeout", `:10: boot_timeout: "10" is not a duration; ` + wantDuration},
		{"zero_boot_timeout", `:10: boot_timeout: is 0s; want more than zero, e.g. "30s"`},
		{"unknown_board_key", `:10: orrt: unknown key "orrt"; want one of ` + boardKeys},
		{"board_list", `:1: got a list, want a mapping with keys ` + boardKeys},
		{"oort_not_mapping", `:10: oort: got the string "192.0.2.10:2005", want a mapping with keys address`},
		{"oort_unknown_key", `:11: oort.port: unknown key "port"; want one of address`},
		{"oort_missing_address", `:10: oort.address: missing; want host:port of the payload's OORT agent, e.g. "192.0.2.10:2005"`},
		{"oort_empty_address", `:11: oort.address: is empty; want host:port of the payload's OORT agent, e.g. "192.0.2.10:2005"`},
		{"oort_bad_address", `:11: oort.address: "payload.local" is not host:port (missing port in address); want e.g. "192.0.2.10:2005"`},
		{"oort_bad_port", `:11: oort.address: "192.0.2.10:99999" has port "99999"; want a number from 0 to 65535, e.g. "192.0.2.10:2005"`},
		{"oort_no_host", `:11: oort.address: ":2005" has no host; want e.g. "192.0.2.10:2005"`},
		{"oort_port0_relay", `:11: oort.address: port 0 (a free port the bench picks) needs power kind process or a simulated relay, whose payload the bench starts itself; power.kind is "relay": give the agent's real port, e.g. "192.0.2.10:2005"`},
		{"oort_same_as_ssh", `:11: oort.address: "payload.LAB:22" is also the board's SSH address (line 2); give the OORT agent a port of its own, e.g. "192.0.2.10:2005"`},

		// power: relay and exec.
		{"relay_missing_section", `:7: power.relay: missing; power kind relay needs the relay section`},
		{"relay_bad_protocol", `:10: power.relay.protocol: "sainsmart" is not a relay protocol; want lcus, numato, kmtronic, denkovi or devantech`},
		{"relay_no_port", `:9: power.relay.port: missing; give the board's port by a stable path, /dev/serial/by-path/... or /dev/serial/by-id/..., or its USB serial number`},
		{"relay_ttyusb", `:11: power.relay.port: /dev/ttyUSB0 names a port by plug-in order, which changes when boards are replugged or the host reboots; use its /dev/serial/by-path/... link (or /dev/serial/by-id/..., or the USB serial number)`},
		{"relay_lcus_serial", `:11: power.relay.serial: an lcus board (CH340) has no USB serial number, so "A50285BI" cannot name it; give its port by a /dev/serial/by-path/... path`},
		{"relay_port_and_serial", `:11: power.relay.port: both a path (/dev/serial/by-path/usb-0:2:1.0) and a USB serial number (A50285BI) are given; give one`},
		{"relay_channel_range", `:12: power.relay.channel: channel 8 is out of range: an 8-channel numato board has channels 0 to 7 (numato counts from 0)`},
		{"relay_channel_zero", `:12: power.relay.channel: channel 0 is out of range: an 8-channel kmtronic board has channels 1 to 8`},
		{"relay_bad_size", `:12: power.relay.channels: 3 is not a size kmtronic boards are made in; want 1, 2, 4 or 8`},
		{"relay_missing_channel", `:9: power.relay.channel: missing; want the relay that powers this payload, e.g. 1`},
		{"relay_simulate_port", `:12: power.relay.port: is set, but relay.simulate is true: the bench makes the simulated board's port itself; remove one of the two`},
		{"relay_simulate_no_host_key", `:7: power.host_key: missing; a simulated relay (relay.simulate: true) starts the reference payload, and needs the payload's private host key file, relative to the board file, e.g. keys/refpayload_host_ed25519`},
		{"relay_host_key", `:9: power.host_key: is set, but power kind relay does not start the reference payload; remove it (only kinds process and qemu, and a relay with simulate: true, use it)`},
		{"relay_with_exec", `:13: power.exec: is set, but power.kind is relay; remove it, or set power.kind: exec`},
		{"relay_negative_gap", `:13: power.relay.gap: is -5ms; want zero or more, e.g. "0s"`},
		{"relay_invert_string", `:13: power.relay.invert: got the string "yes", want true for normally-closed wiring, else false`},
		{"exec_missing_section", `:7: power.exec: missing; power kind exec needs the exec section`},
		{"exec_missing_off", `:9: power.exec.off: missing; want a shell command that switches the payload off, e.g. "pdu-ctl outlet 3 off"`},
		{"exec_empty_on", `:10: power.exec.on: is empty; want a shell command that switches the payload on, e.g. "pdu-ctl outlet 3 on"`},
		{"exec_zero_timeout", `:12: power.exec.timeout: is 0s; want more than zero, e.g. "10s"`},
		{"power_zero_off_time", `:9: power.off_time: is 0s; want more than zero, e.g. "2s"`},
		{"process_with_relay", `:10: power.relay: is set, but power.kind is process; remove it, or set power.kind: relay`},

		// payload_interface: its shape.
		{"app_not_mapping", `:10: payload_interface: got the string "AbCdEfGhIjKlMnOpQrSt", want a mapping with keys ` + appKeys},
		{"app_unknown_key", `:12: payload_interface.appid: unknown key "appid"; want one of ` + appKeys},
		{"app_missing_key", `:10: payload_interface.key: missing; ` + wantKeyField},

		// payload_interface.key: never quoted, since it authenticates the app.
		{"app_empty_key", `:11: payload_interface.key: is empty; ` + wantKeyField},
		{"app_key_list", `:11: payload_interface.key: got a list, ` + wantKeyField},
		{"app_key_short", `:11: payload_interface.key: has 19 characters; ` + wantAppKey},
		{"app_key_long", `:11: payload_interface.key: has 21 characters; ` + wantAppKey},
		{"app_key_symbol", `:11: payload_interface.key: has "-" at character 11; ` + wantAppKey},
		{"app_key_non_ascii", `:11: payload_interface.key: has "é" at character 11; ` + wantAppKey},

		// payload_interface.app_id and hw_id.
		{"app_id_1000", `:12: payload_interface.app_id: is 1000; want from 0 to 999, e.g. 1`},
		{"app_id_negative", `:12: payload_interface.app_id: is -1; want from 0 to 999, e.g. 1`},
		{"app_id_string", `:12: payload_interface.app_id: got the string "one", ` + wantAppID},
		{"hw_id_negative", `:12: payload_interface.hw_id: is -1; want from 0 to 2147483647, e.g. 0`},
		{"hw_id_too_large", `:12: payload_interface.hw_id: is 2147483648; want from 0 to 2147483647, e.g. 0`},
		{"hw_id_fraction", `:12: payload_interface.hw_id: got the number 1.5, ` + wantHWID},

		// payload_interface.callback.
		{"callback_bad", `:12: payload_interface.callback: "payload.local" is not host:port (missing port in address); want e.g. "192.0.2.10:50053"`},
		{"callback_no_host", `:12: payload_interface.callback: ":50053" has no host; want e.g. "192.0.2.10:50053"`},
		{"callback_bad_port", `:12: payload_interface.callback: "192.0.2.10:70000" has port "70000"; want a number from 0 to 65535, e.g. "192.0.2.10:50053"`},
		{"callback_port0_relay", `:12: payload_interface.callback: port 0 (a free port the bench picks) needs power kind process or a simulated relay, whose payload the bench starts itself; power.kind is "relay": give the app's real port, e.g. "192.0.2.10:50053"`},
		{"callback_same_as_ssh", `:12: payload_interface.callback: "192.0.2.10:22" is also the board's SSH address (line 2); ` + wantCallback},
		{"callback_same_as_oort", `:14: payload_interface.callback: "192.0.2.10:2005" is also the board's OORT address (line 11); ` + wantCallback},
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
			Power:       Power{Kind: "process", HostKey: "testdata/boards/keys/host", OffTime: Duration(2 * time.Second), Watch: Duration(time.Second)},
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
		Downlink:         defaultDownlink,
		PayloadInterface: defaultPayloadInterface,
		Boards: []*Board{
			board("alpha", "127.0.0.1:0", 30*time.Second),
			board("beta", "127.0.0.1:2222", 10*time.Second),
		},
	}
	checkBench(t, got, want)
}

// defaultDownlink is the downlink of a bench that leaves it out.
var defaultDownlink = Downlink{
	TTL:     TTL{Urgent: Duration(9000 * time.Second), Bulk: Duration(43200 * time.Second), Surplus: Duration(172800 * time.Second)},
	Uploads: 4,
	Retry:   Backoff{Min: Duration(100 * time.Millisecond), Max: Duration(5 * time.Second)},
}

// defaultPayloadInterface is the payload_interface of a bench that leaves
// it out: the contract's port and the bench's defaults.
var defaultPayloadInterface = PayloadInterface{
	Listen:       ":50051",
	HealthCheck:  HealthCheck{Interval: Duration(5 * time.Second), Failures: 5},
	CallTimeout:  Duration(3 * time.Second),
	DeadlineUnit: "s",
	Orbit:        Orbit{AltitudeKm: 550, InclinationDeg: 97.6},
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
		Downlink: Downlink{
			Topics: []string{"images", "telemetry", "hk_raw-2"},
			Routes: []Route{
				{Topic: "images", Bucket: "hil-images", Prefix: "customer/b/pictures"},
				{Topic: "telemetry", Bucket: "hil.telemetry", Prefix: "tm"},
			},
			TTL:     TTL{Urgent: Duration(10 * time.Minute), Bulk: Duration(time.Hour), Surplus: 0},
			Uploads: 16,
			Retry:   Backoff{Min: Duration(250 * time.Millisecond), Max: Duration(time.Minute)},
			Link: Link{
				Rate:    1_500_000,
				Latency: Duration(120 * time.Millisecond),
				Loss:    0.025,
				Budget:  64 << 10,
				Contacts: Contacts{
					Start:    Duration(30 * time.Second),
					Duration: Duration(8 * time.Minute),
					Period:   Duration(95 * time.Minute),
				},
			},
		},
		PayloadInterface: PayloadInterface{
			Listen:       "192.0.2.1:50052",
			TLS:          true,
			HealthCheck:  HealthCheck{Interval: Duration(2 * time.Second), Failures: 3},
			CallTimeout:  Duration(500 * time.Millisecond),
			DeadlineUnit: "ms",
			Orbit:        Orbit{AltitudeKm: 400, InclinationDeg: 51.6},
		},
		Boards: []*Board{{
			File:        "testdata/moreboards/gamma.yaml",
			Name:        "gamma",
			Address:     "192.0.2.10:22",
			SSH:         SSH{User: "signaling", Key: "testdata/boards/keys/bus", HostKey: testHostKey},
			Power:       Power{Kind: "process", HostKey: "testdata/boards/keys/host", OffTime: Duration(2 * time.Second), Watch: Duration(time.Second)},
			BootTimeout: Duration(90 * time.Second),
			OORT:        OORT{Address: "192.0.2.10:2005"},
			PayloadInterface: BoardPayloadInterface{
				Key:      "GammaKey0123456789yz",
				AppID:    7,
				Callback: "192.0.2.10:50099",
				HWID:     3,
			},
		}},
	}
	checkBench(t, got, want)
}

// Routes without a bucket or prefix get store.bucket and
// <store.prefix>/oort/<topic>; numbers without units are bit/s and bytes;
// downlink keys left out keep their defaults.
func TestLoadRouteDefaults(t *testing.T) {
	tests := []struct {
		file string
		want Downlink
	}{
		{"routes_default", Downlink{
			Topics: []string{},
			Routes: []Route{
				{Topic: "images", Bucket: "hil-downlink", Prefix: "customer/a/oort/images"},
				{Topic: "telemetry", Bucket: "hil-telemetry", Prefix: "customer/a/oort/telemetry"},
				{Topic: "hk", Bucket: "hil-downlink", Prefix: "housekeeping"},
			},
			TTL:     TTL{Urgent: defaultDownlink.TTL.Urgent, Bulk: Duration(2 * time.Hour), Surplus: defaultDownlink.TTL.Surplus},
			Uploads: 1,
			Retry:   Backoff{Min: Duration(time.Second), Max: Duration(time.Second)},
			Link: Link{
				Rate:     9600,
				Loss:     0.01,
				Budget:   1_000_000,
				Contacts: Contacts{Duration: Duration(95 * time.Minute), Period: Duration(95 * time.Minute)},
			},
		}},
		{"routes_no_prefix", Downlink{
			Routes:  []Route{{Topic: "images", Bucket: "hil-downlink", Prefix: "oort/images"}},
			TTL:     defaultDownlink.TTL,
			Uploads: defaultDownlink.Uploads,
			Retry:   defaultDownlink.Retry,
			Link:    Link{Rate: 250_000, Budget: 1_500_000_000},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := Load("testdata/benches/" + tt.file + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b.Downlink, tt.want) {
				t.Errorf("downlink:\n got  %+v\n want %+v", b.Downlink, tt.want)
			}
		})
	}
}

// Port 0 means "any free port", so two boards may both have it, for SSH
// and for OORT.
func TestLoadPortZeroTwice(t *testing.T) {
	for bench, boards := range map[string]int{"port0_twice": 2, "oort_port0_twice": 3} {
		b, err := Load("testdata/benches/" + bench + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Boards) != boards {
			t.Errorf("%s: loaded %d boards, want %d", bench, len(b.Boards), boards)
		}
	}
}

// Boards that run payload apps get their sections' values and defaults;
// boards without the section, or with it empty, run none. Port 0 callbacks
// never clash, and hw_ids name the boards that run apps.
func TestLoadApps(t *testing.T) {
	b, err := Load("testdata/benches/apps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]BoardPayloadInterface{
		"alpha":   {},
		"kappa":   {Key: "KappaKeyAbcdefgh0001", AppID: 2, Callback: "127.0.0.1:2403", HWID: 1},
		"lambda":  {Key: "LambdaKeyAbcdefg0001", AppID: 1},
		"xi":      {Key: "XiKeyAbcdefghijk0001", AppID: 1, Callback: "127.0.0.1:0", HWID: 7},
		"eta":     {},
		"omicron": {}, // payload_interface: with no value
	}
	if len(b.Boards) != len(want) {
		t.Fatalf("loaded %d boards, want %d", len(b.Boards), len(want))
	}
	for _, board := range b.Boards {
		w := want[board.Name]
		if board.PayloadInterface != w {
			t.Errorf("board %s: payload_interface = %+v, want %+v", board.Name, board.PayloadInterface, w)
		}
		if got := board.RunsApp(); got != (w.Key != "") {
			t.Errorf("board %s: RunsApp() = %v, want %v", board.Name, got, !got)
		}
	}
	for hwID, name := range map[int]string{0: "lambda", 1: "kappa", 7: "xi", 2: "", -1: ""} {
		got := b.PowerBoard(hwID)
		switch {
		case name == "" && got != nil:
			t.Errorf("PowerBoard(%d) = board %s, want nil", hwID, got.Name)
		case name != "" && (got == nil || got.Name != name):
			t.Errorf("PowerBoard(%d) = %v, want board %s", hwID, got, name)
		}
	}
}

func TestCookie(t *testing.T) {
	for _, tt := range []struct {
		app  BoardPayloadInterface
		want string
	}{
		{BoardPayloadInterface{Key: "AbCdEfGhIjKlMnOpQrSt", AppID: 1}, "AbCdEfGhIjKlMnOpQrSt001"},
		{BoardPayloadInterface{Key: "AbCdEfGhIjKlMnOpQrSt", AppID: 0}, "AbCdEfGhIjKlMnOpQrSt000"},
		{BoardPayloadInterface{Key: "KappaKeyAbcdefgh0001", AppID: 42}, "KappaKeyAbcdefgh0001042"},
		{BoardPayloadInterface{Key: "KappaKeyAbcdefgh0001", AppID: 999}, "KappaKeyAbcdefgh0001999"},
	} {
		if got := tt.app.Cookie(); got != tt.want {
			t.Errorf("%+v.Cookie() = %q, want %q", tt.app, got, tt.want)
		}
	}
}

// payload_interface keys left out, or written with no value, keep their
// defaults; an explicit inclination of 0 (an equatorial orbit) is kept.
func TestLoadPayloadInterface(t *testing.T) {
	with := func(f func(*PayloadInterface)) PayloadInterface {
		pi := defaultPayloadInterface
		f(&pi)
		return pi
	}
	tests := []struct {
		file string
		want PayloadInterface
	}{
		{"good", defaultPayloadInterface},
		{"pi_partial", with(func(pi *PayloadInterface) { pi.Listen = "127.0.0.1:50051" })},
		{"pi_equatorial", with(func(pi *PayloadInterface) { pi.Orbit.InclinationDeg = 0 })},
		// Another host's port 2222 is not the loopback's, where beta is.
		{"listen_other_host", with(func(pi *PayloadInterface) { pi.Listen = "192.0.2.1:2222" })},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := Load("testdata/benches/" + tt.file + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if b.PayloadInterface != tt.want {
				t.Errorf("payload_interface:\n got  %+v\n want %+v", b.PayloadInterface, tt.want)
			}
		})
	}
}

// A server on every interface takes its port on this host too; port 0
// never clashes.
func TestClashes(t *testing.T) {
	for _, tt := range []struct {
		listen, addr string
		want         bool
	}{
		{":50051", "127.0.0.1:50051", true},
		{":50051", "localhost:50051", true},
		{":50051", "LocalHost:50051", true},
		{":50051", "[::1]:50051", true},
		{"0.0.0.0:50051", "127.0.0.1:50051", true},
		{"[::]:50051", "127.0.0.1:50051", true},
		{"127.0.0.1:50051", "0.0.0.0:50051", true},
		{"127.0.0.1:50051", "127.0.0.1:50051", true},
		{"payload.lab:22", "Payload.LAB:22", true},
		{":50051", "192.0.2.10:50051", false},
		{"127.0.0.1:50051", "127.0.0.2:50051", false},
		{"127.0.0.1:50051", "192.0.2.10:50051", false},
		{":50051", "127.0.0.1:50052", false},
		{":0", "127.0.0.1:0", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{":50051", "", false},
	} {
		if got := clashes(tt.listen, tt.addr); got != tt.want {
			t.Errorf("clashes(%q, %q) = %v, want %v", tt.listen, tt.addr, got, tt.want)
		}
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

// The bench the product ships with loads, with sim-minio's Payload
// Controller the same, and its pinned host key is the public half of the
// host key the reference payload serves.
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
	if pi := b.PayloadInterface; pi.Listen != "127.0.0.1:0" || pi.TLS || pi.DeadlineUnit != "s" {
		t.Errorf("sim bench payload_interface = %+v", pi)
	}
	if app := p.PayloadInterface; !p.RunsApp() || app.AppID != 1 || app.Callback != "127.0.0.1:0" ||
		app.Cookie() != "Whn7hp0LLc9a9SVMMVms001" || b.PowerBoard(0) != p {
		t.Errorf("refpayload payload_interface = %+v", app)
	}
	minio, err := Load("../../benches/sim-minio.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if minio.PayloadInterface != b.PayloadInterface {
		t.Errorf("sim-minio payload_interface = %+v, want sim's %+v", minio.PayloadInterface, b.PayloadInterface)
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

func TestParseBitRate(t *testing.T) {
	for s, want := range map[string]BitRate{
		"0":                   0,
		"9600":                9600,
		"9600bit/s":           9600,
		"9600bit":             9600,
		"9600bps":             9600,
		"9600 bit/s":          9600,
		"250kbit/s":           250_000,
		"250kbps":             250_000,
		"250kbit":             250_000,
		"1Mbit/s":             1_000_000,
		"1.5Mbit/s":           1_500_000,
		"1.5 Mbps":            1_500_000,
		"0.1kbit/s":           100,
		"10Gbit/s":            10_000_000_000,
		"2Gbps":               2_000_000_000,
		"0.000001Gbit":        1000,
		"007Mbit/s":           7_000_000,
		"9223372036854775807": 1<<63 - 1,
	} {
		got, err := ParseBitRate(s)
		if err != nil || got != want {
			t.Errorf("ParseBitRate(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "fast", "1.5", "-1bit/s", "1mbit/s", "1Kbit/s", "1 Mbit/s/s", "1e6", "1,5Mbit/s", ".5Mbit/s", "1Mbit /s", "1MB", "0x10", "9223372036854775808"} {
		if got, err := ParseBitRate(s); err == nil {
			t.Errorf("ParseBitRate(%q) = %d, want an error", s, got)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for s, want := range map[string]ByteSize{
		"0":       0,
		"65536":   65536,
		"512B":    512,
		"512 B":   512,
		"1KB":     1000,
		"1kB":     1000,
		"100MB":   100_000_000,
		"1.5GB":   1_500_000_000,
		"64KiB":   64 << 10,
		"1.5KiB":  1536,
		"2MiB":    2 << 20,
		"1GiB":    1 << 30,
		"0.5GiB":  1 << 29,
		"0.001KB": 1,
	} {
		got, err := ParseByteSize(s)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "lots", "0.5", "0.3B", "-1B", "64kib", "64Kib", "1Mb", "1TB", "1 GiB B", "1e3B"} {
		if got, err := ParseByteSize(s); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", s, got)
		}
	}
}

// String writes the largest unit that keeps the number whole, and the
// parsers read it back; so do YAML's Marshal and Unmarshal.
func TestUnitStrings(t *testing.T) {
	for r, want := range map[BitRate]string{
		0: "0bit/s", 9600: "9600bit/s", 250_000: "250kbit/s", 1_500_000: "1500kbit/s",
		1_000_000: "1Mbit/s", 10_000_000_000: "10Gbit/s", 1001: "1001bit/s",
	} {
		if got := r.String(); got != want {
			t.Errorf("BitRate(%d).String() = %q, want %q", int64(r), got, want)
		}
		if back, err := ParseBitRate(want); err != nil || back != r {
			t.Errorf("ParseBitRate(%q) = %d, %v; want %d", want, back, err, int64(r))
		}
	}
	for n, want := range map[ByteSize]string{
		0: "0B", 512: "512B", 1000: "1KB", 1024: "1KiB", 64 << 10: "64KiB", 1_024_000: "1000KiB",
		100_000_000: "100MB", 1 << 20: "1MiB", 1 << 30: "1GiB", 3_000_000_000: "3GB", 1023: "1023B",
	} {
		if got := n.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(n), got, want)
		}
		if back, err := ParseByteSize(want); err != nil || back != n {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", want, back, err, int64(n))
		}
	}

	type link struct {
		Rate   BitRate  `yaml:"rate"`
		Budget ByteSize `yaml:"budget"`
	}
	var v link
	if err := yaml.Unmarshal([]byte("rate: 9600\nbudget: 64KiB\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v != (link{9600, 64 << 10}) {
		t.Errorf("Unmarshal = %+v, want {9600 65536}", v)
	}
	out, err := yaml.Marshal(link{1_500_000, 100_000_000})
	if want := "rate: 1500kbit/s\nbudget: 100MB\n"; err != nil || string(out) != want {
		t.Errorf("Marshal = %q, %v; want %q", out, err, want)
	}
	err = yaml.Unmarshal([]byte("rate: fast\n"), &v)
	if want := `"fast" is not a bit rate; ` + wantRate; err == nil || err.Error() != want {
		t.Errorf("rate: fast gave error %v, want %s", err, want)
	}
}

func TestParseFraction(t *testing.T) {
	for s, want := range map[string]float64{
		"0": 0, "0.01": 0.01, ".5": 0.5, "1e-3": 0.001, "0.999": 0.999,
		"0%": 0, "1%": 0.01, "2.5%": 0.025, "99.5%": 0.995, "1 %": 0.01,
	} {
		got, err := parseFraction(s)
		if err != nil || got != want {
			t.Errorf("parseFraction(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "%", "often", "1", "1.5", "-0.01", "100%", "150%", "-1%", "NaN", "Inf", "1%%", "0.5 percent"} {
		if got, err := parseFraction(s); err == nil {
			t.Errorf("parseFraction(%q) = %v, want an error", s, got)
		}
	}
}

// TestLoadPowerKinds: the relay and exec sections, with their defaults.
func TestLoadPowerKinds(t *testing.T) {
	tests := []struct {
		file string
		want Power
	}{
		{"relay_good", Power{Kind: "relay", OffTime: Duration(5 * time.Second), Watch: Duration(time.Second),
			Relay: Relay{Protocol: "numato", Serial: "A50285BI", Channels: 8, Channel: 0, Invert: true, Timeout: Duration(time.Second)}}},
		{"exec_good", Power{Kind: "exec", OffTime: Duration(2 * time.Second), Watch: Duration(250 * time.Millisecond),
			Exec: Exec{On: "pdu-ctl outlet 3 on", Off: "pdu-ctl outlet 3 off", Status: "pdu-ctl outlet 3 status", Timeout: Duration(10 * time.Second)}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, _, err := loadBoard("testdata/boards/" + tt.file + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if b.Power != tt.want {
				t.Errorf("power:\n got  %+v\n want %+v", b.Power, tt.want)
			}
			if b.Power.StartsPayload() {
				t.Error("StartsPayload() is true for a board the bench does not start")
			}
		})
	}
}

func TestLoadNetwork(t *testing.T) {
	b, err := Load("testdata/benches/net_good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Network{BusAddress: "10.42.0.1/24", Shape: Shape{Rate: 1e6, Delay: Duration(50 * time.Millisecond), Jitter: Duration(5 * time.Millisecond), Loss: 0.01}}
	if b.Network != want {
		t.Errorf("Network = %+v, want %+v", b.Network, want)
	}
	q := b.Boards[0].Power.QEMU
	wantQ := QEMU{Kernel: "testdata/build/image/Image", Initrd: "testdata/build/image/initramfs.cpio.gz", CPU: "cortex-a57", SMP: 1, Memory: "512M"}
	if q != wantQ {
		t.Errorf("qemu_good: QEMU = %+v, want %+v", q, wantQ)
	}
	if v := b.Boards[1]; v.Power.QEMU != (QEMU{}) || !v.Power.LocalProcess() {
		t.Errorf("veth_good: QEMU = %+v, LocalProcess %v; want no QEMU section and a local process", v.Power.QEMU, v.Power.LocalProcess())
	}

	// Real boards join by the NICs they are cabled to.
	b, err = Load("testdata/benches/net_nic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", "enp3s0", "enp4s0.100"} {
		if got := b.Boards[i].NIC; got != want {
			t.Errorf("board %s: NIC = %q, want %q", b.Boards[i].Name, got, want)
		}
	}
}
