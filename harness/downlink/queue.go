package downlink

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/satbench/hil/harness/store"
)

// The sources a file can come down from.
const (
	SourceOutbox = "outbox" // the Software-in-Space /outbox sweep
	SourceOORT   = "oort"   // the OORT agent, through the collector
	SourceStage  = "stage"  // the Payload Interface's StageFileDownload
)

// TTL is how long an item may wait in each stage of the queue before it
// moves to the next; after surplus it is dropped. A zero stage is skipped.
type TTL struct {
	Urgent  time.Duration `json:"urgent"`
	Bulk    time.Duration `json:"bulk"`
	Surplus time.Duration `json:"surplus"`
}

// DefaultTTL is the OORT agent's default: 9000 s, 43200 s, 172800 s.
var DefaultTTL = TTL{9000 * time.Second, 43200 * time.Second, 172800 * time.Second}

// Stage is where an item is in its TTL.
type Stage int

// The stages, drained in this order.
const (
	Urgent Stage = iota
	Bulk
	Surplus
	Expired
)

func (s Stage) String() string {
	return [...]string{"urgent", "bulk", "surplus", "expired"}[s]
}

// Stage returns the item's stage age after it was queued.
func (t TTL) Stage(age time.Duration) Stage {
	switch {
	case age < t.Urgent:
		return Urgent
	case age < t.Urgent+t.Bulk:
		return Bulk
	case age < t.Urgent+t.Bulk+t.Surplus:
		return Surplus
	}
	return Expired
}

// Item is one file in the queue, as its journal record holds it.
type Item struct {
	ID       string            `json:"id"` // given by Enqueue
	Seq      int64             `json:"seq"`
	Source   string            `json:"source"` // SourceOutbox, SourceOORT or SourceStage
	Window   string            `json:"window"`
	Board    string            `json:"board"`
	Name     string            `json:"name"`           // the base name the key ends with
	Path     string            `json:"path,omitempty"` // where it was on the payload
	ModTime  time.Time         `json:"mtime,omitzero"` // its modification time there
	Topic    string            `json:"topic,omitempty"`
	UUID     string            `json:"uuid,omitempty"` // the OORT agent's id
	Size     int64             `json:"size"`
	SHA256   string            `json:"sha256"` // hex
	TTL      TTL               `json:"ttl"`
	Priority int               `json:"priority,omitempty"` // higher first, within a stage
	Meta     map[string]string `json:"meta,omitempty"`     // more user metadata
	Queued   time.Time         `json:"queued"`
	Bucket   string            `json:"bucket"`
	Prefix   string            `json:"prefix"`
	Sent     int64             `json:"sent"`          // bytes across the link so far
	Key      string            `json:"key,omitempty"` // fixed by the first upload attempt
}

// dedup identifies the file itself, so that a file handed over twice goes
// down once: the bus died, or lost its link to the payload, between
// queueing it and deleting it there, and the next window's sweep finds it
// again. An OORT file is its uuid; any other file its path, size,
// modification time and contents (not its window: the next sweep is
// another window's). Such a file counts as handed over twice only while
// its source has not confirmed deleting it (SourceRemoved), so a payload
// that writes the same bytes again under the same name is heard again.
func (it *Item) dedup() string {
	if it.UUID != "" {
		return "oort/" + it.UUID
	}
	return fmt.Sprintf("%s/%s/%s/%d/%d/%s", it.Source, it.Board, cmp.Or(it.Path, it.Name), it.Size, it.ModTime.Unix(), it.SHA256)
}

// Route is where files of one OORT topic land.
type Route struct {
	Bucket string
	Prefix string
}

// What can happen to an item, as Event.Kind.
const (
	EventQueued    = "queued"    // taken into the journal
	EventDuplicate = "duplicate" // handed over before: not queued again
	EventRecovered = "recovered" // found in the journal at Open
	EventSending   = "sending"   // took the link
	EventPaused    = "paused"    // waiting for a contact, bytes still to send
	EventResumed   = "resumed"   // sending again after a pause
	EventCrossed   = "crossed"   // all its bytes crossed the link
	EventRetry     = "retry"     // an upload or journal write failed; Err says why
	EventDelivered = "delivered" // landed in S3; Object says where
	EventDropped   = "dropped"   // will never go down (TTL expired)
)

// Event is something that happened to an item.
type Event struct {
	Kind   string // one of the Event* constants
	Item   Item
	Object store.Object // for delivered
	Err    error        // for retry
	Detail string
}

