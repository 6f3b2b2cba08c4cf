package sched

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt (review the diff!)")

// TestScenarios runs the stories in testdata/*.txt: a small cluster driven
// through time by commands, with the scheduler's decisions written out and
// compared with what the file expects (in the style of etcd-io/raft's
// interaction tests). The format:
//
//	# comment
//	node NAME [count=N] cpu=8 mem=16G [gpu=4] [model=A100] [label=k:v]...
//	queue NAME [parent=P] [weight=W] [default=1h] [quota=RES:NOMINAL[:borrow=B][:lend=L]]...
//	config [policy=P] [depth=N] [halflife=D] [walltime=D] [grace=D] [nopreempt] [nopredict]
//	job ID [tasks=N] [cpu=C] [mem=M] [gpu=G] [queue=Q] [owner=U] [prio=P] [wall=D]
//	       [runs=D] [min=K] [topology=KEY] [spread] [label=k:v] [after=TYPE:ID]...
//	       [array=PARENT:INDEX[:THROTTLE]] [group=NAME ...more group fields]
//	advance D      move the clock; running jobs whose runs= elapsed end (succeed)
//	end ID [fail]  end a running job now
//	schedule       run Schedule, print the plan, apply it (starts run; victims are
//	               requeued at once or, with grace=D, marked as stopping for their
//	               preemptor (Desired=stop, PreemptedBy) and requeued D later)
//	explain ID     print Explain for a job
//	----           expected output of the command above, up to a blank line
//
// A job is submitted when its line is read (now, unless submit= says
// otherwise). Run with -rewrite to regenerate the expected output.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

type world struct {
	t       *testing.T
	now     time.Time
	cfg     Config
	nodes   []*model.Node
	queues  []*model.Queue
	jobs    map[model.JobID]*model.Job
	runs    map[model.JobID]time.Duration // actual runtimes (runs=)
	allocs  []*model.Allocation
	history []model.FinishedJob
	// grace: how long preempted jobs take to stop (config grace=); 0
	// requeues them at once. stops: when each stopping job stops.
	grace time.Duration
	stops map[model.JobID]time.Time
}

func runScenario(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, now: testkit.Epoch, jobs: map[model.JobID]*model.Job{}, runs: map[model.JobID]time.Duration{},
		stops: map[model.JobID]time.Time{}}
	lines := strings.Split(string(data), "\n")
	var out []string // the file rewritten with actual output
	failed := false
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out = append(out, line)
		cmd := strings.TrimSpace(line)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		got := w.do(cmd, fmt.Sprintf("%s:%d", path, i+1))
		if i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == "----" {
			i += 2
			var want []string
			for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
				want = append(want, lines[i])
			}
			i-- // the blank line is appended by the loop
			gotText, wantText := strings.Join(got, "\n"), strings.Join(want, "\n")
			if gotText != wantText && !*rewrite {
				failed = true
				t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", path, i-len(want), cmd, wantText, gotText)
			}
			out = append(out, "----")
			out = append(out, got...)
		} else if len(got) > 0 && *rewrite {
			out = append(out, "----")
			out = append(out, got...)
			out = append(out, "")
		}
	}
	if *rewrite && !failed {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *world) fail(where, format string, args ...any) {
	w.t.Fatalf("%s: %s", where, fmt.Sprintf(format, args...))
}

// do runs one command and returns its output lines.
func (w *world) do(cmd, where string) []string {
	f := strings.Fields(cmd)
	args := f[1:]
	switch f[0] {
	case "node":
		w.addNodes(args, where)
	case "queue":
		w.addQueue(args, where)
	case "config":
		w.config(args, where)
	case "job":
		w.addJob(args, where)
	case "advance":
		d := w.dur(args[0], where)
		return w.advance(w.now.Add(d))
	case "end":
		id := model.JobID(w.int(args[0], where))
		ok := !slices.Contains(args, "fail")
		return w.end(id, ok, where)
	case "schedule":
		return w.schedule()
	case "explain":
		id := model.JobID(w.int(args[0], where))
		return w.explain(id)
	default:
		w.fail(where, "unknown command %q", f[0])
	}
	return nil
}

func kv(a string) (string, string) {
	k, v, _ := strings.Cut(a, "=")
	return k, v
}

func (w *world) int(s, where string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		w.fail(where, "not a number: %q", s)
	}
	return n
}

