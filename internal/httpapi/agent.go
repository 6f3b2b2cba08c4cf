package httpapi

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
)

// nodeNameRE checks the characters; the length is checked apart, because a
// bounded repetition like {0,252} compiles into a program hundreds of states
// long at init — a cost every process start of the binary pays.
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// MaxUpdateBatch bounds one agent report.
const MaxUpdateBatch = 10_000

func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	var reg api.NodeRegistration
	if err := decode(w, r, &reg); err != nil {
		writeError(w, err)
		return
	}
	if err := validateRegistration(&reg); err != nil {
		writeError(w, err)
		return
	}
	n := model.Node{
		Name: reg.Name, Address: reg.Address, Capacity: fromAPIResources(reg.Capacity),
		Labels: reg.Labels, AgentVersion: reg.AgentVersion, SessionID: reg.SessionID,
	}
	for _, g := range reg.GPUs {
		n.GPUs = append(n.GPUs, model.GPU(g))
	}
	if err := h.b.RegisterNode(r.Context(), n); err != nil {
		writeError(w, err)
		return
	}
	interval, timeout := h.b.HeartbeatConfig()
	writeJSON(w, http.StatusOK, api.RegisterResponse{HeartbeatInterval: api.Duration(interval), HeartbeatTimeout: api.Duration(timeout)})
}

func validateRegistration(reg *api.NodeRegistration) error {
	bad := func(field, msg string) error { return apiError(http.StatusBadRequest, api.CodeInvalid, field, msg) }
	switch {
	case len(reg.Name) > 253 || !nodeNameRE.MatchString(reg.Name):
		return bad("name", "must be 1-253 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
	case reg.Address == "" || len(reg.Address) > 256:
		return bad("address", "must be the agent's host:port (at most 256 bytes)")
	case reg.SessionID == "" || len(reg.SessionID) > 128:
		return bad("session_id", "must be 1-128 bytes")
	case reg.Capacity.MilliCPU <= 0:
		return bad("capacity.millicpu", "must be positive")
	case reg.Capacity.MemoryBytes <= 0:
		return bad("capacity.memory_bytes", "must be positive")
	case reg.Capacity.GPUs < 0 || reg.Capacity.ScratchBytes < 0:
		return bad("capacity", "gpus and scratch_bytes must not be negative")
	case int64(len(reg.GPUs)) != reg.Capacity.GPUs:
		return bad("gpus", fmt.Sprintf("lists %d devices but capacity.gpus is %d", len(reg.GPUs), reg.Capacity.GPUs))
	case len(reg.Labels) > 64:
		return bad("labels", "at most 64 labels")
	}
	seen := map[int]bool{}
	for i, g := range reg.GPUs {
		if g.Index < 0 || seen[g.Index] {
			return bad(fmt.Sprintf("gpus[%d].index", i), "must be a non-negative index, unique on the node")
		}
		seen[g.Index] = true
	}
	for k, v := range reg.Labels {
		if k == "" || len(k) > 253 || len(v) > 253 {
			return bad("labels."+k, "keys must be 1-253 bytes and values at most 253")
		}
	}
	return nil
}

func (h *Handler) heartbeat(w http.ResponseWriter, r *http.Request) {
	var hb api.Heartbeat
	if err := decode(w, r, &hb); err != nil {
		writeError(w, err)
		return
	}
	if hb.Name == "" {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "name", "is required"))
		return
	}
	re, err := h.b.Heartbeat(hb.Name, hb.SessionID)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.HeartbeatResponse{Reregister: re})
}

func (h *Handler) nodeAllocs(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if node == "" {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "node", "is required"))
		return
	}
	index, wait, err := watchParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	// changes=true with an index: only what changed after it (agents keep
	// the rest), so a busy node's watch costs its changes, not its list.
	changes := false
	if s := r.URL.Query().Get("changes"); s != "" {
		if changes, err = strconv.ParseBool(s); err != nil {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "changes", "must be true or false"))
			return
		}
	}
	changes = changes && index > 0
	var out []api.Allocation
	var snapIndex uint64
	err = h.block(r.Context(), index, wait, func() (uint64, watchChans, error) {
		snap := h.b.Store().Snapshot()
		snapIndex = snap.Index
		var allocs []*model.Allocation
		var modified uint64
		var ch <-chan struct{}
		if changes {
			allocs, modified, ch = snap.AllocChangesOnNode(node, index)
		} else {
			allocs, modified, ch = snap.LiveAllocsByNode(node)
		}
		out = out[:0]
		for _, a := range allocs {
			out = append(out, toAPIAlloc(a))
		}
		snapIndex = max(snapIndex, modified)
		return modified, watchChans{ch}, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if out == nil {
		out = []api.Allocation{}
	}
	setIndex(w, snapIndex)
	if changes {
		w.Header().Set(api.AllocationsHeader, api.AllocationsChanges)
	} else {
		w.Header().Set(api.AllocationsHeader, api.AllocationsAll)
	}
	writeJSON(w, http.StatusOK, out)
}

var updateStatuses = map[string]model.AllocStatus{
	"running": model.AllocRunning, "exited": model.AllocExited, "failed": model.AllocFailed,
}

func (h *Handler) allocUpdates(w http.ResponseWriter, r *http.Request) {
	var in api.AllocUpdates
	if err := decode(w, r, &in); err != nil {
		writeError(w, err)
		return
	}
	if len(in.Updates) > MaxUpdateBatch {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "updates", fmt.Sprintf("at most %d updates per request", MaxUpdateBatch)))
		return
	}
	ups := make([]fsm.AllocUpdate, 0, len(in.Updates))
	for i, u := range in.Updates {
		st, ok := updateStatuses[u.Status]
		if !ok {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, fmt.Sprintf("updates[%d].status", i), "must be running, exited or failed"))
			return
		}
		if u.AllocID == "" || u.Node == "" {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, fmt.Sprintf("updates[%d]", i), "alloc_id and node are required"))
			return
		}
		if len(u.Message) > 4096 {
			u.Message = u.Message[:4096]
		}
		ups = append(ups, fsm.AllocUpdate{
			AllocID: u.AllocID, Node: u.Node, Status: st, ExitCode: u.ExitCode, Signal: u.Signal,
			OOMKilled: u.OOMKilled, TimedOut: u.TimedOut, Stopped: u.Stopped, Message: u.Message,
			StartedAt: u.StartedAt.UTC(), FinishedAt: u.FinishedAt.UTC(),
		})
	}
	if len(ups) > 0 {
		if err := h.b.UpdateAllocs(r.Context(), ups); err != nil {
			writeError(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