// Config configures a queue. Dir and Store are required; the zero value
// of every other field works.
type Config struct {
	Dir       string // the journal and the files, kept across restarts
	Store     store.Store
	Satellite string // in every key, e.g. FM1
	// Bucket and Prefix receive outbox and staged files, and OORT topics
	// without a route.
	Bucket, Prefix string
	Routes         map[string]Route // OORT topic -> where it lands
	Link           *Link            // nil: always in contact, unlimited
	Uploads        int              // uploads at once; default 4
	RetryMin       time.Duration    // default 100ms
	RetryMax       time.Duration    // default 5s
	Now            func() time.Time // the delivery clock, for keys
	Notify         func(Event)      // called for every event, in order per item
}

// Queue is the bus's downlink queue: every file waiting to go down, from
// every source, journaled on disk so that a harness killed at any moment
// and started again delivers each file exactly once. Files cross the
// space link one at a time, most urgent first; each file that has fully
// crossed is uploaded, with retries, under a key fixed before the first
// attempt.
type Queue struct {
	cfg Config

	mu         sync.Mutex
	items      map[string]*Item     // journaled, not yet delivered
	uploading  map[string]bool      // ids being uploaded
	ledger     map[string]string    // id -> key of every delivered item
	oortLedger map[string]string    // dedup -> key of every delivered OORT file
	enqueuing  map[string]bool      // dedups Enqueue is writing to the journal
	reserved   map[string]string    // key -> id, keys fixed but not yet delivered
	done       map[string]Event     // ids delivered or dropped since Open
	seq        int64                // last Seq given
	changed    chan struct{}        // closed and replaced on every change
	ledgerMu   sync.Mutex           // guards ledgerF
	ledgerF    *os.File             // delivered.log, appended to
	progress   map[string]time.Time // last journal write of Sent, per id
	rev        uint64               // last record snapshot taken, under mu

	recMu   sync.Mutex        // orders record renames; never held with mu taken after it
	written map[string]uint64 // id -> rev of its record on disk; absent once forgotten
}

// Open opens (or creates) the queue in cfg.Dir and recovers what a
// previous run left: journaled items go on from where they were; pulls
// that never reached the journal are deleted (their files are still on
// the payload).
func Open(cfg Config) (*Queue, error) {
	if cfg.Dir == "" || cfg.Store == nil {
		return nil, errors.New("downlink: queue needs a directory and a store")
	}
	cfg.Uploads = cmp.Or(cfg.Uploads, 4)
	cfg.RetryMin = cmp.Or(cfg.RetryMin, 100*time.Millisecond)
	cfg.RetryMax = max(cmp.Or(cfg.RetryMax, 5*time.Second), cfg.RetryMin)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Link == nil {
		cfg.Link = NewLink(LinkConfig{}, time.Now())
	}
	q := &Queue{
		cfg:        cfg,
		items:      map[string]*Item{},
		uploading:  map[string]bool{},
		ledger:     map[string]string{},
		oortLedger: map[string]string{},
		enqueuing:  map[string]bool{},
		reserved:   map[string]string{},
		done:       map[string]Event{},
		changed:    make(chan struct{}),
		progress:   map[string]time.Time{},
		written:    map[string]uint64{},
	}
	if err := q.load(); err != nil {
		return nil, err
	}
	return q, nil
}

// Incoming is the directory sources pull files into before Enqueue; it is
// on the queue's filesystem, so Enqueue renames rather than copies.
func (q *Queue) Incoming() string { return filepath.Join(q.cfg.Dir, "incoming") }

// Link is the queue's space link.
func (q *Queue) Link() *Link { return q.cfg.Link }

// Close releases the journal. Run must have returned.
func (q *Queue) Close() error {
	q.ledgerMu.Lock()
	defer q.ledgerMu.Unlock()
	if q.ledgerF == nil {
		return nil
	}
	err := q.ledgerF.Close()
	q.ledgerF = nil
	return err
}

