package downlink

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The journal, under the queue's directory:
//
//	items/<id>.json   one record per queued item, replaced atomically
//	items/<id>.data   the item's bytes
//	incoming/         files being pulled, not yet queued
//	sources/          one marker per queued file its source still holds
//	delivered.log     one JSON line per delivered item, appended
//
// A record is written only after its data file is synced and renamed into
// place, and removed only after the ledger line is written, so a record
// always has its data, and a delivered item is never queued again.

type ledgerLine struct {
	Dedup  string    `json:"dedup"`
	ID     string    `json:"id"`
	Bucket string    `json:"bucket"`
	Key    string    `json:"key"`
	Time   time.Time `json:"time"`
}

func (q *Queue) recordPath(id string) string { return filepath.Join(q.cfg.Dir, "items", id+".json") }
func (q *Queue) dataPath(id string) string   { return filepath.Join(q.cfg.Dir, "items", id+".data") }
func (q *Queue) ledgerPath() string          { return filepath.Join(q.cfg.Dir, "delivered.log") }

// sourcePath is the marker of a file queued whose source has not yet
// confirmed deleting it.
func (q *Queue) sourcePath(dedup string) string {
	sum := sha256.Sum256([]byte(dedup))
	return filepath.Join(q.cfg.Dir, "sources", hex.EncodeToString(sum[:16]))
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// load reads the journal into q.
func (q *Queue) load() error {
	for _, d := range []string{"items", "incoming", "sources"} {
		if err := os.MkdirAll(filepath.Join(q.cfg.Dir, d), 0o700); err != nil {
			return fmt.Errorf("downlink: journal: %w", err)
		}
	}
	// Pulls that never reached the journal: their originals are still on
	// the payload, which will hand them over again.
	if err := clearDir(q.Incoming()); err != nil {
		return fmt.Errorf("downlink: journal: %w", err)
	}
	if err := q.loadLedger(); err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(q.cfg.Dir, "items"))
	if err != nil {
		return fmt.Errorf("downlink: journal: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".json"):
			if err := q.loadRecord(strings.TrimSuffix(name, ".json")); err != nil {
				return err
			}
		case strings.HasSuffix(name, ".data"):
			// Data without a record: Enqueue died between the two; the
			// source still has the file.
			if _, err := os.Stat(q.recordPath(strings.TrimSuffix(name, ".data"))); errors.Is(err, fs.ErrNotExist) {
				os.Remove(filepath.Join(q.cfg.Dir, "items", name))
			}
		default:
			os.Remove(filepath.Join(q.cfg.Dir, "items", name)) // a temp record
		}
	}
	f, err := os.OpenFile(q.ledgerPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("downlink: journal: %w", err)
	}
	q.ledgerF = f
	return nil
}

func (q *Queue) loadRecord(id string) error {
	b, err := os.ReadFile(q.recordPath(id))
	if err != nil {
		return fmt.Errorf("downlink: journal: %w", err)
	}
	var it Item
	if err := json.Unmarshal(b, &it); err != nil || it.ID != id {
		return fmt.Errorf("downlink: journal record %s is damaged (%v); move it away to start without it", q.recordPath(id), err)
	}
	q.seq = max(q.seq, it.Seq)
	if _, ok := q.ledger[it.ID]; ok {
		// Delivered; the run died before removing the record.
		q.forget(&it)
		return nil
	}
	if fi, err := os.Stat(q.dataPath(id)); err != nil || fi.Size() != it.Size {
		return fmt.Errorf("downlink: journal: %s has no whole data file %s (%v); move the record away to start without it", q.recordPath(id), q.dataPath(id), err)
	}
	q.items[id] = &it
	q.written[id] = 0
	if it.Key != "" {
		q.reserved[it.Key] = id
	}
	q.emit(Event{Kind: EventRecovered, Item: it, Detail: fmt.Sprintf("%d of %d bytes across", it.Sent, it.Size)})
	return nil
}

func (q *Queue) loadLedger() error {
	f, err := os.Open(q.ledgerPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("downlink: journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l ledgerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			// A line cut by a crash can only be the last one; its item's
			// record is still there and its key still in it.
			continue
		}
		q.ledger[l.ID] = l.Key
		if strings.HasPrefix(l.Dedup, "oort/") {
			q.oortLedger[l.Dedup] = l.Key
		}
	}
	return sc.Err()
}

// nextRev numbers a record snapshot. q.mu is held, so revisions follow
// the order in which snapshots of an item were taken.
func (q *Queue) nextRev() uint64 {
	q.rev++
	return q.rev
}

// writeRecord replaces the record of it atomically with the snapshot
// numbered rev (0 for the record Enqueue creates). It touches no queue
// state, so callers pass a copy and need not hold q.mu. Writers of one
// item may race (progress and key reservation): each writes its own temp
// file, and a snapshot older than the one on disk, or one of an item
// forgotten meanwhile, is discarded rather than renamed over it.
func (q *Queue) writeRecord(it Item, rev uint64) error {
	b, err := json.Marshal(it)
	if err != nil {
		return err
	}
	name := q.recordPath(it.ID)
	f, err := os.CreateTemp(filepath.Dir(name), it.ID+".json.tmp-*")
	if err != nil {
		return fmt.Errorf("downlink: journal %s: %w", it.ID, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("downlink: journal %s: %w", it.ID, err)
	}
	q.recMu.Lock()
	last, live := q.written[it.ID]
	if rev != 0 && (!live || rev < last) {
		q.recMu.Unlock()
		os.Remove(tmp)
		return nil
	}
	err = os.Rename(tmp, name)
	if err == nil {
		q.written[it.ID] = rev
	}
	q.recMu.Unlock()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("downlink: journal %s: %w", it.ID, err)
	}
	return syncDir(filepath.Dir(name))
}

// appendLedger records it as delivered, synced.
func (q *Queue) appendLedger(it Item) error {
	b, err := json.Marshal(ledgerLine{Dedup: it.dedup(), ID: it.ID, Bucket: it.Bucket, Key: it.Key, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	q.ledgerMu.Lock()
	defer q.ledgerMu.Unlock()
	if q.ledgerF == nil {
		return errors.New("downlink: journal is closed")
	}
	if _, err := q.ledgerF.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("downlink: ledger: %w", err)
	}
	return q.ledgerF.Sync()
}

func writeSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
