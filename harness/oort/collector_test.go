package oort_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/satbench/hil/harness/oort"
	"github.com/satbench/hil/harness/remote"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/fixtures/payload/oort/sdkclient"
	"github.com/satbench/hil/fixtures/payload/payloadtest"
)

// bench is a reference payload running the real OORT agent, the collector
// pointed at it, and an SSH connection as the agent's user.
type bench struct {
	p     *payloadtest.Payload
	col   *oort.Collector
	files *remote.Client
	sdk   *sdkclient.ClientWithResponses
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), payloadtest.WaitLimit)
	t.Cleanup(cancel)
	return ctx
}

func startBench(t *testing.T) *bench {
	t.Helper()
	p := payloadtest.Start(t, payloadtest.Options{OORT: true})
	b := &bench{p: p, col: &oort.Collector{Agent: p.OORTURL, SpoolDir: filepath.Join(t.TempDir(), "spool")}}
	var err error
	if b.sdk, err = sdkclient.NewClientWithResponses(p.OORTURL + "/sdk/v1"); err != nil {
		t.Fatal(err)
	}
	// The bus logs in as the user the agent reports.
	info, err := b.col.Info(testContext(t))
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	b.files, err = remote.Dial(testContext(t), remote.Config{Address: p.Addr, User: info.Sysinfo.Username,
		Signer: p.ClientKey, HostKey: p.HostKey.PublicKey()})
	if err != nil {
		t.Fatalf("ssh as sysinfo.username %q: %v", info.Sysinfo.Username, err)
	}
	t.Cleanup(func() { b.files.Close() })
	return b
}

// send has payload software hand content to the agent on topic, through
// the SDK API, and returns the UUID.
func (b *bench) send(t *testing.T, name, topic string, content []byte) string {
	t.Helper()
	p := "/outbox/" + name
	if err := os.MkdirAll(b.p.Host("/outbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.p.Host(p), content, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := b.sdk.SendFileWithResponse(testContext(t), sdkclient.SendFileRequest{Destination: "ground", Filepath: p, Topic: topic})
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("send_file %s: %v %s", p, err, resp.Body)
	}
	return resp.JSON200.UUID
}

// pair is the host path of a pair's file in the agent's transfers dir.
func (b *bench) pair(id, ext string) string {
	return b.p.Host(b.p.OORTWorkdir + "/transfers/" + id + ext)
}

func (b *bench) exists(id, ext string) bool {
	_, err := os.Stat(b.pair(id, ext))
	return err == nil
}

func (b *bench) info(t *testing.T) *oort.Info {
	t.Helper()
	info, err := b.col.Info(testContext(t))
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return info
}

func content(t *testing.T, size int64, seed uint64) []byte {
	t.Helper()
	data, err := io.ReadAll(mkfile.Content(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// recorder is an accept that moves each pulled file into dir and records it.
type recorder struct {
	dir string
	mu  sync.Mutex
	got []oort.Pulled
}

func (r *recorder) accept(_ context.Context, p oort.Pulled) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	dst := filepath.Join(r.dir, p.Meta.FileInfo.ID)
	if err := os.Rename(p.Data, dst); err != nil {
		return err
	}
	p.Data = dst
	r.got = append(r.got, p)
	return nil
}

func newRecorder(t *testing.T) *recorder { return &recorder{dir: t.TempDir()} }

func spoolNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCollect(t *testing.T) {
	b := startBench(t)
	files := map[string][]byte{} // by UUID
	topics := map[string]string{}
	for i, size := range []int64{0, 1, 1000, 3<<20 + 7} {
		data := content(t, size, uint64(i+1))
		topic := []string{"logs", "science"}[i%2]
		id := b.send(t, fmt.Sprintf("file%d.bin", i), topic, data)
		files[id], topics[id] = data, topic
	}
	rec := newRecorder(t)
	rep, err := b.col.Collect(testContext(t), b.info(t), b.files, rec.accept)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range files {
			if !yield(id) {
				return
			}
		}
	})
	if !slices.Equal(rep.Accepted, ids) || len(rep.Rejected) != 0 || len(rep.Pending) != 0 {
		t.Errorf("report %+v; want every pair accepted, in UUID order %q", rep, ids)
	}
	if len(rec.got) != len(ids) {
		t.Fatalf("accept called %d times, want %d", len(rec.got), len(ids))
	}
	for i, p := range rec.got {
		id := p.Meta.FileInfo.ID
		if id != ids[i] {
			t.Errorf("accept call %d was pair %s, want %s (UUID order)", i, id, ids[i])
		}
		data := files[id]
		sum := sha256.Sum256(data)
		wantCRC := fmt.Sprintf("%08x", crc32.ChecksumIEEE(data))
		if p.Size != int64(len(data)) || p.CRC32 != wantCRC || p.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("pair %s: size %d crc32 %s sha256 %s; want %d %s %x", id, p.Size, p.CRC32, p.SHA256, len(data), wantCRC, sum)
		}
		if p.Meta.Topic != topics[id] || p.Meta.FileInfo.Size != int64(len(data)) || p.Meta.FileInfo.CRC32 != wantCRC {
			t.Errorf("pair %s: meta %+v", id, p.Meta)
		}
		if got, err := os.ReadFile(p.Data); err != nil || string(got) != string(data) {
			t.Errorf("pair %s: the pulled file holds %d bytes (%v), want the %d sent", id, len(got), err, len(data))
		}
		if b.exists(id, oort.DataExt) || b.exists(id, oort.MetaExt) {
			t.Errorf("pair %s is still on the payload after accept took it", id)
		}
	}
	if n := spoolNames(t, b.col.SpoolDir); len(n) != 0 {
		t.Errorf("spool dir holds %q after accept took every file", n)
	}
	if info := b.info(t); len(info.Available.Files) != 0 {
		t.Errorf("the agent still lists %q", info.Available.Files)
	}
}

