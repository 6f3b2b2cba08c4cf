package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// TestRandomLogs applies random command sequences, valid and invalid, to
// two FSMs (and, from a random point on, to a third restored from a
// snapshot of the second) and checks after every entry that all agree and
// that the rules users rely on hold.
func TestRandomLogs(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) { checkRandomLog(rt, nil) })
}

// TestRandomLogsWithPreemption starts from a busy cluster (three nodes,
// jobs running) and adds a preemption to most plans, so that preemptions
// take effect and their victims end in every way while other commands
// interleave.
func TestRandomLogsWithPreemption(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var prelude []func(*gen, *state.Snapshot) fsm.Command
		for _, n := range nodeNames {
			prelude = append(prelude, func(g *gen, _ *state.Snapshot) fsm.Command {
				return &fsm.RegisterNode{Time: g.now, Node: model.Node{Name: n, Address: "x:1", SessionID: "s",
					Capacity: model.Resources{MilliCPU: 8000, MemoryBytes: 8 << 30, GPUs: 2}, GPUs: []model.GPU{{Index: 0}, {Index: 1}}}}
			})
		}
		for range 4 {
			prelude = append(prelude,
				func(g *gen, s *state.Snapshot) fsm.Command {
					j := g.job(s)
					j.ID, j.Queue, j.IdempotencyKey = s.LastJobID()+1, model.DefaultQueue, ""
					return &fsm.SubmitJob{Job: j}
				},
				func(g *gen, s *state.Snapshot) fsm.Command {
					id := s.LastJobID()
					return &fsm.CommitPlan{Time: g.now, Term: g.term, Jobs: []fsm.PlannedJob{g.placement(s, s.Job(id), nodeNames)}}
				})
		}
		for range 2 { // waiting jobs to preempt for
			prelude = append(prelude, func(g *gen, s *state.Snapshot) fsm.Command {
				j := g.job(s)
				j.ID, j.Queue, j.IdempotencyKey = s.LastJobID()+1, model.DefaultQueue, ""
				return &fsm.SubmitJob{Job: j}
			})
		}
		checkRandomLog(rt, prelude)
	})
}

// checkRandomLog applies the prelude's commands, then random ones.
func checkRandomLog(rt *rapid.T, prelude []func(*gen, *state.Snapshot) fsm.Command) {
	a, b := fsm.New(state.New()), fsm.New(state.New())
	var c *fsm.FSM
	steps := len(prelude) + rapid.IntRange(1, 80).Draw(rt, "steps")
	restoreAt := rapid.IntRange(0, steps).Draw(rt, "restoreAt")
	g := &gen{rt: rt, now: t0, term: 1, preempt: prelude != nil}
	for i := 1; i <= steps+1; i++ {
		var data []byte
		switch {
		case i == 1:
			data = g.encode(&fsm.UpsertQueue{Queue: model.Queue{Name: model.DefaultQueue}})
		case i-2 < len(prelude):
			data = g.encode(prelude[i-2](g, a.Store().Snapshot()))
		default:
			data = g.entry(a.Store().Snapshot())
		}
		idx := uint64(i)
		before := a.Store().Snapshot()
		ra, rb := a.Apply(idx, g.term, data), b.Apply(idx, g.term, data)
		if fmt.Sprint(ra) != fmt.Sprint(rb) {
			rt.Fatalf("entry %d: results differ: %+v vs %+v", i, ra, rb)
		}
		if c != nil {
			if rc := c.Apply(idx, g.term, data); fmt.Sprint(rc) != fmt.Sprint(ra) {
				rt.Fatalf("entry %d: restored replica's result %+v differs from %+v", i, rc, ra)
			}
		}
		ha := hash(a)
		if hb := hash(b); ha != hb {
			rt.Fatalf("entry %d: two replicas of the same log differ", i)
		}
		if c != nil && hash(c) != ha {
			rt.Fatalf("entry %d: the replica restored from a snapshot after entry %d differs", i, restoreAt)
		}
		if i == restoreAt {
			var buf bytes.Buffer
			if err := b.Store().Snapshot().Persist(&buf); err != nil {
				rt.Fatal(err)
			}
			c = fsm.New(state.New())
			if err := c.Restore(&buf); err != nil {
				rt.Fatalf("restore: %v", err)
			}
		}
		checkInvariants(rt, before, a.Store().Snapshot(), data)
	}
}

