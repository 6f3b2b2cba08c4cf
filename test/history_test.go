package test

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

// The history checker of the chaos tests. Clients record every submission
// they make (submitOp); tasks record every real process start in a file
// (startLine); at the end every server is asked for every job, twice. The
// checker then verifies the exactly-once properties of issue 4 over the
// three records.
//
// Why not porcupine: reads are served by any server from its own applied
// state, so a read on a follower may trail an acknowledged write — dure
// promises that writes are linearizable and reads are eventually consistent
// (monotonic per server), not that reads are linearizable. A porcupine model
// of submit+get would either flag those intended stale reads or have to
// ignore reads altogether, and then it checks no more than the rules below.

// submitOp is one logical submission: every attempt a client made with one
// idempotency key until it was acknowledged (or the client gave up).
type submitOp struct {
	Key      string
	Name     string // unique per op: duplicates show up as two jobs with one name
	Tasks    int
	Start    time.Time // first attempt sent
	Acked    time.Time // first answer with an ID (zero: never acknowledged)
	ID       uint64    // that ID
	IDs      []uint64  // every ID any attempt was answered with
	Attempts int
	LastErr  string
}

// history collects ops from many goroutines.
type history struct {
	mu  sync.Mutex
	ops []*submitOp
}

func (h *history) add(op *submitOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// list returns a copy of every op; call it after the clients stopped.
func (h *history) list() []submitOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]submitOp, len(h.ops))
	for i, op := range h.ops {
		out[i] = *op
		out[i].IDs = slices.Clone(op.IDs)
	}
	return out
}

// serverView is every job (with allocations and events) as one server
// answered at the end of a run.
type serverView struct {
	Server string
	Jobs   map[uint64]api.Job
}

// verdict counts what the checker found; Problems says it in words (the
// first few of each kind).
type verdict struct {
	Submitted, Acked, InCluster           int
	UnackedCreated                        int // a try that got no ID but made a job (allowed: its answer was lost)
	Succeeded, Failed, Cancelled, NotDone int
	TasksStarted                          int

	Lost           int // acknowledged job missing from a server
	Duplicated     int // one submission became more than one job
	CompletedTwice int // a job with other than one terminal event
	Diverged       int // servers (or re-reads) disagree on a final job
	StartedTwice   int // one allocation ID in the start record more than once
	UnknownStarts  int // a start the servers know nothing about
	MissingStarts  int // an allocation that exited 0 without a recorded start
	PartialGangs   int // an attempt of a multi-task job with some but not all tasks started

	Problems []string
}

