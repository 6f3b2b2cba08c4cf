package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// TestLeaderKillsUnderLoad kills the leader of a three-server cluster with
// SIGKILL again and again (DURE_FAILOVER_KILLS times, default 5) while
// three clients keep submitting short jobs and two-task gangs, restarting
// each killed server on its data directory. At the end the history checker
// verifies: no acknowledged job lost, none duplicated, every job final and
// completed once (the same on every server, on two reads), no allocation
// started twice, no gang partially started.
//
// It also measures, per kill, the time until writes are accepted again and
// until scheduling resumes, and logs them (and writes them as JSON to
// $DURE_FAILOVER_REPORT if set). Timings are reported, never asserted.
func TestLeaderKillsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("kills leaders for tens of seconds")
	}
	kills := envInt(t, "DURE_FAILOVER_KILLS", 5)
	h := newHACluster(t, 3)
	starts := filepath.Join(h.data, "starts.log")
	h.startAgentWith("c1", "2")
	h.startAgentWith("c2", "2")
	all := api.NewClient(strings.Join(h.addrs, ","))
	waitNodesReady(t, all, "c1", "c2")

	hist := &history{}
	stop := make(chan struct{})
	var load sync.WaitGroup
	for c := range 3 {
		load.Go(func() { submitLoad(t, all, hist, starts, c, stop) })
	}
	stopLoad := sync.OnceFunc(func() { close(stop); load.Wait() })
	t.Cleanup(stopLoad) // also when the test fails half-way: no client outlives it

	var samples []killSample
	for k := range kills {
		leader := h.waitLeader(30 * time.Second)
		h.waitCaughtUp(30 * time.Second)
		// Let the load run against a healthy cluster between kills.
		time.Sleep(2 * time.Second)
		name := h.names[leader]
		killedAt := time.Now()
		h.servers[name].stop(syscall.SIGKILL)
		probeWrites(t, h, hist, starts, k, killedAt)
		samples = append(samples, killSample{Kill: k + 1, Leader: name, At: killedAt, Elected: h.electedAfter(killedAt)})
		h.startServer(leader) // same data directory: it rejoins as a follower
	}
	h.waitLeader(30 * time.Second)
	h.waitCaughtUp(30 * time.Second)
	stopLoad()

	// Every job must reach a final state, as every server sees it; then
	// every server is asked about every job, twice, a moment apart.
	poll(t, "every job final on every server", 60*time.Second, func() error {
		for i, name := range h.names {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			active, _, err := h.client(i).ListJobs(ctx, api.JobFilter{State: "active", Limit: 100000}, api.WatchOptions{})
			cancel()
			if err != nil {
				return err
			}
			if len(active) > 0 {
				return fmt.Errorf("%s: %d jobs still active, e.g. %d %s reason=%+v", name, len(active), active[0].ID, active[0].State, active[0].Reason)
			}
		}
		return nil
	})
	ops := hist.list()
	views := h.readAllJobs(t, ops)
	time.Sleep(time.Second)
	views = append(views, h.readAllJobs(t, ops)...)
	v := checkHistory(ops, views, readStarts(t, starts))

	measure(samples, ops, views[0])
	reportFailover(t, samples, v)
	for _, p := range v.Problems {
		t.Error(p)
	}
	if !v.ok() {
		t.Errorf("history check failed: %+v", v)
	}
	if v.Failed+v.Cancelled > 0 {
		t.Errorf("%d jobs failed and %d were cancelled; every job should succeed (no node was lost)", v.Failed, v.Cancelled)
	}
}