// gen draws log entries that mostly refer to things that exist, so that
// commands take effect, and sometimes do not, so that refusals are covered.
type gen struct {
	rt      *rapid.T
	now     time.Time
	term    uint64
	preempt bool // add a preemption to most plans
}

var nodeNames = []string{"n1", "n2", "n3"}

func (g *gen) encode(c fsm.Command) []byte {
	b, err := fsm.Encode(c)
	if err != nil {
		g.rt.Fatalf("Encode(%T): %v", c, err)
	}
	return b
}

// skippable turns random bytes that would read as an entry from a newer
// dure (which halts the FSM: TestEntryFromANewerVersionHaltsTheFSM) into
// garbage every replica skips, so that a random log goes on past it.
func skippable(b []byte) []byte {
	if _, err := fsm.Decode(b); errors.Is(err, fsm.ErrNewerEntry) {
		b[0], b[1] = 0, 0
	}
	return b
}

func (g *gen) entry(s *state.Snapshot) []byte {
	g.now = g.now.Add(time.Duration(rapid.IntRange(0, 5).Draw(g.rt, "dt")) * time.Second)
	if rapid.IntRange(0, 9).Draw(g.rt, "newTerm") == 0 {
		g.term++
	}
	var jobs []*model.Job
	s.Jobs(func(j *model.Job) bool { jobs = append(jobs, j); return true })
	switch rapid.IntRange(0, 9).Draw(g.rt, "kind") {
	case 0:
		return skippable(rapid.SliceOfN(rapid.Byte(), 0, 12).Draw(g.rt, "garbage"))
	case 1:
		n := model.Node{Name: g.nodeName(), Address: "x:1", SessionID: "s",
			Capacity: model.Resources{MilliCPU: 8000, MemoryBytes: 8 << 30, GPUs: 2}, GPUs: []model.GPU{{Index: 0}, {Index: 1}}}
		return g.encode(&fsm.RegisterNode{Time: g.now, Node: n})
	case 2:
		st := rapid.SampledFrom([]model.NodeStatus{model.NodeDown, model.NodeDown, model.NodeReady}).Draw(g.rt, "status")
		return g.encode(&fsm.NodeStatus{Time: g.now, Name: g.nodeName(), Status: st, Reason: "test"})
	case 3:
		return g.encode(&fsm.DrainNode{Time: g.now, Name: g.nodeName(), Drain: rapid.Bool().Draw(g.rt, "drain"), Reason: "r"})
	case 4:
		return g.encode(&fsm.SubmitJob{Job: g.job(s)})
	case 5:
		return g.encode(&fsm.CancelJob{Time: g.now, ID: g.jobID(jobs), Reason: "r"})
	case 6:
		cp := g.plan(s, jobs)
		chance := 2 // in 10
		if g.preempt {
			chance = 8
		}
		if rapid.IntRange(0, 9).Draw(g.rt, "preempt") < chance {
			cp.Preemptions = append(cp.Preemptions, g.preemption(s, jobs))
		}
		return g.encode(cp)
	case 7, 8:
		return g.encode(g.updates(s, jobs))
	default:
		var ids []model.JobID
		for range rapid.IntRange(0, 3).Draw(g.rt, "prune") {
			ids = append(ids, g.jobID(jobs))
		}
		return g.encode(&fsm.PruneJobs{IDs: ids})
	}
}

func (g *gen) nodeName() string {
	return rapid.SampledFrom(append(nodeNames, "nx")).Draw(g.rt, "node")
}

// jobID picks an existing job, mostly.
func (g *gen) jobID(jobs []*model.Job) model.JobID {
	if len(jobs) == 0 || rapid.IntRange(0, 5).Draw(g.rt, "anyID") == 0 {
		return model.JobID(rapid.IntRange(0, 30).Draw(g.rt, "id"))
	}
	return rapid.SampledFrom(jobs).Draw(g.rt, "job").ID
}

