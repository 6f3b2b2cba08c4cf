package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/durehq/dure/internal/model"
)

// Type identifies a command. Append only; never reuse or renumber.
type Type uint8

const (
	TypeRegisterNode Type = 1
	TypeNodeStatus   Type = 2
	TypeDrainNode    Type = 3
	TypeSubmitJob    Type = 4
	TypeCancelJob    Type = 5
	TypeCommitPlan   Type = 6
	TypeAllocUpdates Type = 7
	TypePruneJobs    Type = 8
	TypeUpsertQueue  Type = 9
	// 10 is taken by another change in flight; do not reuse.
	TypeCancelArray Type = 11
	TypeSubmitJobs  Type = 12
)

// encodingVersion is the first byte of every entry, so a future binary
// encoding can coexist with this JSON one.
const encodingVersion = 1

// Command is one log entry's payload.
type Command interface{ Type() Type }

// RegisterNode records an agent's (re)registration; the node becomes ready.
type RegisterNode struct {
	Time time.Time  `json:"time"`
	Node model.Node `json:"node"` // name, address, capacity, gpus, labels, version, session
}

// NodeStatus records a liveness transition decided by the leader. A node
// going down loses its live allocations.
type NodeStatus struct {
	Time   time.Time        `json:"time"`
	Name   string           `json:"name"`
	Status model.NodeStatus `json:"status"`
	Reason string           `json:"reason"`
}

// DrainNode sets or clears a node's drain flag.
type DrainNode struct {
	Time   time.Time `json:"time"`
	Name   string    `json:"name"`
	Drain  bool      `json:"drain"`
	Reason string    `json:"reason,omitempty"`
}

// SubmitJob adds a validated job. ID and SubmitTime are set by the leader.
//
// With Array set it adds a job array instead: one job per index, in index
// order, with consecutive IDs from Job.ID on (the array's ID, which is also
// its first element's). The leader reserves the IDs; the FSM expands the
// indices, so one entry carries the whole array.
type SubmitJob struct {
	Job   model.Job    `json:"job"`
	Array *model.Array `json:"array,omitempty"`
}

// SubmitJobs adds several validated jobs in one entry, all or none: the
// leader's group commit of concurrent submissions and the batch API. Each
// job is applied as SubmitJob would (a repeated idempotency key, also one
// earlier in the same entry, answers with the first job's ID).
type SubmitJobs struct {
	Jobs []model.Job `json:"jobs"`
}

// CancelJob cancels a job; live allocations are asked to stop.
type CancelJob struct {
	Time   time.Time   `json:"time"`
	ID     model.JobID `json:"id"`
	Reason string      `json:"reason,omitempty"`
}

// CancelArray cancels every unfinished element of the array whose ID is
// ArrayID (scancel on an array job).
type CancelArray struct {
	Time    time.Time   `json:"time"`
	ArrayID model.JobID `json:"array_id"`
	Reason  string      `json:"reason,omitempty"`
}

// PlannedJob is one job's complete set of placements in a plan.
type PlannedJob struct {
	JobID  model.JobID        `json:"job_id"`
	Allocs []model.Allocation `json:"allocs"`
}

// JobReason updates the pending reason of a job.
type JobReason struct {
	JobID  model.JobID  `json:"job_id"`
	Reason model.Reason `json:"reason"`
}

// PlannedPreemption asks to stop a running job so that a waiting one can
// start: the victim's allocations get Desired=stop with Grace between
// SIGTERM and SIGKILL, and the job is requeued once they have ended.
type PlannedPreemption struct {
	JobID     model.JobID   `json:"job_id"`    // the victim
	AllocIDs  []string      `json:"alloc_ids"` // all its live allocations, sorted
	Preemptor model.JobID   `json:"preemptor"`
	Reason    model.Reason  `json:"reason"` // code model.ReasonPreempted; the message names the preemptor
	Grace     time.Duration `json:"grace"`  // the victim's time to checkpoint; 0: the agent's kill grace
}

// CommitPlan commits a scheduler plan: many placements in one entry
// (DESIGN.md §6: never one log entry per task), plus changed pending reasons
// and preemptions.
type CommitPlan struct {
	Time    time.Time    `json:"time"`
	Term    uint64       `json:"term"` // fencing: the leader term that made the plan
	Jobs    []PlannedJob `json:"jobs,omitempty"`
	Reasons []JobReason  `json:"reasons,omitempty"`
	// Preemptions was added after the first release; entries without it
	// preempt nothing.
	Preemptions []PlannedPreemption `json:"preemptions,omitempty"`
}

