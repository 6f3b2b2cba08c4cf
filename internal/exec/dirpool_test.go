package exec

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func countPrefix(names []string, prefix string) int {
	n := 0
	for _, s := range names {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestDirPool(t *testing.T) {
	dir := t.TempDir()
	// Left by an earlier daemon that died: removed.
	for _, d := range []string{spareDirPrefix + "1.1", spareScratchPrefix + "1.2"} {
		if err := os.MkdirAll(filepath.Join(dir, d, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := newDirPool(dir, slog.New(slog.DiscardHandler))
	if p == nil { // the test's directory is on tmpfs
		p = startDirPool(dir, slog.New(slog.DiscardHandler))
	}
	t.Cleanup(p.close)
	full := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.spares) == spareDirs
	}
	waitUntil(t, "the pool is full", full)
	names := dirNames(t, dir)
	if slices.Contains(names, spareDirPrefix+"1.1") || slices.Contains(names, spareScratchPrefix+"1.2") || countPrefix(names, spareDirPrefix) != spareDirs {
		t.Fatalf("directory holds %v; want %d fresh spares and nothing left from before", names, spareDirs)
	}

	task := filepath.Join(dir, "t1")
	before := time.Now().Add(-time.Second)
	logs, ok, exists := p.take(task)
	if !ok || exists {
		t.Fatalf("take: ok %v exists %v; want a spare", ok, exists)
	}
	// The spare's logs come open, appending to the task's files.
	for i, name := range []string{stdoutFile, stderrFile} {
		if err := os.WriteFile(filepath.Join(task, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(logs[i], []byte(name)); err != nil {
			t.Errorf("writing %s through the spare's descriptor: %v", name, err)
		}
		_ = unix.Close(logs[i])
		if got, _ := os.ReadFile(filepath.Join(task, name)); string(got) != "x"+name {
			t.Errorf("%s holds %q; want %q appended", name, got, "x"+name)
		}
	}
	if diff := cmp.Diff([]string{scratchDir, statusFile + ".tmp", stderrFile, stdoutFile}, dirNames(t, task)); diff != "" {
		t.Errorf("task directory (-want +got):\n%s", diff)
	}
	if st, err := os.Stat(task); err != nil || st.ModTime().Before(before) || st.Mode().Perm() != 0o755 {
		t.Errorf("task directory: %v, %v; want mode 0755 and the time it was taken", st, err)
	}
	if st, err := os.Stat(filepath.Join(task, scratchDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("scratch: %v, %v; want mode 0700", st, err)
	}
	p.kick() // as the daemon does once the start is answered
	waitUntil(t, "the pool is refilled", full)

	// A task directory that exists is never replaced; the spare stays.
	if _, ok, exists := p.take(task); ok || !exists {
		t.Errorf("take of an existing directory: ok %v exists %v; want exists", ok, exists)
	}
	if !full() {
		t.Error("the spare was lost on a refused take")
	}

	// An empty scratch directory goes into a later spare; one the task left
	// files in is not kept.
	scratch := filepath.Join(task, scratchDir)
	if err := os.Chmod(scratch, 0o777); err != nil {
		t.Fatal(err)
	}
	if !p.recycle(scratch) {
		t.Error("an empty scratch directory was not kept")
	}
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Errorf("the kept scratch is still in the task directory: %v", err)
	}
	parked := dirNames(t, dir)
	if countPrefix(parked, spareScratchPrefix) != 1 {
		t.Errorf("directory holds %v; want the kept scratch", parked)
	}
	other := filepath.Join(dir, "t2")
	logs, ok, _ = p.take(other)
	if !ok {
		t.Fatal("no spare for t2")
	}
	closeFDs(logs[:]...)
	p.kick()
	waitUntil(t, "the kept scratch is used", func() bool { return countPrefix(dirNames(t, dir), spareScratchPrefix) == 0 && full() })
	reused := 0
	for _, n := range dirNames(t, dir) {
		if st, err := os.Stat(filepath.Join(dir, n, scratchDir)); err == nil && strings.HasPrefix(n, spareDirPrefix) && st.Mode().Perm() == 0o700 {
			reused++
		}
	}
	if reused != spareDirs {
		t.Errorf("%d of %d spares have a private scratch directory", reused, spareDirs)
	}
	full2 := filepath.Join(other, scratchDir)
	if err := os.WriteFile(filepath.Join(full2, "left"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p.recycle(full2) {
		t.Error("a scratch directory with a file in it was kept")
	}
	// A task that replaced its scratch directory with a link to another
	// empty private directory must not pass it on to a later task.
	elsewhere := t.TempDir()
	if err := os.Chmod(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(other, "linked")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if p.recycle(link) {
		t.Error("a symbolic link to an empty directory was kept as a scratch directory")
	}
	if st, err := os.Stat(elsewhere); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("the link's target: %v, %v; want it untouched (mode 0755)", st, err)
	}

	p.close()
	if n := dirNames(t, dir); countPrefix(n, "+") != 0 {
		t.Errorf("after close: %v; want no spares", n)
	}
}

// A task's directory holds its logs and status once it ended: its scratch
// directory (kept for a later task) and the status file's temporary name
// are gone.
func TestEndedTaskDirectory(t *testing.T) {
	t.Parallel()
	h := nodeRunner(t, t.TempDir(), cgroupOff, "")
	for i := range 3 { // the first tasks may find no spare ready yet
		id := "ended-" + string(rune('a'+i))
		if res := h.run(shell(id, "echo out; echo err >&2; test -d \"$DURE_SCRATCH\"")); res.ExitCode != 0 {
			t.Fatalf("%s: %+v", id, res)
		}
		if diff := cmp.Diff([]string{statusFile, stderrFile, stdoutFile}, dirNames(t, filepath.Join(h.r.dir, id))); diff != "" {
			t.Errorf("%s: task directory (-want +got):\n%s", id, diff)
		}
		if got := h.readLog(id, "stdout") + h.readLog(id, "stderr"); got != "out\nerr\n" {
			t.Errorf("%s: logs %q", id, got)
		}
	}
}

// On tmpfs an inode is cheaper than keeping spares: no pool.
func TestNoDirPoolOnTmpfs(t *testing.T) {
	var fs unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &fs); err != nil || fs.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "dure-dirpool-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if p := newDirPool(dir, slog.New(slog.DiscardHandler)); p != nil {
		p.close()
		t.Error("a directory pool on tmpfs")
	}
	// Without a pool a task's directory is made at start, as it always was.
	h := nodeRunner(t, dir, cgroupOff, "")
	if res := h.run(shell("t", "test -d \"$DURE_SCRATCH\"")); res.ExitCode != 0 {
		t.Errorf("task on tmpfs: %+v", res)
	}
	if diff := cmp.Diff([]string{statusFile, stderrFile, stdoutFile}, dirNames(t, filepath.Join(dir, "t"))); diff != "" {
		t.Errorf("task directory (-want +got):\n%s", diff)
	}
}