func (g *gen) job(s *state.Snapshot) model.Job {
	id := s.LastJobID() + 1
	if rapid.IntRange(0, 9).Draw(g.rt, "staleID") == 0 {
		id = model.JobID(rapid.IntRange(0, int(id)).Draw(g.rt, "id"))
	}
	j := model.Job{
		ID: id, Owner: rapid.SampledFrom([]string{"ada", "bob"}).Draw(g.rt, "owner"),
		Queue:          rapid.SampledFrom([]string{model.DefaultQueue, model.DefaultQueue, "nosuch"}).Draw(g.rt, "queue"),
		MaxRetries:     rapid.IntRange(0, 2).Draw(g.rt, "retries"),
		IdempotencyKey: rapid.SampledFrom([]string{"", "", "k1", "k2"}).Draw(g.rt, "key"),
		SubmitTime:     g.now,
	}
	for i := range rapid.IntRange(1, 2).Draw(g.rt, "groups") {
		j.Groups = append(j.Groups, model.TaskGroup{Name: fmt.Sprint("g", i), Count: rapid.IntRange(1, 3).Draw(g.rt, "count"),
			Resources: model.Resources{MilliCPU: 1000}, Command: []string{"true"}})
	}
	return j
}

func (g *gen) plan(s *state.Snapshot, jobs []*model.Job) *fsm.CommitPlan {
	cp := &fsm.CommitPlan{Time: g.now, Term: g.term}
	pending := s.JobsInState(model.JobPending)
	for range rapid.IntRange(0, 2).Draw(g.rt, "planned") {
		var j *model.Job
		switch {
		case len(pending) > 0 && rapid.IntRange(0, 4).Draw(g.rt, "pickPending") > 0:
			j = rapid.SampledFrom(pending).Draw(g.rt, "pending")
		case len(jobs) > 0:
			j = rapid.SampledFrom(jobs).Draw(g.rt, "anyJob")
		default:
			continue
		}
		var ready []string
		for _, n := range s.Nodes() {
			if n.Schedulable() && rapid.IntRange(0, 3).Draw(g.rt, "readyNode") > 0 {
				ready = append(ready, n.Name)
			}
		}
		pj := g.placement(s, j, ready)
		switch rapid.IntRange(0, 9).Draw(g.rt, "malform") {
		case 0:
			pj.Allocs = pj.Allocs[:len(pj.Allocs)-1]
		case 1:
			pj.Allocs[0].TaskIndex = len(pj.Allocs) - 1
		case 2:
			pj.Allocs[0].JobID++
		}
		cp.Jobs = append(cp.Jobs, pj)
	}
	for range rapid.IntRange(0, 2).Draw(g.rt, "reasons") {
		code := rapid.SampledFrom([]string{model.ReasonResources, model.ReasonNoNodes, model.ReasonPriority}).Draw(g.rt, "reason")
		cp.Reasons = append(cp.Reasons, fsm.JobReason{JobID: g.jobID(jobs), Reason: model.Reason{Code: code, Message: code}})
	}
	return cp
}

// placement places every task of j on one of nodes, mostly, or on any
// node name.
func (g *gen) placement(s *state.Snapshot, j *model.Job, nodes []string) fsm.PlannedJob {
	pj := fsm.PlannedJob{JobID: j.ID}
	for i := range j.TaskCount() {
		node := g.nodeName()
		if len(nodes) > 0 {
			node = rapid.SampledFrom(nodes).Draw(g.rt, "placeOn")
		}
		pj.Allocs = append(pj.Allocs, model.Allocation{JobID: j.ID, TaskIndex: i, Node: node,
			Resources: model.Resources{MilliCPU: 1000}, Command: []string{"true"}})
	}
	return pj
}