// AllocUpdate is an agent's report on one allocation.
type AllocUpdate struct {
	AllocID    string            `json:"alloc_id"`
	Node       string            `json:"node"`
	Status     model.AllocStatus `json:"status"`
	ExitCode   int               `json:"exit_code"`
	Signal     string            `json:"signal,omitempty"`
	OOMKilled  bool              `json:"oom_killed,omitempty"`
	TimedOut   bool              `json:"timed_out,omitempty"`
	Stopped    bool              `json:"stopped,omitempty"` // it ended after a stop request (added later)
	Message    string            `json:"message,omitempty"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
}

// AllocUpdates is a batch of agent reports.
type AllocUpdates struct {
	Time    time.Time     `json:"time"`
	Updates []AllocUpdate `json:"updates"`
}

// PruneJobs forgets finished jobs past their retention, with their
// allocations. A finished job whose tasks are still stopping (live
// allocations) is kept: forgetting it would free resources still in use.
type PruneJobs struct {
	IDs []model.JobID `json:"ids"`
}

// UpsertQueue creates or replaces a queue.
type UpsertQueue struct {
	Queue model.Queue `json:"queue"`
}

func (RegisterNode) Type() Type { return TypeRegisterNode }
func (NodeStatus) Type() Type   { return TypeNodeStatus }
func (DrainNode) Type() Type    { return TypeDrainNode }
func (SubmitJob) Type() Type    { return TypeSubmitJob }
func (CancelJob) Type() Type    { return TypeCancelJob }
func (CommitPlan) Type() Type   { return TypeCommitPlan }
func (AllocUpdates) Type() Type { return TypeAllocUpdates }
func (PruneJobs) Type() Type    { return TypePruneJobs }
func (UpsertQueue) Type() Type  { return TypeUpsertQueue }
func (CancelArray) Type() Type  { return TypeCancelArray }
func (SubmitJobs) Type() Type   { return TypeSubmitJobs }

// Encode turns a command into log entry bytes: version, type, JSON payload.
func Encode(c Command) ([]byte, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", c, err)
	}
	out := make([]byte, 0, len(payload)+2)
	out = append(out, encodingVersion, byte(c.Type()))
	return append(out, payload...), nil
}

// ErrBadEntry wraps every decoding failure.
var ErrBadEntry = errors.New("bad log entry")

// ErrNewerEntry marks an entry written by a newer dure: an encoding version
// or command type this binary does not know. Only dure leaders write the
// log, so such an entry means a mixed-version cluster, and skipping it would
// make this replica's state silently diverge from its peers'. It is wrapped
// together with ErrBadEntry.
var ErrNewerEntry = errors.New("written by a newer version of dure")

// Decode parses log entry bytes.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes, want at least 2", ErrBadEntry, len(b))
	}
	if b[0] > encodingVersion {
		return nil, fmt.Errorf("%w: encoding version %d, this dure knows up to %d: %w", ErrBadEntry, b[0], encodingVersion, ErrNewerEntry)
	}
	if b[0] != encodingVersion {
		return nil, fmt.Errorf("%w: encoding version %d, want %d", ErrBadEntry, b[0], encodingVersion)
	}
	var c Command
	switch Type(b[1]) {
	case TypeRegisterNode:
		c = &RegisterNode{}
	case TypeNodeStatus:
		c = &NodeStatus{}
	case TypeDrainNode:
		c = &DrainNode{}
	case TypeSubmitJob:
		c = &SubmitJob{}
	case TypeCancelJob:
		c = &CancelJob{}
	case TypeCommitPlan:
		c = &CommitPlan{}
	case TypeAllocUpdates:
		c = &AllocUpdates{}
	case TypePruneJobs:
		c = &PruneJobs{}
	case TypeUpsertQueue:
		c = &UpsertQueue{}
	case TypeCancelArray:
		c = &CancelArray{}
	case TypeSubmitJobs:
		c = &SubmitJobs{}
	case 0:
		return nil, fmt.Errorf("%w: unknown command type 0", ErrBadEntry)
	default:
		return nil, fmt.Errorf("%w: unknown command type %d: %w", ErrBadEntry, b[1], ErrNewerEntry)
	}
	if err := json.Unmarshal(b[2:], c); err != nil {
		return nil, fmt.Errorf("%w: type %d: %v", ErrBadEntry, b[1], err)
	}
	return c, nil
}
