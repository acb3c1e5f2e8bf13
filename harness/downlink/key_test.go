package downlink

import (
	"strings"
	"testing"
	"time"
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
