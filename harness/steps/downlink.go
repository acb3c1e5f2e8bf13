package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"

	"github.com/satbench/hil/fixtures/payload/mkfile"
	"github.com/satbench/hil/harness/bench"
	"github.com/satbench/hil/harness/bus"
	"github.com/satbench/hil/harness/downlink"
	"github.com/satbench/hil/harness/oort"
	"github.com/satbench/hil/harness/remote"
	"github.com/satbench/hil/harness/store"
)

func downlinkSteps(sc *godog.ScenarioContext) {
	sc.Given(`^the space link has contacts of (\S+) every (\S+) at (\S+)$`, linkContacts)
	sc.Given(`^the space link runs at (\S+)$`, linkRate)
	sc.Given(`^the window's user command writes "([^"]*)" of (\S+) to "([^"]*)"$`, userCommandWrites)
	sc.Given(`^OORT topic "([^"]*)" lands in bucket "([^"]*)" under "([^"]*)"$`, topicRoute)

	sc.When(`^the payload writes "([^"]*)" of (\S+) to "([^"]*)"$`, writesFile)
	sc.When(`^the payload writes a file with a (\d+)-byte name to "([^"]*)"$`, writesLongName)
	sc.When(`^the payload writes (\d+) files of (\S+) to "([^"]*)"$`, writesFiles)
	sc.When(`^the payload sends "([^"]*)" of (\S+) on topic "([^"]*)" through the OORT agent$`, sendsOORT)
	sc.When(`^the OORT pair of "([^"]*)" is corrupted on the payload$`, corruptsPair)
	sc.When(`^the S3 endpoint goes down$`, s3Down)
	sc.When(`^the S3 endpoint goes down for (\S+)$`, s3DownFor)
	sc.When(`^the S3 endpoint comes back$`, s3Up)
	sc.When(`^the S3 endpoint is slowed to (\S+) per second$`, s3Slow)
	sc.When(`^the space link goes down$`, linkDown(true))
	sc.When(`^the space link comes back$`, linkDown(false))
	sc.When(`^the space link is slowed to (\S+)$`, linkSlow)

	sc.Then(`^(?:the file )?"([^"]*)" lands in bucket "([^"]*)" under "([^"]*)" within (\S+)$`, lands)
	sc.Then(`^the file with the (\d+)-byte name lands in bucket "([^"]*)" under "([^"]*)" within (\S+)$`, longNameLands)
	sc.Then(`^"([^"]*)" has not crossed the space link$`, notCrossed)
	sc.Then(`^all (\d+) files land in bucket "([^"]*)" under "([^"]*)" within (\S+)$`, allLand)
	sc.Then(`^no other object appears in bucket "([^"]*)"$`, noOtherObject)
	sc.Then(`^the transfer of "([^"]*)" was cut by the end of a contact and resumed$`, cutAndResumed)
	sc.Then(`^the downlink retried while the S3 endpoint was down$`, retried)
	sc.Then(`^the OORT pair of "([^"]*)" is reported as not matching its meta, kept on the payload and not delivered$`, pairRejected)
}

// sent is a file the scenario put on the payload to go down.
type sent struct {
	name   string // as written, after unquoting
	size   int64
	sha256 string
	source string
	topic  string
	uuid   string // OORT
	landed string // the key it landed under
}

// unquote reads a file name written in a feature with Go escapes, so that
// names with newlines or invalid UTF-8 can be written: "line\nbreak".
func unquote(s string) (string, error) {
	// Gherkin already turns \n in a table cell into a newline.
	u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, "\n", `\n`) + `"`)
	if err != nil {
		return "", fmt.Errorf("file name %q: %v (write it with Go escapes, e.g. line\\nbreak)", s, err)
	}
	return u, nil
}

func linkContacts(ctx context.Context, dur, period, rate string) error {
	w := get(ctx)
	d, err1 := time.ParseDuration(dur)
	p, err2 := time.ParseDuration(period)
	r, err3 := bench.ParseBitRate(rate)
	if err := firstErr(err1, err2, err3); err != nil {
		return err
	}
	l := &w.bench.Downlink.Link
	l.Rate, l.Contacts.Duration, l.Contacts.Period = r, bench.Duration(d), bench.Duration(p)
	return w.mustNotBeOpen("the space link")
}

func linkRate(ctx context.Context, rate string) error {
	w := get(ctx)
	r, err := bench.ParseBitRate(rate)
	if err != nil {
		return err
	}
	w.bench.Downlink.Link.Rate = r
	return w.mustNotBeOpen("the space link")
}

