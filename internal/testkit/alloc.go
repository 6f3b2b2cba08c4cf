package testkit

import (
	"time"

	"github.com/durehq/dure/internal/model"
)

// AllocBuilder builds a *model.Allocation.
type AllocBuilder struct{ a model.Allocation }

// Alloc starts a running allocation of task `task` of job `job` on `node`:
// attempt 1, group "main", desired run, cpu=1 mem=1GiB (the Job defaults),
// command "true", created and started at Epoch, ID from model.AllocID.
func Alloc(job model.JobID, task int, node string) *AllocBuilder {
	nonNeg("Alloc task", int64(task))
	return &AllocBuilder{a: model.Allocation{
		ID:        model.AllocID(job, task, 1),
		JobID:     job,
		Group:     "main",
		TaskIndex: task,
		Attempt:   1,
		Node:      node,
		Resources: model.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30},
		Command:   []string{"true"},
		TaskCount: task + 1,
		Desired:   model.DesiredRun,
		Status:    model.AllocRunning,
		CreatedAt: Epoch,
		StartedAt: Epoch,
	}}
}

// CPU sets the held CPU in whole cores.
func (b *AllocBuilder) CPU(cores int) *AllocBuilder {
	nonNeg("Alloc.CPU", int64(cores))
	b.a.Resources.MilliCPU = int64(cores) * 1000
	return b
}

// MilliCPU sets the held CPU in millicores.
func (b *AllocBuilder) MilliCPU(m int64) *AllocBuilder {
	nonNeg("Alloc.MilliCPU", m)
	b.a.Resources.MilliCPU = m
	return b
}

// Mem sets the held memory from a size string.
func (b *AllocBuilder) Mem(size string) *AllocBuilder {
	b.a.Resources.MemoryBytes = Bytes(size)
	return b
}

// Scratch sets the held scratch disk from a size string.
func (b *AllocBuilder) Scratch(size string) *AllocBuilder {
	b.a.Resources.ScratchBytes = Bytes(size)
	return b
}

// Custom sets a held custom resource count.
func (b *AllocBuilder) Custom(name string, n int64) *AllocBuilder {
	nonNeg("Alloc.Custom", n)
	if b.a.Resources.Custom == nil {
		b.a.Resources.Custom = map[string]int64{}
	}
	b.a.Resources.Custom[name] = n
	return b
}

// GPUIndices sets the concrete devices held and the GPU count to match.
func (b *AllocBuilder) GPUIndices(idx ...int) *AllocBuilder {
	b.a.GPUIndices = append([]int(nil), idx...)
	b.a.Resources.GPUs = int64(len(idx))
	return b
}

// Resources replaces the held resources entirely (GPU indices unchanged).
func (b *AllocBuilder) Resources(r model.Resources) *AllocBuilder {
	b.a.Resources = r.Copy()
	return b
}

// Group sets the task group name.
func (b *AllocBuilder) Group(g string) *AllocBuilder { b.a.Group = g; return b }

// Attempt sets the attempt and rebuilds the ID.
func (b *AllocBuilder) Attempt(n int) *AllocBuilder {
	b.a.Attempt = n
	b.a.ID = model.AllocID(b.a.JobID, b.a.TaskIndex, n)
	return b
}

// Status sets the reported lifecycle status.
func (b *AllocBuilder) Status(s model.AllocStatus) *AllocBuilder { b.a.Status = s; return b }

// Desired sets what the control plane wants done with it.
func (b *AllocBuilder) Desired(d model.DesiredStatus) *AllocBuilder { b.a.Desired = d; return b }

// TaskCount sets the number of tasks in the whole job.
func (b *AllocBuilder) TaskCount(n int) *AllocBuilder { b.a.TaskCount = n; return b }

// Queue sets the queue the allocation's job is in (quota and fair share).
func (b *AllocBuilder) Queue(q string) *AllocBuilder { b.a.Queue = q; return b }

// Priority sets its job's priority (preemption).
func (b *AllocBuilder) Priority(p int) *AllocBuilder { b.a.Priority = p; return b }

// Owner sets its job's owner.
func (b *AllocBuilder) Owner(o string) *AllocBuilder { b.a.Owner = o; return b }

// Walltime sets its job's time limit.
func (b *AllocBuilder) Walltime(d time.Duration) *AllocBuilder { b.a.Walltime = d; return b }

// Started sets when it started (the zero time: not started yet).
func (b *AllocBuilder) Started(t time.Time) *AllocBuilder { b.a.StartedAt = t; return b }

// ArrayParent marks it as an element of a job array.
func (b *AllocBuilder) ArrayParent(id model.JobID) *AllocBuilder { b.a.ArrayParent = id; return b }

// Fence sets the Raft term and index of the plan that created it.
func (b *AllocBuilder) Fence(term, index uint64) *AllocBuilder {
	b.a.CreateTerm, b.a.CreateIndex, b.a.ModifyIndex = term, index, index
	return b
}

// Build returns a fresh deep copy.
func (b *AllocBuilder) Build() *model.Allocation { return b.a.Copy() }
