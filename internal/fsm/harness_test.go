package fsm_test

import (
	"testing"
	"time"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// harness drives one FSM the way the leader does: every command is encoded,
// given the next log index and a time one second after the previous one.
type harness struct {
	t     testing.TB
	f     *fsm.FSM
	index uint64
	term  uint64
	now   time.Time
	log   []entry // every entry applied, for replaying elsewhere
}

// entry is one log entry as raft hands it to the FSM.
type entry struct {
	index, term uint64
	data        []byte
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, f: fsm.New(state.New()), term: 1, now: t0}
	h.must(&fsm.UpsertQueue{Queue: model.Queue{Name: model.DefaultQueue}})
	return h
}

// apply appends one entry; the command's own times are the caller's.
func (h *harness) apply(c fsm.Command) fsm.Result {
	h.t.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		h.t.Fatalf("Encode(%T): %v", c, err)
	}
	return h.applyBytes(b)
}

// applyBytes appends raw entry bytes.
func (h *harness) applyBytes(b []byte) fsm.Result {
	h.index++
	h.now = h.now.Add(time.Second)
	h.log = append(h.log, entry{h.index, h.term, b})
	return h.f.Apply(h.index, h.term, b)
}

func (h *harness) must(c fsm.Command) fsm.Result {
	h.t.Helper()
	res := h.apply(c)
	if res.Err != nil {
		h.t.Fatalf("Apply(%T): %v", c, res.Err)
	}
	return res
}

func (h *harness) snap() *state.Snapshot { return h.f.Store().Snapshot() }

func (h *harness) job(id model.JobID) *model.Job {
	h.t.Helper()
	j := h.snap().Job(id)
	if j == nil {
		h.t.Fatalf("job %d does not exist", id)
	}
	return j
}

func (h *harness) alloc(id string) *model.Allocation {
	h.t.Helper()
	a := h.snap().Alloc(id)
	if a == nil {
		h.t.Fatalf("allocation %s does not exist", id)
	}
	return a
}

// node registers a ready node with room for anything the tests place.
func (h *harness) node(name string) {
	h.t.Helper()
	n := testkit.Node(name).CPU(64).Mem("256G").GPUs(8).Address(name + ":7072").Build()
	n.SessionID = "s1"
	h.must(&fsm.RegisterNode{Time: h.now, Node: *n})
}

// submit gives j the next job ID and submits it, as the leader would.
func (h *harness) submit(j *model.Job) model.JobID {
	h.t.Helper()
	j.ID = h.snap().LastJobID() + 1
	j.SubmitTime = h.now
	res := h.must(&fsm.SubmitJob{Job: *j})
	return res.JobID
}

// plannedJob places task i of a job on nodes[i % len(nodes)].
func (h *harness) plannedJob(id model.JobID, nodes ...string) fsm.PlannedJob {
	h.t.Helper()
	j := h.job(id)
	pj := fsm.PlannedJob{JobID: id}
	task := 0
	for _, g := range j.Groups {
		for range g.Count {
			pj.Allocs = append(pj.Allocs, model.Allocation{
				JobID: id, Group: g.Name, TaskIndex: task, Node: nodes[task%len(nodes)],
				Resources: g.Resources.Copy(), Command: g.Command, TaskCount: j.TaskCount(), Walltime: j.Walltime,
			})
			task++
		}
	}
	return pj
}

// place commits a plan placing one job.
func (h *harness) place(id model.JobID, nodes ...string) fsm.Result {
	h.t.Helper()
	return h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Jobs: []fsm.PlannedJob{h.plannedJob(id, nodes...)}})
}

func (h *harness) update(us ...fsm.AllocUpdate) {
	h.t.Helper()
	h.must(&fsm.AllocUpdates{Time: h.now, Updates: us})
}

// started reports every live allocation of the job's current attempt running.
func (h *harness) started(id model.JobID) {
	h.t.Helper()
	j := h.job(id)
	var us []fsm.AllocUpdate
	for _, a := range h.snap().AllocsByJob(id) {
		if a.Attempt == j.Attempt && !a.Status.Terminal() {
			us = append(us, fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocRunning, StartedAt: h.now})
		}
	}
	h.update(us...)
}

func exited(a *model.Allocation, code int) fsm.AllocUpdate {
	return fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocExited, ExitCode: code}
}

func (h *harness) nodeDown(name, reason string) {
	h.t.Helper()
	h.must(&fsm.NodeStatus{Time: h.now, Name: name, Status: model.NodeDown, Reason: reason})
}

func eventTypes(j *model.Job) []string {
	var out []string
	for _, e := range j.Events {
		out = append(out, e.Type)
	}
	return out
}