func (w *world) dur(s, where string) time.Duration {
	d, err := time.ParseDuration(strings.TrimPrefix(s, "+"))
	if err != nil {
		w.fail(where, "not a duration: %q", s)
	}
	return d
}

func (w *world) addNodes(args []string, where string) {
	name, count := args[0], 1
	b := testkit.Node(name)
	gpus, gmodel := 0, ""
	for _, a := range args[1:] {
		k, v := kv(a)
		switch k {
		case "count":
			count = w.int(v, where)
		case "cpu":
			b.CPU(w.int(v, where))
		case "mem":
			b.Mem(v)
		case "gpu":
			gpus = w.int(v, where)
		case "model":
			gmodel = v
		case "label":
			lk, lv, _ := strings.Cut(v, ":")
			b.Label(lk, lv)
		case "down":
			b.Down()
		case "drain":
			b.Drain("maintenance")
		default:
			w.fail(where, "unknown node field %q", k)
		}
	}
	if gpus > 0 {
		b.GPUs(gpus)
		if gmodel != "" {
			b.GPUModel(gmodel)
		}
	}
	for i := 1; i <= count; i++ {
		n := b.Build()
		if count > 1 {
			n.Name = fmt.Sprintf("%s%d", name, i)
		}
		w.nodes = append(w.nodes, n)
	}
}

func (w *world) addQueue(args []string, where string) {
	q := &model.Queue{Name: args[0]}
	for _, a := range args[1:] {
		k, v := kv(a)
		switch k {
		case "parent":
			q.Parent = v
		case "weight":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				w.fail(where, "weight %q", v)
			}
			q.Weight = f
		case "default":
			q.DefaultWalltime = w.dur(v, where)
		case "quota":
			parts := strings.Split(v, ":")
			qu := model.Quota{Resource: parts[0], Nominal: w.amount(parts[0], parts[1], where)}
			for _, p := range parts[2:] {
				pk, pv := kv(p)
				n := w.amount(parts[0], pv, where)
				switch pk {
				case "borrow":
					qu.BorrowingLimit = &n
				case "lend":
					qu.LendingLimit = &n
				default:
					w.fail(where, "unknown quota field %q", pk)
				}
			}
			q.Quotas = append(q.Quotas, qu)
		default:
			w.fail(where, "unknown queue field %q", k)
		}
	}
	w.queues = append(w.queues, q)
}

// amount parses a quota amount: cores for cpu, sizes for memory.
func (w *world) amount(res, s, where string) int64 {
	switch res {
	case "cpu":
		return int64(w.int(s, where)) * 1000
	case "memory", "scratch":
		return testkit.Bytes(s)
	}
	return int64(w.int(s, where))
}

func (w *world) config(args []string, where string) {
	for _, a := range args {
		k, v := kv(a)
		switch k {
		case "policy":
			w.cfg.Policy = Policy(v)
		case "depth":
			w.cfg.ReservationDepth = w.int(v, where)
		case "halflife":
			w.cfg.FairShareHalfLife = w.dur(v, where)
		case "walltime":
			w.cfg.DefaultWalltime = w.dur(v, where)
		case "grace":
			w.grace = w.dur(v, where)
			w.cfg.PreemptGrace = w.grace
		case "nopreempt":
			w.cfg.NoPreemption = true
		case "nopredict":
			w.cfg.NoPredictions = true
		default:
			w.fail(where, "unknown config field %q", k)
		}
	}
}