func (v *verdict) problem(kind *int, format string, args ...any) {
	*kind++
	if *kind <= 5 {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// ok reports whether no exactly-once property was violated and every job
// reached a final state.
func (v *verdict) ok() bool {
	return v.Lost+v.Duplicated+v.CompletedTwice+v.Diverged+v.StartedTwice+v.UnknownStarts+v.MissingStarts+v.PartialGangs+v.NotDone == 0
}

func terminalState(s string) bool { return s == "succeeded" || s == "failed" || s == "cancelled" }

// checkHistory checks ops and starts against views (views[0] is the
// reference: any server, read after every job was final).
func checkHistory(ops []submitOp, views []serverView, starts []startLine) verdict {
	var v verdict
	ref := views[0].Jobs
	v.Submitted, v.InCluster, v.TasksStarted = len(ops), len(ref), len(starts)

	// No acknowledged submission lost; one submission, one job.
	for _, op := range ops {
		if op.ID == 0 {
			continue
		}
		v.Acked++
		for _, id := range op.IDs {
			if id != op.ID {
				v.problem(&v.Duplicated, "submission %s was acknowledged with job IDs %v", op.Key, op.IDs)
				break
			}
		}
		for _, sv := range views {
			if _, ok := sv.Jobs[op.ID]; !ok {
				v.problem(&v.Lost, "acknowledged job %d (%s) is missing on %s", op.ID, op.Name, sv.Server)
			}
		}
	}
	byName := map[string][]uint64{}
	for id, j := range ref {
		byName[j.Name] = append(byName[j.Name], id)
	}
	for _, op := range ops {
		if op.ID == 0 && len(byName[op.Name]) > 0 {
			v.UnackedCreated++
		}
		if ids := byName[op.Name]; len(ids) > 1 {
			slices.Sort(ids)
			v.problem(&v.Duplicated, "submission %s became %d jobs %v", op.Key, len(ids), ids)
		}
	}

	// Every job final, completed once, and the same everywhere.
	for _, id := range sortedIDs(ref) {
		j := ref[id]
		switch j.State {
		case "succeeded":
			v.Succeeded++
		case "failed":
			v.Failed++
		case "cancelled":
			v.Cancelled++
		default:
			v.problem(&v.NotDone, "job %d (%s) is still %s", id, j.Name, j.State)
			continue
		}
		ends := 0
		for _, e := range j.Events {
			if terminalState(e.Type) {
				ends++
			}
		}
		if ends != 1 {
			v.problem(&v.CompletedTwice, "job %d has %d terminal events, want 1: %+v", id, ends, j.Events)
		}
		for _, sv := range views[1:] {
			o, ok := sv.Jobs[id]
			if !ok {
				continue // counted as lost above if it was acknowledged
			}
			if d := cmp.Diff(finalFacts(j), finalFacts(o)); d != "" {
				v.problem(&v.Diverged, "job %d differs on %s (-%s +%s):\n%s", id, sv.Server, views[0].Server, sv.Server, d)
			}
		}
	}

	// Every real start belongs to one allocation the servers know, once.
	count := map[string]int{}
	for _, s := range starts {
		count[s.Alloc]++
		if count[s.Alloc] == 2 {
			v.problem(&v.StartedTwice, "allocation %s (job %d) started more than once", s.Alloc, s.Job)
		}
		j, ok := ref[s.Job]
		if !ok || !slices.ContainsFunc(j.Allocations, func(a api.Allocation) bool { return a.ID == s.Alloc }) {
			v.problem(&v.UnknownStarts, "allocation %s of job %d started, but the servers have no such allocation", s.Alloc, s.Job)
		}
	}
	for _, id := range sortedIDs(ref) {
		j := ref[id]
		attempts := map[int][]api.Allocation{}
		for _, a := range j.Allocations {
			attempts[a.Attempt] = append(attempts[a.Attempt], a)
			if a.Status == "exited" && a.ExitCode == 0 && a.Signal == "" && count[a.ID] == 0 {
				v.problem(&v.MissingStarts, "allocation %s exited 0 but its start was never recorded", a.ID)
			}
		}
		if j.Tasks < 2 {
			continue
		}
		for attempt, as := range attempts {
			started := 0
			for _, a := range as {
				if count[a.ID] > 0 {
					started++
				}
			}
			if started > 0 && (started < j.Tasks || len(as) < j.Tasks) {
				v.problem(&v.PartialGangs, "job %d attempt %d: %d of %d tasks started", id, attempt, started, j.Tasks)
			}
		}
	}
	return v
}

// finalFacts is what every server must agree on about a finished job.
type finalView struct {
	State    string
	ExitCode int
	Attempt  int
	EndTime  time.Time
	Allocs   []string
}

func finalFacts(j api.Job) finalView {
	f := finalView{State: j.State, ExitCode: j.ExitCode, Attempt: j.Attempt, EndTime: j.EndTime}
	for _, a := range j.Allocations {
		f.Allocs = append(f.Allocs, fmt.Sprintf("%s %s exit=%d", a.ID, a.Status, a.ExitCode))
	}
	sort.Strings(f.Allocs)
	return f
}

func sortedIDs(m map[uint64]api.Job) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestHistoryCheckerCatchesViolations shows the checker can fail: each case
// breaks one property of a clean history.
func TestHistoryCheckerCatchesViolations(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ended := func(id uint64, tasks int) api.Job {
		j := api.Job{ID: id, Name: fmt.Sprintf("job-%d", id), State: "succeeded", Tasks: tasks, Attempt: 1, EndTime: t0,
			Events: []api.Event{{Type: "submitted"}, {Type: "placed"}, {Type: "succeeded"}}}
		for i := range tasks {
			j.Allocations = append(j.Allocations, api.Allocation{ID: fmt.Sprintf("%d.%d.1", id, i), JobID: id, TaskIndex: i, Attempt: 1, Status: "exited"})
		}
		return j
	}
	clean := func() ([]submitOp, []serverView, []startLine) {
		jobs := map[uint64]api.Job{1: ended(1, 1), 2: ended(2, 2)}
		views := []serverView{{Server: "s1", Jobs: jobs}, {Server: "s2", Jobs: map[uint64]api.Job{1: ended(1, 1), 2: ended(2, 2)}}}
		ops := []submitOp{{Key: "k1", Name: "job-1", ID: 1, IDs: []uint64{1}}, {Key: "k2", Name: "job-2", ID: 2, IDs: []uint64{2}}}
		starts := []startLine{{"1.0.1", 1}, {"2.0.1", 2}, {"2.1.1", 2}}
		return ops, views, starts
	}
	tests := []struct {
		name   string
		mutate func(ops []submitOp, views []serverView, starts []startLine) ([]submitOp, []serverView, []startLine)
		want   func(v verdict) int
	}{
		{"clean history", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			return o, v, s
		}, func(v verdict) int { return btoi(v.ok()) }}, // 1: ok
		{"acknowledged job missing on one server", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			delete(v[1].Jobs, 1)
			return o, v, s
		}, func(v verdict) int { return v.Lost }},
		{"retry answered with a second ID", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			o[0].IDs = []uint64{1, 3}
			return o, v, s
		}, func(v verdict) int { return v.Duplicated }},
		{"one submission, two jobs", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			j := ended(3, 1)
			j.Name = "job-1"
			v[0].Jobs[3] = j
			return o, v, s
		}, func(v verdict) int { return v.Duplicated }},
		{"job never finished", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			j := v[0].Jobs[1]
			j.State = "running"
			v[0].Jobs[1] = j
			return o, v, s
		}, func(v verdict) int { return v.NotDone }},
		{"completion recorded twice", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			j := v[0].Jobs[1]
			j.Events = append(j.Events, api.Event{Type: "failed"})
			v[0].Jobs[1] = j
			return o, v, s
		}, func(v verdict) int { return v.CompletedTwice }},
		{"servers disagree on the end", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			j := v[1].Jobs[2]
			j.EndTime = t0.Add(time.Second)
			v[1].Jobs[2] = j
			return o, v, s
		}, func(v verdict) int { return v.Diverged }},
		{"allocation started twice", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			return o, v, append(s, startLine{"1.0.1", 1})
		}, func(v verdict) int { return v.StartedTwice }},
		{"start of an unknown allocation", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			return o, v, append(s, startLine{"1.0.2", 1})
		}, func(v verdict) int { return v.UnknownStarts }},
		{"exit 0 without a start", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			return o, v, s[1:]
		}, func(v verdict) int { return v.MissingStarts }},
		{"gang half started", func(o []submitOp, v []serverView, s []startLine) ([]submitOp, []serverView, []startLine) {
			j := v[0].Jobs[2]
			j.State, j.Events = "failed", []api.Event{{Type: "failed"}}
			j.Allocations[1].Status, j.Allocations[1].ExitCode = "failed", 125
			v[0].Jobs[2] = j
			v[1].Jobs[2] = j
			return o, v, s[:2]
		}, func(v verdict) int { return v.PartialGangs }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := checkHistory(tc.mutate(clean()))
			if got := tc.want(v); got != 1 {
				t.Errorf("checker found %d of the planted violation, want 1; verdict %+v", got, v)
			}
			if tc.name != "clean history" && v.ok() {
				t.Errorf("verdict ok for a broken history: %+v", v)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
