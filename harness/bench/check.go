package bench

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// The checks below each take one value and return nil or an error that
// says what is wrong with it and what would be right; the caller adds the
// file, line and field.

// namePattern is what may name a board (it becomes a file name) or a
// satellite (it becomes part of S3 keys): no slashes, no leading dot.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkName(name, what, example string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%q is not a valid %s; want letters, digits, dots, hyphens and underscores, starting with a letter or digit, e.g. %s", name, what, example)
	}
	return nil
}

// topicPattern is what may name an OORT topic; topics become part of S3
// keys.
var topicPattern = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func checkTopic(topic string) error {
	if !topicPattern.MatchString(topic) {
		return fmt.Errorf("%q is not a valid OORT topic; want letters, digits, hyphens and underscores, e.g. images", topic)
	}
	return nil
}

func oneOf(v, what string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%q is not a %s; want %s", v, what, orList(allowed))
}

// orList writes ["a", "b", "c"] as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func notEmpty(v, want string) error {
	if v == "" {
		return fmt.Errorf("is empty; want %s", want)
	}
	return nil
}

// checkHostPort checks that addr is host:port with a numeric port;
// port 0 is accepted only if allowZero. example is a right address.
func checkHostPort(addr, example string, allowZero bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err) // without the address, which we quote
		}
		return fmt.Errorf("%q is not host:port (%v); want e.g. %q", addr, err, example)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; want e.g. %q", addr, example)
	}
	return checkPort(addr, port, example, allowZero)
}

// checkListen checks addr, an address to serve on: host:port as
// checkHostPort checks it, or :port for every interface. Port 0 (a free
// port) is accepted.
func checkListen(addr, example string) error {
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return checkPort(addr, port, example, true)
	}
	return checkHostPort(addr, example, true)
}

// checkPort checks port, the port of addr, for checkHostPort.
func checkPort(addr, port, example string, allowZero bool) error {
	low := 1
	if allowZero {
		low = 0
	}
	if n, err := strconv.Atoi(port); err != nil || n < low || n > 65535 {
		return fmt.Errorf("%q has port %q; want a number from %d to 65535, e.g. %q", addr, port, low, example)
	}
	return nil
}

// appKeyLength is the length of a payload app's key; with the app id's
// three digits it makes the app's cookie.
const appKeyLength = 20

// checkAppKey checks a payload app's key. The key authenticates the app,
// so the message says what is wrong without quoting it.
func checkAppKey(key string) error {
	const want = `want exactly 20 ASCII letters or digits, e.g. "AbCdEfGhIjKlMnOpQrSt"`
	if n := utf8.RuneCountInString(key); n != appKeyLength {
		return fmt.Errorf("has %d characters; %s", n, want)
	}
	i := 0
	for _, c := range key {
		i++
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return fmt.Errorf("has %q at character %d; %s", string(c), i, want)
		}
	}
	return nil
}

// checkBucket applies the S3 bucket naming rules that every S3 endpoint
// (AWS, MinIO, the embedded one) enforces.
func checkBucket(name string) error {
	bad := func(rule string) error {
		return fmt.Errorf("%q is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens%s)", name, rule)
	}
	if len(name) < 3 || len(name) > 63 {
		return bad("")
	}
	for _, c := range name {
		if !isLowerOrDigit(c) && c != '.' && c != '-' {
			return bad("")
		}
	}
	switch {
	case !isLowerOrDigit(rune(name[0])) || !isLowerOrDigit(rune(name[len(name)-1])):
		return bad("; beginning and ending with a letter or digit")
	case strings.Contains(name, "..") || strings.Contains(name, ".-") || strings.Contains(name, "-."):
		return bad("; no dot next to a dot or hyphen")
	case net.ParseIP(name) != nil:
		return bad("; not an IP address")
	}
	return nil
}

func isLowerOrDigit(c rune) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

// checkPrefix checks a customer prefix. The store joins it to keys with a
// slash, so slashes at its ends would make empty key segments, and the
// embedded store keeps objects as files, where ".." would escape.
func checkPrefix(prefix string) error {
	const want = `want slash-separated names, e.g. "customer/a"`
	if prefix == "" {
		return nil // the bucket's root
	}
	if strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("%q starts or ends with a slash; %s", prefix, want)
	}
	for _, seg := range strings.Split(prefix, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%q has an empty segment (\"//\"); %s", prefix, want)
		case ".", "..":
			return fmt.Errorf("%q has a %q segment; %s", prefix, seg, want)
		}
	}
	return nil
}

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func checkEnvName(name, example string) error {
	if !envNamePattern.MatchString(name) {
		return fmt.Errorf("%q is not an environment variable name; want letters, digits and underscores, e.g. %s", name, example)
	}
	return nil
}

// checkHostKey checks that s is exactly one public key in authorized_keys
// format. Options such as from="..." would be ignored by the pinning, so
// they are refused rather than silently dropped.
func checkHostKey(s string) error {
	const want = `want the payload's public host key as one authorized_keys line, e.g. "ssh-ed25519 AAAA... comment"`
	// ParseAuthorizedKey skips lines it cannot parse, so a second line
	// could hide a bad first one.
	if strings.Contains(strings.TrimSpace(s), "\n") {
		return fmt.Errorf("holds more than one line; %s", want)
	}
	_, _, options, _, err := ssh.ParseAuthorizedKey([]byte(s))
	switch {
	case err != nil:
		return fmt.Errorf("%q is not an authorized_keys line (%v); %s", s, err, want)
	case len(options) > 0:
		return fmt.Errorf("has options %q; %s", strings.Join(options, ","), want)
	}
	return nil
}

func positive(d, example Duration) error {
	if d <= 0 {
		return fmt.Errorf("is %s; want more than zero, e.g. %q", d, example.String())
	}
	return nil
}

func notNegative(d Duration) error {
	if d < 0 {
		return fmt.Errorf("is %s; want zero or more, e.g. \"0s\"", d)
	}
	return nil
}

// inRange checks that v is from lo to hi, both included; example is a
// right value.
func inRange[T int | float64](v, lo, hi, example T) error {
	if v < lo || v > hi {
		return fmt.Errorf("is %v; want from %v to %v, e.g. %v", v, lo, hi, example)
	}
	return nil
}

func atLeastOne(n, example int) error {
	if n < 1 {
		return fmt.Errorf("is %d; want at least 1, e.g. %d", n, example)
	}
	return nil
}

// checkMemory checks a QEMU guest's memory size as QEMU's -m takes it: a
// whole number of MiB or GiB, from 128M to 8G.
func checkMemory(v string) error {
	const want = `want a whole number and M or G, from "128M" to "8G", e.g. "256M"`
	if len(v) < 2 {
		return fmt.Errorf("%q is not a memory size; %s", v, want)
	}
	n, err := strconv.Atoi(v[:len(v)-1])
	mib := 0
	switch v[len(v)-1] {
	case 'M':
		mib = n
	case 'G':
		mib = n * 1024
	}
	if err != nil || mib < 128 || mib > 8*1024 {
		return fmt.Errorf("%q is not a memory size QEMU can give the payload here; %s", v, want)
	}
	return nil
}
