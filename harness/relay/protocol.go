package relay

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// proto is what the driver knows of one kind of board: the sizes it comes
// in, its channel numbering, and the bytes that switch and read a relay.
type proto struct {
	name  string
	sizes []int // the channel counts the board is made with
	def   int   // channel count when the configuration gives none
	first int   // the number of the first channel: numato counts from 0
	gap   time.Duration
	// set switches relay ch of an n-channel board; get reads it, nil when
	// the board cannot report state.
	set func(c *conn, n, ch int, on bool) error
	get func(c *conn, n, ch int) (bool, error)
}

// protocols in the order the documentation lists them.
var protocols = []*proto{
	{name: "lcus", sizes: []int{1, 2, 4, 8}, def: 4, first: 1, gap: 10 * time.Millisecond, set: lcusSet},
	{name: "numato", sizes: []int{1, 2, 4, 8, 16, 32, 64}, def: 8, first: 0, gap: 10 * time.Millisecond, set: numatoSet, get: numatoGet},
	{name: "kmtronic", sizes: []int{1, 2, 4, 8}, def: 8, first: 1, gap: 10 * time.Millisecond, set: kmtronicSet, get: kmtronicGet},
	{name: "denkovi", sizes: []int{16}, def: 16, first: 1, gap: 50 * time.Millisecond, set: denkoviSet, get: denkoviGet},
	{name: "devantech", sizes: []int{2, 8}, def: 8, first: 1, gap: 10 * time.Millisecond, set: devantechSet, get: devantechGet},
}

// Protocols returns the names of the relay protocols the driver speaks.
func Protocols() []string {
	names := make([]string, len(protocols))
	for i, p := range protocols {
		names[i] = p.name
	}
	return names
}

// DefaultChannels returns the channel count of a board of protocol when
// its configuration gives none, or 0 for an unknown protocol.
func DefaultChannels(protocol string) int {
	if p := lookup(protocol); p != nil {
		return p.def
	}
	return 0
}

func lookup(protocol string) *proto {
	for _, p := range protocols {
		if p.name == protocol {
			return p
		}
	}
	return nil
}

func lookupErr(protocol string) (*proto, error) {
	if p := lookup(protocol); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%q is not a relay protocol; want %s", protocol, orList(Protocols()))
}

// CheckChannels checks that a board of protocol is made with n channels.
func CheckChannels(protocol string, n int) error {
	p, err := lookupErr(protocol)
	if err != nil {
		return err
	}
	return p.checkSize(n)
}

func (p *proto) checkSize(n int) error {
	if slices.Contains(p.sizes, n) {
		return nil
	}
	sizes := make([]string, len(p.sizes))
	for i, s := range p.sizes {
		sizes[i] = strconv.Itoa(s)
	}
	return fmt.Errorf("%d is not a size %s boards are made in; want %s", n, p.name, orList(sizes))
}

// CheckChannel checks that ch is a relay of an n-channel board of
// protocol, in the protocol's numbering; n 0 is the protocol's default
// size.
func CheckChannel(protocol string, n, ch int) error {
	p, err := lookupErr(protocol)
	if err != nil {
		return err
	}
	if n == 0 {
		n = p.def
	}
	if err := p.checkSize(n); err != nil {
		return err
	}
	return p.checkChannel(n, ch)
}

func (p *proto) checkChannel(n, ch int) error {
	first, last := p.first, p.first+n-1
	if ch >= first && ch <= last {
		return nil
	}
	note := ""
	if p.first == 0 {
		note = " (numato counts from 0)"
	}
	return fmt.Errorf("channel %d is out of range: %s %d-channel %s board has channels %d to %d%s", ch, article(n), n, p.name, first, last, note)
}

// article is the indefinite article before the number n, read out.
func article(n int) string {
	if s := strconv.Itoa(n); s[0] == '8' || n == 11 || n == 18 {
		return "an"
	}
	return "a"
}

// orList joins "a", "b", "c" as "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// The protocols, byte for byte as in the relay specification.

// lcus: `A0 ch st sum`, no reply ever.
func lcusSet(c *conn, n, ch int, on bool) error {
	st := byte(0)
	if on {
		st = 1
	}
	return c.send([]byte{0xA0, byte(ch), st, 0xA0 + byte(ch) + st})
}

// numatoIndex is relay ch as the n-channel model writes it.
func numatoIndex(n, ch int) string {
	switch {
	case n <= 16:
		return string("0123456789ABCDEF"[ch])
	case n == 32:
		return string("0123456789ABCDEFGHIJKLMNOPQRSTUV"[ch])
	}
	return fmt.Sprintf("%02d", ch)
}

func numatoSet(c *conn, n, ch int, on bool) error {
	verb := "off"
	if on {
		verb = "on"
	}
	cmd := "relay " + verb + " " + numatoIndex(n, ch)
	reply, err := numatoCommand(c, cmd)
	if err != nil {
		return err
	}
	if reply != "" {
		return fmt.Errorf("the board answered %q with %q; want only the prompt", cmd+"\r", reply)
	}
	return nil
}