func TestCollectKeepsPairWhenAcceptFails(t *testing.T) {
	b := startBench(t)
	first, second := b.send(t, "a.bin", "logs", []byte("aaaa")), b.send(t, "b.bin", "logs", []byte("bbbb"))
	refuse := min(first, second) // the one pulled first
	errFull := errors.New("store full")
	rec := newRecorder(t)
	var spooled string
	rep, err := b.col.Collect(testContext(t), b.info(t), b.files, func(ctx context.Context, p oort.Pulled) error {
		if p.Meta.FileInfo.ID == refuse {
			spooled = p.Data
			return errFull
		}
		return rec.accept(ctx, p)
	})
	var pe *oort.PairError
	if !errors.As(err, &pe) || pe.UUID != refuse || !errors.Is(err, errFull) || errors.Is(err, oort.ErrRejected) ||
		!strings.Contains(err.Error(), "oort: pair "+refuse+": accept: store full (pair kept on the payload)") {
		t.Errorf("Collect: %v; want a PairError for %s wrapping the accept error", err, refuse)
	}
	keep := max(first, second)
	if !slices.Equal(rep.Accepted, []string{keep}) || len(rep.Rejected) != 0 {
		t.Errorf("report %+v; want only %s accepted (Collect goes on past a failing pair)", rep, keep)
	}
	if !b.exists(refuse, oort.DataExt) || !b.exists(refuse, oort.MetaExt) {
		t.Errorf("pair %s: accept failed, but it is gone from the payload", refuse)
	}
	if b.exists(keep, oort.DataExt) || b.exists(keep, oort.MetaExt) {
		t.Errorf("pair %s: accepted, but still on the payload", keep)
	}
	if _, err := os.Stat(spooled); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pulled file %q of the refused pair: %v; want it removed", spooled, err)
	}

	// The next collection delivers it.
	rep, err = b.col.Collect(testContext(t), b.info(t), b.files, rec.accept)
	if err != nil || !slices.Equal(rep.Accepted, []string{refuse}) {
		t.Errorf("second Collect: %+v, %v; want %s accepted", rep, err, refuse)
	}
}

