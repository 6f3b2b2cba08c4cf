package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// A server that meets a log entry from a newer dure (here: a command type
// this binary does not know) halts instead of skipping it, refuses to
// snapshot the lagging state, and says so; restarted, it halts again at the
// same entry rather than losing it.
func TestEntryFromANewerDureHaltsTheServer(t *testing.T) {
	dir := t.TempDir()
	cfg := config(t, dir)
	s := start(t, cfg)
	ctx := context.Background()
	before, err := s.SubmitJob(ctx, *testkit.Job(0).Build())
	if err != nil {
		t.Fatal(err)
	}
	_ = s.ApplyRaw([]byte{1, 250, '{', '}'})
	select {
	case <-s.Halted():
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not halt on command type 250")
	}
	if err := s.HaltErr(); !errors.Is(err, fsm.ErrNewerEntry) {
		t.Fatalf("HaltErr = %v; want ErrNewerEntry", err)
	}
	if err := s.TakeSnapshot(); err == nil {
		t.Error("a halted server took a snapshot; want it refused (the state lags the log)")
	}
	// Writes after the halt are refused with the halt's cause, and not applied.
	last := s.Store().Snapshot().LastJobID()
	if _, err := s.SubmitJob(ctx, *testkit.Job(0).Build()); !errors.Is(err, fsm.ErrNewerEntry) {
		t.Errorf("submit after the halt: %v; want the halt's error (fsm.ErrNewerEntry)", err)
	}
	snap := s.Store().Snapshot()
	if snap.Job(before) == nil {
		t.Errorf("job %d, submitted before the halt, is gone", before)
	}
	if got := snap.LastJobID(); got != last {
		t.Errorf("last job ID after a submit on the halted server = %d; want %d (nothing applied)", got, last)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// The same binary restarted meets the same entry again: the log kept it.
	cfg.RaftBind = freeAddr(t)
	r := start(t, cfg)
	select {
	case <-r.Halted():
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted server did not halt at the same entry; was it lost?")
	}
	if j := r.Store().Snapshot().Job(before); j == nil || j.State != model.JobPending {
		t.Errorf("after restart job %d = %+v; want it pending", before, j)
	}
}
