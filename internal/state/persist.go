package state

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/durehq/dure/internal/model"
)

// The snapshot format: one JSON header line, then one JSON record per line,
// then an end record carrying the record count. Records are written in table
// and index order, so equal states produce byte-identical snapshots (which
// the determinism test relies on). The end record makes a snapshot cut short
// at a line boundary an error instead of a silently smaller state, and its
// SHA-256 of every line before it makes any altered byte an error too.
const (
	snapshotFormat  = "dure-state"
	snapshotVersion = 3 // 2: end record added; 3: checksum in the end record
)

type snapshotHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
}

type snapshotRecord struct {
	Job   *model.Job        `json:"job,omitempty"`
	Alloc *model.Allocation `json:"alloc,omitempty"`
	Node  *model.Node       `json:"node,omitempty"`
	Queue *model.Queue      `json:"queue,omitempty"`
	Meta  *metaEntry        `json:"meta,omitempty"`
	End   *snapshotEnd      `json:"end,omitempty"`
}

// snapshotEnd is the last record of a snapshot.
type snapshotEnd struct {
	Records int    `json:"records"`          // records before this one, header excluded
	SHA256  string `json:"sha256,omitempty"` // of every byte before this record (version 3)
}

// Persist writes the whole snapshot to w.
func (s *Snapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	sum := sha256.New()
	enc := json.NewEncoder(io.MultiWriter(bw, sum))
	err := enc.Encode(snapshotHeader{Format: snapshotFormat, Version: snapshotVersion, Index: s.Index})
	if err != nil {
		return err
	}
	records := 0
	// emit writes one record; after the first error it writes nothing
	// more, and each table's walk stops at its first record.
	emit := func(rec snapshotRecord) bool {
		if err == nil {
			err = enc.Encode(rec)
			records++
		}
		return err == nil
	}
	t := s.v.t
	// Table by table, each in key order, as the store's first format
	// (go-memdb's tables and id indexes) wrote them.
	if t.lastJobID > 0 {
		emit(snapshotRecord{Meta: &metaEntry{Key: metaLastJobID, Value: uint64(t.lastJobID)}})
	}
	t.queues.Ascend(func(q *model.Queue) bool { return emit(snapshotRecord{Queue: q}) })
	t.nodes.Ascend(func(n *model.Node) bool { return emit(snapshotRecord{Node: n}) })
	t.jobs.Ascend(func(j *model.Job) bool { return emit(snapshotRecord{Job: j}) })
	t.allocs.Ascend(func(a *model.Allocation) bool { return emit(snapshotRecord{Alloc: a}) })
	if err != nil {
		return err
	}
	end := snapshotEnd{Records: records, SHA256: hex.EncodeToString(sum.Sum(nil))}
	if err := json.NewEncoder(bw).Encode(snapshotRecord{End: &end}); err != nil {
		return err
	}
	return bw.Flush()
}

