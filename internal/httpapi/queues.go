package httpapi

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/spec"
	"github.com/durehq/dure/internal/state"
)

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
	// Quota usage is per subtree: a queue's own allocations count for it and
	// for every ancestor.
	parent := map[string]string{}
	for _, q := range queues {
		parent[q.Name] = q.Parent
	}
	subtree := map[string]map[string]int64{} // queue → quota resource → amount
	nodes := map[string]*model.Node{}
	for _, n := range snap.Nodes() {
		nodes[n.Name] = n
	}
	for _, a := range snap.LiveAllocs() {
		j := snap.Job(a.JobID)
		if j == nil || loads[j.Queue] == nil {
			continue
		}
		loads[j.Queue].used = loads[j.Queue].used.Add(a.Resources)
		for q, hops := j.Queue, 0; q != "" && hops <= len(queues); q, hops = parent[q], hops+1 {
			if subtree[q] == nil {
				subtree[q] = map[string]int64{}
			}
			addQuotaUsage(subtree[q], a, nodes[a.Node])
		}
	}
	out := []api.Queue{}
	for _, q := range queues {
		l := loads[q.Name]
		v := api.Queue{QueueSpec: spec.QueueFromModel(q), Pending: l.pending, Running: l.running, Used: toAPIResources(l.used)}
		for _, qu := range q.Quotas {
			used := subtree[q.Name][qu.Resource]
			v.QuotaUsage = append(v.QuotaUsage, api.QuotaUsage{Resource: qu.Resource, Nominal: qu.Nominal, Used: used, Borrowed: max(0, used-qu.Nominal)})
		}
		out = append(out, v)
	}
	setIndex(w, snap.Index)
	writeJSON(w, http.StatusOK, out)
}

// addQuotaUsage adds an allocation to the per-quota-resource sums, both plain
// ("gpu") and flavored ("gpu/H100", from the node's "gpu.model" label or, for
// GPUs, its devices' model).
func addQuotaUsage(sums map[string]int64, a *model.Allocation, n *model.Node) {
	amounts := map[string]int64{"cpu": a.Resources.MilliCPU, "memory": a.Resources.MemoryBytes, "gpu": a.Resources.GPUs, "scratch": a.Resources.ScratchBytes}
	for k, v := range a.Resources.Custom {
		amounts[k] = v
	}
	for res, v := range amounts {
		if v == 0 {
			continue
		}
		sums[res] += v
		if flavor := nodeFlavor(n, res); flavor != "" {
			sums[res+"/"+flavor] += v
		}
	}
}

func nodeFlavor(n *model.Node, res string) string {
	if n == nil {
		return ""
	}
	if f := n.Labels[res+".model"]; f != "" {
		return f
	}
	if res == "gpu" && len(n.GPUs) > 0 {
		return n.GPUs[0].Model
	}
	return ""
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