func TestCollectRejects(t *testing.T) {
	original := []byte("the science data, 40 bytes of it.......\n")
	flipped := slices.Clone(original)
	flipped[3] ^= 0x20
	tests := []struct {
		name   string
		spoil  func(t *testing.T, b *bench, id string)
		reason string
	}{
		{"corrupted data, same size", func(t *testing.T, b *bench, id string) {
			writeFile(t, b.pair(id, oort.DataExt), flipped)
		}, fmt.Sprintf("crc32 %08x, meta says %08x", crc32.ChecksumIEEE(flipped), crc32.ChecksumIEEE(original))},
		{"truncated data", func(t *testing.T, b *bench, id string) {
			writeFile(t, b.pair(id, oort.DataExt), original[:30])
		}, fmt.Sprintf("data is 30 bytes, meta says 40; crc32 %08x, meta says %08x", crc32.ChecksumIEEE(original[:30]), crc32.ChecksumIEEE(original))},
		{"meta does not parse", func(t *testing.T, b *bench, id string) {
			writeFile(t, b.pair(id, oort.MetaExt), []byte(`{"topic":`))
		}, "meta does not parse: unexpected end of JSON input"},
		{"meta of another pair", func(t *testing.T, b *bench, id string) {
			var m map[string]any
			data, _ := os.ReadFile(b.pair(id, oort.MetaExt))
			json.Unmarshal(data, &m)
			m["file_info"].(map[string]any)["id"] = "00000000-0000-4000-8000-000000000000"
			data, _ = json.Marshal(m)
			writeFile(t, b.pair(id, oort.MetaExt), data)
		}, `meta: file_info.id is "00000000-0000-4000-8000-000000000000", want "`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBench(t)
			bad := b.send(t, "bad.bin", "science", original)
			good := b.send(t, "good.bin", "science", []byte("fine"))
			tt.spoil(t, b, bad)
			spoilt := map[string][]byte{}
			for _, ext := range []string{oort.DataExt, oort.MetaExt} {
				spoilt[ext], _ = os.ReadFile(b.pair(bad, ext))
			}
			rec := newRecorder(t)
			rep, err := b.col.Collect(testContext(t), b.info(t), b.files, rec.accept)
			if len(rep.Rejected) != 1 || rep.Rejected[0].UUID != bad || !strings.HasPrefix(rep.Rejected[0].Reason, tt.reason) {
				t.Errorf("rejected %+v; want %s with reason %q", rep.Rejected, bad, tt.reason)
			}
			var pe *oort.PairError
			if !errors.As(err, &pe) || pe.UUID != bad || !errors.Is(err, oort.ErrRejected) || !strings.Contains(err.Error(), "oort: pair "+bad+": "+tt.reason) {
				t.Errorf("Collect: %v; want the error to name pair %s and say %q", err, bad, tt.reason)
			}
			if !slices.Equal(rep.Accepted, []string{good}) {
				t.Errorf("accepted %q; want only the good pair %s", rep.Accepted, good)
			}
			for _, p := range rec.got {
				if p.Meta.FileInfo.ID == bad {
					t.Errorf("the rejected pair %s was handed to accept", bad)
				}
			}
			for _, ext := range []string{oort.DataExt, oort.MetaExt} {
				if got, err := os.ReadFile(b.pair(bad, ext)); err != nil || string(got) != string(spoilt[ext]) {
					t.Errorf("rejected pair %s%s on the payload: %v; want it kept as it was", bad, ext, err)
				}
			}
			if n := spoolNames(t, b.col.SpoolDir); len(n) != 0 {
				t.Errorf("spool dir holds %q; a rejected pull must be removed", n)
			}
		})
	}
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCollectSkipsIncompletePairs(t *testing.T) {
	b := startBench(t)
	loneMeta := b.send(t, "a.bin", "logs", []byte("a"))
	loneData := b.send(t, "b.bin", "logs", []byte("b"))
	if err := os.Remove(b.pair(loneMeta, oort.DataExt)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b.pair(loneData, oort.MetaExt)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, b.p.Host(b.p.OORTWorkdir+"/transfers/notes.txt"), []byte("not a pair"))
	called := false
	rep, err := b.col.Collect(testContext(t), b.info(t), b.files, func(context.Context, oort.Pulled) error {
		called = true
		return nil
	})
	if err != nil || called {
		t.Errorf("Collect: %v, accept called %v; want no error and no call", err, called)
	}
	want := []string{loneMeta, loneData}
	slices.Sort(want)
	if !slices.Equal(rep.Pending, want) || len(rep.Accepted) != 0 || len(rep.Rejected) != 0 {
		t.Errorf("report %+v; want pending %q only", rep, want)
	}
	if !b.exists(loneMeta, oort.MetaExt) || !b.exists(loneData, oort.DataExt) {
		t.Error("Collect deleted half of an incomplete pair")
	}
}

// failingRemove is the payload's files, except that removing fails.
type failingRemove struct{ oort.Files }

func (failingRemove) Remove(ctx context.Context, name string) error {
	return fmt.Errorf("remove %s: %w", name, os.ErrPermission)
}

func TestCollectReportsFailedDelete(t *testing.T) {
	b := startBench(t)
	id := b.send(t, "a.bin", "logs", []byte("a"))
	rec := newRecorder(t)
	rep, err := b.col.Collect(testContext(t), b.info(t), failingRemove{b.files}, rec.accept)
	if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "oort: pair "+id+": accepted, but deleting it on the payload failed") {
		t.Errorf("Collect: %v; want the delete failure, naming the pair", err)
	}
	if !slices.Equal(rep.Accepted, []string{id}) || len(rec.got) != 1 {
		t.Errorf("report %+v, %d accepted; want the pair reported accepted", rep, len(rec.got))
	}
}

