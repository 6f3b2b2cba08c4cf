package sched

import (
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
)

// estimator says how long jobs are expected to run: the requested walltime
// (textbook policies, and PolicyDure with NoPredictions), or a runtime
// predicted from the owner's recent history (PolicyDure), following
// Tsafrir, Etsion and Feitelson (IEEE TPDS 2007): the average run time of
// the user's last two finished jobs, never above the job's walltime; a
// running job that outlives its prediction gets a longer one, in growing
// steps, up to its walltime. Only what a real scheduler knows at decision
// time is used: walltimes, finished jobs, and how long running jobs have run
// so far. Predictions decide reservations and backfill; walltimes still
// bound how long a job may run.
type estimator struct {
	now     int64
	nowT    time.Time
	cfg     Config
	queues  map[string]*model.Queue
	predict bool
	// recent: per owner, the run times of their last two finished jobs,
	// most recent first (n of them known); allocRecent: recentOf the
	// owner of each live allocation of the snapshot, by position.
	recent      map[string]*recentRuns
	allocRecent []*recentRuns
	history     []model.FinishedJob
	order       historyOrder
}

type recentRuns struct {
	ran [2]int64 // latest first
	n   int
}

// predictionSteps are the extensions tried, in order, when a running job
// outlives its prediction (Tsafrir et al.'s correction).
var predictionSteps = []time.Duration{
	time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 20 * time.Hour, 50 * time.Hour, 100 * time.Hour,
}

func newEstimator(s *Snapshot, now time.Time, cfg Config, queues map[string]*model.Queue, predict bool, order historyOrder) *estimator {
	return newEstimatorFor(s, now, cfg, queues, predict, order, true)
}

// newEstimatorFor is newEstimator; without pending, the pending jobs'
// owners are left for addOwners (dure's gather meets each owner once).
func newEstimatorFor(s *Snapshot, now time.Time, cfg Config, queues map[string]*model.Queue, predict bool, order historyOrder, pending bool) *estimator {
	// Without history every prediction is the walltime: as if off.
	e := &estimator{now: now.UnixNano(), nowT: now, cfg: cfg, queues: queues, predict: predict && len(s.History) > 0, history: s.History, order: order}
	if !e.predict {
		return e
	}
	// Only the owners of pending jobs and live allocations need a
	// prediction: the history window may be long.
	e.recent = map[string]*recentRuns{}
	last := ""
	for _, j := range s.Pending {
		if !pending {
			break
		}
		// Jobs come in runs of one owner's: look each run up once.
		if j != nil && (j.Owner != last || len(e.recent) == 0) && e.recent[j.Owner] == nil {
			e.recent[j.Owner] = &recentRuns{}
		}
		if j != nil {
			last = j.Owner
		}
	}
	e.allocRecent = make([]*recentRuns, len(s.Allocs))
	var lastR *recentRuns
	for k, a := range s.Allocs {
		if a == nil || a.Status.Terminal() || a.Owner == "" {
			continue
		}
		if lastR == nil || a.Owner != last {
			lastR, last = e.recent[a.Owner], a.Owner
			if lastR == nil {
				lastR = &recentRuns{}
				e.recent[a.Owner] = lastR
			}
		}
		e.allocRecent[k] = lastR
	}
	e.scan(e.recent)
	return e
}

// scan fills the recent run times of the owners in want (all empty),
// reading the history newest first: the first two runs met are an
// owner's latest; it stops once every owner has two, or at the horizon.
func (e *estimator) scan(want map[string]*recentRuns) {
	missing := len(want)
	horizon := e.now - historyHalfLives*int64(e.cfg.halfLife())
	for k := range e.history {
		if missing == 0 {
			break
		}
		h := &e.history[e.order.newest(k)]
		end := h.EndTime.UnixNano()
		if end < horizon {
			break
		}
		r := want[h.Owner]
		if r == nil || r.n == 2 || h.Ran <= 0 || h.EndTime.After(e.nowT) {
			continue
		}
		r.ran[r.n] = int64(h.Ran)
		r.n++
		if r.n == 2 {
			missing--
		}
	}
}

// recentFor returns recentOf for each owner, looking the history up for
// the owners not seen before (one scan for all of them).
func (e *estimator) recentFor(owners []string) []*recentRuns {
	out := make([]*recentRuns, len(owners))
	if !e.predict {
		return out
	}
	var fresh map[string]*recentRuns
	for _, o := range owners {
		if o != "" && e.recent[o] == nil {
			if fresh == nil {
				fresh = map[string]*recentRuns{}
			}
			r := &recentRuns{}
			fresh[o], e.recent[o] = r, r
		}
	}
	if fresh != nil {
		e.scan(fresh)
	}
	for i, o := range owners {
		out[i] = e.recentOf(o)
	}
	return out
}

