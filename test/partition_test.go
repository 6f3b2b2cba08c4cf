package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// TestPartitionedLeaderStepsDown runs three servers, each in its own network
// namespace, and cuts the leader off: the majority elects a new leader and
// keeps working; the old leader steps down, answers writes with 503 and
// never gets a job started; healed, it rejoins as a follower with the
// majority's state.
func TestPartitionedLeaderStepsDown(t *testing.T) {
	lab := newNetLab(t)
	h, nss := newNSCluster(t, lab)
	old := h.waitLeader(30 * time.Second)
	starts := filepath.Join(h.data, "starts.log")
	// The agent lists the leader last, so it talks to a server of the
	// majority throughout (TestAgentLeavesPartitionedServer covers an agent
	// whose server is cut off).
	order := append(slices.Delete(slices.Clone(h.addrs), old, old+1), h.addrs[old])
	h.startAgentWith("a1", "2", "--listen", lab.gateway()+":0", "--servers", strings.Join(order, ","))
	all := api.NewClient(strings.Join(h.addrs, ","))
	waitNodesReady(t, all, "a1")
	before := submitAndWait(t, all, "before", recordCommand(starts, ""), "succeeded")

	var majority []int
	for i := range h.addrs {
		if i != old {
			majority = append(majority, i)
		}
	}
	majorityClient := api.NewClient(h.addrs[majority[0]] + "," + h.addrs[majority[1]])
	oldNS, oldAddr := nss[old], h.addrs[old]
	minority := httpIn(oldNS)

	cutAt := time.Now()
	lab.cut(oldNS)
	// A write sent to the old leader right away, from its own side of the
	// partition: it must fail, whether it arrives while that server still
	// believes it leads (the entry never commits) or after it stepped down.
	firstWrite := make(chan writeResult, 1)
	go func() { firstWrite <- postJob(minority, oldAddr, "minority-1", recordCommand(starts, "")) }()

	var newLeader int
	poll(t, "the majority to elect a new leader", 20*time.Second, func() error {
		for _, i := range majority {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := h.client(i).Status(ctx)
			cancel()
			if err != nil {
				return err
			}
			if st.IsLeader {
				newLeader = i
				return nil
			}
		}
		return fmt.Errorf("no leader among %s and %s yet", h.names[majority[0]], h.names[majority[1]])
	})
	elected := time.Since(cutAt)
	var stepDown time.Duration
	poll(t, "the old leader to step down", 20*time.Second, func() error {
		r := lab.dureIn(oldNS, oldAddr, "status", "-o", "json")
		var st api.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
			return fmt.Errorf("dure status in %s: exit %d %v: %s", oldNS, r.code, err, r.stderr)
		}
		if st.IsLeader {
			return fmt.Errorf("%s still says it leads", st.Server)
		}
		stepDown = time.Since(cutAt)
		return nil
	})
	t.Logf("partitioned %s: the majority elected %s after %s; the old leader stepped down after %s",
		h.names[old], h.names[newLeader], elected.Round(time.Millisecond), stepDown.Round(time.Millisecond))

	for _, w := range []writeResult{<-firstWrite, postJob(minority, oldAddr, "minority-2", recordCommand(starts, ""))} {
		if w.err != nil || w.status != http.StatusServiceUnavailable || w.code != api.CodeUnavailable {
			t.Errorf("write %s to the partitioned old leader: status %d code %q err %v (%s); want 503 %q",
				w.name, w.status, w.code, w.err, w.body, api.CodeUnavailable)
		}
	}
	// The majority keeps accepting and running work.
	during := submitAndWait(t, majorityClient, "during", recordCommand(starts, ""), "succeeded")

	lab.heal(oldNS)
	var leaderAddr string
	poll(t, "the old leader to rejoin as a follower with the majority's state", 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		lst, err := h.client(newLeader).Status(ctx)
		cancel()
		if err != nil {
			return err
		}
		r := lab.dureIn(oldNS, oldAddr, "status", "-o", "json")
		var st api.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
			return fmt.Errorf("dure status in %s: exit %d %v: %s", oldNS, r.code, err, r.stderr)
		}
		switch {
		case st.IsLeader:
			return fmt.Errorf("%s leads again", st.Server)
		case st.Leader == "":
			return fmt.Errorf("%s knows no leader", st.Server)
		case st.Index < lst.Index:
			return fmt.Errorf("%s applied %d, the leader %d", st.Server, st.Index, lst.Index)
		}
		leaderAddr = st.Leader
		return nil
	})
	if leaderAddr == oldAddr {
		t.Errorf("old leader rejoined and reports itself (%s) as leader", leaderAddr)
	}

	// Every server now holds the same jobs: before and during, and nothing
	// from the minority side.
	var lists [][]string
	for i, name := range h.names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		jobs, _, err := h.client(i).ListJobs(ctx, api.JobFilter{}, api.WatchOptions{})
		cancel()
		if err != nil {
			t.Fatalf("list jobs on %s: %v", name, err)
		}
		var l []string
		for _, j := range jobs {
			l = append(l, fmt.Sprintf("%d %s %s", j.ID, j.Name, j.State))
		}
		slices.Sort(l)
		lists = append(lists, l)
	}
	want := []string{fmt.Sprintf("%d before succeeded", before), fmt.Sprintf("%d during succeeded", during)}
	slices.Sort(want)
	for i, l := range lists {
		if !slices.Equal(l, want) {
			t.Errorf("jobs on %s: %q, want %q", h.names[i], l, want)
		}
	}
	for _, s := range readStarts(t, starts) {
		if s.Job != before && s.Job != during {
			t.Errorf("a task of job %d (allocation %s) started; only jobs %d and %d were committed", s.Job, s.Alloc, before, during)
		}
	}
	// And a write through the healed server reaches the leader.
	after := submitAndWait(t, h.client(old), "after", recordCommand(starts, ""), "succeeded")
	if after <= during {
		t.Errorf("job ID %d after healing, want above %d", after, during)
	}
}

