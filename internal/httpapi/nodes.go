package httpapi

import (
	"fmt"
	"net/http"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// nodeUsage sums the live allocations on each node.
func nodeUsage(snap *state.Snapshot) (map[string]model.Resources, map[string]int) {
	used := map[string]model.Resources{}
	count := map[string]int{}
	for _, a := range snap.LiveAllocs() {
		used[a.Node] = used[a.Node].Add(a.Resources)
		count[a.Node]++
	}
	return used, count
}

func (h *Handler) nodeView(snap *state.Snapshot, n *model.Node, used map[string]model.Resources, count map[string]int) api.Node {
	v := toAPINode(n, used[n.Name], count[n.Name])
	v.LastSeen = h.b.LastSeen(n.Name)
	return v
}

func (h *Handler) listNodes(w http.ResponseWriter, r *http.Request) {
	snap := h.b.Store().Snapshot()
	used, count := nodeUsage(snap)
	out := []api.Node{}
	for _, n := range snap.Nodes() {
		out = append(out, h.nodeView(snap, n, used, count))
	}
	setIndex(w, snap.Index)
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) getNode(w http.ResponseWriter, r *http.Request) {
	snap := h.b.Store().Snapshot()
	n := snap.Node(r.PathValue("name"))
	if n == nil {
		writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("node %q not found", r.PathValue("name"))))
		return
	}
	used, count := nodeUsage(snap)
	setIndex(w, snap.Index)
	writeJSON(w, http.StatusOK, h.nodeView(snap, n, used, count))
}

func (h *Handler) drainNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.DrainRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Reason) > 1024 {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "reason", "must be at most 1024 bytes"))
		return
	}
	if h.b.Store().Snapshot().Node(name) == nil {
		writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("node %q not found", name)))
		return
	}
	if err := h.b.DrainNode(r.Context(), name, req.Drain, req.Reason); err != nil {
		writeError(w, err)
		return
	}
	h.getNode(w, r)
}

func (h *Handler) listQueues(w http.ResponseWriter, r *http.Request) {
	snap := h.b.Store().Snapshot()
	type load struct {
		pending, running int
		used             model.Resources
	}
	loads := map[string]*load{}
	for _, q := range snap.Queues() {
		loads[q.Name] = &load{}
	}
	for _, st := range []model.JobState{model.JobPending, model.JobRunning} {
		for _, j := range snap.JobsInState(st) {
			l := loads[j.Queue]
			if l == nil {
				continue
			}
			if st == model.JobPending {
				l.pending++
			} else {
				l.running++
			}
		}
	}
	for _, a := range snap.LiveAllocs() {
		if j := snap.Job(a.JobID); j != nil && loads[j.Queue] != nil {
			loads[j.Queue].used = loads[j.Queue].used.Add(a.Resources)
		}
	}
	out := []api.Queue{}
	for _, q := range snap.Queues() {
		l := loads[q.Name]
		out = append(out, api.Queue{Name: q.Name, Description: q.Description, Pending: l.pending, Running: l.running, Used: toAPIResources(l.used)})
	}
	setIndex(w, snap.Index)
	writeJSON(w, http.StatusOK, out)
}
