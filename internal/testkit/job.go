package testkit

import (
	"fmt"
	"time"

	"github.com/durehq/dure/internal/model"
)

// JobBuilder builds a *model.Job. Resource and task methods apply to the
// current task group: the job starts with one group named "main"; Group(name)
// names that first group the first time it is called and appends a new group
// every time after.
type JobBuilder struct {
	j          model.Job
	groupNamed bool
}

func defaultGroup(name string) model.TaskGroup {
	return model.TaskGroup{
		Name:      name,
		Count:     1,
		Resources: model.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30},
		Command:   []string{"true"},
	}
}

// Job starts a pending job with the given ID: name "job<id>", owner
// "tester", the default queue, priority 0, submitted at Epoch + id seconds
// (so ID order is submit order), reason NotYetScheduled, and one group "main"
// of 1 task needing cpu=1 mem=1GiB running "true".
func Job(id model.JobID) *JobBuilder {
	submit := Epoch.Add(time.Duration(id) * time.Second)
	return &JobBuilder{j: model.Job{
		ID:         id,
		Name:       fmt.Sprintf("job%d", uint64(id)),
		Owner:      "tester",
		Queue:      model.DefaultQueue,
		State:      model.JobPending,
		Reason:     model.Reason{Code: model.ReasonNewJob, Message: "submitted; not yet scheduled"},
		SubmitTime: submit,
		Groups:     []model.TaskGroup{defaultGroup("main")},
		Events:     []model.Event{{Time: submit, Type: "submitted", Message: "job submitted"}},
	}}
}

func (b *JobBuilder) g() *model.TaskGroup { return &b.j.Groups[len(b.j.Groups)-1] }

// Group names the first group, or appends a new group with the defaults.
func (b *JobBuilder) Group(name string) *JobBuilder {
	if !b.groupNamed {
		b.groupNamed = true
		b.g().Name = name
		return b
	}
	b.j.Groups = append(b.j.Groups, defaultGroup(name))
	return b
}

// Tasks sets the current group's task count.
func (b *JobBuilder) Tasks(n int) *JobBuilder {
	nonNeg("Job.Tasks", int64(n))
	b.g().Count = n
	return b
}

// CPU sets the per-task request in whole cores.
func (b *JobBuilder) CPU(cores int) *JobBuilder {
	nonNeg("Job.CPU", int64(cores))
	b.g().Resources.MilliCPU = int64(cores) * 1000
	return b
}

// MilliCPU sets the per-task request in millicores.
func (b *JobBuilder) MilliCPU(m int64) *JobBuilder {
	nonNeg("Job.MilliCPU", m)
	b.g().Resources.MilliCPU = m
	return b
}

// Mem sets the per-task memory from a size string ("4G"); see Bytes.
func (b *JobBuilder) Mem(size string) *JobBuilder {
	b.g().Resources.MemoryBytes = Bytes(size)
	return b
}

// GPUs sets the per-task GPU count.
func (b *JobBuilder) GPUs(n int) *JobBuilder {
	nonNeg("Job.GPUs", int64(n))
	b.g().Resources.GPUs = int64(n)
	return b
}

// Scratch sets the per-task scratch disk from a size string.
func (b *JobBuilder) Scratch(size string) *JobBuilder {
	b.g().Resources.ScratchBytes = Bytes(size)
	return b
}

// Custom sets a per-task custom resource count.
func (b *JobBuilder) Custom(name string, n int64) *JobBuilder {
	nonNeg("Job.Custom", n)
	r := &b.g().Resources
	if r.Custom == nil {
		r.Custom = map[string]int64{}
	}
	r.Custom[name] = n
	return b
}

// Resources replaces the current group's per-task request entirely.
func (b *JobBuilder) Resources(r model.Resources) *JobBuilder {
	b.g().Resources = r.Copy()
	return b
}

// Constraint requires node label k=v for the current group.
func (b *JobBuilder) Constraint(k, v string) *JobBuilder {
	g := b.g()
	if g.Constraints == nil {
		g.Constraints = map[string]string{}
	}
	g.Constraints[k] = v
	return b
}

// Command sets the current group's command.
func (b *JobBuilder) Command(argv ...string) *JobBuilder {
	b.g().Command = append([]string(nil), argv...)
	return b
}

// Env sets one environment variable for the current group.
func (b *JobBuilder) Env(k, v string) *JobBuilder {
	g := b.g()
	if g.Env == nil {
		g.Env = map[string]string{}
	}
	g.Env[k] = v
	return b
}

// Name sets the job name.
func (b *JobBuilder) Name(n string) *JobBuilder { b.j.Name = n; return b }

// Owner sets the owner.
func (b *JobBuilder) Owner(o string) *JobBuilder { b.j.Owner = o; return b }

// Queue sets the queue.
func (b *JobBuilder) Queue(q string) *JobBuilder { b.j.Queue = q; return b }

// Priority sets the priority (higher runs first).
func (b *JobBuilder) Priority(p int) *JobBuilder { b.j.Priority = p; return b }

// Walltime sets the time limit.
func (b *JobBuilder) Walltime(d time.Duration) *JobBuilder { b.j.Walltime = d; return b }

// MaxRetries sets how often lost work is requeued.
func (b *JobBuilder) MaxRetries(n int) *JobBuilder { b.j.MaxRetries = n; return b }

// Submitted sets the submit time (and the time of the submission event).
func (b *JobBuilder) Submitted(t time.Time) *JobBuilder {
	b.j.SubmitTime = t
	if len(b.j.Events) > 0 {
		b.j.Events[0].Time = t
	}
	return b
}

// State sets the job state (and clears the pending reason for non-pending
// states).
func (b *JobBuilder) State(s model.JobState) *JobBuilder {
	b.j.State = s
	if s != model.JobPending {
		b.j.Reason = model.Reason{}
	}
	return b
}

// MinTasks sets the gang minimum.
func (b *JobBuilder) MinTasks(n int) *JobBuilder {
	nonNeg("Job.MinTasks", int64(n))
	b.j.MinTasks = n
	return b
}

// Topology keeps all tasks inside one value of a node label ("rack").
func (b *JobBuilder) Topology(label string) *JobBuilder { b.j.Topology = label; return b }

// Spread asks for one task per node where possible.
func (b *JobBuilder) Spread() *JobBuilder { b.j.Placement = model.PlacementSpread; return b }

// After adds a dependency on another job.
func (b *JobBuilder) After(typ model.DependencyType, job model.JobID) *JobBuilder {
	b.j.Dependencies = append(b.j.Dependencies, model.Dependency{Type: typ, JobID: job})
	return b
}

// ArrayElement makes the job element index of array parent, with at most
// throttle elements running at once (0: no limit).
func (b *JobBuilder) ArrayElement(parent model.JobID, index, throttle int) *JobBuilder {
	nonNeg("Job.ArrayElement", int64(throttle))
	b.j.ArrayParent, b.j.ArrayIndex, b.j.ArrayThrottle = parent, index, throttle
	return b
}

// Attempt sets the attempt counter.
func (b *JobBuilder) Attempt(n int) *JobBuilder { b.j.Attempt = n; return b }

// Build returns a fresh deep copy, so one builder can stamp out several jobs.
func (b *JobBuilder) Build() *model.Job { return b.j.Copy() }