// newNSCluster starts three servers, each in its own namespace of lab, and
// returns them with their namespaces.
func newNSCluster(t *testing.T, lab *netLab) (*haCluster, []string) {
	t.Helper()
	h := &haCluster{t: t, data: t.TempDir(), servers: map[string]*proc{}, agents: map[string]*proc{}}
	var nss []string
	for i := range 3 {
		name := fmt.Sprintf("s%d", i+1)
		ns, ip := lab.addNS(name, 11+i)
		h.names = append(h.names, name)
		h.addrs = append(h.addrs, ip+":7070")
		nss = append(nss, ns)
	}
	t.Cleanup(h.cleanup) // before the lab's cleanup: processes go first
	for i, name := range h.names {
		others := slices.Delete(slices.Clone(h.addrs), i, i+1)
		h.servers[name] = startCmd(t, "server "+name, "ip", "netns", "exec", nss[i], dureBin, "server",
			"--name", name, "--http", h.addrs[i], "--data", filepath.Join(h.data, name),
			"--bootstrap-expect", "3", "--join", strings.Join(others, ","),
			"--heartbeat-interval", "200ms", "--heartbeat-timeout", "3s", "--log-level", "info")
	}
	return h, nss
}

// TestAgentLeavesPartitionedServer cuts off the server an agent talks to
// (the leader, listed first by the agent): the agent must move to the
// majority for everything — heartbeats and its allocation watch — so that
// work the new leader places on it starts while the partition lasts. The
// limit below is a liveness bound (several heartbeat timeouts), not a
// performance target.
func TestAgentLeavesPartitionedServer(t *testing.T) {
	lab := newNetLab(t)
	h, nss := newNSCluster(t, lab)
	old := h.waitLeader(30 * time.Second)
	order := append([]string{h.addrs[old]}, slices.Delete(slices.Clone(h.addrs), old, old+1)...)
	h.startAgentWith("a1", "2", "--listen", lab.gateway()+":0", "--servers", strings.Join(order, ","))
	all := api.NewClient(strings.Join(h.addrs, ","))
	waitNodesReady(t, all, "a1")
	starts := filepath.Join(h.data, "starts.log")
	submitAndWait(t, all, "before", recordCommand(starts, ""), "succeeded")

	lab.cut(nss[old])
	cutAt := time.Now()
	rest := slices.Delete(slices.Clone(h.addrs), old, old+1)
	waitMajorityLeader(t, rest)
	// Submitted once the majority has its leader (a write sent earlier is
	// TestWriteForwardedDuringLeaderPartition's subject).
	majority := api.NewClient(strings.Join(rest, ","))
	id := submitOnly(t, majority, "during", recordCommand(starts, ""))
	// 15 s: five agent heartbeat timeouts; an agent still blocked on the
	// cut-off server's allocation watch (a 30 s blocking query) misses it.
	j := waitJobOn(t, majority, id, "succeeded", 15*time.Second)
	t.Logf("job placed during the partition ran %s after the cut (%s on %s)", time.Since(cutAt).Round(time.Millisecond), j.State, j.Allocations[0].Node)
}

