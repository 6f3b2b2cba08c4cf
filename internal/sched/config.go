package sched

import (
	"time"

	"github.com/durehq/dure/internal/model"
)

// Policy names a scheduling policy.
type Policy string

const (
	// PolicyFIFO is textbook first-come-first-served: jobs in submit order,
	// the first job that does not fit blocks everything behind it.
	PolicyFIFO Policy = "fifo"
	// PolicyEASY is textbook EASY backfilling: jobs in submit order; the
	// first job that does not fit gets one reservation, at the earliest time
	// it fits given the running jobs' requested times (start + walltime); a
	// later job starts now only if it fits now and delays that reservation
	// not at all (it ends, by its walltime, before the reserved start, or it
	// uses only resources the reserved job will not need).
	PolicyEASY Policy = "easy"
	// PolicyConservative is textbook conservative backfilling: every job
	// that does not fit gets a reservation, in submit order; a job starts
	// now only if it delays none of them.
	PolicyConservative Policy = "conservative"
	// PolicyDure is dure's own policy (the default): fair share between
	// queues and users, quotas with borrowing and reclaim, preemption, gang
	// minimums, topology domains, and backfill on predicted runtimes. See
	// README.md.
	PolicyDure Policy = "dure"
)

// Policies lists the valid policies, default first.
var Policies = []Policy{PolicyDure, PolicyFIFO, PolicyEASY, PolicyConservative}

// Defaults for Config fields left zero.
const (
	DefaultWalltime          = time.Hour
	DefaultFairShareHalfLife = 24 * time.Hour
	DefaultReservationDepth  = 1
	DefaultPreemptGrace      = time.Minute
)

// Config tunes the scheduling policy. The zero value is dure's default
// policy with documented defaults.
type Config struct {
	// Policy picks the policy; "" means PolicyDure.
	Policy Policy
	// DefaultWalltime is how long a job without a walltime is assumed to run
	// (its queue's DefaultWalltime takes precedence), for reservations and
	// backfill; 0 means DefaultWalltime (1h).
	DefaultWalltime time.Duration
	// FairShareHalfLife is how fast past usage is forgotten in fair share
	// (PolicyDure); 0 means 24h.
	FairShareHalfLife time.Duration
	// ReservationDepth is how many blocked jobs get a reservation
	// (PolicyDure; EASY is 1, conservative all); 0 means 1. Negative:
	// every blocked job (conservative backfill).
	ReservationDepth int
	// NoPreemption turns preemption off (PolicyDure).
	NoPreemption bool
	// PreemptGrace is how long a job being stopped (preempted, or any
	// allocation with Desired=stop) is expected to take to end: its grace
	// period to checkpoint. A preemptor is planned to start then. 0 means
	// 1m.
	PreemptGrace time.Duration
	// NoPredictions makes PolicyDure plan with requested walltimes rather
	// than runtimes predicted from each user's recent history.
	NoPredictions bool

	// firstFit selects the plain first-fit pass (priority order, no time):
	// the placement engine alone, which the naive reference checks.
	firstFit bool
}

// ParsePolicy checks a policy name; "" is PolicyDure.
func ParsePolicy(s string) (Policy, error) {
	if s == "" {
		return PolicyDure, nil
	}
	for _, p := range Policies {
		if string(p) == s {
			return p, nil
		}
	}
	return "", &PolicyError{Name: s}
}

// PolicyError reports an unknown policy name.
type PolicyError struct{ Name string }

func (e *PolicyError) Error() string {
	return "policy: unknown policy " + quote(e.Name) + " (want fifo, easy, conservative or dure)"
}

func quote(s string) string { return "\"" + s + "\"" }

func (c Config) policy() Policy {
	if c.Policy == "" {
		return PolicyDure
	}
	return c.Policy
}

func (c Config) defaultWalltime() time.Duration {
	if c.DefaultWalltime > 0 {
		return c.DefaultWalltime
	}
	return DefaultWalltime
}

func (c Config) preemptGrace() int64 {
	if c.PreemptGrace > 0 {
		return min(int64(c.PreemptGrace), maxWindow)
	}
	return int64(DefaultPreemptGrace)
}

func (c Config) halfLife() time.Duration {
	if c.FairShareHalfLife > 0 {
		return c.FairShareHalfLife
	}
	return DefaultFairShareHalfLife
}

// Preemption asks the server to stop a running job so that a waiting one
// (the preemptor) can start. The preemptor is not placed in the same plan:
// it gets a Reservation at now + Config.PreemptGrace and the reason
// Preempting, and starts in a later pass, once its victims have ended.
//
// What a server must do with each Preemption of a plan it commits:
//
//  1. Verify it against the latest state like placements: skip it if the
//     preemptor is no longer pending or none of AllocIDs is live; stop only
//     those that are live and not already stopping.
//  2. Stop them in one log entry: Desired=stop, DesiredReason =
//     Reason.Message, PreemptedBy = Preemptor. The agent stops the tasks
//     with a grace period (SIGTERM, SIGKILL after it), which should match
//     Config.PreemptGrace.
//  3. Keep handing those allocations to the scheduler (Snapshot.Allocs)
//     until they have ended. While they are live with PreemptedBy = P, the
//     scheduler counts them as holding no quota and as gone a grace period
//     from now, keeps their room for P (P goes first and reserves it), and
//     chooses no further victims for P; the next plans repeat P's
//     reservation and reason, not the preemption.
//  4. When the job's last allocation has ended, requeue the job: pending,
//     its work lost, Reason code Preempted, Job.PreemptedBy = P, no retry
//     backoff and not counted against MaxRetries. Clear Job.PreemptedBy
//     when the job is placed again. While a requeued job names a pending
//     P, the scheduler considers P before every other job, so the room its
//     victims freed goes to P.
//
// A preemptor that starts, or is cancelled, releases its claim: the
// allocations still stopping for it and the jobs it requeued are then
// ordinary.
type Preemption struct {
	// JobID is the victim; AllocIDs are its live allocations (all of them:
	// a gang is stopped whole), sorted.
	JobID    model.JobID
	AllocIDs []string
	// Preemptor is the job the room is made for.
	Preemptor model.JobID
	// Reason is what to record on the victim (code model.ReasonPreempted).
	Reason model.Reason
}

// Reservation is the planned future start of a blocked job: the earliest
// time it fits given when running jobs are expected to end and the
// reservations made before it. Jobs started now by backfill never delay it.
// A job waiting for preempted jobs to stop gets one with Start = now, on
// the room its victims free (plus free room held for it in this pass).
type Reservation struct {
	JobID model.JobID
	Start time.Time
	// Nodes are the nodes it is planned on, sorted, without repeats.
	Nodes []string
	// End is Start plus the time the scheduler expects the job to run (its
	// walltime, or for PolicyDure its predicted runtime).
	End time.Time
	// Placements is the planned placement at Start (no GPU indices: those
	// are chosen when it starts). It may change in later passes.
	Placements []Placement
}
