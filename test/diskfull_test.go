package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/testkit/diskfull"
)

// TestDiskFullRejectsWrites puts a server's data directory on a 4 MiB tmpfs
// and fills it. Submissions must then fail with an error — promptly, not
// hang — and the server must not lose or corrupt what it had committed:
// after space is freed (and a restart, if the server needs one) every
// acknowledged job is still there, also after a further kill -9 and restart.
//
// What happens underneath (hashicorp/raft v1.7.3, raft-boltdb v2, bbolt),
// as observed here: the leader appends each entry to its bolt log before
// counting it stored. Bolt grows raft.db with write(2); on a full disk that
// fails with ENOSPC, the bolt transaction is rolled back (bolt writes a
// transaction's pages before the meta page that makes it visible, so the
// file keeps its previous consistent state), and raft answers every Apply
// of the batch with the error ("failed to commit logs") and steps down. The
// client sees a 507 no_space whose message names raft.db and ENOSPC. The next
// election succeeds within about a second (persisting the term is a small
// bolt write that fits in pages the file already has), so the server keeps
// answering reads and refuses each write that needs new space; a small one
// may still fit in free pages and is then stored and acknowledged normally.
// If a background write (a scheduling plan) fails first, elections may
// fail the same way for a while: a server that knows no leader then answers
// the 507 too, naming its own failed log write (Server.StoreFailure), not
// a 503 "retry shortly". Once space is freed, writes succeed again without a
// restart.
func TestDiskFullRejectsWrites(t *testing.T) {
	mnt := diskfull.Tmpfs(t, "4m")
	c := &cluster{t: t, addr: freeAddr(t), data: mnt, agents: map[string]*proc{},
		hbFlags: []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s"}}
	c.client = api.NewClient(c.addr)
	c.startServer()
	t.Cleanup(c.cleanup)
	cl := api.NewClient(c.addr)
	cl.NoLeaderRetry = 2 * time.Second

	// A bulky job (its environment carries 64 KiB) makes each entry count.
	bulk := strings.Repeat("x", 64<<10)
	acked := map[uint64]string{}
	submit := func(name string) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		id, err := cl.SubmitJob(ctx, api.JobSpec{Name: name, Owner: "e2e", Groups: []api.TaskGroupSpec{{
			Resources: api.Resources{MilliCPU: 100}, Command: []string{"true"}, Env: map[string]string{"BULK": bulk},
		}}})
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("submit %s hung for 30 s", name)
		}
		if err == nil {
			acked[id] = name
		}
		return id, err
	}
	for i := range 5 {
		if _, err := submit(fmt.Sprintf("before-full-%d", i)); err != nil {
			t.Fatalf("submit with free space: %v", err)
		}
	}

	filler := filepath.Join(mnt, "filler")
	diskfull.Fill(t, filler)
	var firstErr error
	for i := 0; i < 100 && firstErr == nil; i++ {
		_, firstErr = submit(fmt.Sprintf("while-full-%d", i))
	}
	if firstErr == nil {
		t.Fatalf("100 bulky submissions succeeded on a full disk")
	}
	if !strings.Contains(firstErr.Error(), "no space left on device") {
		t.Errorf("submission on a full disk failed with %q; want the cause (no space left on device)", firstErr)
	}
	var ae *api.Error
	if !errors.As(firstErr, &ae) || ae.Status != 507 || ae.Code != api.CodeNoSpace {
		t.Errorf("submission on a full disk: %v; want a 507 %q answer", firstErr, api.CodeNoSpace)
	}
	t.Logf("first submission refused on the full disk: %v", firstErr)
	// More tries: each must answer (the submit helper fails the test on a
	// hang). Some may succeed — bolt reuses free pages inside its file —
	// and those are acknowledged writes like any other.
	refused := 1
	for i := range 5 {
		if _, err := submit(fmt.Sprintf("still-full-%d", i)); err != nil {
			refused++
			t.Logf("refused again: %v", err)
		}
	}
	t.Logf("%d of 6 submissions refused while the disk was full", refused)
	if exited(c.server) {
		t.Fatalf("the server exited when its disk filled:\n%s", excerpt(c.server.output()))
	}
	if _, err := jobOn(c.client, 1); err != nil {
		t.Errorf("reads fail while the disk is full: %v", err)
	}

	// Free the space: the server should accept writes again by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recovered := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if _, err := submit("after-free"); err == nil {
			recovered = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !recovered {
		t.Errorf("no write accepted within 15 s of freeing space; restarting the server")
		c.server.stop(syscall.SIGTERM)
		c.startServer()
		if _, err := submit("after-restart"); err != nil {
			t.Fatalf("submit after freeing space and restarting: %v", err)
		}
	}
	checkAcked(t, c, acked)
	// Durable, not just in memory: kill -9 and start again.
	c.server.stop(syscall.SIGKILL)
	c.startServer()
	checkAcked(t, c, acked)
}

// checkAcked checks that every acknowledged job exists under its name.
func checkAcked(t *testing.T, c *cluster, acked map[uint64]string) {
	t.Helper()
	for id, name := range acked {
		j, err := jobOn(c.client, id)
		if err != nil || j.Name != name {
			t.Errorf("acknowledged job %d (%s): %+v %v", id, name, j.Name, err)
		}
	}
	t.Logf("all %d acknowledged jobs present", len(acked))
}
