package bus

import (
	"math"
	"testing"
	"time"
)

func TestTTLSeconds(t *testing.T) {
	const century = 100 * 365 * 24 * time.Hour
	for _, tt := range []struct {
		in   int64
		want time.Duration
	}{
		{9000, 9000 * time.Second},
		{0, 0},
		{-5, 0},
		{math.MaxInt64, century},
		{math.MinInt64, 0},
	} {
		if got := ttlSeconds(tt.in); got != tt.want {
			t.Errorf("ttlSeconds(%d) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