// killSample is what one leader kill cost.
type killSample struct {
	Kill   int       `json:"kill"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
	// WritesBack: from the kill to the first acknowledgement of a
	// submission first sent after the kill.
	WritesBack time.Duration `json:"-"`
	// SchedResumed: from the kill to the earliest StartedAt of a task of a
	// job first submitted after the kill (placed by the new leader).
	SchedResumed time.Duration `json:"-"`
	// Elected: from the kill to the new leader's "became leader" log line
	// (raft election done; the leader then applies a barrier and opens for
	// writes).
	Elected      time.Duration `json:"-"`
	ElectedMS    float64       `json:"elected_ms"`
	WritesBackMS float64       `json:"writes_back_ms"`
	SchedMS      float64       `json:"scheduling_resumed_ms"`
}

// submitLoad submits jobs until stop is closed: mostly one short task, every
// fourth a two-task gang. Each submission has its own idempotency key and is
// retried with it until acknowledged, as `dure submit` does.
func submitLoad(t *testing.T, c *api.Client, hist *history, starts string, client int, stop <-chan struct{}) {
	rnd := rand.New(rand.NewPCG(uint64(client), 42))
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		tasks := 1
		if n%4 == 0 {
			tasks = 2
		}
		key := fmt.Sprintf("load-c%d-%d", client, n)
		op := &submitOp{Key: key, Name: key, Tasks: tasks, Start: time.Now()}
		spec := api.JobSpec{Name: key, Owner: "chaos", IdempotencyKey: key, Groups: []api.TaskGroupSpec{{
			Count: tasks, Resources: api.Resources{MilliCPU: 250, MemoryBytes: 32 << 20},
			Command: recordCommand(starts, "sleep 0.2"),
		}}}
		for giveUp := time.Now().Add(30 * time.Second); time.Now().Before(giveUp); {
			op.Attempts++
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			id, err := c.SubmitJob(ctx, spec)
			cancel()
			if err == nil {
				if op.ID == 0 {
					op.ID, op.Acked = id, time.Now()
				}
				op.IDs = append(op.IDs, id)
				break
			}
			op.LastErr = err.Error()
			time.Sleep(50 * time.Millisecond)
		}
		if op.ID == 0 {
			t.Logf("submission %s never acknowledged after %d attempts: %s", key, op.Attempts, op.LastErr)
		}
		hist.add(op)
		time.Sleep(time.Duration(150+rnd.IntN(150)) * time.Millisecond)
	}
}

// probeWrites submits a tiny job every 20 ms, each try on its own key with
// no retry inside the client, until one is acknowledged: the first write
// accepted after the kill.
func probeWrites(t *testing.T, h *haCluster, hist *history, starts string, kill int, killedAt time.Time) {
	t.Helper()
	probe := api.NewClient(strings.Join(h.addrs, ","))
	probe.NoLeaderRetry = 0 // one round over the servers per try: the loop retries
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := 1; time.Since(killedAt) < 60*time.Second; n++ {
		key := fmt.Sprintf("probe-k%d-%d", kill+1, n)
		op := &submitOp{Key: key, Name: key, Tasks: 1, Start: time.Now(), Attempts: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		id, err := probe.SubmitJob(ctx, api.JobSpec{Name: key, Owner: "chaos", IdempotencyKey: key, Groups: []api.TaskGroupSpec{{
			Resources: api.Resources{MilliCPU: 100, MemoryBytes: 16 << 20}, Command: recordCommand(starts, ""),
		}}})
		cancel()
		if err == nil {
			op.ID, op.IDs, op.Acked = id, []uint64{id}, time.Now()
			hist.add(op)
			return
		}
		op.LastErr = err.Error()
		hist.add(op)
		<-tick.C
	}
	t.Fatalf("kill %d: no write accepted within 60 s of killing the leader", kill+1)
}

// waitCaughtUp waits until every live server knows the leader and has
// applied at least what the leader had applied when the wait began.
func (h *haCluster) waitCaughtUp(limit time.Duration) {
	h.t.Helper()
	var target uint64
	poll(h.t, "every server caught up with the leader", limit, func() error {
		for i := range h.addrs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := h.client(i).Status(ctx)
			cancel()
			if err != nil {
				return err
			}
			if st.Leader == "" {
				return fmt.Errorf("%s knows no leader", st.Server)
			}
			if st.IsLeader && target == 0 {
				target = st.Index
			}
		}
		if target == 0 {
			return errors.New("no leader reported")
		}
		for i := range h.addrs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := h.client(i).Status(ctx)
			cancel()
			if err != nil {
				return err
			}
			if st.Index < target {
				return fmt.Errorf("%s applied %d, leader had %d", st.Server, st.Index, target)
			}
		}
		return nil
	})
}

// electedAfter finds the earliest "became leader" line a live server logged
// after t (0 if none).
func (h *haCluster) electedAfter(t time.Time) time.Duration {
	var first time.Time
	for _, p := range h.servers {
		if exited(p) {
			continue
		}
		for _, line := range strings.Split(p.output(), "\n") {
			if !strings.Contains(line, `msg="became leader"`) {
				continue
			}
			f, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			at, err := time.Parse(time.RFC3339Nano, f)
			if err == nil && at.After(t) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
	}
	if first.IsZero() {
		return 0
	}
	return first.Sub(t)
}

// readAllJobs asks each server for every job it lists and every job a
// client was given an ID for.
func (h *haCluster) readAllJobs(t *testing.T, ops []submitOp) []serverView {
	t.Helper()
	var views []serverView
	for i, name := range h.names {
		c := h.client(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		list, _, err := c.ListJobs(ctx, api.JobFilter{Limit: 100000}, api.WatchOptions{})
		cancel()
		if err != nil {
			t.Fatalf("list jobs on %s: %v", name, err)
		}
		ids := map[uint64]bool{}
		for _, j := range list {
			ids[j.ID] = true
		}
		for _, op := range ops {
			if op.ID != 0 {
				ids[op.ID] = true
			}
		}
		v := serverView{Server: name, Jobs: map[uint64]api.Job{}}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for id := range ids {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				j, err := jobOn(c, id)
				if api.IsNotFound(err) {
					return
				}
				if err != nil {
					t.Errorf("get job %d on %s: %v", id, name, err)
					return
				}
				mu.Lock()
				v.Jobs[id] = j
				mu.Unlock()
			})
		}
		wg.Wait()
		views = append(views, v)
	}
	return views
}

// measure fills in each sample's times from the history and the final
// state: the first acknowledgement and the first task start of submissions
// first sent after that kill (and before the next).
func measure(samples []killSample, ops []submitOp, ref serverView) {
	for i := range samples {
		s := &samples[i]
		var until time.Time
		if i+1 < len(samples) {
			until = samples[i+1].At
		}
		for _, op := range ops {
			if op.ID == 0 || !op.Start.After(s.At) || (!until.IsZero() && op.Start.After(until)) {
				continue
			}
			if d := op.Acked.Sub(s.At); s.WritesBack == 0 || d < s.WritesBack {
				s.WritesBack = d
			}
			for _, a := range ref.Jobs[op.ID].Allocations {
				if a.StartedAt.IsZero() {
					continue
				}
				if d := a.StartedAt.Sub(s.At); s.SchedResumed == 0 || d < s.SchedResumed {
					s.SchedResumed = d
				}
			}
		}
		s.ElectedMS = ms(s.Elected)
		s.WritesBackMS = ms(s.WritesBack)
		s.SchedMS = ms(s.SchedResumed)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reportFailover logs the per-kill table, percentiles and job counts, and
// writes them as JSON to $DURE_FAILOVER_REPORT if set.
func reportFailover(t *testing.T, samples []killSample, v verdict) {
	t.Helper()
	var wb, sr []time.Duration
	var b strings.Builder
	var el []time.Duration
	fmt.Fprintf(&b, "\nkill  leader  elected  writes back  scheduling resumed\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%4d  %-6s  %5.0fms  %9.0fms  %16.0fms\n", s.Kill, s.Leader, s.ElectedMS, s.WritesBackMS, s.SchedMS)
		el = append(el, s.Elected)
		wb = append(wb, s.WritesBack)
		sr = append(sr, s.SchedResumed)
	}
	fmt.Fprintf(&b, "new leader elected:  p50 %.0fms  p99 %.0fms\n", ms(percentile(el, 50)), ms(percentile(el, 99)))
	stats := func(ds []time.Duration) map[string]float64 {
		return map[string]float64{"p50": ms(percentile(ds, 50)), "p99": ms(percentile(ds, 99)), "max": ms(percentile(ds, 100))}
	}
	fmt.Fprintf(&b, "writes back:        p50 %.0fms  p99 %.0fms\n", ms(percentile(wb, 50)), ms(percentile(wb, 99)))
	fmt.Fprintf(&b, "scheduling resumed: p50 %.0fms  p99 %.0fms\n", ms(percentile(sr, 50)), ms(percentile(sr, 99)))
	fmt.Fprintf(&b, "jobs: %d acknowledged submissions (and %d tries refused while there was no leader; %d of those created a job anyway), "+
		"%d jobs in the cluster: %d succeeded, %d failed, %d cancelled, %d not final; %d task starts; "+
		"lost %d, duplicated %d, completed twice %d, started twice %d, partial gangs %d",
		v.Acked, v.Submitted-v.Acked, v.UnackedCreated, v.InCluster, v.Succeeded, v.Failed, v.Cancelled, v.NotDone, v.TasksStarted,
		v.Lost, v.Duplicated, v.CompletedTwice, v.StartedTwice, v.PartialGangs)
	t.Log(b.String())

	path := os.Getenv("DURE_FAILOVER_REPORT")
	if path == "" {
		return
	}
	out, _ := json.MarshalIndent(map[string]any{
		"servers": 3, "agents": 2, "kills": len(samples),
		"settings":              "raft heartbeat/election timeout 1s, lease 500ms; agent heartbeat 200ms, timeout 3s",
		"per_kill":              samples,
		"elected_ms":            stats(el),
		"writes_back_ms":        stats(wb),
		"scheduling_resumed_ms": stats(sr),
		"jobs": map[string]int{
			"acknowledged": v.Acked, "refused_tries": v.Submitted - v.Acked, "unacknowledged_but_created": v.UnackedCreated, "in_cluster": v.InCluster,
			"succeeded": v.Succeeded, "failed": v.Failed, "cancelled": v.Cancelled, "not_final": v.NotDone,
			"task_starts": v.TasksStarted, "lost": v.Lost, "duplicated": v.Duplicated,
			"completed_twice": v.CompletedTwice, "started_twice": v.StartedTwice, "partial_gangs": v.PartialGangs,
			"unknown_starts": v.UnknownStarts, "missing_starts": v.MissingStarts, "diverged": v.Diverged,
		},
	}, "", "  ")
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
}
