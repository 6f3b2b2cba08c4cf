package model

import "time"

// DefaultQueue is the queue jobs go to when they name none.
const DefaultQueue = "default"

// Queue is a named queue jobs are submitted to, and a node in the queue tree.
//
// Queues form a forest through Parent. A queue with children is a *cohort*:
// its children lend each other their unused quota. Quotas are per resource
// (see Quota.Resource for the names) and govern a queue's whole subtree:
// the usage of a queue is what its own running jobs hold plus what its
// descendants hold. A queue with no quota for a resource anywhere in its
// subtree is not limited in that resource by itself (only by its ancestors
// and the cluster), so a queue with no Quotas at all, like the default queue,
// is unlimited. See internal/sched/README.md for the arithmetic.
type Queue struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parent names the cohort (parent queue); "" for a root.
	Parent string `json:"parent,omitempty"`
	// Weight is the fair-share weight against sibling queues; 0 means 1.
	Weight float64 `json:"weight,omitempty"`
	// Quotas are the per-resource limits, at most one per Resource.
	Quotas []Quota `json:"quotas,omitempty"`
	// DefaultWalltime is the walltime of this queue's jobs that set none:
	// their tasks are stopped at it, and backfill plans with it. 0: such
	// jobs have no limit, and the scheduler plans with its own default.
	DefaultWalltime time.Duration `json:"default_walltime,omitempty"`
	// Members are the users allowed to submit; empty: anyone. Enforced at
	// submission by the API layer; the scheduler does not look at it.
	Members []string `json:"members,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Quota limits one resource of a queue's subtree.
type Quota struct {
	// Resource is "cpu" (millicores), "memory" (bytes), "gpu" (devices),
	// "scratch" (bytes), a custom resource name, or a flavored resource
	// "<resource>/<flavor>" such as "gpu/H100": the amount of that resource
	// on nodes labelled "<resource>.model=<flavor>" (for GPUs, a node without
	// the label takes its flavor from its first device's Model).
	Resource string `json:"resource"`
	// Nominal is the amount guaranteed to the queue: it can always get it
	// back from cohort siblings that borrowed it (by preemption).
	Nominal int64 `json:"nominal"`
	// BorrowingLimit caps how far above Nominal the queue may go by using
	// siblings' unused quota; nil: no cap beyond what the cohort can lend.
	BorrowingLimit *int64 `json:"borrowing_limit,omitempty"`
	// LendingLimit caps how much of the queue's unused Nominal siblings may
	// borrow; nil: all of it.
	LendingLimit *int64 `json:"lending_limit,omitempty"`
}

// QuotaFor returns the queue's quota for a resource name, or nil.
func (q *Queue) QuotaFor(resource string) *Quota {
	for i := range q.Quotas {
		if q.Quotas[i].Resource == resource {
			return &q.Quotas[i]
		}
	}
	return nil
}

// EffectiveWeight is Weight, or 1 when unset or not positive.
func (q *Queue) EffectiveWeight() float64 {
	if q.Weight > 0 {
		return q.Weight
	}
	return 1
}

// WalltimeLimit is the walltime a job of this queue is stopped at: its own
// (own, if set), else the queue's DefaultWalltime (as Slurm applies a
// partition's DefaultTime), else none (0). q may be nil (no such queue).
// The server holds allocations to it and the simulator holds trace jobs to
// it; the scheduler plans a job that has none with its own default.
func (q *Queue) WalltimeLimit(own time.Duration) time.Duration {
	if own > 0 || q == nil {
		return own
	}
	return q.DefaultWalltime
}

// Copy returns a deep copy.
func (q *Queue) Copy() *Queue {
	c := *q
	c.Quotas = make([]Quota, len(q.Quotas))
	for i, qu := range q.Quotas {
		c.Quotas[i] = qu
		if qu.BorrowingLimit != nil {
			v := *qu.BorrowingLimit
			c.Quotas[i].BorrowingLimit = &v
		}
		if qu.LendingLimit != nil {
			v := *qu.LendingLimit
			c.Quotas[i].LendingLimit = &v
		}
	}
	if q.Quotas == nil {
		c.Quotas = nil
	}
	c.Members = append([]string(nil), q.Members...)
	return &c
}