func numatoGet(c *conn, n, ch int) (bool, error) {
	x := numatoIndex(n, ch)
	cmd := "relay read " + x
	reply, err := numatoCommand(c, cmd)
	if err != nil {
		return false, err
	}
	switch reply {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "":
		// The firmware answers an unknown command, or an index its model
		// does not have, with the bare prompt: never guess a state from it.
		return false, fmt.Errorf("no read-back for channel %s: the board answered %q with the prompt only, as a numato does to a channel it does not have: is it a %d-channel board?", x, cmd+"\r", n)
	}
	return false, fmt.Errorf("the board answered %q with %q; want on or off", cmd+"\r", reply)
}

var (
	numatoEOL    = []byte("\n\r")
	numatoPrompt = []byte("\n\r>")
)

// numatoCommand sends one command line to a numato board and returns the
// reply text, without the echo and the prompt.
func numatoCommand(c *conn, cmd string) (string, error) {
	// Resynchronise: an empty line ends whatever the board's line buffer
	// holds (a command cut short by a crash, noise) and gets a prompt.
	if err := c.send([]byte("\r")); err != nil {
		return "", err
	}
	if _, err := c.recv([]byte("\r"), func(b []byte) bool { return bytes.HasSuffix(b, numatoPrompt) }); err != nil {
		return "", err
	}
	line := []byte(cmd + "\r")
	if err := c.send(line); err != nil {
		return "", err
	}
	// The board echoes the command without its CR, then sends \n\r, the
	// reply text and \n\r if there is one, then the prompt. Reading to the
	// echo, not to the first '>', copes with a '>' in stray input.
	echo := []byte(cmd + "\n\r")
	buf, err := c.recv(line, func(b []byte) bool {
		i := bytes.LastIndex(b, echo)
		return i >= 0 && len(b) > i+len(echo) && b[len(b)-1] == '>'
	})
	var na *noAnswerError
	if errors.As(err, &na) && bytes.IndexByte(buf, '>') >= 0 {
		return "", fmt.Errorf("sent %q, but the board's echo does not match: received %q: is a numato board on that port?", line, buf)
	}
	if err != nil {
		return "", err
	}
	rest := buf[bytes.LastIndex(buf, echo)+len(echo) : len(buf)-1]
	if len(rest) == 0 {
		return "", nil
	}
	if !bytes.HasSuffix(rest, numatoEOL) {
		return "", fmt.Errorf("the answer to %q is not a numato reply: received %q", line, buf)
	}
	return string(rest[:len(rest)-len(numatoEOL)]), nil
}

// kmtronic: `FF ch st`, no reply.
func kmtronicSet(c *conn, n, ch int, on bool) error {
	st := byte(0)
	if on {
		st = 1
	}
	return c.send([]byte{0xFF, byte(ch), st})
}

func kmtronicGet(c *conn, n, ch int) (bool, error) {
	if n <= 2 {
		// `FF ch 03` -> `FF ch xx`.
		cmd := []byte{0xFF, byte(ch), 0x03}
		reply, err := c.ask(cmd, 3)
		if err != nil {
			return false, err
		}
		if reply[0] != 0xFF || reply[1] != byte(ch) || reply[2] > 1 {
			return false, fmt.Errorf("the board answered %q with %q; want \"\\xff\\x%02x\" then \\x00 or \\x01", cmd, reply, ch)
		}
		return reply[2] == 1, nil
	}
	// `FF 09 00` -> one byte per relay.
	cmd := []byte{0xFF, 0x09, 0x00}
	reply, err := c.ask(cmd, n)
	if err != nil {
		return false, err
	}
	for _, b := range reply {
		if b > 1 {
			return false, fmt.Errorf("the board answered %q with %q; want %d bytes, each \\x00 or \\x01", cmd, reply, n)
		}
	}
	return reply[ch-1] == 1, nil
}

// denkovi: `NN+//` and `NN-//`, no reply.
func denkoviSet(c *conn, n, ch int, on bool) error {
	sign := "-"
	if on {
		sign = "+"
	}
	return c.send(fmt.Appendf(nil, "%02d%s//", ch, sign))
}

func denkoviGet(c *conn, n, ch int) (bool, error) {
	// `ask//` -> 2 bytes, relay 1 the MSB of the first.
	reply, err := c.ask([]byte("ask//"), 2)
	if err != nil {
		return false, err
	}
	i := ch - 1
	return reply[i/8]&(0x80>>(i%8)) != 0, nil
}

// devantech: 0x64+ch on, 0x6E+ch off, no reply.
func devantechSet(c *conn, n, ch int, on bool) error {
	b := 0x6E + byte(ch)
	if on {
		b = 0x64 + byte(ch)
	}
	return c.send([]byte{b})
}

func devantechGet(c *conn, n, ch int) (bool, error) {
	// 0x5A -> module id and firmware, 0x5B -> one byte, relay n at bit
	// n-1. The module id makes sure of the board: any byte reads as some
	// state, even the echo of an echoing board.
	cmd := []byte{0x5A, 0x5B}
	reply, err := c.ask(cmd, 3)
	if err != nil {
		return false, err
	}
	if id := reply[0]; int(id) != n {
		return false, fmt.Errorf("the board answered %q with %q: module id %d, where a %d-channel devantech board (USB-RLY%02d) says %d: is the channel count right?", cmd, reply, id, n, n, n)
	}
	if reply[2]>>n != 0 {
		return false, fmt.Errorf("the board answered %q with %q: relays above %d on, on a %d-channel board", cmd, reply, n, n)
	}
	return reply[2]&(1<<(ch-1)) != 0, nil
}
