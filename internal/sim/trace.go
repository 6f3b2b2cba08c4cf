package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/durehq/dure/internal/model"
)

// Trace is a workload read from a file: the jobs in submission order and,
// when the file says, the machine they ran on.
type Trace struct {
	Name   string // file name, for reports
	Format string // "swf", "philly" or "openb"
	// Start is the instant Job.Submit offsets count from (the SWF header's
	// UnixStartTime, the earliest Philly submission, or the Unix epoch when
	// the trace has no dates). It only labels plots; nothing depends on it.
	Start time.Time
	Jobs  []Job
	// Nodes is the machine the trace itself describes (SWF: one node of
	// MaxProcs CPUs; openb: its node list), or nil when it describes none
	// (Philly): then the caller must supply one.
	Nodes []*model.Node
	// Dropped counts records left out, by reason ("no runtime", …).
	Dropped map[string]int
	// Notes are facts about the conversion worth printing ("3078 fractional
	// GPU requests rounded up to 1 GPU").
	Notes []string
}

// Job is one job of a trace. Request is what a real scheduler is told at
// submission; Runtime is how long the job actually ran, known only to the
// simulator's clock. They are separate fields of a plain struct on purpose:
// the model.Job the scheduler sees is built from Request alone (see
// Request.modelJob), so no code path can hand it the runtime.
type Job struct {
	ID      model.JobID   // 1, 2, … in submission order
	Number  int64         // the job's number in the source file (SWF field 1, CSV row)
	Line    int           // source line, for messages
	Submit  time.Duration // since Trace.Start
	Runtime time.Duration // actual duration; never shown to the scheduler
	Request Request
}

// Request is what a job asks for: everything the scheduler may know.
type Request struct {
	Owner    string
	Queue    string
	Priority int
	// Walltime is the user's limit and estimate; 0 means none was given and
	// the scheduler's default applies.
	Walltime time.Duration
	// Tasks identical tasks of PerTask each, started all together (gang).
	Tasks   int
	PerTask model.Resources
	// MinTasks, when between 1 and Tasks, lets the job start with fewer
	// tasks (model.Job.MinTasks): at least MinTasks, as many as fit. It
	// then runs its Runtime with the tasks it started with, and holds and
	// is counted as doing only their share of the work. Not for merged SWF
	// processors (one task).
	MinTasks int
	// Constraints are node labels every task needs (gpu.model=V100M16).
	Constraints map[string]string
	// Processors marks an SWF job: Tasks interchangeable one-CPU
	// processors. On a one-node machine the simulator merges them into one
	// task of Tasks CPUs (the same feasibility, 1/Tasks of the placements);
	// on a multi-node machine they stay Tasks one-CPU tasks.
	Processors bool
}

// modelJob builds the job the scheduler sees. It is the only conversion
// from a trace job to a model.Job and it receives no runtime.
func (r *Request) modelJob(id model.JobID, submit time.Time, merge bool) *model.Job {
	g := model.TaskGroup{Name: "main", Count: r.Tasks, Resources: r.PerTask.Copy(), Command: []string{"sim"}}
	minTasks := r.MinTasks
	if r.Processors && merge {
		g.Count = 1
		g.Resources = r.PerTask.Scale(int64(r.Tasks))
		minTasks = 0
	}
	if len(r.Constraints) > 0 {
		g.Constraints = make(map[string]string, len(r.Constraints))
		for k, v := range r.Constraints {
			g.Constraints[k] = v
		}
	}
	return &model.Job{
		ID:         id,
		Name:       fmt.Sprintf("job%d", id),
		Owner:      r.Owner,
		Queue:      r.Queue,
		Priority:   r.Priority,
		Walltime:   r.Walltime,
		Groups:     []model.TaskGroup{g},
		MinTasks:   minTasks,
		State:      model.JobPending,
		Attempt:    0,
		SubmitTime: submit,
	}
}

// Total is the job's whole request: Tasks × PerTask.
func (r *Request) Total() model.Resources { return r.PerTask.Scale(int64(r.Tasks)) }

// finish sorts jobs by submission (stable: file order breaks ties) and numbers
// them 1, 2, … in that order.
func (t *Trace) finish() {
	sort.SliceStable(t.Jobs, func(a, b int) bool { return t.Jobs[a].Submit < t.Jobs[b].Submit })
	for i := range t.Jobs {
		t.Jobs[i].ID = model.JobID(i + 1)
	}
}

func (t *Trace) drop(reason string) {
	if t.Dropped == nil {
		t.Dropped = map[string]int{}
	}
	t.Dropped[reason]++
}

// LineError is a malformed record: which line, which field, what rule.
type LineError struct {
	File  string
	Line  int
	Field string // "field 5 (allocated processors)", "num_gpus", …
	Msg   string
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Head keeps only the first n jobs in submission order (n ≤ 0 keeps all).
func (t *Trace) Head(n int) {
	if n > 0 && n < len(t.Jobs) {
		t.Jobs = t.Jobs[:n]
	}
}

// ScaleLoad divides every submission time by f: with f > 1 jobs arrive f
// times as fast, raising the offered load by f with the same jobs (the
// usual way to study a scheduler under more pressure than the log had).
func (t *Trace) ScaleLoad(f float64) error {
	if !(f > 0) || f > 1e6 {
		return fmt.Errorf("load scale must be positive and at most 1e6 (got %v)", f)
	}
	for i := range t.Jobs {
		t.Jobs[i].Submit = time.Duration(float64(t.Jobs[i].Submit) / f)
	}
	return nil
}
