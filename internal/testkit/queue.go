package testkit

import (
	"time"

	"github.com/durehq/dure/internal/model"
)

// QueueBuilder builds a *model.Queue.
type QueueBuilder struct{ q model.Queue }

// Queue builds a plain queue with the given name: a root, no quotas.
func Queue(name string) *model.Queue { return &model.Queue{Name: name} }

// NewQueue starts a root queue with the given name, weight 1 (unset) and no
// quotas: unlimited.
func NewQueue(name string) *QueueBuilder { return &QueueBuilder{q: model.Queue{Name: name}} }

// Parent puts the queue under a cohort.
func (b *QueueBuilder) Parent(p string) *QueueBuilder { b.q.Parent = p; return b }

// Weight sets the fair-share weight.
func (b *QueueBuilder) Weight(w float64) *QueueBuilder { b.q.Weight = w; return b }

// Quota adds a nominal quota for a resource key ("cpu" in millicores,
// "memory" in bytes, "gpu", "gpu/H100", …).
func (b *QueueBuilder) Quota(resource string, nominal int64) *QueueBuilder {
	b.q.Quotas = append(b.q.Quotas, model.Quota{Resource: resource, Nominal: nominal})
	return b
}

// Borrow sets the borrowing limit of the last quota added.
func (b *QueueBuilder) Borrow(limit int64) *QueueBuilder {
	b.last("Queue.Borrow").BorrowingLimit = &limit
	return b
}

// Lend sets the lending limit of the last quota added.
func (b *QueueBuilder) Lend(limit int64) *QueueBuilder {
	b.last("Queue.Lend").LendingLimit = &limit
	return b
}

func (b *QueueBuilder) last(method string) *model.Quota {
	if len(b.q.Quotas) == 0 {
		panic("testkit: " + method + ": call Quota first")
	}
	return &b.q.Quotas[len(b.q.Quotas)-1]
}

// DefaultWalltime sets the walltime assumed for jobs that set none.
func (b *QueueBuilder) DefaultWalltime(d time.Duration) *QueueBuilder {
	b.q.DefaultWalltime = d
	return b
}

// Members sets the users allowed to submit.
func (b *QueueBuilder) Members(users ...string) *QueueBuilder {
	b.q.Members = append([]string(nil), users...)
	return b
}

// Build returns a fresh deep copy.
func (b *QueueBuilder) Build() *model.Queue { return b.q.Copy() }