// walltime is how long j may run: its own walltime, its queue's default,
// or the configured default.
func (e *estimator) walltime(j *model.Job) int64 {
	if j.Walltime > 0 {
		return min(int64(j.Walltime), maxWindow)
	}
	return e.queueDefault(j.Queue)
}

func (e *estimator) queueDefault(queue string) int64 {
	if queue == "" {
		queue = model.DefaultQueue
	}
	if q := e.queues[queue]; q != nil && q.DefaultWalltime > 0 {
		return min(int64(q.DefaultWalltime), maxWindow)
	}
	return min(int64(e.cfg.defaultWalltime()), maxWindow)
}

// predicted is the owner's recent average run time, capped at w; w when
// there is no history, predictions are off, or the owner is anonymous ("":
// jobs of unknown users share no history).
func (e *estimator) predicted(owner string, w int64) int64 {
	return predictedFrom(e.recentOf(owner), w)
}

// recentOf is what predictions know of owner: nil for nothing (no
// history, predictions off, or anonymous).
func (e *estimator) recentOf(owner string) *recentRuns {
	if !e.predict || owner == "" {
		return nil
	}
	return e.recent[owner]
}

// predictedFrom is the average of an owner's recent run times r, capped
// at w; w without any.
func predictedFrom(r *recentRuns, w int64) int64 {
	if r == nil || r.n == 0 {
		return w
	}
	var sum int64
	for i := 0; i < r.n; i++ {
		sum += r.ran[i]
	}
	return max(min(sum/int64(r.n), w), int64(time.Second))
}

// runFor is how long j is expected to run once started.
func (e *estimator) runFor(j *model.Job) int64 {
	return e.predicted(j.Owner, e.walltime(j))
}

// allocEnd is when a live allocation is expected to end: its start (now if
// not started) plus the expected run time, corrected upwards when it has
// already run longer, never after start + walltime; one already past its end
// is expected to end overdueGrace from now; one being stopped ends after
// Config.PreemptGrace.
func (e *estimator) allocEnd(a *model.Allocation) int64 {
	return e.allocEndWith(a, e.recentOf(a.Owner))
}

// allocEndAt is allocEnd of the k-th allocation of the snapshot.
func (e *estimator) allocEndAt(k int, a *model.Allocation) int64 {
	if e.allocRecent == nil {
		return e.allocEnd(a)
	}
	return e.allocEndWith(a, e.allocRecent[k])
}

// allocEndWith is allocEnd with the owner's recent run times r (recentOf).
func (e *estimator) allocEndWith(a *model.Allocation, r *recentRuns) int64 {
	if a.Desired == model.DesiredStop {
		return e.now + e.cfg.preemptGrace() // being stopped: gone after its grace period
	}
	start := e.now
	if !a.StartedAt.IsZero() {
		start = a.StartedAt.UnixNano()
	}
	w := min(int64(a.Walltime), maxWindow)
	if w <= 0 {
		w = e.queueDefault(a.Queue)
	}
	run := predictedFrom(r, w)
	if elapsed := e.now - start; run <= elapsed && run < w {
		next := w
		for _, step := range predictionSteps {
			if c := run + int64(step); c > elapsed {
				next = min(c, w)
				break
			}
		}
		run = next
	}
	// Only an allocation already past its expected end is pushed to
	// now+overdueGrace; clamping every one would move the queue head's
	// reservation later than the textbook EASY definition puts it.
	if end := start + run; end > e.now {
		return end
	}
	return e.now + overdueGrace
}

// historyOrder visits the history newest first, by end time then ID, so
// that scans may stop early and the result never depends on the order the
// caller listed it in. idx is nil when the history is already oldest first.
type historyOrder struct {
	n   int
	idx []int32
}

func newHistoryOrder(h []model.FinishedJob) historyOrder {
	o := historyOrder{n: len(h)}
	if len(h) < 2 {
		return o
	}
	prev := h[0].EndTime.UnixNano()
	for i := 1; i < len(h); i++ {
		t := h[i].EndTime.UnixNano()
		if t > prev || t == prev && h[i].ID >= h[i-1].ID {
			prev = t
			continue
		}
		// Not oldest first: sort indices by (end, ID).
		ends := make([]int64, len(h))
		o.idx = make([]int32, len(h))
		for k := range h {
			ends[k] = h[k].EndTime.UnixNano()
			o.idx[k] = int32(k)
		}
		slices.SortFunc(o.idx, func(a, b int32) int {
			if c := cmpInt64(ends[a], ends[b]); c != 0 {
				return c
			}
			if c := cmpInt64(int64(h[a].ID), int64(h[b].ID)); c != 0 {
				return c
			}
			return int(a - b)
		})
		break
	}
	return o
}

// newest is the index of the k-th newest entry (k from 0).
func (o historyOrder) newest(k int) int {
	if o.idx == nil {
		return o.n - 1 - k
	}
	return int(o.idx[o.n-1-k])
}
