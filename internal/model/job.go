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

	State   JobState `json:"state"`
	Reason  Reason   `json:"reason"`  // why pending; why failed/cancelled when terminal
	Attempt int      `json:"attempt"` // 1 for the first placement, +1 per requeue

	SubmitTime time.Time `json:"submit_time"`
	StartTime  time.Time `json:"start_time"` // latest attempt's placement
	EndTime    time.Time `json:"end_time"`
	ExitCode   int       `json:"exit_code"` // first non-zero task exit, else 0
	Events     []Event   `json:"events,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
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
	return &c
}
