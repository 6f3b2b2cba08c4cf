package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// Duration is a time.Duration that travels as a Go duration string ("1h30m").
// Decoding also accepts a plain number of seconds.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reports a bad value as a *json.UnmarshalTypeError, so that
// the decoder adds the field's path ("walltime") to the error.
func (d *Duration) UnmarshalJSON(b []byte) error {
	bad := func(what string) error {
		return &json.UnmarshalTypeError{Value: what, Type: reflect.TypeOf(Duration(0))}
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return bad(fmt.Sprintf("string %q", s))
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return bad(string(b))
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// Resources is a per-task resource request or a node's capacity.
type Resources struct {
	MilliCPU     int64            `json:"millicpu,omitempty"`
	MemoryBytes  int64            `json:"memory_bytes,omitempty"`
	GPUs         int64            `json:"gpus,omitempty"`
	ScratchBytes int64            `json:"scratch_bytes,omitempty"`
	Custom       map[string]int64 `json:"custom,omitempty"`
}

// JobSpec is what a user submits. internal/spec validates it and turns YAML
// job files and sbatch scripts into it.
type JobSpec struct {
	Name       string          `json:"name,omitempty"`
	Queue      string          `json:"queue,omitempty"`
	Priority   int             `json:"priority,omitempty"`
	Walltime   Duration        `json:"walltime,omitempty"`
	MaxRetries int             `json:"max_retries,omitempty"`
	Groups     []TaskGroupSpec `json:"groups"`
	// Owner defaults to the submitting user as the CLI sees it.
	Owner string `json:"owner,omitempty"`
	// IdempotencyKey makes a retried submission return the first job's ID
	// instead of creating a second job.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// TaskGroupSpec is a set of identical tasks.
type TaskGroupSpec struct {
	Name        string            `json:"name,omitempty"`
	Count       int               `json:"count,omitempty"` // default 1
	Resources   Resources         `json:"resources"`
	Command     []string          `json:"command"`
	Env         map[string]string `json:"env,omitempty"`
	WorkDir     string            `json:"workdir,omitempty"`
	Constraints map[string]string `json:"constraints,omitempty"`
}

// SubmitResponse answers POST /v1/jobs.
type SubmitResponse struct {
	ID uint64 `json:"id"`
}

// SubmitBatch is the body of POST /v1/jobs:batch: up to 1000 jobs, all
// accepted or none.
type SubmitBatch struct {
	Jobs []JobSpec `json:"jobs"`
}

// SubmitBatchResponse answers a batch with the jobs' IDs, in order.
type SubmitBatchResponse struct {
	IDs []uint64 `json:"ids"`
}

// Reason explains a decision with a stable code and a message for people.
type Reason struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Event is one line of a job's history.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Message string    `json:"message"`
}

// Job is a job as clients see it.
type Job struct {
	ID         uint64          `json:"id"`
	Name       string          `json:"name"`
	Owner      string          `json:"owner"`
	Queue      string          `json:"queue"`
	Priority   int             `json:"priority"`
	Walltime   Duration        `json:"walltime"`
	MaxRetries int             `json:"max_retries"`
	Groups     []TaskGroupSpec `json:"groups"`
	Tasks      int             `json:"tasks"`

	State    string `json:"state"` // pending, running, succeeded, failed, cancelled
	Reason   Reason `json:"reason"`
	Attempt  int    `json:"attempt"`
	ExitCode int    `json:"exit_code"`

	SubmitTime time.Time `json:"submit_time"`
	StartTime  time.Time `json:"start_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`

	Allocations []Allocation `json:"allocations,omitempty"` // in GET /v1/jobs/{id} only
	Events      []Event      `json:"events,omitempty"`      // in GET /v1/jobs/{id} only
}

// Terminal reports whether the job's state is final.
func (j *Job) Terminal() bool {
	return j.State == "succeeded" || j.State == "failed" || j.State == "cancelled"
}

// Allocation is one task placed on one node.
type Allocation struct {
	ID         string    `json:"id"`
	JobID      uint64    `json:"job_id"`
	Group      string    `json:"group"`
	TaskIndex  int       `json:"task_index"`
	Attempt    int       `json:"attempt"`
	Node       string    `json:"node"`
	Resources  Resources `json:"resources"`
	GPUIndices []int     `json:"gpu_indices,omitempty"`

	Command   []string          `json:"command"`
	Env       map[string]string `json:"env,omitempty"`
	WorkDir   string            `json:"workdir,omitempty"`
	Walltime  Duration          `json:"walltime"`
	JobName   string            `json:"job_name"`
	Owner     string            `json:"owner"`
	TaskCount int               `json:"task_count"`

	CreateTerm  uint64 `json:"create_term"`
	CreateIndex uint64 `json:"create_index"`

	Desired       string `json:"desired"` // run, stop
	DesiredReason string `json:"desired_reason,omitempty"`

	Status     string    `json:"status"` // assigned, running, exited, failed, lost
	ExitCode   int       `json:"exit_code"`
	Signal     string    `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	TimedOut   bool      `json:"timed_out,omitempty"`
	Message    string    `json:"message,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// GPU is one device on a node.
type GPU struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid,omitempty"`
	Model       string `json:"model,omitempty"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
}

// Node is a worker as clients see it.
type Node struct {
	Name     string            `json:"name"`
	Address  string            `json:"address"`
	Capacity Resources         `json:"capacity"`
	Used     Resources         `json:"used"` // by live allocations
	GPUs     []GPU             `json:"gpus,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// State is one word for people: ready, draining (drain set, work still
	// running), drained (drain set, idle) or down.
	State        string    `json:"state"`
	Status       string    `json:"status"` // ready, down
	Drain        bool      `json:"drain"`
	DrainReason  string    `json:"drain_reason,omitempty"`
	StatusReason string    `json:"status_reason,omitempty"`
	Allocations  int       `json:"allocations"` // live ones
	RegisteredAt time.Time `json:"registered_at"`
	LastSeen     time.Time `json:"last_seen,omitzero"` // as known to the server answering
	AgentVersion string    `json:"agent_version,omitempty"`
}

// Queue is a queue as clients see it.
type Queue struct {
	QueueSpec
	Pending int       `json:"pending"`
	Running int       `json:"running"`
	Used    Resources `json:"used"` // by this queue's own running jobs
	// Quotas' state, one per configured quota: usage of the queue's whole
	// subtree and how much of it is borrowed beyond the nominal quota.
	QuotaUsage []QuotaUsage `json:"quota_usage,omitempty"`
}

// QueueSpec configures a queue (PUT /v1/queues/{name}, or the server's
// --queues file). Queues form a tree through Parent; a queue with children
// is a cohort whose members lend each other unused quota.
type QueueSpec struct {
	Name            string      `json:"name"`
	Description     string      `json:"description,omitempty"`
	Parent          string      `json:"parent,omitempty"`
	Weight          float64     `json:"weight,omitempty"` // fair-share weight against siblings; 0 means 1
	Quotas          []QuotaSpec `json:"quotas,omitempty"`
	DefaultWalltime Duration    `json:"default_walltime,omitempty"`
	Members         []string    `json:"members,omitempty"` // who may submit; empty: anyone
}

// QuotaSpec limits one resource of a queue's subtree. Resource is "cpu"
// (millicores), "memory" (bytes), "gpu", "scratch" (bytes), a custom
// resource, or a flavored one such as "gpu/H100".
type QuotaSpec struct {
	Resource       string `json:"resource"`
	Nominal        int64  `json:"nominal"`
	BorrowingLimit *int64 `json:"borrowing_limit,omitempty"`
	LendingLimit   *int64 `json:"lending_limit,omitempty"`
}

// QuotaUsage is one quota's current state.
type QuotaUsage struct {
	Resource string `json:"resource"`
	Nominal  int64  `json:"nominal"`
	Used     int64  `json:"used"`     // by the queue's subtree
	Borrowed int64  `json:"borrowed"` // used beyond nominal
}

// QueueFile is the server's --queues file and `dure queue apply`'s input.
type QueueFile struct {
	Queues []QueueSpec `json:"queues"`
}

// DrainRequest is the body of POST /v1/nodes/{name}/drain.
type DrainRequest struct {
	Drain  bool   `json:"drain"`
	Reason string `json:"reason,omitempty"`
}

// NodeRegistration is what an agent sends when it starts (POST /v1/agent/register).
type NodeRegistration struct {
	Name         string            `json:"name"`
	Address      string            `json:"address"`
	Capacity     Resources         `json:"capacity"`
	GPUs         []GPU             `json:"gpus,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	SessionID    string            `json:"session_id"`
}

// RegisterResponse answers a registration.
type RegisterResponse struct {
	// HeartbeatInterval is how often the agent must heartbeat; missing
	// HeartbeatTimeout worth of them marks the node down.
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	HeartbeatTimeout  Duration `json:"heartbeat_timeout"`
}

// Heartbeat is the body of POST /v1/agent/heartbeat.
type Heartbeat struct {
	Name      string `json:"name"`
	SessionID string `json:"session_id"`
}

// HeartbeatResponse answers a heartbeat.
type HeartbeatResponse struct {
	// Reregister asks the agent to register again (the server does not know
	// the node, or thinks it is down).
	Reregister bool `json:"reregister,omitempty"`
}

// AllocUpdate is one task's state change, reported by its agent.
type AllocUpdate struct {
	AllocID    string    `json:"alloc_id"`
	Node       string    `json:"node"`
	Status     string    `json:"status"` // running, exited, failed
	ExitCode   int       `json:"exit_code"`
	Signal     string    `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	TimedOut   bool      `json:"timed_out,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// AllocUpdates is the body of POST /v1/agent/updates: a batch.
type AllocUpdates struct {
	Updates []AllocUpdate `json:"updates"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field is the JSON path of the offending input ("groups[0].resources.gpus").
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// Error codes. Stable; append only.
const (
	CodeInvalid     = "invalid"     // 400: bad input; Field says where
	CodeNotFound    = "not_found"   // 404
	CodeConflict    = "conflict"    // 409: e.g. cancel of a finished job
	CodeTooLarge    = "too_large"   // 413: body over the limit
	CodeUnavailable = "unavailable" // 503: no leader, shutting down
	CodeInternal    = "internal"    // 500
	CodeUnsupported = "unsupported" // 415/405
	CodeForbidden   = "forbidden"   // 403: e.g. not a member of the queue
	CodeNoSpace     = "no_space"    // 507: the server's disk is full
)

// IndexHeader carries the state index of a read; pass it back as ?index= to
// block until something newer exists.
const IndexHeader = "X-Dure-Index"

// AllocationsHeader says what an allocation watch with changes=true
// answered: AllocationsAll (every live allocation of the node: the answer
// to index 0) or AllocationsChanges (every allocation of the node, live or
// ended, changed after the index asked for). A server that does not know
// the parameter sends no header and the whole live list.
const (
	AllocationsHeader  = "X-Dure-Allocations"
	AllocationsAll     = "all"
	AllocationsChanges = "changes"
)

// Explanation answers GET /v1/jobs/{id}/explain: why a pending job waits,
// when it is expected to start, and what would let it start sooner.
type Explanation struct {
	JobID          uint64        `json:"job_id"`
	StartsNow      bool          `json:"starts_now"`
	Reason         Reason        `json:"reason"`
	EstimatedStart time.Time     `json:"estimated_start,omitzero"` // zero: cannot be estimated
	Sooner         []Alternative `json:"sooner,omitempty"`
}

// Alternative is one change to the job and the start it would get.
type Alternative struct {
	Change string    `json:"change"`
	Start  time.Time `json:"start"`
}
