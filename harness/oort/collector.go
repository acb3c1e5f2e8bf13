package oort

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/satbench/hil/harness/remote"
)

// Files is the payload's filesystem as the collector sees it; names are
// payload paths. *remote.Client implements it.
type Files interface {
	// Get copies the file name to w and returns the bytes copied.
	Get(ctx context.Context, name string, w io.Writer) (int64, error)
	// Remove deletes the file name.
	Remove(ctx context.Context, name string) error
}

var _ Files = (*remote.Client)(nil)

// DefaultHTTPTimeout bounds each request of a Collector whose HTTP is nil.
const DefaultHTTPTimeout = 10 * time.Second

var defaultHTTP = &http.Client{Timeout: DefaultHTTPTimeout}

// Limits on what the collector reads whole into memory.
const (
	maxAnswer = 1 << 20  // an HTTP answer of the agent
	maxMeta   = 64 << 10 // a meta file
)

// Collector talks to one payload's OORT agent. Agent and SpoolDir are
// required; the zero value of the other fields works.
type Collector struct {
	Agent    string       // base URL of the agent, e.g. http://127.0.0.1:2005
	HTTP     *http.Client // nil: a client with DefaultHTTPTimeout
	Topics   []string     // sent with POST /collector/v1/info; nil sends none and leaves the agent's list alone
	SpoolDir string       // where pulled data files are written (created if missing)
}

// Pulled is a pair that was pulled and matched its meta.
type Pulled struct {
	Meta   Meta   // the pair's TransferMeta
	Data   string // local path of the pulled data, in SpoolDir; accept takes ownership (it renames it)
	Size   int64  // bytes pulled
	CRC32  string // of the bytes pulled, see FormatCRC32
	SHA256 string // of the bytes pulled, lower-case hex
}

// Report says what Collect did with each pair listed in an Info.
type Report struct {
	Accepted []string    // UUIDs of the pairs accept took, in order
	Rejected []Rejection // pairs that failed verification; kept on the payload
	Pending  []string    // UUIDs of incomplete pairs (only the data or only the meta is there); skipped
}

// Rejection is a pair that failed verification.
type Rejection struct {
	UUID   string
	Reason string // what mismatched, e.g. "data is 1000 bytes, meta says 1024"
}

// PairError is a failure with one pair: a rejection (its Err matches
// ErrRejected), or a failure to pull, accept or delete it.
type PairError struct {
	UUID string
	Err  error
}

func (e *PairError) Error() string { return "oort: pair " + e.UUID + ": " + e.Err.Error() }
func (e *PairError) Unwrap() error { return e.Err }

// ErrRejected matches (errors.Is) the PairError of a pair that failed
// verification; the pair is also in Report.Rejected.
var ErrRejected = errors.New("oort: pair rejected")

// rejection is the error of a rejected pair: its reason.
type rejection string

func (r rejection) Error() string        { return string(r) }
func (r rejection) Is(target error) bool { return target == ErrRejected }

func (c *Collector) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// endpoint is the URL of a collector API path such as "/info".
func (c *Collector) endpoint(p string) (string, error) {
	if c.Agent == "" {
		return "", errors.New("oort: Collector.Agent is required: the agent's base URL, such as http://192.0.2.1:2005")
	}
	u, err := url.Parse(c.Agent)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("oort: Collector.Agent %q: want a base URL such as http://192.0.2.1:2005", c.Agent)
	}
	return strings.TrimRight(c.Agent, "/") + "/collector/v1" + p, nil
}

