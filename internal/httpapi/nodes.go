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
