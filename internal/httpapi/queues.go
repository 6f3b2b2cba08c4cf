package httpapi

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/spec"
	"github.com/durehq/dure/internal/state"
)

// listQueues answers GET /v1/queues: each configured queue with its job
// counts, what its own live allocations hold, and its quota usage and fair
// share exactly as the scheduler computes them (sched.Queues) from the
// same snapshot.
func (h *Handler) listQueues(w http.ResponseWriter, r *http.Request) {
	snap := h.b.Store().Snapshot()
	queues := snap.Queues()
	type load struct {
		pending, running int
		used             model.Resources
	}
	loads := map[string]*load{}
	for _, q := range queues {
		loads[q.Name] = &load{}
	}
	for _, st := range []model.JobState{model.JobPending, model.JobRunning} {
		for _, j := range snap.JobsInState(st) {
			if l := loads[j.Queue]; l != nil && st == model.JobPending {
				l.pending++
			} else if l != nil {
				l.running++
			}
		}
	}
	for _, a := range snap.LiveAllocs() {
		if j := snap.Job(a.JobID); j != nil && loads[j.Queue] != nil {
			loads[j.Queue].used = loads[j.Queue].used.Add(a.Resources)
		}
	}
	status := map[string]sched.QueueStatus{}
	for _, st := range h.b.QueueStatus(snap) {
		status[st.Name] = st
	}
	out := []api.Queue{}
	for _, q := range queues {
		l := loads[q.Name]
		st := status[q.Name]
		v := api.Queue{QueueSpec: spec.QueueFromModel(q), Pending: l.pending, Running: l.running, Used: toAPIResources(l.used), Share: st.Share}
		for _, res := range st.Resources {
			v.QuotaUsage = append(v.QuotaUsage, toAPIQuotaUsage(res))
		}
		out = append(out, v)
	}
	setIndex(w, snap.Index)
	writeJSON(w, http.StatusOK, out)
}

func toAPIQuotaUsage(r sched.QueueResource) api.QuotaUsage {
	limit := func(v int64) *int64 {
		if v < 0 {
			return nil
		}
		return &v
	}
	return api.QuotaUsage{
		Resource: r.Resource, Nominal: r.Nominal, Effective: r.Effective,
		BorrowingLimit: limit(r.BorrowingLimit), LendingLimit: limit(r.LendingLimit),
		Used: r.Used, Borrowed: r.Borrowed, Lendable: r.Lendable, Lent: r.Lent, Room: r.Room,
	}
}

func (h *Handler) putQueue(w http.ResponseWriter, r *http.Request) {
	var q api.QueueSpec
	if err := decode(w, r, &q); err != nil {
		writeError(w, err)
		return
	}
	if q.Name == "" {
		q.Name = r.PathValue("name")
	}
	if q.Name != r.PathValue("name") {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "name", fmt.Sprintf("%q does not match the queue %q in the path", q.Name, r.PathValue("name"))))
		return
	}
	if err := spec.ValidateQueue(&q); err != nil {
		writeError(w, err)
		return
	}
	if err := checkQueueTree(h.b.Store().Snapshot(), &q); err != nil {
		writeError(w, err)
		return
	}
	if err := h.b.UpsertQueue(r.Context(), spec.QueueToModel(&q)); err != nil {
		writeError(w, err)
		return
	}
	h.listQueues(w, r)
}

// checkQueueTree refuses a parent that does not exist or would make a cycle.
func checkQueueTree(snap *state.Snapshot, q *api.QueueSpec) error {
	if q.Parent == "" {
		return nil
	}
	if snap.Queue(q.Parent) == nil {
		return apiError(http.StatusBadRequest, api.CodeInvalid, "parent", fmt.Sprintf("queue %q does not exist", q.Parent))
	}
	parents := map[string]string{}
	for _, e := range snap.Queues() {
		parents[e.Name] = e.Parent
	}
	parents[q.Name] = q.Parent
	if c := spec.QueueCycle(parents, q.Name); c != "" {
		return apiError(http.StatusBadRequest, api.CodeInvalid, "parent", "queues would form a cycle: "+c)
	}
	return nil
}

// mayUseQueue enforces a queue's members list at submission.
func mayUseQueue(q *model.Queue, owner string) error {
	if len(q.Members) == 0 || slices.Contains(q.Members, owner) {
		return nil
	}
	return apiError(http.StatusForbidden, api.CodeForbidden, "queue", fmt.Sprintf("user %q is not a member of queue %q", owner, q.Name))
}
