package state

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"

	"github.com/durehq/dure/internal/model"
)

// The snapshot format: one JSON header line, then one JSON record per line.
// Records are written in table and index order, so equal states produce
// byte-identical snapshots (which the determinism test relies on).
const (
	snapshotFormat  = "dure-state"
	snapshotVersion = 1
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
}

// Persist writes the whole snapshot to w.
func (s *Snapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Format: snapshotFormat, Version: snapshotVersion, Index: s.Index}); err != nil {
		return err
	}
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
		}
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
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var hdr snapshotHeader
	if err := dec.Decode(&hdr); err != nil {
		return fmt.Errorf("state snapshot: reading header: %w", err)
	}
	if hdr.Format != snapshotFormat {
		return fmt.Errorf("state snapshot: format %q is not %q", hdr.Format, snapshotFormat)
	}
	if hdr.Version != snapshotVersion {
		return fmt.Errorf("state snapshot: version %d is not supported (want %d)", hdr.Version, snapshotVersion)
	}
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return err
	}
	txn := db.Txn(true)
	for n := 1; ; n++ {
		var rec snapshotRecord
		err := dec.Decode(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			txn.Abort()
			return fmt.Errorf("state snapshot: record %d: %w", n, err)
		}
		var table string
		var obj any
		switch {
		case rec.Job != nil:
			table, obj = tableJobs, rec.Job
		case rec.Alloc != nil:
			table, obj = tableAllocs, rec.Alloc
		case rec.Node != nil:
			table, obj = tableNodes, rec.Node
		case rec.Queue != nil:
			table, obj = tableQueues, rec.Queue
		case rec.Meta != nil:
			table, obj = tableMeta, rec.Meta
		default:
			txn.Abort()
			return fmt.Errorf("state snapshot: record %d is empty", n)
		}
		if err := txn.Insert(table, obj); err != nil {
			txn.Abort()
			return fmt.Errorf("state snapshot: record %d: %w", n, err)
		}
	}
	txn.Commit()
	s.db.Store(db)
	s.index.Store(hdr.Index)
	s.notify()
	return nil
}
