package model

import (
	"fmt"
	"time"
)

// JobID is a cluster-wide job number, assigned by the leader in submission
// order (like Slurm's job IDs, short enough to type).
type JobID uint64

func (id JobID) String() string { return fmt.Sprintf("%d", uint64(id)) }

// JobState is the single state a job is in.
type JobState string

const (
	JobPending   JobState = "pending"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Terminal reports whether the state is final.
func (s JobState) Terminal() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// TaskGroup is a set of identical tasks inside a job.
type TaskGroup struct {
	Name        string            `json:"name"`
	Count       int               `json:"count"`
	Resources   Resources         `json:"resources"` // per task
	Command     []string          `json:"command"`
	Env         map[string]string `json:"env,omitempty"`
	WorkDir     string            `json:"workdir,omitempty"`
	Constraints map[string]string `json:"constraints,omitempty"` // node label key = value
}

// Event is one line of a job's history.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Message string    `json:"message"`
}

// MaxJobEvents bounds a job's event list; the oldest events after the first
// (submission) are dropped beyond it, so a job that is requeued forever cannot
// grow without bound.
const MaxJobEvents = 64

// Job is a unit of work submitted by a user.
type Job struct {
	ID       JobID         `json:"id"`
	Name     string        `json:"name"`
	Owner    string        `json:"owner"`
	Queue    string        `json:"queue"`
	Priority int           `json:"priority"`
	Walltime time.Duration `json:"walltime"` // 0: none
	Groups   []TaskGroup   `json:"groups"`
	// MaxRetries is how many times the job is requeued after its work was
	// lost (node down). Exits of the program itself are final.
	MaxRetries int `json:"max_retries"`
	// IdempotencyKey, if set, makes a retried submission with the same key
	// (and owner) return this job instead of creating another.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// EligibleAt holds a requeued job back until then (retry backoff);
	// zero: eligible at once. The server keeps such jobs out of scheduling.
	EligibleAt time.Time `json:"eligible_at,omitzero"`

	// MinTasks is the gang minimum: the first MinTasks tasks (in group
	// order) start together or not at all, and the rest start with them if
	// they fit then. 0 (or TaskCount or more): all tasks.
	MinTasks int `json:"min_tasks,omitempty"`
	// Topology, if set, is a node label key (such as "rack" or "ib"): all
	// tasks of the job go to nodes with the same value of that label.
	Topology string `json:"topology,omitempty"`
	// Placement is "pack" (the default: fill nodes, keep whole nodes free
	// for big jobs) or "spread" (one task per node where possible).
	Placement string `json:"placement,omitempty"`
	// Array elements: ArrayParent is the job ID of the array (the first
	// element's ID, or the submission's ID), ArrayIndex the element's index
	// (the N of --array A-B), ArrayThrottle the most elements of the array
	// that may run at once (the %N; 0: no limit). 0 ArrayParent: not an array.
	ArrayParent   JobID `json:"array_parent,omitempty"`
	ArrayIndex    int   `json:"array_index,omitempty"`
	ArrayThrottle int   `json:"array_throttle,omitempty"`
	// Dependencies must all be satisfied before the job may start.
	Dependencies []Dependency `json:"dependencies,omitempty"`
	// StartedTasks is how many tasks the latest attempt started with: the
	// task count, or fewer (at least MinTasks) for a partial gang. 0 before
	// the first placement.
	StartedTasks int `json:"started_tasks,omitempty"`

	State   JobState `json:"state"`
	Reason  Reason   `json:"reason"`  // why pending; why failed/cancelled when terminal; why stopping while preempted
	Attempt int      `json:"attempt"` // 1 for the first placement, +1 per requeue
	// PreemptedBy names the job this one was preempted for. It is set when
	// the current attempt starts being stopped (its allocations get
	// Desired=stop and Allocation.PreemptedBy), stays set while the job is
	// requeued and pending — so the scheduler keeps serving that preemptor
	// first until it starts — and is cleared when the job is placed again or
	// ends. Running with PreemptedBy set means "being stopped".
	PreemptedBy JobID `json:"preempted_by,omitempty"`
	// Preemptions counts the attempts that ended by preemption. They do
	// not use up MaxRetries: a job whose work is lost is requeued while
	// Attempt - Preemptions <= MaxRetries.
	Preemptions int `json:"preemptions,omitempty"`

	SubmitTime time.Time `json:"submit_time"`
	StartTime  time.Time `json:"start_time"` // latest attempt's placement
	EndTime    time.Time `json:"end_time"`
	ExitCode   int       `json:"exit_code"` // first non-zero task exit, else 0
	Events     []Event   `json:"events,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Placement hints (Job.Placement).
const (
	PlacementPack   = "pack"
	PlacementSpread = "spread"
)

// DependencyType says when a dependency is satisfied (Slurm's names).
type DependencyType string

const (
	AfterOK    DependencyType = "afterok"    // the job succeeded
	AfterAny   DependencyType = "afterany"   // the job ended, however
	AfterNotOK DependencyType = "afternotok" // the job failed or was cancelled
)

// Dependency is one "start after" condition on another job.
type Dependency struct {
	Type  DependencyType `json:"type"`
	JobID JobID          `json:"job_id"`
	// Array: JobID is an array's ID and the condition applies to the
	// array as a whole (see ArrayDependencyVerdict), as Slurm reads a
	// dependency on an array job. The server hands the scheduler the one
	// element that decides it.
	Array bool `json:"array,omitempty"`
}

// String writes the dependency as Slurm does: "afterok:12".
func (d Dependency) String() string { return string(d.Type) + ":" + d.JobID.String() }

// Satisfied reports whether a job in state s satisfies the dependency now,
// and whether it never can (s is terminal and the wrong kind of end).
func (d Dependency) Satisfied(s JobState) (ok, never bool) {
	if !s.Terminal() {
		return false, false
	}
	switch d.Type {
	case AfterOK:
		return s == JobSucceeded, s != JobSucceeded
	case AfterAny:
		return true, false
	case AfterNotOK:
		return s != JobSucceeded, s == JobSucceeded
	}
	return false, true // unknown type: never
}

// GangSize is the number of tasks that must start together: MinTasks when
// set and below TaskCount, else TaskCount.
func (j *Job) GangSize() int {
	n := j.TaskCount()
	if j.MinTasks > 0 && j.MinTasks < n {
		return j.MinTasks
	}
	return n
}

// TaskCount is the number of tasks over all groups.
func (j *Job) TaskCount() int {
	n := 0
	for _, g := range j.Groups {
		n += g.Count
	}
	return n
}

// TotalResources is the sum over all tasks.
func (j *Job) TotalResources() Resources {
	var r Resources
	for _, g := range j.Groups {
		r = r.Add(g.Resources.Scale(int64(g.Count)))
	}
	return r
}

// AddEvent appends an event, keeping at most MaxJobEvents.
func (j *Job) AddEvent(t time.Time, typ, msg string) {
	j.Events = append(j.Events, Event{Time: t, Type: typ, Message: msg})
	if len(j.Events) > MaxJobEvents {
		// keep the submission event, drop the oldest after it
		j.Events = append(j.Events[:1], j.Events[len(j.Events)-MaxJobEvents+1:]...)
	}
}

// Copy returns a deep copy.
func (j *Job) Copy() *Job {
	c := *j
	c.Groups = make([]TaskGroup, len(j.Groups))
	for i, g := range j.Groups {
		cg := g
		cg.Resources = g.Resources.Copy()
		cg.Command = append([]string(nil), g.Command...)
		if g.Env != nil {
			cg.Env = make(map[string]string, len(g.Env))
			for k, v := range g.Env {
				cg.Env[k] = v
			}
		}
		if g.Constraints != nil {
			cg.Constraints = make(map[string]string, len(g.Constraints))
			for k, v := range g.Constraints {
				cg.Constraints[k] = v
			}
		}
		c.Groups[i] = cg
	}
	c.Events = append([]Event(nil), j.Events...)
	c.Dependencies = append([]Dependency(nil), j.Dependencies...)
	return &c
}

// FinishedJob is what the scheduler remembers of a job that ended: the
// caller keeps a bounded window of them (most recent first or in any order)
// for runtime predictions and fair-share usage decay.
type FinishedJob struct {
	ID    JobID  `json:"id"`
	Owner string `json:"owner"`
	Queue string `json:"queue"`
	// Usage is what the job held while it ran, summed over its tasks.
	Usage Resources `json:"usage"`
	// Requested is the walltime asked for (0: none); Ran how long it ran.
	Requested  time.Duration `json:"requested"`
	Ran        time.Duration `json:"ran"`
	SubmitTime time.Time     `json:"submit_time"`
	StartTime  time.Time     `json:"start_time"`
	EndTime    time.Time     `json:"end_time"`
	ExitCode   int           `json:"exit_code"`
}

// RetryBackoff is how long a job waits before its retry after lost work:
// 1 s before the second attempt, doubling per attempt, at most 1 minute, so a
// job whose nodes keep failing does not churn the cluster.
func RetryBackoff(attempt int) time.Duration {
	if attempt < 1 {
		return 0
	}
	return min(time.Second<<min(attempt-1, 6), time.Minute)
}
