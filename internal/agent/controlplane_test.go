package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// controlPlane is a test double of the servers' four agent endpoints, served
// over real HTTP on 127.0.0.1 and called through api.Client exactly as the
// agent calls the real servers. It keeps allocations the way the servers
// do: a state index that every change raises, blocking queries on it, and
// task updates applied to the allocations they name. The real servers are
// exercised end to end by the tests under test/.
type controlPlane struct {
	t   testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change
	index      uint64
	order      []string
	allocs     map[string]*api.Allocation
	regs       []api.NodeRegistration
	heartbeats int
	updates    []api.AllocUpdate
	requests   int // update requests
	reregister bool
	refuse     bool // answer update requests with 503, as a server without a leader does
	// mod is the index at which each allocation last changed, for watches
	// with changes=true; noChanges makes the double ignore the parameter,
	// as a server from before it did.
	mod       map[string]uint64
	noChanges bool
}

func newControlPlane(t testing.TB) *controlPlane {
	cp := &controlPlane{t: t, changed: make(chan struct{}), index: 1, allocs: map[string]*api.Allocation{}, mod: map[string]uint64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent/register", cp.register)
	mux.HandleFunc("POST /v1/agent/heartbeat", cp.heartbeat)
	mux.HandleFunc("GET /v1/agent/allocations", cp.allocations)
	mux.HandleFunc("POST /v1/agent/updates", cp.update)
	cp.srv = httptest.NewServer(mux)
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *controlPlane) URL() string { return cp.srv.URL }

// bump records a state change; cp.mu is held.
func (cp *controlPlane) bump() {
	cp.index++
	cp.notify()
}

// notify wakes waiters without a state change (heartbeats stay out of the
// servers' state); cp.mu is held.
func (cp *controlPlane) notify() {
	close(cp.changed)
	cp.changed = make(chan struct{})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (cp *controlPlane) register(w http.ResponseWriter, r *http.Request) {
	var reg api.NodeRegistration
	if err := json.NewDecoder(r.Body).Decode(&reg); err != nil || reg.Name == "" || reg.SessionID == "" {
		writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Message: "bad registration"})
		return
	}
	cp.mu.Lock()
	cp.regs = append(cp.regs, reg)
	cp.bump()
	cp.mu.Unlock()
	writeJSON(w, api.RegisterResponse{HeartbeatInterval: api.Duration(20 * time.Millisecond), HeartbeatTimeout: api.Duration(time.Second)})
}

func (cp *controlPlane) heartbeat(w http.ResponseWriter, r *http.Request) {
	var hb api.Heartbeat
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
		writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Message: err.Error()})
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.regs) == 0 || cp.regs[len(cp.regs)-1].SessionID != hb.SessionID {
		writeError(w, http.StatusNotFound, api.Error{Code: api.CodeNotFound, Message: "unknown node session"})
		return
	}
	cp.heartbeats++
	resp := api.HeartbeatResponse{Reregister: cp.reregister}
	cp.reregister = false
	cp.notify()
	writeJSON(w, resp)
}

func (cp *controlPlane) allocations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	node := q.Get("node")
	var min uint64
	if s := q.Get("index"); s != "" {
		min, _ = strconv.ParseUint(s, 10, 64)
	}
	wait := 30 * time.Second
	if s := q.Get("wait"); s != "" {
		wait, _ = time.ParseDuration(s)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	if q.Get("changes") == "true" && min > 0 && !cp.noChanges {
		cp.changes(w, r, node, min, timer.C)
		return
	}
	for {
		cp.mu.Lock()
		if cp.index > min {
			var out []api.Allocation
			for _, id := range cp.order {
				a := cp.allocs[id]
				if a.Node == node && a.Status != "exited" && a.Status != "failed" && a.Status != "lost" {
					out = append(out, *a)
				}
			}
			w.Header().Set(api.IndexHeader, strconv.FormatUint(cp.index, 10))
			cp.mu.Unlock()
			if out == nil {
				out = []api.Allocation{}
			}
			writeJSON(w, out)
			return
		}
		ch := cp.changed
		cp.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			min = 0 // answer with the current state
		case <-r.Context().Done():
			return
		}
	}
}

