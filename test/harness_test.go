package test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
	dexec "github.com/durehq/dure/internal/exec"
)

// dureBin is the binary under test, built once by TestMain.
var dureBin string

// runID names this run's cgroups so cleanup finds exactly them.
var runID = fmt.Sprintf("dure-e2e-%d", os.Getpid())

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("end-to-end tests skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "dure-e2e-bin-")
	if err != nil {
		panic(err)
	}
	dureBin = filepath.Join(dir, "dure")
	if prebuilt := os.Getenv("DURE_TEST_BIN"); prebuilt != "" {
		// A machine without Go (a GPU box the suite is carried to) runs
		// the tests against a binary built elsewhere.
		dureBin = prebuilt
	} else {
		build := exec.Command("go", "build", "-o", dureBin, "../cmd/dure")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building dure:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	dexec.RemoveCgroupTree(runID)
	os.Exit(code)
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a dure process started by a test.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, dureBin, args...)
}

func (p *proc) output() string {
	w := p.cmd.Stdout.(*syncWriter)
	return w.String()
}

// stop signals the process and waits for it (SIGKILL after 10 s).
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cluster is a server plus agents, each a real process.
type cluster struct {
	t       *testing.T
	addr    string // server HTTP address
	data    string
	server  *proc
	agents  map[string]*proc
	client  *api.Client
	hbFlags []string
}

// newCluster starts a server and the named agents (1 CPU, 1 GiB each).
func newCluster(t *testing.T, agents ...string) *cluster {
	t.Helper()
	c := &cluster{
		t: t, addr: freeAddr(t), data: t.TempDir(), agents: map[string]*proc{},
		hbFlags: []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s"},
	}
	c.client = api.NewClient(c.addr)
	c.startServer()
	for _, name := range agents {
		c.startAgent(name)
	}
	t.Cleanup(c.cleanup)
	return c
}

func (c *cluster) startServer() {
	c.t.Helper()
	args := append([]string{"server", "--name", "s1", "--data", filepath.Join(c.data, "server"),
		"--http", c.addr, "--log-level", "info"}, c.hbFlags...)
	c.server = startProc(c.t, "server", args...)
	c.eventually("server is leader", 20*time.Second, func() error {
		st, err := c.client.Status(context.Background())
		if err != nil {
			return err
		}
		if !st.IsLeader {
			return errors.New("not leader yet")
		}
		return nil
	})
}

// startAgent starts an agent; extra flags (labels, resources) follow.
func (c *cluster) startAgent(name string, extra ...string) *proc {
	c.t.Helper()
	args := append([]string{"agent", "--name", name, "--servers", c.addr, "--listen", "127.0.0.1:0",
		"--data", filepath.Join(c.data, "agent-"+name), "--cpus", "1", "--mem", "1G", "--gpus", "0",
		"--cgroup-parent", isolateAgent(c.t, name, filepath.Join(c.data, "agent-"+name)), "--label", "host=" + name, "--kill-grace", "1s", "--log-level", "info"}, extra...)
	p := startProc(c.t, "agent "+name, args...)
	c.agents[name] = p
	c.waitNode(name, "ready")
	return p
}

func (c *cluster) waitNode(name, state string) {
	c.t.Helper()
	c.eventually("node "+name+" "+state, 20*time.Second, func() error {
		n, err := c.client.GetNode(context.Background(), name)
		if err != nil {
			return err
		}
		if n.State != state {
			return fmt.Errorf("node %s is %s", name, n.State)
		}
		return nil
	})
}

// cleanup cancels every active job so that no task outlives the test, then
// stops processes and removes leftovers.
func (c *cluster) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if jobs, _, err := c.client.ListJobs(ctx, api.JobFilter{State: "active"}, api.WatchOptions{}); err == nil {
		for _, j := range jobs {
			_, _ = c.client.CancelJob(ctx, j.ID)
		}
		for _, j := range jobs {
			c.waitAllocsDone(ctx, j.ID)
		}
	}
	for _, a := range c.agents {
		a.stop(syscall.SIGTERM)
	}
	c.server.stop(syscall.SIGTERM)
	killStragglers(c.data)
}

// waitAllocsDone waits until no allocation of the job is live.
func (c *cluster) waitAllocsDone(ctx context.Context, id uint64) {
	var idx uint64
	for ctx.Err() == nil {
		j, newIdx, err := c.client.GetJob(ctx, id, api.WatchOptions{Index: idx, Wait: 2 * time.Second})
		if err != nil {
			return
		}
		live := false
		for _, a := range j.Allocations {
			if a.Status == "assigned" || a.Status == "running" {
				live = true
			}
		}
		if !live {
			return
		}
		idx = newIdx
	}
}

// eventually polls check until it succeeds or the limit passes.
func (c *cluster) eventually(what string, limit time.Duration, check func() error) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %s waiting for %s: %v", limit, what, err)
}

// result of one CLI invocation.
type result struct {
	stdout, stderr string
	code           int
}

// dure runs the CLI against the cluster.
func (c *cluster) dure(args ...string) result {
	c.t.Helper()
	return runCLI(c.t, c.addr, nil, args...)
}

func runCLI(t *testing.T, addr string, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dureBin, args...)
	cmd.Env = append(os.Environ(), "DURE_ADDR=http://"+addr, "USER=e2e")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("dure %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// submit runs `dure submit` and returns the job ID.
func (c *cluster) submit(args ...string) uint64 {
	c.t.Helper()
	r := c.dure(append([]string{"submit"}, args...)...)
	if r.code != 0 {
		c.t.Fatalf("dure submit %v: exit %d: %s", args, r.code, r.stderr)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil {
		c.t.Fatalf("dure submit printed %q, want a job ID", r.stdout)
	}
	return id
}

// job fetches a job.
func (c *cluster) job(id uint64) api.Job {
	c.t.Helper()
	j, _, err := c.client.GetJob(context.Background(), id, api.WatchOptions{})
	if err != nil {
		c.t.Fatalf("get job %d: %v", id, err)
	}
	return j
}

// waitJob waits until the job satisfies cond (checked on every change).
func (c *cluster) waitJob(id uint64, what string, limit time.Duration, cond func(api.Job) bool) api.Job {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var idx uint64
	var last api.Job // the last answer (a call cut off by the deadline returns a zero job)
	for {
		j, newIdx, err := c.client.GetJob(ctx, id, api.WatchOptions{Index: idx, Wait: time.Second})
		if err == nil {
			if cond(j) {
				return j
			}
			last, idx = j, newIdx
		} else {
			time.Sleep(50 * time.Millisecond) // e.g. the server is restarting
		}
		if ctx.Err() != nil {
			c.t.Fatalf("job %d: timed out after %s waiting until %s; last seen: state=%s reason=%+v allocs=%+v", id, limit, what, last.State, last.Reason, last.Allocations)
		}
	}
}

func (c *cluster) waitState(id uint64, state string) api.Job {
	c.t.Helper()
	return c.waitJob(id, "state is "+state, 30*time.Second, func(j api.Job) bool { return j.State == state })
}

// killStragglers kills any process whose command line mentions dir: task
// supervisors and tasks that an abruptly killed agent left behind.
func killStragglers(dir string) {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// syncWriter is a goroutine-safe buffer for process output.
type syncWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