// TestWriteForwardedDuringLeaderPartition sends a write to a follower of the
// majority right after the leader is cut off, before the majority noticed:
// the follower forwards it to the old leader, which cannot be reached. The
// write must still be acknowledged once the majority has a new leader (the
// client retries a 503); it must not hang on the unreachable old leader.
func TestWriteForwardedDuringLeaderPartition(t *testing.T) {
	lab := newNetLab(t)
	h, nss := newNSCluster(t, lab)
	old := h.waitLeader(30 * time.Second)
	rest := slices.Delete(slices.Clone(h.addrs), old, old+1)
	c := api.NewClient(strings.Join(rest, ","))
	// A first write warms the follower's connection to the leader, as in a
	// cluster that has been working for a while.
	submitOnly(t, c, "warm", []string{"true"})

	lab.cut(nss[old])
	cutAt := time.Now()
	// 20 s: the client's own no-leader retry window plus a few elections.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := c.SubmitJob(ctx, api.JobSpec{Name: "forwarded", Owner: "e2e", Groups: []api.TaskGroupSpec{{
		Resources: api.Resources{MilliCPU: 100}, Command: []string{"true"},
	}}})
	if err != nil {
		t.Fatalf("write sent to the majority right after the leader was cut off: %v (after %s)", err, time.Since(cutAt).Round(time.Millisecond))
	}
	t.Logf("write acknowledged as job %d %s after the leader was cut off", id, time.Since(cutAt).Round(time.Millisecond))
	if _, err := jobOn(c, id); err != nil {
		t.Errorf("acknowledged job %d: %v", id, err)
	}
}

// waitMajorityLeader waits until one of addrs reports itself leader.
func waitMajorityLeader(t *testing.T, addrs []string) {
	t.Helper()
	poll(t, "the majority to elect a leader", 20*time.Second, func() error {
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := api.NewClient(a).Status(ctx)
			cancel()
			if err == nil && st.IsLeader {
				return nil
			}
		}
		return fmt.Errorf("no leader among %v", addrs)
	})
}

// submitOnly submits a one-task job and returns its ID.
func submitOnly(t *testing.T, c *api.Client, name string, command []string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.SubmitJob(ctx, api.JobSpec{Name: name, Owner: "e2e", Groups: []api.TaskGroupSpec{{
		Resources: api.Resources{MilliCPU: 100, MemoryBytes: 16 << 20}, Command: command,
	}}})
	if err != nil {
		t.Fatalf("submit %s: %v", name, err)
	}
	return id
}