// preemption mostly names a running job's live allocations and a waiting
// job, and sometimes not.
func (g *gen) preemption(s *state.Snapshot, jobs []*model.Job) fsm.PlannedPreemption {
	p := fsm.PlannedPreemption{JobID: g.jobID(jobs), Preemptor: g.jobID(jobs), Grace: time.Second,
		Reason: model.Reason{Code: model.ReasonPreempted, Message: "preempted"}}
	if running := s.JobsInState(model.JobRunning); len(running) > 0 && rapid.IntRange(0, 5).Draw(g.rt, "pickRunning") > 0 {
		p.JobID = rapid.SampledFrom(running).Draw(g.rt, "victim").ID
	}
	if pending := s.JobsInState(model.JobPending); len(pending) > 0 && rapid.IntRange(0, 5).Draw(g.rt, "pickPending") > 0 {
		p.Preemptor = rapid.SampledFrom(pending).Draw(g.rt, "preemptor").ID
	}
	attempt := 0
	if j := s.Job(p.JobID); j != nil {
		attempt = j.Attempt
	}
	anyAlloc := rapid.IntRange(0, 9).Draw(g.rt, "anyAlloc") == 0
	for _, a := range s.AllocsByJob(p.JobID) {
		if anyAlloc || (a.Attempt == attempt && !a.Status.Terminal()) {
			p.AllocIDs = append(p.AllocIDs, a.ID)
		}
	}
	if len(p.AllocIDs) > 1 && rapid.IntRange(0, 9).Draw(g.rt, "dropAlloc") == 0 {
		p.AllocIDs = p.AllocIDs[1:]
	}
	return p
}

func (g *gen) updates(s *state.Snapshot, jobs []*model.Job) *fsm.AllocUpdates {
	var allocs, stopping []*model.Allocation
	for _, j := range jobs {
		for _, a := range s.AllocsByJob(j.ID) {
			allocs = append(allocs, a)
			if g.preempt && a.Desired == model.DesiredStop && !a.Status.Terminal() {
				stopping = append(stopping, a)
			}
		}
	}
	if len(stopping) > 0 && rapid.Bool().Draw(g.rt, "endStopping") {
		allocs = stopping // mostly end what is being stopped, so victims settle
	}
	au := &fsm.AllocUpdates{Time: g.now}
	for range rapid.IntRange(1, 3).Draw(g.rt, "updates") {
		u := fsm.AllocUpdate{AllocID: "9.9.9", Node: g.nodeName(), StartedAt: g.now}
		if len(allocs) > 0 && rapid.IntRange(0, 5).Draw(g.rt, "knownAlloc") > 0 {
			a := rapid.SampledFrom(allocs).Draw(g.rt, "alloc")
			u.AllocID = a.ID
			if rapid.IntRange(0, 5).Draw(g.rt, "rightNode") > 0 {
				u.Node = a.Node
			}
		}
		u.Status = rapid.SampledFrom([]model.AllocStatus{model.AllocRunning, model.AllocRunning, model.AllocExited,
			model.AllocExited, model.AllocFailed, model.AllocLost, model.AllocAssigned}).Draw(g.rt, "allocStatus")
		u.ExitCode = rapid.SampledFrom([]int{0, 0, 0, 1, 3}).Draw(g.rt, "exit")
		u.OOMKilled = rapid.IntRange(0, 9).Draw(g.rt, "oom") == 0
		u.TimedOut = rapid.IntRange(0, 9).Draw(g.rt, "timeout") == 0
		u.Stopped = rapid.IntRange(0, 3).Draw(g.rt, "stopped") == 0
		au.Updates = append(au.Updates, u)
	}
	return au
}