// Hash is a digest of the whole state: two stores that applied the same log
// have the same hash.
func (s *Snapshot) Hash() string {
	h := sha256.New()
	if err := s.Persist(h); err != nil {
		panic(err) // writing to a hash never fails
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Restore replaces the store's contents with a snapshot read from r. On error
// the store is left unchanged.
func (s *Store) Restore(r io.Reader) error {
	lines := &snapshotLines{r: bufio.NewReaderSize(r, 1<<16), sum: sha256.New()}
	var hdr snapshotHeader
	line, err := lines.next()
	if err == nil {
		err = json.Unmarshal(line, &hdr)
	}
	if err != nil {
		return fmt.Errorf("state snapshot: reading header: %w", err)
	}
	if hdr.Format != snapshotFormat {
		return fmt.Errorf("state snapshot: format %q is not %q", hdr.Format, snapshotFormat)
	}
	if hdr.Version != snapshotVersion && hdr.Version != 2 {
		return fmt.Errorf("state snapshot: version %d is not supported (want %d)", hdr.Version, snapshotVersion)
	}
	lines.checked = hdr.Version >= 3
	t := newTables()
	if err := restoreRecords(lines, t); err != nil {
		return err
	}
	s.mu.Lock() // the swap, the feed's reset and the watches' are one step
	s.writeSeq++
	s.cur.Store(&version{t: t, seq: s.writeSeq})
	s.index.Store(hdr.Index)
	// Only after the swap: a reader holding an old channel may have read
	// the old state and must wake.
	close(s.restored)
	s.restored = make(chan struct{})
	s.watches.fireAll(s.writeSeq)
	// What changed is unknown: feed readers read everything again.
	s.feedFloor = s.writeSeq
	s.jobWrites = nil
	s.mu.Unlock()
	s.notify()
	return nil
}

// restoreRecords inserts every record up to the end record, and checks that
// the end record is there, counts right and is last.
func restoreRecords(lines *snapshotLines, t *tables) error {
	for n := 1; ; n++ {
		var rec snapshotRecord
		sumBefore := hex.EncodeToString(lines.sum.Sum(nil))
		line, err := lines.next()
		if err == nil {
			err = json.Unmarshal(line, &rec)
		}
		if err == io.EOF {
			return fmt.Errorf("state snapshot: truncated after %d records (no end record)", n-1)
		}
		if err != nil {
			return fmt.Errorf("state snapshot: record %d: %w", n, err)
		}
		kinds := 0
		for _, present := range []bool{rec.Job != nil, rec.Alloc != nil, rec.Node != nil, rec.Queue != nil, rec.Meta != nil, rec.End != nil} {
			if present {
				kinds++
			}
		}
		var bad error
		switch {
		case kinds == 0:
			return fmt.Errorf("state snapshot: record %d is empty", n)
		case kinds > 1:
			return fmt.Errorf("state snapshot: record %d holds more than one object", n)
		case rec.End != nil:
			if rec.End.Records != n-1 {
				return fmt.Errorf("state snapshot: end record counts %d records, but %d came before it", rec.End.Records, n-1)
			}
			if lines.checked && rec.End.SHA256 != sumBefore {
				return fmt.Errorf("state snapshot: checksum mismatch: the file was altered or damaged")
			}
			if _, err := lines.next(); err != io.EOF {
				return fmt.Errorf("state snapshot: data after the end record")
			}
			return nil
		case rec.Job != nil:
			if bad = checkJob(rec.Job); bad == nil {
				t.putJob(rec.Job)
			}
		case rec.Alloc != nil:
			if bad = checkAlloc(rec.Alloc); bad == nil {
				t.putAlloc(rec.Alloc)
			}
		case rec.Node != nil:
			if rec.Node.Name == "" {
				bad = errors.New("node has no name")
			} else {
				t.nodes.ReplaceOrInsert(rec.Node)
			}
		case rec.Queue != nil:
			if rec.Queue.Name == "" {
				bad = errors.New("queue has no name")
			} else {
				t.queues.ReplaceOrInsert(rec.Queue)
			}
		case rec.Meta != nil:
			if rec.Meta.Key != metaLastJobID {
				bad = fmt.Errorf("unknown meta key %q", rec.Meta.Key)
			} else {
				t.lastJobID = max(t.lastJobID, model.JobID(rec.Meta.Value))
			}
		}
		if bad != nil {
			return fmt.Errorf("state snapshot: record %d: %w", n, bad)
		}
	}
}

// snapshotLines reads a snapshot line by line (every record is one line of
// JSON) and keeps the SHA-256 of the lines read so far.
type snapshotLines struct {
	r       *bufio.Reader
	sum     hash.Hash
	checked bool
}

// next returns the next non-empty line; io.EOF at the end.
func (l *snapshotLines) next() ([]byte, error) {
	for {
		line, err := l.r.ReadBytes('\n')
		if len(line) > 0 {
			l.sum.Write(line)
			if t := bytes.TrimSpace(line); len(t) > 0 {
				return t, nil
			}
		}
		if err != nil {
			return nil, err
		}
	}
}
