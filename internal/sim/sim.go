package sim

import (
	"container/heap"
	"errors"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// DefaultHistoryWindow is how many finished jobs the simulator hands the
// scheduler in Snapshot.History (the most recent ones).
const DefaultHistoryWindow = 5000

// Options configure one simulation.
type Options struct {
	// Config is passed to every sched.Schedule call (Config.Policy picks the
	// policy).
	Config sched.Config
	// Nodes is the cluster; nil means the trace's own (Trace.Nodes).
	Nodes []*model.Node
	// Queues is the queue configuration given to the scheduler; nil means
	// none (every queue in the trace is an unlimited root queue of weight 1).
	Queues []*model.Queue
	// RunPastWalltime lets a job that ran longer than its walltime in the
	// trace run its full recorded time. The default (false) stops it at its
	// walltime, as dure and the EASY literature do: a walltime is a limit.
	// A job that gives none is stopped at its queue's DefaultWalltime, if
	// Queues sets one, as a dure server stops it.
	RunPastWalltime bool
	// PreemptionGrace is how long a preempted job keeps its resources before
	// it stops and is requeued (the SIGTERM-to-SIGKILL grace); 0 stops it at
	// once. Its work is lost either way: a requeued job starts over.
	PreemptionGrace time.Duration
	// HistoryWindow is how many recently finished jobs the scheduler sees;
	// 0 means DefaultHistoryWindow.
	HistoryWindow int
	// Clock, if set, times the scheduler's passes (Result.SchedTime). It
	// never drives the simulation.
	Clock func() time.Time
}

// Result is the outcome of a simulation.
type Result struct {
	Trace  string
	Policy sched.Policy
	Nodes  int
	// Cluster describes the nodes for people: "1 node (machine): cpu=100".
	Cluster string
	// Capacity is the cluster's total; Primary the resource utilization is
	// measured in ("cpu" or "gpu").
	Capacity model.Resources
	Primary  string
	Start    time.Time // the trace's time origin
	Jobs     []JobResult
	Metrics  Metrics
	Queues   []QueueShare
	// Contention is how long some job was waiting: the time over which
	// QueueShare.Share is measured (0: no job ever waited, no shares).
	Contention time.Duration
	// Preemptions is how many times a running job was stopped for another;
	// LostWork the primary resource·seconds those stopped attempts had run.
	Preemptions int
	LostWork    float64
	// Dropped counts trace jobs left out (by the reader, or here because
	// they could not fit the empty cluster), by reason.
	Dropped map[string]int
	// NeverStarted lists jobs still pending when nothing else could happen:
	// a scheduler that leaves work waiting on an idle cluster.
	NeverStarted []model.JobID
	// Usage is the busy primary resource over time, a step function: from
	// Usage[i].At the cluster held Usage[i].Busy until the next entry.
	Usage []UsagePoint
	// Passes is how many times sched.Schedule was called; SchedTime their
	// total wall time (zero without Options.Clock).
	Passes    int
	SchedTime time.Duration
}

// UsagePoint is one step of Result.Usage.
type UsagePoint struct {
	At   time.Duration
	Busy float64
}

// ErrPlanInvalid means the scheduler returned a plan that cannot be applied
// to the virtual cluster (over-committed node, unknown job, fewer tasks
// than the job's gang): a scheduler bug the simulator refuses to paper
// over.
var ErrPlanInvalid = errors.New("invalid plan")

// ErrNoProgress means the scheduler made the simulation go round in circles:
// a job stopped and restarted so often that the run would never end.
var ErrNoProgress = errors.New("no progress")

// maxPreemptionsPerJob bounds how often one job may be preempted before the
// simulation is declared stuck (ErrNoProgress).
const maxPreemptionsPerJob = 100

// jobState is the simulator's private record of one trace job.
type jobState struct {
	tj      *Job
	mj      *model.Job // what the scheduler sees; rebuilt on requeue
	run     time.Duration
	killed  bool
	pending int // index in the pending slice, -1 if not pending
	attempt int
	start   time.Duration
	allocs  []*model.Allocation
	// stopping: preempted, holding its resources until the grace ends.
	stopping   bool
	preempted  int
	done       bool
	size       model.Resources // all its tasks
	held       model.Resources // the tasks of its current attempt (fewer than all for a partial gang)
	queueIndex int
}

// event kinds, in the order they are handled at one instant: work ends
// (completions, then preempted jobs stopping) before new work arrives, so a
// pass sees everything that happened at that instant.
const (
	evEnd = iota
	evStop
)

type event struct {
	at      time.Duration
	kind    int
	job     int // index into jobs
	attempt int
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(a, b int) bool {
	if h[a].at != h[b].at {
		return h[a].at < h[b].at
	}
	if h[a].kind != h[b].kind {
		return h[a].kind < h[b].kind
	}
	return h[a].job < h[b].job
}
func (h eventHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any     { old := *h; e := old[len(old)-1]; *h = old[:len(old)-1]; return e }
func (h *eventHeap) push(e event) { heap.Push(h, e) }
func (h *eventHeap) pop() event   { return heap.Pop(h).(event) }
func (h eventHeap) next() (time.Duration, bool) {
	if len(h) == 0 {
		return 0, false
	}
	return h[0].at, true
}

// maxPassesPerInstant bounds the passes at one virtual instant (a pass that
// preempts is followed by another once the victims stopped): a scheduler that
// preempts forever is a bug, reported rather than looped on.
const maxPassesPerInstant = 64
