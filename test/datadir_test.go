package test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// TestCorruptOrMissingDataDir starts a server on a damaged data directory.
// A damaged raft log or snapshot must stop the server with an error that
// names the damaged file — not a crash dump, and never a server that comes
// up having silently lost committed state. A data directory that does not
// exist yet is created.
//
// What hashicorp/raft (v1.7) does with snapshots, which these cases pin:
// at start it lists raft/snapshots/*, skipping (with a warning) any whose
// meta.json cannot be read; it opens the newest listed snapshot, checks the
// CRC of state.bin against meta.json and restores it; a snapshot that fails
// is logged ("failed to open snapshot: id=…") and the next older one is
// tried; when every listed snapshot fails NewRaft returns "failed to load
// any existing snapshots". A snapshot skipped for its meta.json is simply
// invisible: raft then finds log entries that need the missing snapshot
// and panics ("log not found").
func TestCorruptOrMissingDataDir(t *testing.T) {
	base, jobs := prepareDataDir(t)
	snaps, _ := filepath.Glob(filepath.Join(base, "raft", "snapshots", "*"))
	if len(snaps) != 1 {
		t.Fatalf("prepared data dir has snapshots %v, want exactly one", snaps)
	}
	snapID := filepath.Base(snaps[0])

	tests := []struct {
		name   string
		damage func(dir string) error
		// names: what the output must mention (the damaged file); nil
		// means the server must start with every job.
		names func(dir string) []string
	}{
		{"raft.db is garbage", func(dir string) error {
			return overwrite(filepath.Join(dir, "raft", "raft.db"), 0, fileSize(t, filepath.Join(dir, "raft", "raft.db")))
		}, names(filepath.Join("raft", "raft.db"))},
		{"raft.db truncated", func(dir string) error {
			return os.Truncate(filepath.Join(dir, "raft", "raft.db"), 12288)
		}, names(filepath.Join("raft", "raft.db"))},
		{"raft.db emptied while a snapshot exists", func(dir string) error {
			return os.Truncate(filepath.Join(dir, "raft", "raft.db"), 0)
		}, names(filepath.Join("raft", "raft.db"))},
		{"snapshot state corrupt", func(dir string) error {
			return overwrite(filepath.Join(dir, "raft", "snapshots", snapID, "state.bin"), 40, 8)
		}, func(dir string) []string { return []string{snapID, filepath.Join(dir, "raft")} }},
		{"snapshot metadata unreadable", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "raft", "snapshots", snapID, "meta.json"), []byte("{garbage"), 0o600)
		}, func(string) []string { return []string{snapID} }},
		{"undamaged copy", func(string) error { return nil }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			copyDir(t, base, dir)
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			out, code, up := tryServer(t, dir)
			for _, crash := range []string{"panic:", "fatal error:", "goroutine "} {
				if strings.Contains(out, crash) {
					t.Errorf("the server crashed (%q) instead of refusing with an error:\n%s", crash, excerpt(out))
					break
				}
			}
			if tc.names == nil {
				if up == nil || len(up) != len(jobs) {
					t.Errorf("server on an undamaged copy: jobs %v, want %v (exit %d)\n%s", up, jobs, code, excerpt(out))
				}
				return
			}
			if up != nil {
				t.Fatalf("the server started on a damaged data directory, with jobs %v (committed: %v); want it to refuse", up, jobs)
			}
			if code == 0 {
				t.Errorf("server exited 0; want a failure exit code")
			}
			for _, n := range tc.names(dir) {
				if !strings.Contains(out, n) {
					t.Errorf("output does not name %q:\n%s", n, excerpt(out))
				}
			}
		})
	}

	t.Run("missing data dir is created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new", "data")
		c := &cluster{t: t, addr: freeAddr(t), data: dir, agents: map[string]*proc{},
			hbFlags: []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s"}}
		c.client = api.NewClient(c.addr)
		c.startServer()
		t.Cleanup(c.cleanup)
		id := c.submit("--name", "first", "--", "true")
		if j := c.job(id); j.Name != "first" {
			t.Errorf("job on a new data dir: %+v", j)
		}
		if _, err := os.Stat(filepath.Join(dir, "server", "raft", "raft.db")); err != nil {
			t.Errorf("raft log not created: %v", err)
		}
	})
}

// names expects the output to name file (relative to the data dir).
func names(file string) func(dir string) []string {
	return func(dir string) []string { return []string{filepath.Join(dir, file)} }
}

// prepareDataDir runs a one-server cluster until its data directory holds a
// raft snapshot (made by restoring a saved one) and a job committed after
// it, then stops the server. It returns the directory and the job names.
func prepareDataDir(t *testing.T) (string, []string) {
	t.Helper()
	c := newCluster(t)
	a := c.submit("--name", "before-snapshot", "--", "true")
	file := filepath.Join(t.TempDir(), "s.snap")
	for _, args := range [][]string{{"operator", "snapshot", "save", file}, {"operator", "snapshot", "restore", file}} {
		if r := c.dure(args...); r.code != 0 {
			t.Fatalf("dure %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	b := c.submit("--name", "after-snapshot", "--", "true")
	c.job(a)
	c.job(b)
	c.server.stop(syscall.SIGTERM)
	return filepath.Join(c.data, "server"), []string{"before-snapshot", "after-snapshot"}
}

// tryServer starts a server on dir. If it exits within 20 s it returns its
// output and exit code; if it comes up instead, it returns the names of the
// jobs it serves (then stops it).
func tryServer(t *testing.T, dir string) (out string, code int, jobs []string) {
	t.Helper()
	addr := freeAddr(t)
	p := startProc(t, "server on "+filepath.Base(filepath.Dir(dir)), "server", "--name", "s1", "--data", dir, "--http", addr, "--log-level", "info")
	c := api.NewClient(addr)
	c.NoLeaderRetry = 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if exited(p) {
			return p.output(), p.cmd.ProcessState.ExitCode(), nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Status(ctx)
		if err == nil && st.IsLeader {
			list, _, err := c.ListJobs(ctx, api.JobFilter{}, api.WatchOptions{})
			cancel()
			if err == nil {
				jobs = []string{}
				for _, j := range list {
					jobs = append(jobs, j.Name)
				}
				p.stop(syscall.SIGTERM)
				return p.output(), 0, jobs
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	p.stop(syscall.SIGKILL)
	t.Fatalf("server on %s neither exited nor became leader within 20 s:\n%s", dir, p.output())
	return "", 0, nil
}

// overwrite replaces n bytes of file at off with a fixed non-zero pattern.
func overwrite(file string, off, n int64) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	junk := []byte(strings.Repeat("\xde\xad\xbe\xef", int(n/4)+1))[:n]
	_, err = f.WriteAt(junk, off)
	return err
}

func fileSize(t *testing.T, file string) int64 {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// copyDir copies a directory tree of regular files.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// excerpt is the start and end of a process's output.
func excerpt(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) <= 12 {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:4], "\n") + fmt.Sprintf("\n… %d lines …\n", len(lines)-12) + strings.Join(lines[len(lines)-8:], "\n")
}
