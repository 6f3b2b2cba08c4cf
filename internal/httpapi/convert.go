package httpapi

import (
	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// Translation from domain types to wire types happens here and only here.

func toAPIResources(r model.Resources) api.Resources {
	return api.Resources{MilliCPU: r.MilliCPU, MemoryBytes: r.MemoryBytes, GPUs: r.GPUs, ScratchBytes: r.ScratchBytes, Custom: r.Custom}
}

func fromAPIResources(r api.Resources) model.Resources {
	return model.Resources{MilliCPU: r.MilliCPU, MemoryBytes: r.MemoryBytes, GPUs: r.GPUs, ScratchBytes: r.ScratchBytes, Custom: r.Custom}
}

func toAPIJob(j *model.Job) api.Job {
	out := api.Job{
		ID: uint64(j.ID), Name: j.Name, Owner: j.Owner, Queue: j.Queue, Priority: j.Priority,
		Walltime: api.Duration(j.Walltime), MaxRetries: j.MaxRetries, Tasks: j.TaskCount(),
		State: string(j.State), Reason: api.Reason(j.Reason), Attempt: j.Attempt, ExitCode: j.ExitCode,
		Preemptions: j.Preemptions, PreemptedBy: uint64(j.PreemptedBy),
		SubmitTime: j.SubmitTime, StartTime: j.StartTime, EndTime: j.EndTime,
		StartedTasks: j.StartedTasks, MinTasks: j.MinTasks, Topology: j.Topology, Placement: j.Placement,
	}
	if j.ArrayParent != 0 {
		out.Array = &api.ArrayInfo{JobID: uint64(j.ArrayParent), TaskID: j.ArrayIndex, Throttle: j.ArrayThrottle}
	}
	for _, d := range j.Dependencies {
		out.Dependencies = append(out.Dependencies, api.Dependency{Type: string(d.Type), JobID: uint64(d.JobID), Array: d.Array})
	}
	for _, g := range j.Groups {
		out.Groups = append(out.Groups, api.TaskGroupSpec{
			Name: g.Name, Count: g.Count, Resources: toAPIResources(g.Resources), Command: g.Command,
			Env: g.Env, WorkDir: g.WorkDir, Constraints: g.Constraints,
		})
	}
	return out
}

func toAPIJobDetail(j *model.Job, allocs []*model.Allocation) api.Job {
	out := toAPIJob(j)
	for _, a := range allocs {
		out.Allocations = append(out.Allocations, toAPIAlloc(a))
	}
	for _, e := range j.Events {
		out.Events = append(out.Events, api.Event(e))
	}
	return out
}

func toAPIAlloc(a *model.Allocation) api.Allocation {
	return api.Allocation{
		ID: a.ID, JobID: uint64(a.JobID), Group: a.Group, TaskIndex: a.TaskIndex, Attempt: a.Attempt, Node: a.Node,
		Resources: toAPIResources(a.Resources), GPUIndices: a.GPUIndices,
		Command: a.Command, Env: a.Env, WorkDir: a.WorkDir, Walltime: api.Duration(a.Walltime),
		JobName: a.JobName, Owner: a.Owner, TaskCount: a.TaskCount, ArrayJobID: uint64(a.ArrayParent), ArrayTaskID: a.ArrayIndex,
		CreateTerm: a.CreateTerm, CreateIndex: a.CreateIndex,
		Desired: string(a.Desired), DesiredReason: a.DesiredReason, StopGrace: api.Duration(a.StopGrace),
		Status: string(a.Status), ExitCode: a.ExitCode, Signal: a.Signal, OOMKilled: a.OOMKilled, TimedOut: a.TimedOut, Stopped: a.Stopped,
		Message: a.Message, CreatedAt: a.CreatedAt, StartedAt: a.StartedAt, FinishedAt: a.FinishedAt,
	}
}

func toAPINode(n *model.Node, used model.Resources, live int) api.Node {
	out := api.Node{
		Name: n.Name, Address: n.Address, Capacity: toAPIResources(n.Capacity), Used: toAPIResources(used),
		Labels: n.Labels, Status: string(n.Status), Drain: n.Drain, DrainReason: n.DrainReason,
		StatusReason: n.StatusReason, Allocations: live, RegisteredAt: n.RegisteredAt, AgentVersion: n.AgentVersion,
	}
	for _, g := range n.GPUs {
		out.GPUs = append(out.GPUs, api.GPU(g))
	}
	switch {
	case n.Status == model.NodeDown:
		out.State = "down"
	case n.Drain && live > 0:
		out.State = "draining"
	case n.Drain:
		out.State = "drained"
	default:
		out.State = "ready"
	}
	return out
}