// checkInvariants compares the state before and after one entry.
func checkInvariants(rt *rapid.T, before, after *state.Snapshot, data []byte) {
	cmd, _ := fsm.Decode(data)
	_, isPrune := cmd.(*fsm.PruneJobs)

	if after.LastJobID() < before.LastJobID() {
		rt.Fatalf("LastJobID went back from %d to %d", before.LastJobID(), after.LastJobID())
	}
	before.Jobs(func(old *model.Job) bool {
		cur := after.Job(old.ID)
		switch {
		case cur == nil:
			if !isPrune || !old.State.Terminal() {
				rt.Fatalf("job %d (%s) vanished on a %T", old.ID, old.State, cmd)
			}
			for _, a := range before.AllocsByJob(old.ID) {
				if !a.Status.Terminal() {
					rt.Fatalf("job %d was pruned with live allocation %s", old.ID, a.ID)
				}
			}
		case old.State.Terminal():
			if cur.State != old.State || cur.Reason != old.Reason || !cur.EndTime.Equal(old.EndTime) || cur.ExitCode != old.ExitCode {
				rt.Fatalf("finished job %d changed: %s %+v end %v → %s %+v end %v",
					old.ID, old.State, old.Reason, old.EndTime, cur.State, cur.Reason, cur.EndTime)
			}
		case cur.Attempt < old.Attempt:
			rt.Fatalf("job %d attempt went back from %d to %d", old.ID, old.Attempt, cur.Attempt)
		case cur.Preemptions < old.Preemptions:
			rt.Fatalf("job %d preemptions went back from %d to %d", old.ID, old.Preemptions, cur.Preemptions)
		case cur.Preemptions > old.Preemptions && (old.PreemptedBy == 0 || cur.State != model.JobPending || cur.Reason.Code != model.ReasonPreempted):
			rt.Fatalf("job %d counted a preemption going from %s (preempted by %d) to %s %+v", old.ID, old.State, old.PreemptedBy, cur.State, cur.Reason)
		}
		for _, a := range before.AllocsByJob(old.ID) {
			if now := after.Alloc(a.ID); a.Status.Terminal() && now != nil {
				if diff := cmp.Diff(a, now); diff != "" {
					rt.Fatalf("finished allocation %s changed:\n%s", a.ID, diff)
				}
			}
		}
		return true
	})

	after.Jobs(func(j *model.Job) bool {
		if j.ID > after.LastJobID() {
			rt.Fatalf("job %d is above LastJobID %d", j.ID, after.LastJobID())
		}
		if j.State.Terminal() == j.EndTime.IsZero() {
			rt.Fatalf("job %d is %s with end time %v", j.ID, j.State, j.EndTime)
		}
		if j.PreemptedBy != 0 && j.State.Terminal() {
			rt.Fatalf("job %d is %s and still marked preempted by %d", j.ID, j.State, j.PreemptedBy)
		}
		if j.PreemptedBy != 0 && j.State == model.JobPending && j.Preemptions == 0 {
			rt.Fatalf("pending job %d is marked preempted by %d but was never preempted", j.ID, j.PreemptedBy)
		}
		if j.Preemptions > j.Attempt {
			rt.Fatalf("job %d has %d preemptions in %d attempts", j.ID, j.Preemptions, j.Attempt)
		}
		liveCurrent := 0
		for _, a := range after.AllocsByJob(j.ID) {
			if a.ID != model.AllocID(a.JobID, a.TaskIndex, a.Attempt) || a.JobID != j.ID {
				rt.Fatalf("allocation %s, listed under job %d, records job %d task %d attempt %d", a.ID, j.ID, a.JobID, a.TaskIndex, a.Attempt)
			}
			if a.Status.Terminal() {
				continue
			}
			if a.Attempt == j.Attempt {
				liveCurrent++
			}
			if j.PreemptedBy != 0 && a.Desired != model.DesiredStop {
				rt.Fatalf("job %d is being preempted but its allocation %s is desired %s", j.ID, a.ID, a.Desired)
			}
			if j.State != model.JobRunning && a.Desired != model.DesiredStop {
				rt.Fatalf("job %d is %s but its allocation %s is still desired %s", j.ID, j.State, a.ID, a.Desired)
			}
			if a.Attempt > j.Attempt {
				rt.Fatalf("allocation %s is from attempt %d; the job is at %d", a.ID, a.Attempt, j.Attempt)
			}
		}
		if j.State == model.JobRunning && liveCurrent == 0 {
			rt.Fatalf("job %d is running with no live allocation of attempt %d", j.ID, j.Attempt)
		}
		return true
	})
	for _, a := range after.LiveAllocs() {
		if after.Job(a.JobID) == nil {
			rt.Fatalf("live allocation %s has no job", a.ID)
		}
		if n := after.Node(a.Node); n == nil || n.Status == model.NodeDown {
			rt.Fatalf("live allocation %s is on node %s, which is down or unknown", a.ID, a.Node)
		}
	}
}