// TestPartitionedAgent cuts an agent in its own network namespace off from
// the server for longer than the heartbeat timeout: its node goes down, its
// job is requeued and runs on the other node. When the link returns, the
// agent registers again and kills the task the cluster no longer wants
// there, without reporting on it.
func TestPartitionedAgent(t *testing.T) {
	lab := newNetLab(t)
	l, err := net.Listen("tcp", lab.gateway()+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := &cluster{t: t, addr: addr, data: t.TempDir(), agents: map[string]*proc{},
		hbFlags: []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s"}}
	c.client = api.NewClient(addr)
	c.startServer()
	t.Cleanup(c.cleanup)

	ns, ip := lab.addNS("n1", 21)
	// nsenter, not `ip netns exec`: the latter also remounts /sys for the
	// namespace, which hides the cgroup hierarchies the agent needs.
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("an agent in its own namespace needs util-linux's nsenter: " + err.Error())
	}
	data := filepath.Join(c.data, "agent-n1")
	c.agents["n1"] = startCmd(t, "agent n1", nsenter, "--net=/run/netns/"+ns, dureBin, "agent", "--name", "n1",
		"--servers", addr, "--listen", ip+":0", "--data", data,
		"--cpus", "1", "--mem", "1G", "--gpus", "0", "--cgroup-parent", isolateAgent(t, "n1", data), "--label", "host=n1",
		"--kill-grace", "1s", "--log-level", "info")
	c.waitNode("n1", "ready")
	starts := filepath.Join(c.data, "starts.log")
	id, err := c.client.SubmitJob(context.Background(), api.JobSpec{Name: "cut-off", MaxRetries: 1, Groups: []api.TaskGroupSpec{{
		Resources: api.Resources{MilliCPU: 500, MemoryBytes: 64 << 20}, Command: recordCommand(starts, "sleep 300"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	first := c.waitJob(id, "running on n1", 20*time.Second, func(j api.Job) bool {
		return len(j.Allocations) == 1 && j.Allocations[0].Status == "running"
	}).Allocations[0].ID
	c.startAgent("n2")

	lab.cut(ns)
	c.waitNode("n1", "down")
	j := c.waitJob(id, "requeued and running on n2", 30*time.Second, func(j api.Job) bool {
		return j.State == "running" && j.Attempt == 2 && slices.ContainsFunc(j.Allocations, func(a api.Allocation) bool {
			return a.Attempt == 2 && a.Node == "n2" && a.Status == "running"
		})
	})
	var second string
	for _, a := range j.Allocations {
		switch a.Attempt {
		case 1:
			if a.Status != "lost" {
				t.Errorf("first attempt's allocation %s is %s, want lost", a.ID, a.Status)
			}
		case 2:
			second = a.ID
		}
	}
	if pids := taskProcs(first, starts); len(pids) == 0 {
		t.Logf("the cut-off agent stopped task %s by itself before the partition healed", first)
	}

	healAt := time.Now()
	lab.heal(ns)
	c.waitNode("n1", "ready")
	poll(t, "the cut-off task to be killed after the agent reconnects", 60*time.Second, func() error {
		if pids := taskProcs(first, starts); len(pids) > 0 {
			return fmt.Errorf("processes %v of allocation %s still run on n1", pids, first)
		}
		return nil
	})
	t.Logf("the unwanted task was gone %s after the partition healed", time.Since(healAt).Round(time.Millisecond))

	j = c.job(id)
	if j.State != "running" || j.Attempt != 2 {
		t.Errorf("after n1 came back the job is %s (attempt %d), want still running its second attempt", j.State, j.Attempt)
	}
	for _, a := range j.Allocations {
		if a.ID == first && a.Status != "lost" {
			t.Errorf("the killed task changed its allocation to %s (%+v); a reconnecting agent must not report on work the cluster gave up", a.Status, a)
		}
		if a.ID == second && a.Status != "running" {
			t.Errorf("second attempt %s is %s, want still running on n2", a.ID, a.Status)
		}
	}
	var got []string
	for _, s := range readStarts(t, starts) {
		got = append(got, s.Alloc)
	}
	if want := []string{first, second}; !slices.Equal(got, want) {
		t.Errorf("task starts %q, want %q: each allocation started once", got, want)
	}
	// Cancel while the agents run, so that the second attempt is stopped by
	// its agent rather than by the cleanup.
	if _, err := c.client.CancelJob(context.Background(), id); err != nil {
		t.Errorf("cancel: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.waitAllocsDone(ctx, id)
}

type writeResult struct {
	name   string
	status int
	code   string
	body   string
	err    error
}

// postJob sends one raw submission (no client retries) through hc.
func postJob(hc *http.Client, addr, name string, command []string) writeResult {
	spec := api.JobSpec{Name: name, Owner: "e2e", IdempotencyKey: name, Groups: []api.TaskGroupSpec{{
		Resources: api.Resources{MilliCPU: 100, MemoryBytes: 16 << 20}, Command: command,
	}}}
	b, _ := json.Marshal(spec)
	w := writeResult{name: name}
	resp, err := hc.Post("http://"+addr+"/v1/jobs", "application/json", bytes.NewReader(b))
	if err != nil {
		w.err = err
		return w
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	w.status, w.body = resp.StatusCode, string(body)
	var e api.Error
	if json.Unmarshal(body, &e) == nil {
		w.code = e.Code
	}
	return w
}

// submitAndWait submits a one-task job and waits until it is in state.
func submitAndWait(t *testing.T, c *api.Client, name string, command []string, state string) uint64 {
	t.Helper()
	id := submitOnly(t, c, name, command)
	waitJobOn(t, c, id, state, 30*time.Second)
	return id
}
