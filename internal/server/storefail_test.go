package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/durehq/dure/internal/testkit/diskfull"
)

// A write to the raft log that fails on a full disk is remembered
// (StoreFailure, which the API names when no leader is known, since the
// elections that follow fail the same way), and forgotten at the next write
// that succeeds. The store is the real bolt log on a real, full tmpfs.
func TestStoreFailureRemembersAFullDisk(t *testing.T) {
	mnt := diskfull.Tmpfs(t, "2m")
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(mnt, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	s := &Server{}
	logs := watchedLogStore{LogStore: bolt, s: s}
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(strings.Repeat("x", 256<<10))}
	}
	if err := logs.StoreLogs([]*raft.Log{entry(1)}); err != nil || s.StoreFailure() != nil {
		t.Fatalf("first write: %v, StoreFailure %v; want both nil", err, s.StoreFailure())
	}

	filler := filepath.Join(mnt, "filler")
	diskfull.Fill(t, filler)
	var failed error
	for i := uint64(2); i < 20 && failed == nil; i++ {
		failed = logs.StoreLogs([]*raft.Log{entry(i)})
	}
	if failed == nil || !strings.Contains(failed.Error(), "no space left on device") {
		t.Fatalf("writes on the full disk: %v; want ENOSPC", failed)
	}
	if got := s.StoreFailure(); got == nil || got.Error() != failed.Error() {
		t.Errorf("StoreFailure = %v; want the failed write's %v", got, failed)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	last, _ := bolt.LastIndex()
	if err := logs.StoreLogs([]*raft.Log{entry(last + 1)}); err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
	if got := s.StoreFailure(); got != nil {
		t.Errorf("StoreFailure after a write succeeded = %v; want nil", got)
	}
}
