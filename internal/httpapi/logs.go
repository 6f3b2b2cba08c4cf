package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// jobLogs streams a task's output from the agent of the node it ran on. With
// follow, it first waits for the task to be placed, so `dure run` can follow
// a job that is still pending.
func (h *Handler) jobLogs(w http.ResponseWriter, r *http.Request) {
	id, err := h.pathJobID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	task := 0
	if s := q.Get("task"); s != "" {
		if task, err = strconv.Atoi(s); err != nil || task < 0 {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "task", "must be a non-negative integer"))
			return
		}
	}
	stream := q.Get("stream")
	if stream == "" {
		stream = "stdout"
	}
	if stream != "stdout" && stream != "stderr" {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "stream", "must be stdout or stderr"))
		return
	}
	var offset int64
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.ParseInt(s, 10, 64); err != nil || offset < 0 {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "offset", "must be a non-negative integer"))
			return
		}
	}
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"

	var alloc *model.Allocation
	var node *model.Node
	for {
		restored := h.b.Store().Restored()
		snap := h.b.Store().Snapshot()
		j, ch := snap.JobWatch(id)
		if j == nil {
			writeError(w, notFoundJob(id))
			return
		}
		if task >= j.TaskCount() {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "task", fmt.Sprintf("job %d has %d task(s), numbered from 0 to %d; got %d", id, j.TaskCount(), j.TaskCount()-1, task)))
			return
		}
		for _, a := range snap.AllocsByJob(id) {
			if a.TaskIndex == task && (alloc == nil || a.Attempt > alloc.Attempt) {
				alloc = a
			}
		}
		if alloc != nil {
			node = snap.Node(alloc.Node)
			break
		}
		if j.State.Terminal() || !follow {
			writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("task %d of job %d has not run (job is %s)", task, id, j.State)))
			return
		}
		select {
		case <-ch:
		case <-restored:
		case <-time.After(30 * time.Second): // re-check even if no watch fires
		case <-r.Context().Done():
			return
		}
	}
	if node == nil || node.Address == "" {
		writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("node %s of allocation %s is unknown", alloc.Node, alloc.ID)))
		return
	}
	resp, ok := h.openAgentLog(w, r, id, node, alloc, stream, offset, follow)
	if !ok {
		return
	}
	defer func() {
		if resp != nil {
			resp.Body.Close()
		}
	}()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Dure-Alloc", alloc.ID)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			offset += int64(n)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == nil {
			continue
		}
		resp.Body.Close()
		if !follow {
			return
		}
		// The agent's stream ended. If the task still runs, that was the
		// agent stopping or restarting (tasks outlive it), not the task
		// ending: reconnect, from where we are, to the agent now serving
		// the node, until the servers hear the task ended.
		if resp = h.reopenAgentLog(r, id, alloc.ID, stream, offset); resp == nil {
			return
		}
	}
}

// reopenAgentLog opens alloc's followed log again from offset after the
// agent's stream ended, for as long as the allocation is live in the state:
// while its agent is away it retries (at most every second), and it returns
// nil once the allocation has ended, is gone, or the client left.
func (h *Handler) reopenAgentLog(r *http.Request, id model.JobID, allocID, stream string, offset int64) *http.Response {
	pause := 50 * time.Millisecond
	for {
		snap := h.b.Store().Snapshot()
		_, ch := snap.JobWatch(id)
		cur := snap.Alloc(allocID)
		if cur == nil || cur.Status.Terminal() {
			return nil
		}
		select {
		case <-ch: // the allocation may have ended: look again
			continue
		case <-time.After(pause):
		case <-r.Context().Done():
			return nil
		}
		pause = min(2*pause, time.Second)
		node := snap.Node(cur.Node)
		if node == nil || node.Address == "" {
			continue
		}
		u := url.URL{Scheme: "http", Host: node.Address, Path: "/v1/agent/logs/" + allocID,
			RawQuery: url.Values{"stream": {stream}, "offset": {strconv.FormatInt(offset, 10)}, "follow": {"true"}}.Encode()}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
		if err != nil {
			return nil
		}
		resp, err := h.logHTTP.Do(req)
		if err != nil {
			continue // the agent is not back yet
		}
		if resp.StatusCode == http.StatusOK {
			return resp
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil // the node has no record of the task any more
		}
	}
}

// openAgentLog asks the agent of node for alloc's log. The state has an
// allocation a moment before its agent does: until the agent has started
// the task it answers 404, so a followed log of a task still "assigned"
// waits and asks again (a plain read says the task has not started). On
// failure it has answered w and returns false.
func (h *Handler) openAgentLog(w http.ResponseWriter, r *http.Request, id model.JobID, node *model.Node, alloc *model.Allocation, stream string, offset int64, follow bool) (*http.Response, bool) {
	u := url.URL{Scheme: "http", Host: node.Address, Path: "/v1/agent/logs/" + alloc.ID}
	uq := url.Values{"stream": {stream}}
	if offset > 0 {
		uq.Set("offset", strconv.FormatInt(offset, 10))
	}
	if follow {
		uq.Set("follow", "true")
	}
	u.RawQuery = uq.Encode()
	for {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
		if err != nil {
			writeError(w, err)
			return nil, false
		}
		resp, err := h.logHTTP.Do(req)
		if err != nil {
			writeError(w, apiError(http.StatusBadGateway, api.CodeUnavailable, "", fmt.Sprintf("cannot reach the agent of node %s at %s: %v", node.Name, node.Address, err)))
			return nil, false
		}
		if resp.StatusCode == http.StatusOK {
			return resp, true
		}
		snap := h.b.Store().Snapshot()
		_, ch := snap.JobWatch(id)
		cur := snap.Alloc(alloc.ID)
		if resp.StatusCode != http.StatusNotFound || cur == nil || cur.Status != model.AllocAssigned {
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			return nil, false
		}
		resp.Body.Close()
		if !follow {
			writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("task %d of job %d has not started yet (placed on %s)", alloc.TaskIndex, id, alloc.Node)))
			return nil, false
		}
		select {
		case <-ch: // the allocation started, ended or was replaced
		case <-time.After(100 * time.Millisecond): // the agent may know the task before it reports it
		case <-r.Context().Done():
			return nil, false
		}
	}
}
