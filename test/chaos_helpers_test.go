package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
	dexec "github.com/durehq/dure/internal/exec"
)

// startCmd starts any program as a test process: `ip netns exec NS dure …`
// for the partition tests. The process is stopped (and its output shown on
// failure) when the test ends, as startProc does for dure itself.
func startCmd(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = &syncWriter{b: p.log}, &syncWriter{b: p.log}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.output())
		}
	})
	return p
}

// poll calls check until it returns nil, failing the test with check's last
// error when limit passes.
func poll(t *testing.T, what string, limit time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", limit, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startAgentWith starts an agent of the HA cluster with cpus CPUs; extra
// flags follow (e.g. --listen on a namespace address).
func (h *haCluster) startAgentWith(name, cpus string, extra ...string) *proc {
	h.t.Helper()
	data := filepath.Join(h.data, "agent-"+name)
	args := append([]string{"agent", "--name", name, "--servers", strings.Join(h.addrs, ","),
		"--listen", "127.0.0.1:0", "--data", data, "--cpus", cpus, "--mem", "2G",
		"--gpus", "0", "--cgroup-parent", isolateAgent(h.t, name, data), "--label", "host=" + name,
		"--kill-grace", "1s", "--log-level", "info"}, extra...)
	p := startProc(h.t, "agent "+name, args...)
	h.agents[name] = p
	return p
}

// isolated holds the cgroup parents isolateAgent has handed out.
var isolated sync.Map

// isolateAgent returns a cgroup parent for the agent with data directory
// dataDir that no other agent, test or -count iteration uses (a task cgroup
// left behind by one test must not make the same allocation ID fail to
// start in the next); a restarted agent (same dataDir) gets the same one.
// Call it before starting the agent: the cleanup it registers then runs
// after the agent has stopped, and kills whatever is left — supervisors
// mentioning dataDir and every process in the cgroups (including children
// of killed shells, which command-line matching misses) — then removes
// the cgroups.
func isolateAgent(t *testing.T, name, dataDir string) string {
	h := fnv.New32a()
	h.Write([]byte(dataDir))
	rel := fmt.Sprintf("%s/%08x-%s", runID, h.Sum32(), name)
	if _, seen := isolated.LoadOrStore(rel, true); seen {
		return rel
	}
	t.Cleanup(func() {
		killStragglers(dataDir)
		if left := killCgroupTree(rel); len(left) > 0 {
			t.Errorf("processes %v survived SIGKILL in cgroup %s", left, rel)
		}
		dexec.RemoveCgroupTree(rel)
	})
	return rel
}

// killCgroupTree SIGKILLs every process in cgroup rel and below, in every
// hierarchy, until none is left (at most 10 s); it returns the survivors.
func killCgroupTree(rel string) []int {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + rel)
	if st, err := os.Stat("/sys/fs/cgroup/" + rel); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+rel)
	}
	var left []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		left = left[:0]
		for _, root := range roots {
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						left = append(left, pid)
					}
				}
				return nil
			})
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNodesReady waits until the named nodes are ready as c sees them.
func waitNodesReady(t *testing.T, c *api.Client, names ...string) {
	t.Helper()
	poll(t, fmt.Sprintf("nodes %v ready", names), 30*time.Second, func() error {
		for _, n := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			node, err := c.GetNode(ctx, n)
			cancel()
			if err != nil {
				return err
			}
			if node.State != "ready" {
				return fmt.Errorf("node %s is %s", n, node.State)
			}
		}
		return nil
	})
}

// startLine is one line of a start-record file: a task appends
// "$DURE_ALLOC_ID $DURE_JOB_ID" to it as the first thing it does, so the
// file is a record of real process starts that does not depend on what the
// servers believe.
type startLine struct {
	Alloc string
	Job   uint64
}

// recordCommand is a task command that appends its start line to file and
// then runs rest (a shell fragment, may be empty).
func recordCommand(file, rest string) []string {
	script := fmt.Sprintf(`echo "$DURE_ALLOC_ID $DURE_JOB_ID" >> %s`, shellQuote(file))
	if rest != "" {
		script += "; " + rest
	}
	return []string{"sh", "-ec", script}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// readStarts parses a start-record file; a missing file is an empty record.
func readStarts(t *testing.T, file string) []startLine {
	t.Helper()
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []startLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			t.Fatalf("start record %s: malformed line %q (interleaved writes?)", file, sc.Text())
		}
		id, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("start record %s: bad job ID in %q", file, sc.Text())
		}
		out = append(out, startLine{Alloc: f[0], Job: id})
	}
	return out
}

// taskProcs lists the PIDs of a task's processes: those whose environment
// holds DURE_ALLOC_ID=alloc and whose command line mentions marker (a path
// in the test's temporary directory, so that a task of another test run
// with the same allocation ID is never mistaken for this one).
func taskProcs(alloc, marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	want := []byte("DURE_ALLOC_ID=" + alloc)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if slices.ContainsFunc(bytes.Split(env, []byte{0}), func(v []byte) bool { return bytes.Equal(v, want) }) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// percentile is the nearest-rank percentile of ds (p in 0..100).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// jobOn reads one job through c with a bounded wait.
func jobOn(c *api.Client, id uint64) (api.Job, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, _, err := c.GetJob(ctx, id, api.WatchOptions{})
	return j, err
}
