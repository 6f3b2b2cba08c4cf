package server

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// BenchmarkRaftLogAppend appends to the raft log the way a busy leader
// does (batches of 4 entries of 2 kB) and cuts it as snapshots do (every
// 16,384 entries, keeping 10,240), with bolt's default options and with
// the server's. Compare their CPU time (-cpuprofile or time(1)): wall
// time is mostly fsync.
func BenchmarkRaftLogAppend(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts *bbolt.Options
	}{{"bolt-defaults", nil}, {"server", raftLogBoltOptions()}} {
		b.Run(tc.name, func(b *testing.B) {
			store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db"), BoltOptions: tc.opts})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			const batch, threshold, trailing = 4, 16384, 10240
			data := make([]byte, 2000)
			next, first := uint64(1), uint64(1)
			b.ResetTimer()
			for range b.N {
				logs := make([]*raft.Log, batch)
				for k := range logs {
					logs[k] = &raft.Log{Index: next, Term: 1, Data: data}
					next++
				}
				if err := store.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
				if next-first > threshold+trailing {
					if err := store.DeleteRange(first, next-trailing); err != nil {
						b.Fatal(err)
					}
					first = next - trailing + 1
				}
			}
		})
	}
}
