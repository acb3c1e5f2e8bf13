package bench

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// What a right bit rate, byte size or fraction looks like, for messages.
const (
	wantBitRate  = `want bit/s as a whole number or with a unit, like 9600, "250kbit/s", "1.5Mbit/s" or "10Gbit/s" (k, M, G are 1e3, 1e6, 1e9; bps, kbps, Mbps, Gbps and kbit work too); 0 for no limit`
	wantByteSize = `want bytes as a whole number or with a unit, like 65536, "512B", "100MB", "64KiB" or "1GiB" (KB, MB, GB count in 1000s; KiB, MiB, GiB in 1024s); 0 for no limit`
	wantFraction = `want a fraction at least 0 and less than 1, like 0.01, or a percentage like "1%"`
)

// A unit is a unit's symbol and how many of the base unit it holds.
type unit struct {
	symbol string
	size   int64
}

// bitRateUnits are the units ParseBitRate reads. The first of each size
// is the one String writes; sizes are in descending order.
var bitRateUnits = []unit{
	{"Gbit/s", 1e9}, {"Gbit", 1e9}, {"Gbps", 1e9},
	{"Mbit/s", 1e6}, {"Mbit", 1e6}, {"Mbps", 1e6},
	{"kbit/s", 1e3}, {"kbit", 1e3}, {"kbps", 1e3},
	{"bit/s", 1}, {"bit", 1}, {"bps", 1},
}

// byteSizeUnits are the units ParseByteSize reads, as bitRateUnits.
var byteSizeUnits = []unit{
	{"GiB", 1 << 30}, {"GB", 1e9},
	{"MiB", 1 << 20}, {"MB", 1e6},
	{"KiB", 1 << 10}, {"KB", 1e3}, {"kB", 1e3},
	{"B", 1},
}

// ParseBitRate reads a bit rate: a whole number of bit/s ("9600") or a
// decimal number and a unit, with or without a space between them:
// "9600bit/s", "250kbit/s", "1.5Mbit/s", "10Gbit/s". k, M and G are the SI
// prefixes 1e3, 1e6 and 1e9; bps and bit (with their prefixes) are
// accepted for bit/s. The result must be a whole number of bit/s, not
// negative.
func ParseBitRate(s string) (BitRate, error) {
	v, err := parseAmount(s, bitRateUnits, "bit rate", "bit/s", wantBitRate)
	return BitRate(v), err
}

// String returns r in the largest unit that keeps it whole, e.g.
// "1500kbit/s"; ParseBitRate reads it back.
func (r BitRate) String() string { return formatAmount(int64(r), bitRateUnits) }

// UnmarshalYAML reads a bit rate as ParseBitRate does; a YAML integer is
// bit/s.
func (r *BitRate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("got %s, %s", describe(n), wantBitRate)
	}
	v, err := ParseBitRate(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML writes r as UnmarshalYAML reads it.
func (r BitRate) MarshalYAML() (any, error) { return r.String(), nil }

// ParseByteSize reads a size: a whole number of bytes ("65536") or a
// decimal number and a unit, with or without a space between them: "512B",
// "100MB", "1.5GB", "64KiB", "1GiB". KB (or kB), MB and GB count in 1000s;
// KiB, MiB and GiB in 1024s. The result must be a whole number of bytes,
// not negative.
func ParseByteSize(s string) (ByteSize, error) {
	v, err := parseAmount(s, byteSizeUnits, "size", "bytes", wantByteSize)
	return ByteSize(v), err
}

// String returns n in the largest unit that keeps it whole, e.g. "64KiB"
// or "100MB"; ParseByteSize reads it back.
func (n ByteSize) String() string { return formatAmount(int64(n), byteSizeUnits) }

// UnmarshalYAML reads a size as ParseByteSize does; a YAML integer is
// bytes.
func (n *ByteSize) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("got %s, %s", describe(node), wantByteSize)
	}
	v, err := ParseByteSize(node.Value)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// MarshalYAML writes n as UnmarshalYAML reads it.
func (n ByteSize) MarshalYAML() (any, error) { return n.String(), nil }

// amount is a decimal number, maybe negative, and a unit, maybe after a
// space.
var amount = regexp.MustCompile(`^(-?)([0-9]+(?:\.[0-9]+)?) ?([A-Za-z/]*)$`)

// parseAmount reads s, a number of units, as a whole number of the base
// unit, base. what names the quantity and want says what is right, for
// errors.
func parseAmount(s string, units []unit, what, base, want string) (int64, error) {
	m := amount.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a %s; %s", s, what, want)
	}
	size := int64(1) // a bare number is in the base unit
	if m[3] != "" {
		u, ok := lookupUnit(units, m[3])
		if !ok {
			return 0, fmt.Errorf("%q is not a %s (unknown unit %q); %s", s, what, m[3], want)
		}
		size = u.size
	}
	if m[1] == "-" {
		return 0, fmt.Errorf("%q is negative; %s", s, want)
	}
	// Exact arithmetic: 0.1 * 1e3 is 100, not 100.00000000000001.
	v, _ := new(big.Rat).SetString(m[2]) // the pattern is a valid decimal
	v.Mul(v, new(big.Rat).SetInt64(size))
	switch {
	case !v.IsInt():
		return 0, fmt.Errorf("%q is not a whole number of %s; %s", s, base, want)
	case !v.Num().IsInt64():
		return 0, fmt.Errorf("%q is too large (at most %d %s); %s", s, int64(math.MaxInt64), base, want)
	}
	return v.Num().Int64(), nil
}

func lookupUnit(units []unit, symbol string) (unit, bool) {
	for _, u := range units {
		if u.symbol == symbol {
			return u, true
		}
	}
	return unit{}, false
}

// formatAmount writes v in the first (largest) of units that divides it;
// 0 in the base unit.
func formatAmount(v int64, units []unit) string {
	for _, u := range units {
		if v%u.size == 0 && (v != 0 || u.size == 1) {
			return strconv.FormatInt(v/u.size, 10) + u.symbol
		}
	}
	panic("bench: units without a base unit")
}

// fraction is a float64 from 0 up to, not including, 1, written as a
// number (0.01) or a percentage ("1%"). Link.Loss is decoded as one.
type fraction float64

func (f *fraction) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("got %s, %s", describe(n), wantFraction)
	}
	v, err := parseFraction(n.Value)
	if err != nil {
		return err
	}
	*f = fraction(v)
	return nil
}

// parseFraction reads s as a fraction at least 0 and less than 1.
func parseFraction(s string) (float64, error) {
	num, percent := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a number or a percentage; %s", s, wantFraction)
	}
	one := "1"
	if percent {
		v, one = v/100, "100%"
	}
	switch {
	case v < 0:
		return 0, fmt.Errorf("%q is negative; %s", s, wantFraction)
	case v >= 1:
		return 0, fmt.Errorf("%q is %s or more: every frame would be lost; %s", s, one, wantFraction)
	}
	return v, nil
}
