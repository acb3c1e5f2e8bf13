// Package oort is the bus side of Spire's OORT file transfer: the collector
// that asks a payload's OORT agent which file pairs wait for downlink, pulls
// them over SSH, checks them against their metadata and hands them on.
//
// It also defines the agent's wire types (TransferMeta, the collector API's
// info), which the reference payload's agent (fixtures/payload/oort) shares,
// so both ends read and write one format.
//
// # Pairs
//
// The agent keeps each file as a pair in its transfers directory:
// <uuid>.data.oort, the bytes, and <uuid>.meta.oort, a TransferMeta (Meta)
// in JSON. The agent writes and syncs the meta first and renames the data in
// last, so a pair is complete once its data file is there. The collector
// deletes a pair data first, meta last, for the same reason.
package oort

import (
	"fmt"
	"regexp"
	"strings"
)

// File name extensions of a pair.
const (
	DataExt = ".data.oort"
	MetaExt = ".meta.oort"
)

// Default TTLs, in seconds, for a send_file request that leaves them out.
const (
	DefaultTTLUrgent  = 9000
	DefaultTTLBulk    = 43200
	DefaultTTLSurplus = 172800
)

// TopicPattern is the regular expression every topic must match.
const TopicPattern = `^[-_A-Za-z0-9]+$`

var topicRE = regexp.MustCompile(TopicPattern)

// ValidTopic reports whether topic matches TopicPattern.
func ValidTopic(topic string) bool { return topicRE.MatchString(topic) }

// uuidRE is a UUID as the agent writes it: lower-case hex in the 8-4-4-4-12
// form.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidUUID reports whether id is a UUID in the agent's form (lower-case
// 8-4-4-4-12 hex), and so also safe as part of a file name.
func ValidUUID(id string) bool { return uuidRE.MatchString(id) }

// FormatCRC32 formats a zlib (IEEE) CRC-32 as the agent writes it: 8
// lower-case hex digits.
func FormatCRC32(sum uint32) string { return fmt.Sprintf("%08x", sum) }

// Meta is a TransferMeta, the content of a <uuid>.meta.oort file.
type Meta struct {
	MetaVersion string            `json:"meta_version"` // API version of the agent that wrote it
	Topic       string            `json:"topic"`
	Destination string            `json:"destination"`
	Node        string            `json:"node"` // the sender's node name (uname -n)
	Time        int64             `json:"time"` // when the file was handed to the agent, Unix seconds
	FileInfo    FileInfo          `json:"file_info"`
	SendOptions SendOptions       `json:"send_options"`
	Extra       map[string]string `json:"extra"`
}

// FileInfo describes the data of a pair.
type FileInfo struct {
	ID       string `json:"id"`       // the pair's UUID
	Path     string `json:"path"`     // the file's path when it was handed to the agent
	Size     int64  `json:"size"`     // bytes
	Modified int64  `json:"modified"` // mtime, Unix seconds
	Created  int64  `json:"created"`  // ctime, Unix seconds
	CRC32    string `json:"crc32"`    // zlib CRC-32, see FormatCRC32
}

// SendOptions are the options of a send_file request, stored in the meta.
type SendOptions struct {
	TTLParams     TTLParams         `json:"TTLParams"`
	Reliable      bool              `json:"reliable"`
	Tags          map[string]string `json:"tags"`
	DeliveryHints DeliveryHints     `json:"delivery_hints"`
}

// TTLParams are the seconds an item may wait in each downlink queue before
// it moves to the next; 0 skips the queue.
type TTLParams struct {
	Urgent  int64 `json:"urgent"`
	Bulk    int64 `json:"bulk"`
	Surplus int64 `json:"surplus"`
}

// DeliveryHints say where and how a file should land.
type DeliveryHints struct {
	DestPath string `json:"dest_path,omitempty"`
	Mode     string `json:"mode,omitempty"` // octal, such as "0644"
}

// Check reports whether m can describe the pair id: its file_info names id,
// its size is not negative, its crc32 is 8 lower-case hex digits and its
// topic matches TopicPattern.
func (m *Meta) Check(id string) error {
	var bad []string
	if m.FileInfo.ID != id {
		bad = append(bad, fmt.Sprintf("file_info.id is %q, want %q", m.FileInfo.ID, id))
	}
	if m.FileInfo.Size < 0 {
		bad = append(bad, fmt.Sprintf("file_info.size is %d, want 0 or more", m.FileInfo.Size))
	}
	if !crcRE.MatchString(m.FileInfo.CRC32) {
		bad = append(bad, fmt.Sprintf("file_info.crc32 is %q, want 8 lower-case hex digits", m.FileInfo.CRC32))
	}
	if !ValidTopic(m.Topic) {
		bad = append(bad, fmt.Sprintf("topic is %q, want a match for %s", m.Topic, TopicPattern))
	}
	if len(bad) > 0 {
		return fmt.Errorf("meta: %s", strings.Join(bad, "; "))
	}
	return nil
}

var crcRE = regexp.MustCompile(`^[0-9a-f]{8}$`)

// Info is the answer to POST /collector/v1/info.
type Info struct {
	Sysinfo   Sysinfo   `json:"sysinfo"`
	Available Available `json:"available"`
	Topics    []string  `json:"topics"` // the allowed topics; empty allows every topic
}

// Sysinfo describes the agent and where it keeps its files. Directories are
// payload paths.
type Sysinfo struct {
	Version       string `json:"version"`
	Build         string `json:"build"`
	Diskfree      int64  `json:"diskfree"`       // bytes free on the work directory's filesystem
	Workdir       string `json:"workdir"`        // the transfers directory (not the agent's -w)
	Uploads       string `json:"uploads"`        // where uplinked pairs go
	AgentUpgrades string `json:"agent_upgrades"` // where agent upgrades go
	Dead          string `json:"dead"`           // where pairs that failed their CRC check go
	Username      string `json:"username"`       // the user the agent runs as; the collector logs in as this user
	Nodename      string `json:"nodename"`
	Machine       string `json:"machine"`
}

// Available lists the files of the transfers and dead directories as they
// are: pairs, halves of pairs, anything.
type Available struct {
	Files []string `json:"files"`
	Dead  []string `json:"dead"`
}
