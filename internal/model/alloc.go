package model

import (
	"fmt"
	"time"
)

// DesiredStatus is what the control plane wants the agent to do with an allocation.
type DesiredStatus string

const (
	DesiredRun  DesiredStatus = "run"
	DesiredStop DesiredStatus = "stop"
)

// AllocStatus is the lifecycle of one placed task, as reported by its agent.
type AllocStatus string

const (
	AllocAssigned AllocStatus = "assigned" // committed by the leader, not yet started
	AllocRunning  AllocStatus = "running"  // process started
	AllocExited   AllocStatus = "exited"   // process ended (see ExitCode, Signal, OOMKilled)
	AllocFailed   AllocStatus = "failed"   // could not be started at all
	AllocLost     AllocStatus = "lost"     // its node went down
)

// Terminal reports whether the allocation holds no resources any more.
func (s AllocStatus) Terminal() bool {
	return s == AllocExited || s == AllocFailed || s == AllocLost
}

// Allocation is one task placed on one node.
type Allocation struct {
	ID        string `json:"id"` // "<job>.<task>.<attempt>", unique for all time
	JobID     JobID  `json:"job_id"`
	Group     string `json:"group"`
	TaskIndex int    `json:"task_index"` // 0-based over all groups of the job
	Attempt   int    `json:"attempt"`
	Node      string `json:"node"`

	Resources  Resources `json:"resources"`
	GPUIndices []int     `json:"gpu_indices,omitempty"`

	// What to run. Copied from the job so an agent needs nothing else.
	Command   []string          `json:"command"`
	Env       map[string]string `json:"env,omitempty"`
	WorkDir   string            `json:"workdir,omitempty"`
	Walltime  time.Duration     `json:"walltime"`
	JobName   string            `json:"job_name"`
	Owner     string            `json:"owner"`
	TaskCount int               `json:"task_count"` // tasks the attempt started with, for DURE_NTASKS

	// Copied from the job for the scheduler: quota and fair-share accounting
	// (Queue; "" counts as the default queue), preemption victim choice
	// (Priority) and array throttles (ArrayParent).
	Queue       string `json:"queue,omitempty"`
	Priority    int    `json:"priority,omitempty"`
	ArrayParent JobID  `json:"array_parent,omitempty"`
	ArrayIndex  int    `json:"array_index,omitempty"` // for DURE_ARRAY_TASK_ID

	// Fencing: the Raft term and index of the plan that created it. An agent
	// starts an allocation at most once and reports on it by ID.
	CreateTerm  uint64 `json:"create_term"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	// AgentIndex is the Raft index of the last change the node's agent must
	// act on: the allocation's creation, a change of what is desired of
	// it, or a status the servers set themselves (lost). The agent's own
	// reports leave it alone, so its allocation watch does not send them
	// back to it. 0 in snapshots from before it existed (read as
	// ModifyIndex).
	AgentIndex uint64 `json:"agent_index,omitempty"`

	Desired       DesiredStatus `json:"desired"`
	DesiredReason string        `json:"desired_reason,omitempty"`
	// StopGrace, when set with Desired=stop, is how long the agent waits
	// between SIGTERM and SIGKILL (a preempted task's time to checkpoint);
	// 0: the agent's own kill grace.
	StopGrace time.Duration `json:"stop_grace,omitempty"`
	// PreemptedBy is set, with Desired=stop, when the allocation is being
	// stopped to make room for that pending job (sched.Plan.Preemptions):
	// the scheduler keeps the room it frees for that job and chooses no
	// further victims for it while it stops. 0 for any other stop.
	PreemptedBy JobID `json:"preempted_by,omitempty"`

	Status     AllocStatus `json:"status"`
	ExitCode   int         `json:"exit_code"`
	Signal     string      `json:"signal,omitempty"`
	OOMKilled  bool        `json:"oom_killed,omitempty"`
	TimedOut   bool        `json:"timed_out,omitempty"` // walltime exceeded
	Stopped    bool        `json:"stopped,omitempty"`   // ended after the agent was asked to stop it
	Message    string      `json:"message,omitempty"`
	CreatedAt  time.Time   `json:"created_at"`
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt time.Time   `json:"finished_at"`
}

// AllocID builds the allocation ID for a job's task in a given attempt.
func AllocID(job JobID, task, attempt int) string {
	return fmt.Sprintf("%d.%d.%d", uint64(job), task, attempt)
}

// Copy returns a deep copy.
func (a *Allocation) Copy() *Allocation {
	c := *a
	c.Resources = a.Resources.Copy()
	c.GPUIndices = append([]int(nil), a.GPUIndices...)
	c.Command = append([]string(nil), a.Command...)
	if a.Env != nil {
		c.Env = make(map[string]string, len(a.Env))
		for k, v := range a.Env {
			c.Env[k] = v
		}
	}
	return &c
}
