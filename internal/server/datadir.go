package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
)

// ErrDataDir wraps every problem found in a server's data directory. The
// server refuses to start rather than run on damaged state: silently
// starting empty, or half-recovered, would lose acknowledged work.
var ErrDataDir = errors.New("damaged data directory")

// checkDataDir looks over the raft directory before raft opens it:
//   - raft.db missing or empty while snapshots exist means the log was lost:
//     starting would forget everything committed after the last snapshot
//     (or, with no snapshot at all, bootstrap a brand-new empty cluster);
//   - raft.db must be a consistent bolt file (a truncated file otherwise
//     crashes the process with SIGBUS when bolt maps it);
//   - every snapshot's meta.json must be readable (raft would skip the
//     snapshot and then panic on the missing log it covered).
func checkDataDir(dir, dbPath string) error {
	snaps, err := snapshotDirs(dir)
	if err != nil {
		return err
	}
	st, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, os.ErrNotExist) || (err == nil && st.Size() == 0):
		if len(snaps) > 0 {
			return fmt.Errorf("%w: %s is missing or empty but %s holds snapshots: the raft log was lost; restore the file from a backup, or move the raft directory away to start a new, empty server", ErrDataDir, dbPath, filepath.Join(dir, "snapshots"))
		}
		return nil // a new server
	case err != nil:
		return fmt.Errorf("%w: %s: %v", ErrDataDir, dbPath, err)
	}
	if err := checkBolt(dbPath); err != nil {
		return fmt.Errorf("%w: %s is not a consistent bolt database (%v); restore it from a backup, or remove this server from the cluster and let it rejoin empty", ErrDataDir, dbPath, err)
	}
	for _, d := range snaps {
		meta := filepath.Join(d, "meta.json")
		b, err := os.ReadFile(meta)
		var m struct{ ID string }
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			return fmt.Errorf("%w: snapshot metadata %s is unreadable (%v); move that snapshot directory away if an older snapshot and the log cover it, or restore it from a backup", ErrDataDir, meta, err)
		}
	}
	return nil
}

// snapshotDirs lists raft's snapshot directories, skipping ones raft is
// still writing (".tmp").
func snapshotDirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, filepath.Join(dir, "snapshots", e.Name()))
		}
	}
	return out, nil
}

// checkBolt reads bolt's two meta pages with plain file reads (no memory
// map, so a short file cannot fault) and checks that one is valid and that
// the file is as long as that meta page says. A truncated raft.db otherwise
// crashes the process with SIGBUS the moment bolt maps it.
func checkBolt(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var best *boltMeta
	pageSize := int64(4096)
	for i := int64(0); i < 2; i++ {
		buf := make([]byte, boltMetaEnd)
		if _, err := f.ReadAt(buf, i*pageSize); err != nil {
			continue
		}
		m, ok := parseBoltMeta(buf)
		if !ok {
			continue
		}
		if i == 0 {
			pageSize = int64(m.pageSize)
		}
		if best == nil || m.txid > best.txid {
			best = &m
		}
	}
	if best == nil {
		return errors.New("neither meta page is valid")
	}
	if need := int64(best.pgid) * int64(best.pageSize); st.Size() < need {
		return fmt.Errorf("the file is %d bytes but its meta page says %d: it was truncated", st.Size(), need)
	}
	return nil
}

// bolt's on-disk meta page: a 16-byte page header, then these fields.
const (
	boltMagic   = 0xED0CDAED
	boltMetaEnd = 80 // header + meta, checksum included
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

func parseBoltMeta(b []byte) (boltMeta, bool) {
	le := binary.LittleEndian
	if le.Uint32(b[16:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[16:72])
	if h.Sum64() != le.Uint64(b[72:]) {
		return boltMeta{}, false
	}
	m := boltMeta{pageSize: le.Uint32(b[24:]), pgid: le.Uint64(b[56:]), txid: le.Uint64(b[64:])}
	return m, m.pageSize >= 512 && m.pageSize <= 1<<20
}
