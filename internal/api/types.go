package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
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

	// Array makes a job array, one job per index, in Slurm's --array
	// syntax: "0-99", "1,3,5-7", "0-15:4", and "%N" to run at most N
	// elements at once ("1-1000%50"). The submission answers the array's ID.
	Array string `json:"array,omitempty"`
	// Dependencies must all be met before the job may start.
	Dependencies []DependencySpec `json:"dependencies,omitempty"`
	// MinTasks lets a job of several tasks start with its first MinTasks
	// tasks (or more) when not all fit; 0 means all tasks start together.
	MinTasks int `json:"min_tasks,omitempty"`
	// Topology is a node label key ("rack"): every task runs on nodes with
	// the same value of it.
	Topology string `json:"topology,omitempty"`
	// Placement is "pack" (the default: fill nodes) or "spread" (one task
	// per node where possible).
	Placement string `json:"placement,omitempty"`
}

// DependencySpec is one "start after" condition, as submitted.
type DependencySpec struct {
	// Type is afterok (the job succeeded), afterany (it ended) or
	// afternotok (it failed or was cancelled).
	Type string `json:"type"`
	// Job is a job ID ("12") or an array element ("12_3"). An array's ID
	// means the whole array: every element must meet the condition.
	Job string `json:"job"`
}

// Dependency is one "start after" condition of a job, resolved to a job ID.
type Dependency struct {
	Type  string `json:"type"`
	JobID uint64 `json:"job_id"`
	Array bool   `json:"array,omitempty"` // JobID is an array's: the condition covers every element
}

// ArrayInfo places a job in its array.
type ArrayInfo struct {
	JobID    uint64 `json:"job_id"`             // the array's ID (its first element's)
	TaskID   int    `json:"task_id"`            // the element's index
	Throttle int    `json:"throttle,omitempty"` // most elements running at once (0: no limit)
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
	// StartedTasks is how many tasks the latest attempt started with:
	// Tasks, or fewer (at least MinTasks) for a partial gang.
	StartedTasks int          `json:"started_tasks,omitempty"`
	MinTasks     int          `json:"min_tasks,omitempty"`
	Topology     string       `json:"topology,omitempty"`
	Placement    string       `json:"placement,omitempty"`
	Dependencies []Dependency `json:"dependencies,omitempty"`
	Array        *ArrayInfo   `json:"array,omitempty"` // set for an element of a job array

	State    string `json:"state"` // pending, running, succeeded, failed, cancelled
	Reason   Reason `json:"reason"`
	Attempt  int    `json:"attempt"`
	ExitCode int    `json:"exit_code"`
	// Preemptions counts attempts stopped to make room for other jobs;
	// they do not use up MaxRetries. PreemptedBy names the job it was
	// preempted for, from the stop until it is placed again.
	Preemptions int    `json:"preemptions,omitempty"`
	PreemptedBy uint64 `json:"preempted_by,omitempty"`

	SubmitTime time.Time `json:"submit_time"`
	StartTime  time.Time `json:"start_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`

	Allocations []Allocation `json:"allocations,omitempty"` // in GET /v1/jobs/{id} only
	Events      []Event      `json:"events,omitempty"`      // in GET /v1/jobs/{id} only
}

// Ref is how people name the job: "123_7" for element 7 of array 123,
// else its ID.
func (j *Job) Ref() string {
	if j.Array != nil {
		return JobRef{ID: j.Array.JobID, Index: j.Array.TaskID, Element: true}.String()
	}
	return strconv.FormatUint(j.ID, 10)
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
	TaskCount int               `json:"task_count"` // tasks the attempt started with

	// Set for an element of a job array.
	ArrayJobID  uint64 `json:"array_job_id,omitempty"`
	ArrayTaskID int    `json:"array_task_id,omitempty"`

	CreateTerm  uint64 `json:"create_term"`
	CreateIndex uint64 `json:"create_index"`

	Desired       string `json:"desired"` // run, stop
	DesiredReason string `json:"desired_reason,omitempty"`
	// StopGrace, with desired stop, is the time between SIGTERM and
	// SIGKILL (a preempted task's time to checkpoint); 0: the agent's
	// --kill-grace.
	StopGrace Duration `json:"stop_grace,omitempty"`

	Status     string    `json:"status"` // assigned, running, exited, failed, lost
	ExitCode   int       `json:"exit_code"`
	Signal     string    `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	TimedOut   bool      `json:"timed_out,omitempty"`
	Stopped    bool      `json:"stopped,omitempty"` // it ended after it was asked to stop
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
	Used    Resources `json:"used"` // by this queue's own live allocations (tasks being stopped included)
	// Share is the queue's weighted dominant share as fair share ranks
	// queues: 0 idle, about 1/weight after using the whole cluster for a
	// while (recent usage decays with the scheduler's half-life).
	Share float64 `json:"share"`
	// QuotaUsage has one entry per quota resource the queue's subtree
	// governs (its own quotas and its children's), sorted by resource, as
	// the scheduler computes it.
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

// QuotaUsage is one quota resource's current state for a queue.
type QuotaUsage struct {
	Resource  string `json:"resource"`
	Nominal   int64  `json:"nominal"`   // the queue's own quota (0: none of its own)
	Effective int64  `json:"effective"` // nominal plus its children's
	// BorrowingLimit and LendingLimit as configured; absent: no limit.
	BorrowingLimit *int64 `json:"borrowing_limit,omitempty"`
	LendingLimit   *int64 `json:"lending_limit,omitempty"`
	Used           int64  `json:"used"`     // by the subtree's running jobs (jobs being preempted count for nothing)
	Borrowed       int64  `json:"borrowed"` // used beyond effective: lent by cohort siblings
	Lendable       int64  `json:"lendable"` // its unused quota, up to its lending limit: what siblings may use of it (counting what they use)
	Lent           int64  `json:"lent"`     // what of its quota siblings use now (see docs/api.md for how borrowing is attributed)
	Room           int64  `json:"room"`     // how much more one of its jobs may use now
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
	Stopped    bool      `json:"stopped,omitempty"` // it ended after a stop request (SIGTERM)
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

// JobRef names a job the way people write it: a job ID ("130"), or an
// element of a job array as ARRAY_INDEX ("123_7"), as Slurm does. A bare
// array ID ("123") names job 123, which is also the array's first element;
// commands that act on whole arrays (cancel, wait, dependencies) read it as
// the whole array.
type JobRef struct {
	ID      uint64 // the job's ID, or for an element the array's
	Index   int    // the element's index when Element is set
	Element bool
}

// ErrBadJobRef is wrapped by every ParseJobRef error.
var ErrBadJobRef = errors.New("invalid job ID")

// ParseJobRef reads "130" or "123_7".
func ParseJobRef(s string) (JobRef, error) {
	id, idx, elem := strings.Cut(s, "_")
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 || id[0] == '+' {
		return JobRef{}, fmt.Errorf("%w %q: want a positive number like 12, or an array element like 12_3", ErrBadJobRef, s)
	}
	r := JobRef{ID: n}
	if elem {
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || idx[0] == '+' || idx[0] == '-' {
			return JobRef{}, fmt.Errorf("%w %q: the array index after _ must be a number 0 or more, like 12_3", ErrBadJobRef, s)
		}
		r.Index, r.Element = i, true
	}
	return r, nil
}

func (r JobRef) String() string {
	if r.Element {
		return fmt.Sprintf("%d_%d", r.ID, r.Index)
	}
	return strconv.FormatUint(r.ID, 10)
}