// call makes one request to the collector API and decodes a 200 answer
// into out. Any other answer is an error quoting the agent's message.
func (c *Collector) call(ctx context.Context, method, p string, body []byte, out any) error {
	u, err := c.endpoint(p)
	if err != nil {
		return err
	}
	var r io.Reader = http.NoBody
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("oort: %s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	// Every collector call is idempotent (POST /info sets the same topics
	// again). Saying so, without sending the header, lets the transport
	// retry a request that met a kept-alive connection the agent had
	// closed, say because the payload rebooted between two windows.
	req.Header["Idempotency-Key"] = nil
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("oort: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("oort: %s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oort: %s %s: %s: %s", method, u, resp.Status, agentMessage(data))
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("oort: %s %s: answer longer than %d bytes", method, u, maxAnswer)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("oort: %s %s: answer is not the JSON expected: %w", method, u, err)
	}
	return nil
}

// agentMessage is the message of an error answer: the "message" of a JSON
// ErrorResponse, or the start of a plain-text one.
func agentMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// Ping asks the agent whether it is up.
func (c *Collector) Ping(ctx context.Context) error {
	var pong struct {
		Response string `json:"response"`
	}
	if err := c.call(ctx, http.MethodGet, "/ping", nil, &pong); err != nil {
		return err
	}
	if pong.Response != "PONG" {
		return fmt.Errorf("oort: GET %s/collector/v1/ping: response %q, want \"PONG\"", strings.TrimRight(c.Agent, "/"), pong.Response)
	}
	return nil
}

// Info posts Topics to /collector/v1/info, which makes them the agent's
// allowed topics (unless Topics is nil), and returns the agent's answer.
func (c *Collector) Info(ctx context.Context) (*Info, error) {
	var body []byte
	if c.Topics != nil {
		for i, t := range c.Topics {
			if !ValidTopic(t) {
				return nil, fmt.Errorf("oort: Collector.Topics[%d] %q: want a match for %s", i, t, TopicPattern)
			}
		}
		body, _ = json.Marshal(struct {
			Topics []string `json:"topics"`
		}{c.Topics})
	}
	var info Info
	if err := c.call(ctx, http.MethodPost, "/info", body, &info); err != nil {
		return nil, err
	}
	for _, d := range []struct{ name, dir string }{{"workdir", info.Sysinfo.Workdir}, {"uploads", info.Sysinfo.Uploads}} {
		if !path.IsAbs(d.dir) {
			return nil, fmt.Errorf("oort: POST %s/collector/v1/info: sysinfo.%s %q: want an absolute payload path", strings.TrimRight(c.Agent, "/"), d.name, d.dir)
		}
	}
	return &info, nil
}

// Collect pulls every complete pair listed in info, in UUID order, from
// info's transfers directory (sysinfo.workdir). It reads each data file once,
// into SpoolDir, computing its CRC-32 and SHA-256 on the way, and checks
// its size and CRC-32 against the meta. A pair that matches is handed to
// accept; only when accept returns nil is the pair deleted on the payload,
// data first, then meta. If accept fails, Collect removes the pulled data
// file (unless accept moved it away) and keeps the pair.
//
// A pair that fails verification, or whose meta does not parse, is reported
// in Report.Rejected, kept on the payload, and never handed to accept.
// Incomplete pairs are skipped and reported in Report.Pending; names that
// are not halves of a pair are ignored. Collect goes on past a failing pair:
// the error joins a *PairError for each pair rejected (matching
// ErrRejected) or that could not be pulled, accepted or deleted. Report.Accepted lists every pair accept
// took, even one that could not be deleted afterwards.
func (c *Collector) Collect(ctx context.Context, info *Info, files Files, accept func(context.Context, Pulled) error) (Report, error) {
	var rep Report
	if info == nil {
		return rep, errors.New("oort: Collect: info is nil; get it from Collector.Info")
	}
	dir := info.Sysinfo.Workdir
	if !path.IsAbs(dir) {
		return rep, fmt.Errorf("oort: Collect: sysinfo.workdir %q: want an absolute payload path", dir)
	}
	if c.SpoolDir == "" {
		return rep, errors.New("oort: Collector.SpoolDir is required: a local directory for pulled files")
	}
	if err := os.MkdirAll(c.SpoolDir, 0o755); err != nil {
		return rep, fmt.Errorf("oort: Collector.SpoolDir: %w", err)
	}
	complete, pending := pairs(info.Available.Files)
	rep.Pending = pending
	var errs []error
	for _, id := range complete {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("oort: collect stopped before pair %s: %w", id, context.Cause(ctx)))
			break
		}
		if err := c.collectPair(ctx, dir, id, files, accept, &rep); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// pairs sorts a listing of the transfers directory into complete pairs and
// lone halves, by UUID.
func pairs(names []string) (complete, pending []string) {
	type halves struct{ data, meta bool }
	seen := map[string]*halves{}
	for _, n := range names {
		id, isData := strings.CutSuffix(n, DataExt)
		if !isData {
			var isMeta bool
			if id, isMeta = strings.CutSuffix(n, MetaExt); !isMeta {
				continue
			}
		}
		if !ValidUUID(id) {
			continue
		}
		h := seen[id]
		if h == nil {
			h = &halves{}
			seen[id] = h
		}
		if isData {
			h.data = true
		} else {
			h.meta = true
		}
	}
	for id, h := range seen {
		if h.data && h.meta {
			complete = append(complete, id)
		} else {
			pending = append(pending, id)
		}
	}
	slices.Sort(complete)
	slices.Sort(pending)
	return complete, pending
}

var errMetaTooLarge = fmt.Errorf("meta is larger than %d bytes", maxMeta)

// cappedBuffer fails a write that would take it past max bytes.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errMetaTooLarge
	}
	return b.Buffer.Write(p)
}