// changes answers a watch with changes=true as the servers do: the
// allocations of the node changed after index after, ended ones included,
// once there is one (or the wait is over).
func (cp *controlPlane) changes(w http.ResponseWriter, r *http.Request, node string, after uint64, timeout <-chan time.Time) {
	for {
		cp.mu.Lock()
		out := []api.Allocation{}
		for _, id := range cp.order {
			if a := cp.allocs[id]; a.Node == node && cp.mod[id] > after {
				out = append(out, *a)
			}
		}
		ch := cp.changed
		if len(out) > 0 {
			w.Header().Set(api.IndexHeader, strconv.FormatUint(cp.index, 10))
			w.Header().Set(api.AllocationsHeader, api.AllocationsChanges)
			cp.mu.Unlock()
			writeJSON(w, out)
			return
		}
		cp.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			cp.mu.Lock()
			w.Header().Set(api.IndexHeader, strconv.FormatUint(cp.index, 10))
			w.Header().Set(api.AllocationsHeader, api.AllocationsChanges)
			cp.mu.Unlock()
			writeJSON(w, out)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (cp *controlPlane) update(w http.ResponseWriter, r *http.Request) {
	var body api.AllocUpdates
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Message: err.Error()})
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.refuse {
		writeError(w, http.StatusServiceUnavailable, api.Error{Code: api.CodeUnavailable, Message: "no leader"})
		return
	}
	cp.requests++
	for _, u := range body.Updates {
		cp.updates = append(cp.updates, u)
		a := cp.allocs[u.AllocID]
		if a == nil || a.Status == "exited" || a.Status == "failed" || a.Status == "lost" {
			continue // stale reports are ignored, as the servers do
		}
		a.Status, a.ExitCode, a.Signal, a.OOMKilled, a.TimedOut, a.Message = u.Status, u.ExitCode, u.Signal, u.OOMKilled, u.TimedOut, u.Message
		a.StartedAt, a.FinishedAt = u.StartedAt, u.FinishedAt
		cp.mod[a.ID] = cp.index + 1 // the index bump gives this change
	}
	cp.bump()
	w.WriteHeader(http.StatusNoContent)
}

// add places an allocation (status "assigned" unless set).
func (cp *controlPlane) add(a api.Allocation) {
	if a.Status == "" {
		a.Status = "assigned"
	}
	if a.Desired == "" {
		a.Desired = "run"
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.order = append(cp.order, a.ID)
	cp.allocs[a.ID] = &a
	cp.bump()
	cp.mod[a.ID] = cp.index
}

// stop sets an allocation's desired state to stop, as a cancel or a
// preemption does.
func (cp *controlPlane) stop(id, reason string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.allocs[id].Desired = "stop"
	cp.allocs[id].DesiredReason = reason
	cp.bump()
	cp.mod[id] = cp.index
}

// preempt asks for an allocation to stop with its own grace period, as a
// preemption does.
func (cp *controlPlane) preempt(id, reason string, grace time.Duration) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.allocs[id].Desired = "stop"
	cp.allocs[id].DesiredReason = reason
	cp.allocs[id].StopGrace = api.Duration(grace)
	cp.bump()
	cp.mod[id] = cp.index
}

// markLost makes an allocation terminal without its agent, as the servers
// do when they declare a node down.
func (cp *controlPlane) markLost(id string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.allocs[id].Status = "lost"
	cp.bump()
	cp.mod[id] = cp.index
}

func (cp *controlPlane) refuseUpdates(refuse bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.refuse = refuse
}

func (cp *controlPlane) askReregister() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.reregister = true
}

// waitFor waits until cond holds on the control plane's state (checked under
// its lock after every change) and fails the test after a generous deadline.
func (cp *controlPlane) waitFor(what string, cond func(cp *controlPlane) bool) {
	cp.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		cp.mu.Lock()
		ok := cond(cp)
		ch := cp.changed
		cp.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			cp.mu.Lock()
			defer cp.mu.Unlock()
			cp.t.Fatalf("timed out waiting for %s; updates so far: %+v", what, cp.updates)
		}
	}
}

// updatesFor lists the updates received for one allocation, in order; cp.mu is held.
func (cp *controlPlane) updatesFor(id string) []api.AllocUpdate {
	var out []api.AllocUpdate
	for _, u := range cp.updates {
		if u.AllocID == id {
			out = append(out, u)
		}
	}
	return out
}

// waitEnded waits for an allocation's final report and returns all its updates.
func (cp *controlPlane) waitEnded(id string) []api.AllocUpdate {
	cp.t.Helper()
	cp.waitFor("allocation "+id+" to end", func(cp *controlPlane) bool {
		for _, u := range cp.updatesFor(id) {
			if u.Status == "exited" || u.Status == "failed" {
				return true
			}
		}
		return false
	})
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.updatesFor(id)
}

func (cp *controlPlane) waitStatus(id, status string) {
	cp.t.Helper()
	cp.waitFor("allocation "+id+" to be "+status, func(cp *controlPlane) bool {
		return cp.allocs[id].Status == status
	})
}