// userCommandWrites makes the window's user command write the file with
// mkfile, on the payload itself: the way to make files too big to send
// over SSH from the step within the window.
func userCommandWrites(ctx context.Context, name, size, dir string) error {
	w := get(ctx)
	n, err := mkfile.ParseSize(size)
	if err != nil {
		return err
	}
	seed := uint64(len(w.sent) + 1)
	h := sha256.New()
	if _, err := io.Copy(h, mkfile.Content(n, seed)); err != nil {
		return err
	}
	w.window.Tasking["user_command"] = map[string]any{
		"executable":           "/usr/bin/mkfile",
		"executable_arguments": []string{path.Join(dir, name), size, strconv.FormatUint(seed, 10)},
	}
	w.sent = append(w.sent, &sent{name: name, size: n, sha256: hex.EncodeToString(h.Sum(nil)), source: downlink.SourceOutbox})
	return nil
}

func topicRoute(ctx context.Context, topic, bucket, prefix string) error {
	w := get(ctx)
	w.bench.Downlink.Routes = append(w.bench.Downlink.Routes, bench.Route{Topic: topic, Bucket: bucket, Prefix: prefix})
	return w.mustNotBeOpen("a topic route")
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// upPayload returns a client to the window's payload once the window has
// started (starting it if need be).
func upPayload(ctx context.Context) (*remote.Client, error) {
	if err := reaches(ctx, string(bus.Started)); err != nil {
		return nil, err
	}
	return get(ctx).dial(ctx)
}

// writeContent writes size bytes of mkfile.Content(size, seed) to name on
// the payload and returns their SHA-256.
func writeContent(ctx context.Context, c *remote.Client, name string, size int64, seed uint64) (string, error) {
	h := sha256.New()
	if err := c.Put(ctx, name, io.TeeReader(mkfile.Content(size, seed), h), 0o644); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeFiles writes files of size bytes into dir on the running payload,
// each of payload.Content, and records them as sent from source.
func writeFiles(ctx context.Context, names []string, size, dir, source string) ([]*sent, error) {
	w := get(ctx)
	n, err := mkfile.ParseSize(size)
	if err != nil {
		return nil, err
	}
	c, err := upPayload(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []*sent
	for _, name := range names {
		sum, err := writeContent(ctx, c, path.Join(dir, name), n, uint64(len(w.sent)))
		if err != nil {
			return nil, err
		}
		s := &sent{name: name, size: n, sha256: sum, source: source}
		w.sent = append(w.sent, s)
		out = append(out, s)
	}
	// Files still being written when the window ends would race the
	// sweep: say so rather than fail later in a puzzling way.
	if es := events(ctx, func(e bus.Event) bool {
		return e.Window == w.window.ID && e.Kind == bus.KindState && e.State == bus.Ending
	}); len(es) > 0 {
		return nil, fmt.Errorf("window %s ended (%s) while this step was still writing files; make the window longer than %v", w.window.ID, es[0].Time.Format("15:04:05.000"), w.window.Duration)
	}
	return out, nil
}

func writesFile(ctx context.Context, name, size, dir string) error {
	name, err := unquote(name)
	if err != nil {
		return err
	}
	_, err = writeFiles(ctx, []string{name}, size, dir, downlink.SourceOutbox)
	return err
}

// longName is a file name of n bytes.
func longName(n int) string { return strings.Repeat("n", n-4) + ".dat" }

func writesLongName(ctx context.Context, n int, dir string) error {
	return writesFile(ctx, longName(n), "1KiB", dir)
}

func longNameLands(ctx context.Context, n int, bucket, prefix, within string) error {
	return lands(ctx, longName(n), bucket, prefix, within)
}

func notCrossed(ctx context.Context, name string) error {
	name, err := unquote(name)
	if err != nil {
		return err
	}
	if es := events(ctx, func(e bus.Event) bool {
		return e.Kind == bus.KindDownlink && e.File == name && (e.Name == downlink.EventCrossed || e.Name == downlink.EventDelivered)
	}); len(es) > 0 {
		return fmt.Errorf("%q crossed the link: %v", name, es[0])
	}
	return nil
}

func writesFiles(ctx context.Context, count int, size, dir string) error {
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("file-%05d.dat", i)
	}
	_, err := writeFiles(ctx, names, size, dir, downlink.SourceOutbox)
	return err
}

// sendsOORT writes the file on the payload and asks the payload's OORT
// agent to send it, as payload software does through the SDK API.
func sendsOORT(ctx context.Context, name, size, topic string) error {
	w := get(ctx)
	name, err := unquote(name)
	if err != nil {
		return err
	}
	const dir = "/var/tmp" // the agent moves the file away from here
	ss, err := writeFiles(ctx, []string{name}, size, dir, downlink.SourceOORT)
	if err != nil {
		return err
	}
	s, src := ss[0], path.Join(dir, name)
	if addr := w.bus.Boards[w.window.Board].Config.OORT.Address; addr == "" {
		return fmt.Errorf("board %s runs no OORT agent (no oort.address in %s)", w.window.Board, w.bus.Boards[w.window.Board].Config.File)
	}
	// On the payload, as its software calls the agent's SDK API.
	c, err := upPayload(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var out bytes.Buffer
	if err := c.Run(ctx, fmt.Sprintf("/usr/bin/oort_send %s %s ground", shellQuote(src), shellQuote(topic)), &out); err != nil {
		return fmt.Errorf("oort_send %s on topic %s: %w", src, topic, err)
	}
	uuid := strings.TrimSpace(out.String())
	if uuid == "" {
		return fmt.Errorf("oort_send %s on topic %s printed no UUID", src, topic)
	}
	s.topic, s.uuid = topic, uuid
	return nil
}

// corruptsPair changes one byte of the pair's data, keeping its size, as
// a flipped bit in storage would.
func corruptsPair(ctx context.Context, name string) error {
	w := get(ctx)
	s, err := w.sentOORT(name)
	if err != nil {
		return err
	}
	c, err := upPayload(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	col := &oort.Collector{Agent: "http://" + w.bus.Boards[w.window.Board].Config.OORT.Address, SpoolDir: w.dir, HTTP: w.bus.HTTPClient()}
	info, err := col.Info(ctx)
	if err != nil {
		return err
	}
	data := path.Join(info.Sysinfo.Workdir, s.uuid+".data.oort")
	b, err := c.ReadFile(ctx, data)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("%s is empty: nothing to corrupt", data)
	}
	b[len(b)/2] ^= 0xff
	return c.Put(ctx, data, bytes.NewReader(b), 0o600)
}

func s3Server(ctx context.Context) (store.Server, error) {
	w := get(ctx)
	if _, err := w.open(ctx); err != nil {
		return nil, err
	}
	if w.bus.StoreServer == nil {
		return nil, fmt.Errorf("bench %s uses store kind %s, which the bench does not run: it cannot take it down", w.bench.Name, w.bench.Store.Kind)
	}
	return w.bus.StoreServer, nil
}

func s3Down(ctx context.Context) error {
	srv, err := s3Server(ctx)
	if err != nil {
		return err
	}
	return srv.Stop(ctx)
}

func s3Up(ctx context.Context) error {
	srv, err := s3Server(ctx)
	if err != nil {
		return err
	}
	return srv.Start(ctx)
}

// s3DownFor takes the endpoint down now and brings it back after d, while
// the scenario goes on.
func s3DownFor(ctx context.Context, dur string) error {
	d, err := time.ParseDuration(dur)
	if err != nil {
		return err
	}
	srv, err := s3Server(ctx)
	if err != nil {
		return err
	}
	if err := srv.Stop(ctx); err != nil {
		return err
	}
	w := get(ctx)
	w.bus.Log.Append(bus.Event{Kind: bus.KindError, Name: "s3 endpoint down", Detail: "for " + d.String()})
	done := make(chan error, 1)
	t := time.AfterFunc(d, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := srv.Start(sctx)
		w.bus.Log.Append(bus.Event{Kind: bus.KindError, Name: "s3 endpoint up", Detail: errText(err)})
		done <- err
	})
	w.cleanups = append(w.cleanups, func() error {
		if t.Stop() {
			return nil
		}
		return <-done
	})
	return nil
}

func s3Slow(ctx context.Context, rate string) error {
	n, err := mkfile.ParseSize(rate)
	if err != nil {
		return err
	}
	w := get(ctx)
	if _, err := s3Server(ctx); err != nil {
		return err
	}
	w.bus.StoreProxy.SetRate(n)
	return nil
}

func linkDown(down bool) func(context.Context) error {
	return func(ctx context.Context) error {
		w := get(ctx)
		if _, err := w.open(ctx); err != nil {
			return err
		}
		w.bus.Queue.Link().SetDown(down)
		return nil
	}
}

func linkSlow(ctx context.Context, rate string) error {
	r, err := bench.ParseBitRate(rate)
	if err != nil {
		return err
	}
	w := get(ctx)
	if _, err := w.open(ctx); err != nil {
		return err
	}
	l := w.bus.Queue.Link()
	cfg := l.Config()
	cfg.Rate = int64(r)
	l.Set(cfg)
	return nil
}

// delivered waits for the bus to report s delivered and returns the key.
func (w *world) delivered(ctx context.Context, s *sent) (bus.Event, error) {
	return w.bus.Log.Wait(ctx, func(e bus.Event) bool {
		return e.Kind == bus.KindDownlink && e.Name == downlink.EventDelivered && e.File == s.name && e.Window == w.window.ID
	})
}

func lands(ctx context.Context, name, bucket, prefix, within string) error {
	w := get(ctx)
	name, err := unquote(name)
	if err != nil {
		return err
	}
	s := w.sentFile(name)
	if s == nil {
		return fmt.Errorf("%q was not written in this scenario", name)
	}
	d, err := time.ParseDuration(within)
	if err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	e, err := w.delivered(ctx, s)
	if err != nil {
		return fmt.Errorf("%q not delivered within %v: %w", name, d, err)
	}
	return w.checkObject(ctx, s, e, bucket, prefix)
}

func allLand(ctx context.Context, count int, bucket, prefix, within string) error {
	w := get(ctx)
	if len(w.sent) != count {
		return fmt.Errorf("the scenario wrote %d files, not %d", len(w.sent), count)
	}
	d, err := time.ParseDuration(within)
	if err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// Every delivery first, then the checks: the endpoint may be down
	// between early deliveries and the last one.
	evs := make([]bus.Event, len(w.sent))
	for i, s := range w.sent {
		if evs[i], err = w.delivered(ctx, s); err != nil {
			return fmt.Errorf("%q not delivered within %v: %w", s.name, d, err)
		}
	}
	for i, s := range w.sent {
		if err := w.checkObject(ctx, s, evs[i], bucket, prefix); err != nil {
			return err
		}
	}
	return nil
}

// keyTimeRE finds the timestamp in a key below <prefix>/<sat>/downlink/.
var keyTimeRE = regexp.MustCompile(`^\d{4}/\d{2}/\d{2}/(\d{8}T\d{6}Z)_`)

// checkObject checks that what landed for s is s: the bucket, the key
// (the layout under prefix, with the delivery time, after the window's
// end, as its timestamp), the size, the SHA-256 of the bytes read back,
// the content type and the metadata.
func (w *world) checkObject(ctx context.Context, s *sent, e bus.Event, bucket, prefix string) error {
	b, key, ok := strings.Cut(strings.TrimPrefix(e.Object, "s3://"), "/")
	if !ok || b != bucket {
		return fmt.Errorf("%q landed at %s, want bucket %s", s.name, e.Object, bucket)
	}
	dir := strings.TrimPrefix(prefix+"/", "/") + w.bench.Satellite + "/downlink/"
	m := keyTimeRE.FindStringSubmatch(strings.TrimPrefix(key, dir))
	var ts time.Time
	if m != nil {
		ts, _ = time.Parse("20060102T150405Z", m[1])
	}
	if want := downlink.OutboxKey(prefix, w.bench.Satellite, ts, s.name); m == nil || key != want {
		return fmt.Errorf("%q landed at %s, want a key in the layout %sYYYY/MM/DD/YYYYMMDDTHHMMSSZ_<name>, like %s", s.name, e.Object, dir, want)
	}
	// The timestamp is the delivery time; a key taken already moves it on
	// by a second or so.
	// Files go down after the window, but a staged file as soon as the
	// app stages it.
	earliest := w.window.End()
	if s.source == downlink.SourceStage {
		earliest = w.window.Start
	}
	if ts.Before(earliest.Truncate(time.Second)) || ts.After(e.Time.Add(time.Minute)) {
		return fmt.Errorf("%s: timestamp %v is not the delivery time %v (window %v to %v)", e.Object, ts, e.Time.UTC(), w.window.Start.UTC(), w.window.End().UTC())
	}
	st := w.bus.Store
	obj, err := st.Stat(ctx, bucket, key)
	if err != nil {
		return err
	}
	if obj.Size != s.size {
		return fmt.Errorf("%s has %d bytes, want %d", e.Object, obj.Size, s.size)
	}
	if got, err := store.SHA256(ctx, st, bucket, key); err != nil || got != s.sha256 {
		return fmt.Errorf("%s: sha256 %s (%v), want %s (the bytes the payload wrote)", e.Object, got, err, s.sha256)
	}
	if wantType := downlink.ContentType(s.name); obj.ContentType != wantType {
		return fmt.Errorf("%s: content type %q, want %q", e.Object, obj.ContentType, wantType)
	}
	want := map[string]string{"window-id": w.window.ID, "payload": w.window.Board, "source": s.source, "sha256": s.sha256}
	if s.topic != "" {
		want["topic"], want["oort-uuid"] = s.topic, s.uuid
	}
	for k, v := range want {
		if obj.Metadata[k] != v {
			return fmt.Errorf("%s: metadata %s = %q, want %q (all: %v)", e.Object, k, obj.Metadata[k], v, obj.Metadata)
		}
	}
	s.landed = e.Object
	return nil
}

// noOtherObject checks that the bucket holds exactly the objects the
// scenario's files landed as: nothing partial, nothing twice.
func noOtherObject(ctx context.Context, bucket string) error {
	w := get(ctx)
	want := map[string]bool{}
	for _, s := range w.sent {
		if s.landed != "" {
			want[s.landed] = true
		}
	}
	objs, err := w.bus.Store.List(ctx, bucket, "")
	if err != nil {
		return err
	}
	var other []string
	for _, o := range objs {
		if !want["s3://"+bucket+"/"+o.Key] {
			other = append(other, fmt.Sprintf("%s (%d bytes)", o.Key, o.Size))
		}
	}
	if len(other) > 0 {
		return fmt.Errorf("bucket %s holds %d objects the scenario did not check: %s", bucket, len(other), strings.Join(other, ", "))
	}
	return nil
}

func cutAndResumed(ctx context.Context, name string) error {
	name, err := unquote(name)
	if err != nil {
		return err
	}
	var cut, resumed bool
	for _, e := range events(ctx, func(e bus.Event) bool { return e.Kind == bus.KindDownlink && e.File == name }) {
		switch {
		case e.Name == downlink.EventPaused && !strings.Contains(e.Detail, ": 0 of "):
			cut = true
		case e.Name == downlink.EventResumed && cut:
			resumed = true
		}
	}
	if !cut || !resumed {
		return fmt.Errorf("%q: cut mid-file %v, resumed from there %v; want both (events below)", name, cut, resumed)
	}
	return nil
}

func retried(ctx context.Context) error {
	if es := events(ctx, func(e bus.Event) bool { return e.Kind == bus.KindDownlink && e.Name == downlink.EventRetry }); len(es) == 0 {
		return fmt.Errorf("no upload was retried")
	}
	return nil
}

func pairRejected(ctx context.Context, name string) error {
	w := get(ctx)
	s, err := w.sentOORT(name)
	if err != nil {
		return err
	}
	if _, err := result(ctx); err != nil {
		return err
	}
	if es := events(ctx, func(e bus.Event) bool {
		return e.Name == "oort pair rejected" && strings.HasPrefix(e.Detail, s.uuid+": ")
	}); len(es) == 0 {
		return fmt.Errorf("pair %s of %q was not reported as rejected", s.uuid, name)
	}
	if es := events(ctx, func(e bus.Event) bool { return e.Name == downlink.EventDelivered && e.File == name }); len(es) > 0 {
		return fmt.Errorf("%q was delivered: %v", name, es[0])
	}
	// The pair is still in the agent's transfers directory: the payload
	// is off, so look at its disk (the sim bench keeps it).
	root, err := w.payloadRoot()
	if err != nil {
		return err
	}
	for _, ext := range []string{".data.oort", ".meta.oort"} {
		if !fileExists(path.Join(root, "var/lib/oort/transfers", s.uuid+ext)) {
			return fmt.Errorf("pair %s of %q: %s is gone from the payload", s.uuid, name, s.uuid+ext)
		}
	}
	return nil
}

func (w *world) sentFile(name string) *sent {
	for _, s := range w.sent {
		if s.name == name {
			return s
		}
	}
	return nil
}

// sentOORT is the file the scenario sent under name through the OORT agent.
func (w *world) sentOORT(name string) (*sent, error) {
	s := w.sentFile(name)
	if s == nil || s.uuid == "" {
		return nil, fmt.Errorf("%q was not sent through the OORT agent in this scenario", name)
	}
	return s, nil
}

// shellQuote quotes s as one word for the payload's command line.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