// Enqueue takes the file at data (in Incoming, written whole) into the
// queue as it and journals it; once Enqueue returns, the file survives a
// crash, and its source may delete its own copy. A file already queued
// or delivered (the same OORT id, or the same source, board, window, path
// and contents) is not queued again: data is deleted and the returned
// item has an empty ID.
func (q *Queue) Enqueue(ctx context.Context, it Item, data string) (Item, error) {
	if err := ctx.Err(); err != nil {
		return Item{}, err
	}
	if it.Size < 0 || it.SHA256 == "" || it.Name == "" || it.Source == "" {
		return Item{}, fmt.Errorf("downlink: enqueue %q: size, sha256, name and source are required", it.Name)
	}
	fi, err := os.Stat(data)
	if err != nil {
		return Item{}, fmt.Errorf("downlink: enqueue %s: %w", it.Name, err)
	}
	if fi.Size() != it.Size {
		return Item{}, fmt.Errorf("downlink: enqueue %s: %s holds %d bytes, the item says %d", it.Name, data, fi.Size(), it.Size)
	}
	q.mu.Lock()
	d := it.dedup()
	dup := ""
	switch {
	case q.enqueuing[d]:
		dup = "already being queued"
	case it.UUID == "" && fileExists(q.sourcePath(d)):
		dup = "queued before, but not yet deleted at its source"
	case it.UUID != "" && q.oortLedger[d] != "":
		dup = "already delivered as " + q.oortLedger[d]
	}
	for _, other := range q.items {
		if dup == "" && it.UUID != "" && other.dedup() == d {
			dup = "already queued as " + other.ID
		}
	}
	if dup != "" {
		q.emit(Event{Kind: EventDuplicate, Item: it, Detail: dup})
		q.mu.Unlock()
		os.Remove(data)
		return Item{}, nil
	}
	q.seq++
	it.Seq = q.seq
	q.enqueuing[d] = true
	q.mu.Unlock()

	// The disk work is done without the lock, so that uploads go on.
	it.ID = fmt.Sprintf("%08d-%s", it.Seq, randHex(4))
	if it.Queued.IsZero() {
		it.Queued = time.Now()
	}
	if it.TTL == (TTL{}) {
		it.TTL = DefaultTTL
	}
	it.Bucket, it.Prefix = q.route(&it)
	it.Sent, it.Key = 0, ""
	err = syncFile(data)
	if err == nil && it.UUID == "" {
		// Until the source says it deleted its copy, this marker makes
		// the same file handed over again a duplicate.
		err = writeSync(q.sourcePath(d), []byte(d+"\n"))
	}
	if err == nil {
		err = os.Rename(data, q.dataPath(it.ID))
	}
	if err == nil {
		if err = q.writeRecord(it, 0); err != nil {
			os.Remove(q.dataPath(it.ID))
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.enqueuing, d)
	if err != nil {
		os.Remove(q.sourcePath(d))
		return Item{}, fmt.Errorf("downlink: enqueue %s: %w", it.Name, err)
	}
	q.items[it.ID] = &it
	q.emit(Event{Kind: EventQueued, Item: it, Detail: fmt.Sprintf("%d bytes, %s, to s3://%s/%s", it.Size, it.TTL.Stage(0), it.Bucket, it.Prefix)})
	q.changedLocked()
	return it, nil
}

// SourceRemoved tells the queue that the source deleted its copy of it
// (as returned by Enqueue, or a duplicate): the same file handed over
// later is a new file.
func (q *Queue) SourceRemoved(it Item) error {
	if it.UUID != "" {
		return nil
	}
	if err := os.Remove(q.sourcePath(it.dedup())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("downlink: %s: %w", it.Name, err)
	}
	return nil
}

func (q *Queue) route(it *Item) (bucket, prefix string) {
	if it.Source == SourceOORT {
		if r, ok := q.cfg.Routes[it.Topic]; ok {
			return r.Bucket, r.Prefix
		}
		return q.cfg.Bucket, path.Join(q.cfg.Prefix, "oort", it.Topic)
	}
	return q.cfg.Bucket, q.cfg.Prefix
}

// Run moves the queue's items across the link and into S3 until ctx
// ends. It returns ctx's cause; the journal keeps what was not delivered.
func (q *Queue) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1 + q.cfg.Uploads)
	go func() { defer wg.Done(); q.transmit(ctx) }()
	for range q.cfg.Uploads {
		go func() { defer wg.Done(); q.upload(ctx) }()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// Wait waits until every item in ids was delivered or dropped since Open,
// and returns their final events.
func (q *Queue) Wait(ctx context.Context, ids []string) ([]Event, error) {
	for {
		q.mu.Lock()
		var evs []Event
		for _, id := range ids {
			if e, ok := q.done[id]; ok {
				evs = append(evs, e)
			}
		}
		changed := q.changed
		q.mu.Unlock()
		if len(evs) == len(ids) {
			return evs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return evs, fmt.Errorf("downlink: %d of %d files still queued: %w", len(ids)-len(evs), len(ids), context.Cause(ctx))
		}
	}
}

// Pending returns the items not yet delivered, in queue order.
func (q *Queue) Pending() []Item {
	q.mu.Lock()
	defer q.mu.Unlock()
	var its []Item
	for _, it := range q.items {
		its = append(its, *it)
	}
	slices.SortFunc(its, func(a, b Item) int { return cmp.Compare(a.Seq, b.Seq) })
	return its
}

// transmit sends one item at a time across the link: the most urgent
// first, and a more urgent arrival takes the link at the next frame.
func (q *Queue) transmit(ctx context.Context) {
	for ctx.Err() == nil {
		q.mu.Lock()
		it := q.nextForLink()
		changed := q.changed
		q.mu.Unlock()
		if it == nil {
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		q.send(ctx, it)
	}
}

// nextForLink picks the item to send, dropping expired ones. q.mu is held.
func (q *Queue) nextForLink() *Item {
	now := time.Now()
	var best *Item
	var bestStage Stage
	for _, it := range q.items {
		if it.Sent >= it.Size {
			continue
		}
		st := it.TTL.Stage(now.Sub(it.Queued))
		if st == Expired {
			q.drop(it, "TTL expired before it crossed the link")
			continue
		}
		if best == nil || rank(st, it).less(rank(bestStage, best)) {
			best, bestStage = it, st
		}
	}
	return best
}

type rankKey struct {
	stage    Stage
	priority int
	seq      int64
}

func rank(st Stage, it *Item) rankKey { return rankKey{st, -it.Priority, it.Seq} }

func (a rankKey) less(b rankKey) bool {
	return cmp.Or(cmp.Compare(a.stage, b.stage), cmp.Compare(a.priority, b.priority), cmp.Compare(a.seq, b.seq)) < 0
}

// send moves one item across the link, journaling its progress.
func (q *Queue) send(ctx context.Context, it *Item) {
	q.mu.Lock()
	from, size, id := it.Sent, it.Size, it.ID
	stage := it.TTL.Stage(time.Since(it.Queued))
	mine := rank(stage, it)
	q.emit(Event{Kind: EventSending, Item: *it, Detail: fmt.Sprintf("%s, from byte %d of %d", stage, from, size)})
	q.mu.Unlock()
	paused := false
	stop := func() bool {
		// Give way to a more urgent item.
		q.mu.Lock()
		defer q.mu.Unlock()
		now := time.Now()
		for _, o := range q.items {
			if o.ID != id && o.Sent < o.Size {
				if st := o.TTL.Stage(now.Sub(o.Queued)); st != Expired && rank(st, o).less(mine) {
					return true
				}
			}
		}
		return false
	}
	progress := func(sent int64, wait bool) {
		q.mu.Lock()
		defer q.mu.Unlock()
		it.Sent = sent
		switch {
		case wait && !paused:
			paused = true
			// A transfer cut by the end of a contact resumes from here.
			q.saveProgress(it, true)
			q.emit(Event{Kind: EventPaused, Item: *it, Detail: fmt.Sprintf("%d of %d bytes across; waiting for the next contact", sent, it.Size)})
		case !wait && paused:
			paused = false
			q.saveProgress(it, true)
			q.emit(Event{Kind: EventResumed, Item: *it, Detail: fmt.Sprintf("from byte %d of %d", sent, it.Size)})
		case !wait:
			q.saveProgress(it, false)
		}
	}
	sent, err := q.cfg.Link.Send(ctx, from, size, stop, progress)
	q.mu.Lock()
	defer q.mu.Unlock()
	it.Sent = sent
	q.saveProgress(it, true)
	if err == nil {
		q.emit(Event{Kind: EventCrossed, Item: *it})
		q.changedLocked()
	}
}

// saveProgress journals it.Sent, at most once a second unless now is set:
// after a crash the transfer resumes from the last journaled offset,
// which only costs link time. q.mu is held.
func (q *Queue) saveProgress(it *Item, now bool) {
	if _, ok := q.items[it.ID]; !ok {
		return // dropped meanwhile
	}
	if !now && time.Since(q.progress[it.ID]) < time.Second {
		return
	}
	q.progress[it.ID] = time.Now()
	if err := q.writeRecord(*it, q.nextRev()); err != nil {
		q.emit(Event{Kind: EventRetry, Item: *it, Err: err, Detail: "journal progress"})
	}
}

// upload delivers items that have crossed the link, one at a time.
func (q *Queue) upload(ctx context.Context) {
	for ctx.Err() == nil {
		q.mu.Lock()
		var next *Item
		for _, it := range q.items {
			if it.Sent >= it.Size && !q.uploading[it.ID] && (next == nil || it.Seq < next.Seq) {
				next = it
			}
		}
		changed := q.changed
		if next != nil {
			q.uploading[next.ID] = true
		}
		q.mu.Unlock()
		if next == nil {
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		q.deliver(ctx, next)
		q.mu.Lock()
		delete(q.uploading, next.ID)
		q.mu.Unlock()
	}
}

// deliver uploads one item, retrying with backoff until it lands or ctx
// ends.
func (q *Queue) deliver(ctx context.Context, it *Item) {
	backoff := q.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		obj, err := q.put(ctx, it)
		if err == nil {
			q.delivered(it, obj)
			return
		}
		if ctx.Err() != nil {
			return
		}
		q.mu.Lock()
		q.emit(Event{Kind: EventRetry, Item: *it, Err: err, Detail: fmt.Sprintf("attempt %d failed; next in %v", attempt, backoff)})
		q.mu.Unlock()
		if waitUntil(ctx, time.Now().Add(backoff), nil) != nil {
			return
		}
		backoff = min(backoff*2, q.cfg.RetryMax)
	}
}

// put fixes the item's key (journaled before the first attempt, so that
// every attempt, in this run or the next, writes the same object) and
// uploads the file to it. An object already at the key with this item's
// window, size and SHA-256 is this item, delivered by an attempt whose
// answer was lost.
func (q *Queue) put(ctx context.Context, it *Item) (store.Object, error) {
	q.mu.Lock()
	key := it.Key
	q.mu.Unlock()
	if key == "" {
		obj, err := q.fixKey(ctx, it)
		if err != nil || obj.Key != "" {
			return obj, err
		}
		key = it.Key
	} else {
		obj, err := q.cfg.Store.Stat(ctx, it.Bucket, key)
		switch {
		case err == nil && q.isOurs(it, obj):
			return obj, nil
		case err == nil:
			// Not this file: give the key up, and fix another next time.
			q.mu.Lock()
			it.Key = ""
			delete(q.reserved, key)
			q.mu.Unlock()
			return store.Object{}, fmt.Errorf("downlink: %s: s3://%s/%s holds another file; choosing another key", it.Name, it.Bucket, key)
		case !store.IsNotFound(err):
			return store.Object{}, err
		}
	}
	f, err := os.Open(q.dataPath(it.ID))
	if err != nil {
		return store.Object{}, fmt.Errorf("downlink: %s: %w", it.Name, err)
	}
	defer f.Close()
	return q.cfg.Store.Put(ctx, it.Bucket, key, f, it.Size, store.PutOptions{
		ContentType: ContentType(it.Name),
		Metadata:    metadata(it),
	})
}

func (q *Queue) isOurs(it *Item, obj store.Object) bool {
	return obj.Size == it.Size && obj.Metadata["sha256"] == it.SHA256 && obj.Metadata["window-id"] == it.Window
}

// fixKey picks and journals the item's key from the delivery time: the
// first second from now whose key is neither in the bucket nor promised
// to another item, as the layout's timestamp keeps keys unique. If the
// bucket already holds this very file there, fixKey returns that object.
func (q *Queue) fixKey(ctx context.Context, it *Item) (store.Object, error) {
	for t := q.cfg.Now().UTC().Truncate(time.Second); ; t = t.Add(time.Second) {
		key := OutboxKey(it.Prefix, q.cfg.Satellite, t, it.Name)
		if q.isReserved(key) {
			continue
		}
		obj, err := q.cfg.Store.Stat(ctx, it.Bucket, key)
		switch {
		case err == nil && q.isOurs(it, obj):
			return obj, q.reserve(it, key)
		case err == nil:
			continue
		case !store.IsNotFound(err):
			return store.Object{}, err
		}
		if err := q.reserve(it, key); errors.Is(err, errTaken) {
			continue
		} else if err != nil {
			return store.Object{}, err
		}
		return store.Object{}, nil
	}
}

var errTaken = errors.New("key taken")

func (q *Queue) isReserved(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.reserved[key]
	return ok
}

// reserve fixes key as the item's and journals it.
func (q *Queue) reserve(it *Item, key string) error {
	q.mu.Lock()
	if _, taken := q.reserved[key]; taken {
		q.mu.Unlock()
		return errTaken
	}
	it.Key = key
	q.reserved[key] = it.ID
	rec, rev := *it, q.nextRev()
	q.mu.Unlock()
	if err := q.writeRecord(rec, rev); err != nil {
		q.mu.Lock()
		it.Key = ""
		delete(q.reserved, key)
		q.mu.Unlock()
		return err
	}
	return nil
}

// delivered records a landed item in the ledger and drops its files.
func (q *Queue) delivered(it *Item, obj store.Object) {
	q.mu.Lock()
	rec := *it
	q.mu.Unlock()
	lerr := q.appendLedger(rec)
	q.mu.Lock()
	defer q.mu.Unlock()
	if lerr != nil {
		// The object is in S3; without the ledger line a restart would
		// find it by its key, which the record holds.
		q.emit(Event{Kind: EventRetry, Item: *it, Err: lerr, Detail: "ledger"})
	}
	q.ledger[rec.ID] = rec.Key
	if rec.UUID != "" {
		q.oortLedger[rec.dedup()] = rec.Key
	}
	q.forget(it)
	e := Event{Kind: EventDelivered, Item: *it, Object: obj}
	q.done[it.ID] = e
	q.emit(e)
	q.changedLocked()
}

// drop removes an item that will never go down. q.mu is held.
func (q *Queue) drop(it *Item, why string) {
	q.forget(it)
	e := Event{Kind: EventDropped, Item: *it, Detail: why}
	q.done[it.ID] = e
	q.emit(e)
	q.changedLocked()
}

// forget removes an item's files and record. q.mu is held.
func (q *Queue) forget(it *Item) {
	os.Remove(q.dataPath(it.ID))
	q.recMu.Lock()
	delete(q.written, it.ID)
	os.Remove(q.recordPath(it.ID))
	q.recMu.Unlock()
	delete(q.items, it.ID)
	delete(q.reserved, it.Key)
	delete(q.progress, it.ID)
}

// emit reports e. q.mu is held, which keeps events in order.
func (q *Queue) emit(e Event) {
	if q.cfg.Notify != nil {
		q.cfg.Notify(e)
	}
}

func (q *Queue) changedLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// metadata is the user metadata every delivered object carries.
func metadata(it *Item) map[string]string {
	m := map[string]string{
		"window-id": it.Window,
		"payload":   it.Board,
		"source":    it.Source,
		"sha256":    it.SHA256,
	}
	if it.Topic != "" {
		m["topic"] = it.Topic
	}
	if it.UUID != "" {
		m["oort-uuid"] = it.UUID
	}
	// Extra metadata (OORT tags) comes from the payload: only names S3
	// takes as header names, values with anything but printable ASCII
	// percent-escaped, and no more than S3's 2 KB in all.
	size := 0
	for _, v := range m {
		size += len(v) + 16
	}
	for _, k := range slices.Sorted(maps.Keys(it.Meta)) {
		k, v := strings.ToLower(k), headerSafe(it.Meta[k])
		if _, ok := m[k]; ok || !metaKeyRE.MatchString(k) || size+len(k)+len(v) > 2000 {
			continue
		}
		m[k] = v
		size += len(k) + len(v)
	}
	return m
}

var metaKeyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// headerSafe percent-escapes every byte of v outside printable ASCII, and %.
func headerSafe(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ContentType is the content type an object is stored with: from a
// fixed table of the extensions payloads commonly write, else
// application/octet-stream. The table is ours rather than the host's
// mime.types, so that a bench and CI store the same types.
func ContentType(name string) string {
	if t, ok := contentTypes[strings.ToLower(filepath.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

var contentTypes = map[string]string{
	".txt":  "text/plain; charset=utf-8",
	".log":  "text/plain; charset=utf-8",
	".csv":  "text/csv; charset=utf-8",
	".json": "application/json",
	".xml":  "application/xml",
	".png":  "image/png",
	".jpg":  "image/jpeg",
	".jpeg": "image/jpeg",
	".tif":  "image/tiff",
	".tiff": "image/tiff",
	".gz":   "application/gzip",
	".tar":  "application/x-tar",
	".zip":  "application/zip",
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
