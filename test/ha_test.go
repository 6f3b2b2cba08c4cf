package test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// haCluster is three (or more) real server processes and agents.
type haCluster struct {
	t       *testing.T
	data    string
	names   []string
	addrs   []string
	servers map[string]*proc
	agents  map[string]*proc
}

func newHACluster(t *testing.T, n int) *haCluster {
	t.Helper()
	h := &haCluster{t: t, data: t.TempDir(), servers: map[string]*proc{}, agents: map[string]*proc{}}
	for i := range n {
		h.names = append(h.names, fmt.Sprintf("s%d", i+1))
		h.addrs = append(h.addrs, freeAddr(t))
	}
	for i := range n {
		h.startServer(i, "--bootstrap-expect", fmt.Sprint(n))
	}
	t.Cleanup(h.cleanup)
	h.waitLeader(30 * time.Second)
	return h
}

func (h *haCluster) startServer(i int, extra ...string) {
	var others []string
	for j, a := range h.addrs {
		if j != i {
			others = append(others, a)
		}
	}
	args := append([]string{"server", "--name", h.names[i], "--http", h.addrs[i],
		"--data", filepath.Join(h.data, h.names[i]), "--join", strings.Join(others, ","),
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "3s", "--log-level", "info"}, extra...)
	h.servers[h.names[i]] = startProc(h.t, "server "+h.names[i], args...)
}

// client talks to every server, as the CLI does with a comma-separated DURE_ADDR.
func (h *haCluster) client(i int) *api.Client { return api.NewClient(h.addrs[i]) }

// waitLeader waits until every live server agrees on one leader and returns its index.
func (h *haCluster) waitLeader(limit time.Duration) int {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		leader, agree := -1, true
		for i, name := range h.names {
			if p := h.servers[name]; p == nil || exited(p) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := h.client(i).Status(ctx)
			cancel()
			if err != nil || st.Leader == "" {
				agree = false
				break
			}
			if st.IsLeader {
				leader = i
			}
		}
		if agree && leader >= 0 {
			return leader
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("no leader agreed on within %s", limit)
	return -1
}

func exited(p *proc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (h *haCluster) startAgent(name string) {
	h.t.Helper()
	h.startAgentWith(name, "1") // an isolated cgroup parent per agent and test
}

func (h *haCluster) cleanup() {
	for _, a := range h.agents {
		a.stop(syscall.SIGTERM)
	}
	for _, s := range h.servers {
		s.stop(syscall.SIGTERM)
	}
	killStragglers(h.data)
}

func TestThreeServersElectForwardAndFailOver(t *testing.T) {
	h := newHACluster(t, 3)
	leader := h.waitLeader(10 * time.Second)
	follower := (leader + 1) % 3

	r := runCLI(t, h.addrs[follower], nil, "server", "members")
	for _, name := range h.names {
		if !strings.Contains(r.stdout, name) {
			t.Fatalf("dure server members lacks %s:\n%s%s", name, r.stdout, r.stderr)
		}
	}
	if strings.Count(r.stdout, "leader") != 1 {
		t.Errorf("want exactly one leader in:\n%s", r.stdout)
	}

	h.startAgent("n1")
	// A write sent to a follower is forwarded to the leader.
	id, err := h.client(follower).SubmitJob(context.Background(), api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"sleep", "300"}, Resources: api.Resources{MilliCPU: 500}}}})
	if err != nil {
		t.Fatalf("submit through a follower: %v", err)
	}
	// Read your writes: the follower that forwarded the write has applied it.
	if _, _, err := h.client(follower).GetJob(context.Background(), id, api.WatchOptions{}); err != nil {
		t.Fatalf("job %d submitted through follower %s is not readable there at once: %v", id, h.names[follower], err)
	}
	waitJobOn(t, h.client(follower), id, "running", 30*time.Second)

	// Kill the leader: the others elect a new one; the job keeps running, and
	// writes and scheduling resume.
	h.servers[h.names[leader]].stop(syscall.SIGKILL)
	newLeader := h.waitLeader(15 * time.Second)
	if newLeader == leader {
		t.Fatalf("leader %s still reported after being killed", h.names[leader])
	}
	j, _, err := h.client(newLeader).GetJob(context.Background(), id, api.WatchOptions{})
	if err != nil || j.State != "running" {
		t.Fatalf("job after failover: %v %s, want still running", err, j.State)
	}
	id2, err := h.client(newLeader).SubmitJob(context.Background(), api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"true"}, Resources: api.Resources{MilliCPU: 100}}}})
	if err != nil {
		t.Fatalf("submit after failover: %v", err)
	}
	if id2 <= id {
		t.Errorf("job ID after failover %d, want above %d", id2, id)
	}
	waitJobOn(t, h.client(newLeader), id2, "succeeded", 30*time.Second)

	// The old leader restarts and rejoins as a follower with every job.
	h.startServer(leader)
	h.waitLeader(15 * time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, _, err := h.client(leader).GetJob(context.Background(), id2, api.WatchOptions{})
		if err == nil && j.State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted server never caught up: %v %s", err, j.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, _ = h.client(newLeader).CancelJob(context.Background(), id)
	waitJobOn(t, h.client(newLeader), id, "cancelled", 10*time.Second)
}

func TestServerMembershipRemoveAndJoin(t *testing.T) {
	h := newHACluster(t, 3)
	leader := h.waitLeader(10 * time.Second)
	victim := (leader + 2) % 3
	if r := runCLI(t, h.addrs[leader], nil, "server", "remove", h.names[victim]); r.code != 0 {
		t.Fatalf("dure server remove: %d %s", r.code, r.stderr)
	}
	h.servers[h.names[victim]].stop(syscall.SIGTERM)
	ms, err := h.client(leader).ListServers(context.Background())
	if err != nil || len(ms) != 2 {
		t.Fatalf("members after remove: %+v %v, want 2", ms, err)
	}
	// A fresh server joins the running cluster through --join.
	h.names = append(h.names, "s4")
	h.addrs = append(h.addrs, freeAddr(t))
	h.startServer(3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, err = h.client(leader).ListServers(context.Background())
		if err == nil && len(ms) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("s4 never joined: %+v %v", ms, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitJobOn(t *testing.T, c *api.Client, id uint64, state string, limit time.Duration) api.Job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		j, _, err := c.GetJob(context.Background(), id, api.WatchOptions{})
		if err == nil && j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: want %s within %s; last %s %+v (%v)", id, state, limit, j.State, j.Reason, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFiveServersSurviveLosingTwo(t *testing.T) {
	if testing.Short() {
		t.Skip("five servers: long")
	}
	h := newHACluster(t, 5)
	leader := h.waitLeader(15 * time.Second)
	h.startAgent("n1")
	// Lose the leader and one follower: three of five still form a majority.
	other := (leader + 1) % 5
	h.servers[h.names[leader]].stop(syscall.SIGKILL)
	h.servers[h.names[other]].stop(syscall.SIGKILL)
	survivor := h.waitLeader(20 * time.Second)
	id, err := h.client(survivor).SubmitJob(context.Background(), api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"true"}, Resources: api.Resources{MilliCPU: 100}}}})
	if err != nil {
		t.Fatalf("submit with 3 of 5 servers: %v", err)
	}
	waitJobOn(t, h.client(survivor), id, "succeeded", 30*time.Second)
	ms, err := h.client(survivor).ListServers(context.Background())
	if err != nil || len(ms) != 5 {
		t.Errorf("members %+v (%v): want all five still configured", ms, err)
	}
}