func (w *world) addJob(args []string, where string) {
	id := model.JobID(w.int(args[0], where))
	b := testkit.Job(id).Submitted(w.now)
	for _, a := range args[1:] {
		k, v := kv(a)
		switch k {
		case "group":
			b.Group(v)
		case "tasks":
			b.Tasks(w.int(v, where))
		case "cpu":
			b.CPU(w.int(v, where))
		case "mem":
			b.Mem(v)
		case "gpu":
			b.GPUs(w.int(v, where))
		case "queue":
			b.Queue(v)
		case "owner":
			b.Owner(v)
		case "prio":
			b.Priority(w.int(v, where))
		case "wall":
			b.Walltime(w.dur(v, where))
		case "submit":
			b.Submitted(w.now.Add(w.dur(v, where)))
		case "runs":
			w.runs[id] = w.dur(v, where)
		case "label":
			lk, lv, _ := strings.Cut(v, ":")
			b.Constraint(lk, lv)
		case "min", "topology", "spread", "after", "array":
		default:
			w.fail(where, "unknown job field %q", k)
		}
	}
	j := b.Build()
	for _, a := range args[1:] {
		k, v := kv(a)
		switch k {
		case "min":
			j.MinTasks = w.int(v, where)
		case "topology":
			j.Topology = v
		case "spread":
			j.Placement = model.PlacementSpread
		case "after":
			typ, dep, _ := strings.Cut(v, ":")
			j.Dependencies = append(j.Dependencies, model.Dependency{Type: model.DependencyType(typ), JobID: model.JobID(w.int(dep, where))})
		case "array":
			parts := strings.Split(v, ":")
			j.ArrayParent = model.JobID(w.int(parts[0], where))
			j.ArrayIndex = w.int(parts[1], where)
			if len(parts) > 2 {
				j.ArrayThrottle = w.int(parts[2], where)
			}
		}
	}
	w.jobs[id] = j
}

func (w *world) snapshot() *Snapshot {
	s := &Snapshot{Nodes: w.nodes, Allocs: w.allocs, Queues: w.queues, History: w.history,
		DependencyStates: map[model.JobID]model.JobState{}}
	for _, id := range w.ids() {
		j := w.jobs[id]
		if j.State == model.JobPending {
			s.Pending = append(s.Pending, j)
		}
		s.DependencyStates[id] = j.State
		if j.ArrayParent != 0 { // named as users know them, as the server does
			if s.DependencyNames == nil {
				s.DependencyNames = map[model.JobID]string{}
			}
			s.DependencyNames[id] = j.DisplayName()
		}
	}
	return s
}

