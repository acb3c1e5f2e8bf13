package downlink

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestOutboxKey(t *testing.T) {
	at := time.Date(2021, 9, 6, 4, 32, 29, 0, time.UTC)
	tests := []struct {
		prefix, sat, name string
		want              string
	}{
		// The contract's own example.
		{"a/directory", "FM1", "sdr_syslog", "a/directory/FM1/downlink/2021/09/06/20210906T043229Z_sdr_syslog"},
		{"", "FM1", "x.bin", "FM1/downlink/2021/09/06/20210906T043229Z_x.bin"},
		{"p", "FM1", "..", "p/FM1/downlink/2021/09/06/20210906T043229Z_.."},
		{"p", "FM1", "a/../../b", "p/FM1/downlink/2021/09/06/20210906T043229Z_a%2F..%2F..%2Fb"},
		{"p", "FM1", "line\nbreak", "p/FM1/downlink/2021/09/06/20210906T043229Z_line%0Abreak"},
		{"p", "FM1", "bad\xffutf8", "p/FM1/downlink/2021/09/06/20210906T043229Z_bad%FFutf8"},
		{"p", "FM1", "100%", "p/FM1/downlink/2021/09/06/20210906T043229Z_100%25"},
		{"p", "FM1", "café.txt", "p/FM1/downlink/2021/09/06/20210906T043229Z_café.txt"},
		// Long names are cut at 183 bytes and end in a hash of the whole.
		{"p", "FM1", strings.Repeat("a", 200), "p/FM1/downlink/2021/09/06/20210906T043229Z_" + strings.Repeat("a", 200)},
		{"p", "FM1", strings.Repeat("a", 300), "p/FM1/downlink/2021/09/06/20210906T043229Z_" + strings.Repeat("a", 183) + "~" + sum16(strings.Repeat("a", 300))},
		{"p", "FM1", strings.Repeat("\n", 100), "p/FM1/downlink/2021/09/06/20210906T043229Z_" + strings.Repeat("%0A", 61) + "~" + sum16(strings.Repeat("\n", 100))},
		{"p", "FM1", strings.Repeat("é", 150), "p/FM1/downlink/2021/09/06/20210906T043229Z_" + strings.Repeat("é", 91) + "~" + sum16(strings.Repeat("é", 150))},
	}
	for _, tt := range tests {
		got := OutboxKey(tt.prefix, tt.sat, at, tt.name)
		if got != tt.want {
			t.Errorf("OutboxKey(%q, %q, %q) = %q, want %q", tt.prefix, tt.sat, tt.name, got, tt.want)
		}
		if tt.prefix != "" && !strings.HasPrefix(got, tt.prefix+"/"+tt.sat+"/downlink/") {
			t.Errorf("key %q escapes its prefix", got)
		}
	}
	// Local time is converted: keys are UTC.
	local := at.In(time.FixedZone("X", 5*3600))
	if got := OutboxKey("", "FM1", local, "f"); got != "FM1/downlink/2021/09/06/20210906T043229Z_f" {
		t.Errorf("non-UTC time gave %q", got)
	}
}

func sum16(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// Every name, however hostile, gives a key inside its prefix whose last
// segment fits a file name.
func FuzzOutboxKey(f *testing.F) {
	for _, s := range []string{"x", "../x", "a\nb", "\xff\xfe", strings.Repeat("/", 300)} {
		f.Add(s)
	}
	at := time.Date(2021, 9, 6, 4, 32, 29, 0, time.UTC)
	f.Fuzz(func(t *testing.T, name string) {
		key := OutboxKey("p", "FM1", at, name)
		const dir = "p/FM1/downlink/2021/09/06/"
		if !strings.HasPrefix(key, dir) || strings.Contains(key[len(dir):], "/") {
			t.Fatalf("key %q leaves %s", key, dir)
		}
		if n := len(key) - len(dir); n > 255 {
			t.Fatalf("last segment of %q is %d bytes", key, n)
		}
		if !utf8.ValidString(key) {
			t.Fatalf("key %q is not UTF-8", key)
		}
	})
}