// ReadFrom hides bytes.Buffer's, which would bypass Write's limit.
func (b *cappedBuffer) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{b}, r)
}

func (c *Collector) collectPair(ctx context.Context, dir, id string, files Files, accept func(context.Context, Pulled) error, rep *Report) error {
	fail := func(err error) error { return &PairError{UUID: id, Err: err} }
	reject := func(reason string) error {
		rep.Rejected = append(rep.Rejected, Rejection{UUID: id, Reason: reason})
		return fail(rejection(reason))
	}
	metaPath, dataPath := path.Join(dir, id+MetaExt), path.Join(dir, id+DataExt)

	mb := &cappedBuffer{max: maxMeta}
	if _, err := files.Get(ctx, metaPath, mb); err != nil {
		if errors.Is(err, errMetaTooLarge) {
			return reject(errMetaTooLarge.Error())
		}
		return fail(fmt.Errorf("pull meta: %w", err))
	}
	var m Meta
	if err := json.Unmarshal(mb.Bytes(), &m); err != nil {
		return reject(fmt.Sprintf("meta does not parse: %v", err))
	}
	if err := m.Check(id); err != nil {
		return reject(err.Error())
	}

	f, err := os.CreateTemp(c.SpoolDir, id+"-*"+DataExt)
	if err != nil {
		return fail(fmt.Errorf("spool: %w", err))
	}
	spooled := f.Name()
	sum32, sum256 := crc32.NewIEEE(), sha256.New()
	n, err := files.Get(ctx, dataPath, io.MultiWriter(f, sum32, sum256))
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool: %w", cerr)
	}
	if err != nil {
		os.Remove(spooled)
		return fail(fmt.Errorf("pull data: %w", err))
	}
	crc := FormatCRC32(sum32.Sum32())
	var bad []string
	if n != m.FileInfo.Size {
		bad = append(bad, fmt.Sprintf("data is %d bytes, meta says %d", n, m.FileInfo.Size))
	}
	if crc != m.FileInfo.CRC32 {
		bad = append(bad, fmt.Sprintf("crc32 %s, meta says %s", crc, m.FileInfo.CRC32))
	}
	if len(bad) > 0 {
		os.Remove(spooled)
		return reject(strings.Join(bad, "; "))
	}

	p := Pulled{Meta: m, Data: spooled, Size: n, CRC32: crc, SHA256: hex.EncodeToString(sum256.Sum(nil))}
	if err := accept(ctx, p); err != nil {
		if rerr := os.Remove(spooled); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return fail(fmt.Errorf("accept: %w (pair kept on the payload)", err))
	}
	rep.Accepted = append(rep.Accepted, id)
	// Data first: without its data file the pair is incomplete, so a
	// failure between the two removals cannot make it be delivered twice.
	// Taken, the pair must go even if the collection is being cancelled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, name := range []string{dataPath, metaPath} {
		if err := files.Remove(ctx, name); err != nil {
			return fail(fmt.Errorf("accepted, but deleting it on the payload failed: %w", err))
		}
	}
	return nil
}
