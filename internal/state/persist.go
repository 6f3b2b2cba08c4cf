package state

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"

	"github.com/hashicorp/go-memdb"

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
	if err := enc.Encode(snapshotHeader{Format: snapshotFormat, Version: snapshotVersion, Index: s.Index}); err != nil {
		return err
	}
	records := 0
	for _, table := range []string{tableMeta, tableQueues, tableNodes, tableJobs, tableAllocs} {
		it, err := s.txn.Get(table, "id")
		must(err)
		for obj := it.Next(); obj != nil; obj = it.Next() {
			var rec snapshotRecord
			switch v := obj.(type) {
			case *model.Job:
				rec.Job = v
			case *model.Allocation:
				rec.Alloc = v
			case *model.Node:
				rec.Node = v
			case *model.Queue:
				rec.Queue = v
			case *metaEntry:
				rec.Meta = v
			}
			if err := enc.Encode(rec); err != nil {
				return err
			}
			records++
		}
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
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return err
	}
	txn := db.Txn(true)
	if err := restoreRecords(lines, txn); err != nil {
		txn.Abort()
		return err
	}
	txn.Commit()
	s.mu.Lock() // the swap and the feed's reset are one step to SnapshotWithJobChanges
	s.db.Store(db)
	s.index.Store(hdr.Index)
	// Only after the swap: a reader holding the old channel may have read
	// the old database and must wake.
	close(s.restored)
	s.restored = make(chan struct{})
	// What changed is unknown: feed readers read everything again.
	s.writeSeq++
	s.feedFloor = s.writeSeq
	s.jobWrites = nil
	s.mu.Unlock()
	s.notify()
	return nil
}

// restoreRecords inserts every record up to the end record, and checks that
// the end record is there, counts right and is last.
func restoreRecords(lines *snapshotLines, txn *memdb.Txn) error {
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
		var table string
		var obj any
		kinds := 0
		set := func(ok bool, t string, o any) {
			if ok {
				kinds++
				table, obj = t, o
			}
		}
		set(rec.Job != nil, tableJobs, rec.Job)
		set(rec.Alloc != nil, tableAllocs, rec.Alloc)
		set(rec.Node != nil, tableNodes, rec.Node)
		set(rec.Queue != nil, tableQueues, rec.Queue)
		set(rec.Meta != nil, tableMeta, rec.Meta)
		set(rec.End != nil, "", nil)
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
		}
		if err := txn.Insert(table, obj); err != nil {
			return fmt.Errorf("state snapshot: record %d (%s): %w", n, table, err)
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