func TestInfoTopicsReplaceAllowedList(t *testing.T) {
	b := startBench(t)
	b.col.Topics = []string{"science", "logs"}
	if info := b.info(t); !slices.Equal(info.Topics, []string{"science", "logs"}) {
		t.Errorf("topics %q after posting [science logs]", info.Topics)
	}
	b.send(t, "a.bin", "science", []byte("a"))
	writeFile(t, b.p.Host("/outbox/b.bin"), []byte("b"))
	resp, err := b.sdk.SendFileWithResponse(testContext(t), sdkclient.SendFileRequest{Destination: "ground", Filepath: "/outbox/b.bin", Topic: "images"})
	if err != nil || resp.StatusCode() != http.StatusBadRequest || resp.JSON400 == nil || !strings.Contains(resp.JSON400.Message, `topic "images" is not allowed`) {
		t.Errorf("send_file on topic images: %v %s %s; want it refused", err, resp.Status(), resp.Body)
	}

	// Nil Topics sends none: the list stays. An empty list allows all.
	b.col.Topics = nil
	if info := b.info(t); !slices.Equal(info.Topics, []string{"science", "logs"}) {
		t.Errorf("topics %q after posting no topics; want them left as they were", info.Topics)
	}
	b.col.Topics = []string{}
	if info := b.info(t); len(info.Topics) != 0 {
		t.Errorf("topics %q after posting []", info.Topics)
	}
	b.send(t, "b.bin", "images", []byte("b"))

	b.col.Topics = []string{"logs", "no spaces"}
	if _, err := b.col.Info(testContext(t)); err == nil || !strings.Contains(err.Error(), `Collector.Topics[1] "no spaces": want a match for ^[-_A-Za-z0-9]+$`) {
		t.Errorf("Info with a bad topic: %v", err)
	}
}

func TestInfo(t *testing.T) {
	b := startBench(t)
	id := b.send(t, "a.bin", "logs", []byte("a"))
	info := b.info(t)
	si := info.Sysinfo
	if si.Username != "signaling" || si.Workdir != "/var/lib/oort/transfers" || si.Uploads != "/var/lib/oort/uploads" ||
		si.AgentUpgrades != "/var/lib/oort/upgrades" || si.Dead != "/var/lib/oort/dead" || si.Version == "" || si.Diskfree <= 0 {
		t.Errorf("sysinfo %+v", si)
	}
	want := []string{id + oort.DataExt, id + oort.MetaExt}
	if !slices.Equal(info.Available.Files, want) {
		t.Errorf("available files %q, want %q", info.Available.Files, want)
	}
	if err := b.col.Ping(testContext(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestAgentDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agent := "http://" + ln.Addr().String()
	ln.Close()
	col := &oort.Collector{Agent: agent, SpoolDir: t.TempDir()}
	_, err = col.Info(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "oort: POST "+agent+"/collector/v1/info: ") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Info with the agent down: %v; want connection refused, naming the URL", err)
	}
	if err := col.Ping(testContext(t)); err == nil || !strings.Contains(err.Error(), "oort: GET "+agent+"/collector/v1/ping: ") {
		t.Errorf("Ping with the agent down: %v; want an error naming the URL", err)
	}
}

func TestCollectorErrors(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"status":400,"message":"topics[0] \"x y\": want a match"}`))
	}))
	defer refuse.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html>`))
	}))
	defer garbage.Close()
	relative := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"sysinfo":{"workdir":"transfers","uploads":"/u"}}`))
	}))
	defer relative.Close()
	tests := []struct {
		name string
		col  oort.Collector
		want string
	}{
		{"no agent", oort.Collector{}, "oort: Collector.Agent is required"},
		{"agent not a URL", oort.Collector{Agent: "127.0.0.1:2005"}, `oort: Collector.Agent "127.0.0.1:2005": want a base URL such as http://192.0.2.1:2005`},
		{"agent refuses", oort.Collector{Agent: refuse.URL}, "oort: POST " + refuse.URL + "/collector/v1/info: 400 Bad Request: topics[0] \"x y\": want a match"},
		{"not JSON", oort.Collector{Agent: garbage.URL}, "oort: POST " + garbage.URL + "/collector/v1/info: answer is not the JSON expected"},
		{"relative workdir", oort.Collector{Agent: relative.URL}, `sysinfo.workdir "transfers": want an absolute payload path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.col.Info(testContext(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Info: %v; want %q", err, tt.want)
			}
		})
	}

	info := &oort.Info{Sysinfo: oort.Sysinfo{Workdir: "/var/lib/oort/transfers"}}
	for _, tt := range []struct {
		name string
		col  oort.Collector
		info *oort.Info
		want string
	}{
		{"nil info", oort.Collector{SpoolDir: t.TempDir()}, nil, "oort: Collect: info is nil"},
		{"no spool dir", oort.Collector{}, info, "oort: Collector.SpoolDir is required"},
		{"relative workdir", oort.Collector{SpoolDir: t.TempDir()}, &oort.Info{}, `oort: Collect: sysinfo.workdir "": want an absolute payload path`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.col.Collect(testContext(t), tt.info, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Collect: %v; want %q", err, tt.want)
			}
		})
	}
}