func (w *world) ids() []model.JobID {
	ids := make([]model.JobID, 0, len(w.jobs))
	for id := range w.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (w *world) schedule() []string {
	s := w.snapshot()
	plan := Schedule(s, w.now, w.cfg)
	checkInvariants(w.t, s, plan)
	checkPlanRules(w.t, s, w.now, w.cfg, plan)
	var out []string
	for i := 0; i < len(plan.Placements); {
		id := plan.Placements[i].JobID
		var nodes []string
		k := i
		for ; k < len(plan.Placements) && plan.Placements[k].JobID == id; k++ {
			nodes = append(nodes, plan.Placements[k].Node)
		}
		out = append(out, fmt.Sprintf("start %d on %s", uint64(id), compactNodes(nodes)))
		w.start(w.jobs[id], plan.Placements[i:k])
		i = k
	}
	for _, r := range plan.Reservations {
		out = append(out, fmt.Sprintf("reserve %d at %s on %s", uint64(r.JobID), r.Start.Sub(testkit.Epoch), compactNodes(r.Nodes)))
	}
	for _, p := range plan.Preemptions {
		out = append(out, fmt.Sprintf("preempt %d for %d: %s", uint64(p.JobID), uint64(p.Preemptor), p.Reason.Message))
		if w.grace <= 0 {
			w.requeue(p.JobID, p.Preemptor)
			continue
		}
		if _, ok := w.stops[p.JobID]; ok {
			w.t.Errorf("job %d preempted again while it stops", uint64(p.JobID))
		}
		w.stops[p.JobID] = w.now.Add(w.grace)
		for _, a := range w.allocs {
			if a.JobID == p.JobID {
				a.Desired, a.DesiredReason, a.PreemptedBy = model.DesiredStop, p.Reason.Message, p.Preemptor
			}
		}
	}
	ids := make([]model.JobID, 0, len(plan.Reasons))
	for id := range plan.Reasons {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := plan.Reasons[id]
		out = append(out, fmt.Sprintf("wait %d %s: %s", uint64(id), r.Code, r.Message))
	}
	return out
}

// compactNodes renders node names with repeats counted: "a×2 b".
func compactNodes(names []string) string {
	var parts []string
	for i := 0; i < len(names); {
		k := i
		for k < len(names) && names[k] == names[i] {
			k++
		}
		if k-i > 1 {
			parts = append(parts, fmt.Sprintf("%s×%d", names[i], k-i))
		} else {
			parts = append(parts, names[i])
		}
		i = k
	}
	return strings.Join(parts, " ")
}

func (w *world) start(j *model.Job, ps []Placement) {
	j.State = model.JobRunning
	j.StartTime = w.now
	j.PreemptedBy = 0
	j.Attempt++
	for _, p := range ps {
		a := testkit.Alloc(j.ID, p.TaskIndex, p.Node).Resources(p.Resources).GPUIndices(p.GPUIndices...).Attempt(j.Attempt).Build()
		a.Resources.GPUs = p.Resources.GPUs
		a.StartedAt, a.CreatedAt = w.now, w.now
		a.Walltime = j.Walltime
		a.Queue, a.Priority, a.Owner, a.ArrayParent, a.ArrayIndex = j.Queue, j.Priority, j.Owner, j.ArrayParent, j.ArrayIndex
		a.Group = p.Group
		w.allocs = append(w.allocs, a)
	}
}

// requeue stops a preempted job's allocations and makes it pending again,
// marked with its preemptor as the server does.
func (w *world) requeue(id, preemptor model.JobID) {
	j := w.jobs[id]
	j.PreemptedBy = preemptor
	w.allocs = slices.DeleteFunc(w.allocs, func(a *model.Allocation) bool { return a.JobID == id })
	j.State = model.JobPending
	delete(w.stops, id)
}

// advance moves the clock to `to`, ending the jobs whose runtime elapses on
// the way and stopping (requeueing) preempted ones whose grace is over, in
// order.
func (w *world) advance(to time.Time) []string {
	var out []string
	for {
		var next model.JobID
		var at time.Time
		stop := false
		for _, id := range w.ids() {
			j := w.jobs[id]
			if j.State != model.JobRunning {
				continue
			}
			if e, ok := w.stops[id]; ok && !e.After(to) && (next == 0 || e.Before(at)) {
				next, at, stop = id, e, true
			}
			d, ok := w.runs[id]
			if !ok {
				continue
			}
			if e := j.StartTime.Add(d); !e.After(to) && (next == 0 || e.Before(at)) {
				next, at, stop = id, e, false
			}
		}
		if next == 0 {
			break
		}
		w.now = at
		if stop {
			var by model.JobID
			for _, a := range w.allocs {
				if a.JobID == next {
					by = a.PreemptedBy
				}
			}
			w.requeue(next, by)
			out = append(out, fmt.Sprintf("stopped %d at %s (requeued)", uint64(next), w.now.Sub(testkit.Epoch)))
			continue
		}
		out = append(out, w.end(next, true, "")...)
	}
	w.now = to
	return out
}

func (w *world) end(id model.JobID, ok bool, where string) []string {
	j := w.jobs[id]
	if j == nil || j.State != model.JobRunning {
		w.fail(where, "job %d is not running", uint64(id))
	}
	var usage model.Resources
	for _, a := range w.allocs {
		if a.JobID == id {
			usage = usage.Add(a.Resources)
		}
	}
	w.allocs = slices.DeleteFunc(w.allocs, func(a *model.Allocation) bool { return a.JobID == id })
	delete(w.stops, id)
	j.State, j.EndTime = model.JobSucceeded, w.now
	if !ok {
		j.State, j.ExitCode = model.JobFailed, 1
	}
	w.history = append(w.history, model.FinishedJob{ID: id, Owner: j.Owner, Queue: j.Queue, Usage: usage,
		Requested: j.Walltime, Ran: w.now.Sub(j.StartTime), SubmitTime: j.SubmitTime, StartTime: j.StartTime, EndTime: w.now, ExitCode: j.ExitCode})
	return []string{fmt.Sprintf("ended %d at %s (%s)", uint64(id), w.now.Sub(testkit.Epoch), j.State)}
}

func (w *world) explain(id model.JobID) []string {
	e, err := Explain(w.snapshot(), w.now, w.cfg, id)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	if e.StartsNow {
		return []string{"starts now"}
	}
	out := []string{fmt.Sprintf("%s: %s", e.Reason.Code, e.Reason.Message)}
	if !e.EstimatedStart.IsZero() {
		out = append(out, fmt.Sprintf("estimated start %s", e.EstimatedStart.Sub(testkit.Epoch)))
	}
	for _, s := range e.Sooner {
		out = append(out, fmt.Sprintf("sooner: %s → start %s", s.Change, s.Start.Sub(testkit.Epoch)))
	}
	return out
}
