package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// This file holds a test double of the dure HTTP API: a real HTTP server on
// 127.0.0.1 that implements the endpoints the CLI calls, exactly as
// api.Client calls them, over an in-memory job table that tests drive. The
// real server is exercised by the end-to-end tests in test/.

// t0 is the fixed "now" of every test: tables and detail views render
// relative times against it.
var t0 = time.Date(2025, 3, 1, 14, 0, 0, 0, time.UTC)

type logKey struct {
	job    uint64
	task   int
	stream string
}

type logBuf struct {
	data []byte
	done bool // the task ended: a followed stream ends after the data
}

type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	index    uint64
	changed  chan struct{} // closed and replaced on every change
	nextID   uint64
	jobs     map[uint64]*api.Job
	specs    []api.JobSpec // every accepted submission, in order
	nodes    map[string]*api.Node
	queues   []api.Queue
	status   api.Status
	logs     map[logKey]*logBuf
	listReqs []string // raw query of every GET /v1/jobs
	// failWatches is how many more blocking job reads answer 503, as a
	// server without a leader does.
	failWatches int
	// submitErr, when set, answers every submission.
	submitErr *api.Error
	// onSubmit runs (in its own goroutine) after each accepted submission.
	onSubmit func(id uint64)
	// batches are the sizes of the batch submissions received.
	batches []int
	// waiting gets a value each time a blocking query or a followed log
	// stream starts to wait for a change: tests change state after it, so
	// they know the CLI saw the state before.
	waiting chan string
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{
		t: t, index: 1, changed: make(chan struct{}), nextID: 1,
		jobs: map[uint64]*api.Job{}, nodes: map[string]*api.Node{}, logs: map[logKey]*logBuf{},
		waiting: make(chan string, 1000),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", f.submit)
	mux.HandleFunc("POST /v1/jobs:batch", f.submitBatch)
	mux.HandleFunc("GET /v1/jobs", f.listJobs)
	mux.HandleFunc("GET /v1/jobs/{id}", f.getJob)
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", f.cancel)
	mux.HandleFunc("GET /v1/jobs/{id}/logs", f.getLogs)
	mux.HandleFunc("GET /v1/nodes", f.listNodes)
	mux.HandleFunc("GET /v1/nodes/{name}", f.getNode)
	mux.HandleFunc("POST /v1/nodes/{name}/drain", f.drain)
	mux.HandleFunc("GET /v1/queues", f.listQueues)
	mux.HandleFunc("GET /v1/status", f.getStatus)
	f.srv = httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// bump records a change: blocking queries wake up. Callers hold f.mu.
func (f *fakeServer) bump() {
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

// addJob stores a job as the server would list it.
func (f *fakeServer) addJob(j api.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[j.ID] = &j
	if j.ID >= f.nextID {
		f.nextID = j.ID + 1
	}
	f.bump()
}

// update changes a job under the lock and wakes watchers.
func (f *fakeServer) update(id uint64, fn func(j *api.Job)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.jobs[id])
	f.bump()
}

// appendLog adds output of a task; done ends followed streams.
func (f *fakeServer) appendLog(id uint64, task int, stream, data string, done bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := logKey{id, task, stream}
	b := f.logs[k]
	if b == nil {
		b = &logBuf{}
		f.logs[k] = b
	}
	b.data = append(b.data, data...)
	b.done = b.done || done
	f.bump()
}

func (f *fakeServer) submitted() []api.JobSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.JobSpec(nil), f.specs...)
}

func (f *fakeServer) job(id uint64) api.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.jobs[id]
}

func writeJSONResp(w http.ResponseWriter, idx uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	if idx > 0 {
		w.Header().Set(api.IndexHeader, strconv.FormatUint(idx, 10))
	}
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, e api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e)
}

// block implements ?index=N&wait=D: return once the state index passed N.
func (f *fakeServer) block(r *http.Request) {
	q := r.URL.Query()
	idx, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	if idx == 0 {
		return
	}
	wait := 5 * time.Minute
	if d, err := time.ParseDuration(q.Get("wait")); err == nil {
		wait = d
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		f.mu.Lock()
		cur, ch := f.index, f.changed
		f.mu.Unlock()
		if cur > idx {
			return
		}
		f.signalWaiting(r.URL.Path)
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) signalWaiting(what string) {
	select {
	case f.waiting <- what:
	default:
	}
}

// awaitWaiting blocks until a request whose path starts with prefix waits
// for a change.
func (f *fakeServer) awaitWaiting(prefix string) {
	f.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case w := <-f.waiting:
			if strings.HasPrefix(w, prefix) {
				return
			}
		case <-timeout:
			f.t.Fatalf("no request for %s waited within 30s", prefix)
		}
	}
}

// lockForSubmit decodes a submission's body into v, refusing unknown
// fields as the servers do, and locks f.mu. It answers 400 and returns
// false (f.mu not held) for a body that does not decode or while
// submitErr is set.
func (f *fakeServer) lockForSubmit(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, 400, api.Error{Code: api.CodeInvalid, Message: err.Error()})
		return false
	}
	f.mu.Lock()
	if f.submitErr != nil {
		e := *f.submitErr
		f.mu.Unlock()
		writeErr(w, 400, e)
		return false
	}
	return true
}

func (f *fakeServer) submit(w http.ResponseWriter, r *http.Request) {
	var s api.JobSpec
	if !f.lockForSubmit(w, r, &s) {
		return
	}
	id, hook := f.addLocked(s)
	f.mu.Unlock()
	writeJSONResp(w, 0, api.SubmitResponse{ID: id})
	if hook != nil {
		go hook(id)
	}
}

// submitBatch takes POST /v1/jobs:batch as the servers do (minus the
// validation): every job or, with submitErr set, none.
func (f *fakeServer) submitBatch(w http.ResponseWriter, r *http.Request) {
	var b api.SubmitBatch
	if !f.lockForSubmit(w, r, &b) {
		return
	}
	f.batches = append(f.batches, len(b.Jobs))
	var out api.SubmitBatchResponse
	var hook func(uint64)
	for _, s := range b.Jobs {
		var id uint64
		id, hook = f.addLocked(s)
		out.IDs = append(out.IDs, id)
	}
	f.mu.Unlock()
	writeJSONResp(w, 0, out)
	if hook != nil {
		for _, id := range out.IDs {
			go hook(id)
		}
	}
}

// addLocked stores a submitted job; f.mu is held.
func (f *fakeServer) addLocked(s api.JobSpec) (uint64, func(uint64)) {
	id := f.nextID
	f.nextID++
	j := &api.Job{
		ID: id, Name: s.Name, Owner: s.Owner, Queue: s.Queue, Priority: s.Priority, Walltime: s.Walltime,
		MaxRetries: s.MaxRetries, Groups: s.Groups, State: "pending",
		Reason:     api.Reason{Code: "NotYetScheduled", Message: "the scheduler has not looked at it yet"},
		SubmitTime: t0,
	}
	for _, g := range s.Groups {
		j.Tasks += g.Count
	}
	f.jobs[id] = j
	f.specs = append(f.specs, s)
	f.bump()
	return id, f.onSubmit
}

func (f *fakeServer) listJobs(w http.ResponseWriter, r *http.Request) {
	f.block(r)
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listReqs = append(f.listReqs, r.URL.RawQuery)
	var out []api.Job
	for _, j := range f.jobs {
		st := q.Get("state")
		if st == "active" && j.Terminal() || st == "finished" && !j.Terminal() || st != "" && st != "active" && st != "finished" && j.State != st {
			continue
		}
		if q.Get("queue") != "" && j.Queue != q.Get("queue") || q.Get("owner") != "" && j.Owner != q.Get("owner") {
			continue
		}
		if arr := q.Get("array"); arr != "" && (j.Array == nil || strconv.FormatUint(j.Array.JobID, 10) != arr) {
			continue
		}
		c := *j
		c.Allocations, c.Events = nil, nil
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID > out[b].ID })
	if n, _ := strconv.Atoi(q.Get("limit")); n > 0 && len(out) > n {
		out = out[:n]
	}
	if out == nil {
		out = []api.Job{}
	}
	writeJSONResp(w, f.index, out)
}

func (f *fakeServer) lookup(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	ref, err := api.ParseJobRef(r.PathValue("id"))
	id := ref.ID
	if err == nil && ref.Element {
		id = 0 // unless the element is found
		f.mu.Lock()
		for _, j := range f.jobs {
			if j.Array != nil && j.Array.JobID == ref.ID && j.Array.TaskID == ref.Index {
				id = j.ID
			}
		}
		f.mu.Unlock()
	}
	if err != nil {
		writeErr(w, 400, api.Error{Code: api.CodeInvalid, Field: "id", Message: "not a job ID"})
		return 0, false
	}
	f.mu.Lock()
	_, ok := f.jobs[id]
	f.mu.Unlock()
	if !ok {
		writeErr(w, 404, api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("job %d not found", id)})
		return 0, false
	}
	return id, true
}

func (f *fakeServer) getJob(w http.ResponseWriter, r *http.Request) {
	id, ok := f.lookup(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	fail := r.URL.Query().Get("index") != "" && f.failWatches > 0
	if fail {
		f.failWatches--
	}
	f.mu.Unlock()
	if fail {
		writeErr(w, 503, api.Error{Code: api.CodeUnavailable, Message: "no leader available right now"})
		return
	}
	f.block(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSONResp(w, f.index, f.jobs[id])
}

func (f *fakeServer) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := f.lookup(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if j.Terminal() {
		writeErr(w, 409, api.Error{Code: api.CodeConflict, Message: fmt.Sprintf("job %d already %s", id, j.State)})
		return
	}
	j.State = "cancelled"
	j.Reason = api.Reason{Code: "Cancelled", Message: "cancelled by a user"}
	j.EndTime = t0
	for k, b := range f.logs {
		if k.job == id {
			b.done = true
		}
	}
	f.bump()
	writeJSONResp(w, 0, j)
}

func (f *fakeServer) getLogs(w http.ResponseWriter, r *http.Request) {
	id, ok := f.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	task, _ := strconv.Atoi(q.Get("task"))
	stream := q.Get("stream")
	if stream == "" {
		stream = "stdout"
	}
	off, _ := strconv.ParseInt(q.Get("offset"), 10, 64)
	follow := q.Get("follow") == "true"
	k := logKey{id, task, stream}
	f.mu.Lock()
	_, exists := f.logs[k]
	f.mu.Unlock()
	if !exists {
		writeErr(w, 404, api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("task %d of job %d has not started", task, id)})
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	for {
		f.mu.Lock()
		b := f.logs[k]
		data := bytes.Clone(b.data[min(off, int64(len(b.data))):])
		done, ch := b.done, f.changed
		f.mu.Unlock()
		if len(data) > 0 {
			w.Write(data)
			off += int64(len(data))
			if fl != nil {
				fl.Flush()
			}
		}
		if !follow || done && len(data) == 0 {
			return
		}
		if done {
			continue // send what arrived with the done mark, then end
		}
		f.signalWaiting(r.URL.Path + "?" + r.URL.RawQuery)
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) listNodes(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.Node{}
	for _, n := range f.nodes {
		out = append(out, *n)
	}
	writeJSONResp(w, f.index, out)
}

func (f *fakeServer) getNode(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[r.PathValue("name")]
	if !ok {
		writeErr(w, 404, api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("node %q not found", r.PathValue("name"))})
		return
	}
	writeJSONResp(w, f.index, n)
}

func (f *fakeServer) drain(w http.ResponseWriter, r *http.Request) {
	var req api.DrainRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, api.Error{Code: api.CodeInvalid, Message: err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[r.PathValue("name")]
	if !ok {
		writeErr(w, 404, api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("node %q not found", r.PathValue("name"))})
		return
	}
	n.Drain, n.DrainReason = req.Drain, req.Reason
	switch {
	case req.Drain && n.Allocations > 0:
		n.State = "draining"
	case req.Drain:
		n.State = "drained"
	default:
		n.State = "ready"
	}
	f.bump()
	writeJSONResp(w, 0, n)
}

func (f *fakeServer) listQueues(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]api.Queue{}, f.queues...)
	writeJSONResp(w, f.index, out)
}

func (f *fakeServer) getStatus(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSONResp(w, f.index, f.status)
}

// cliResult is what a user sees from one invocation.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs `dure args…` against addr (a fake server's URL, or any
// address) with USER=alice, a clock fixed at t0 and times shown in UTC.
func runCLI(t *testing.T, addr string, stdin string, argv ...string) cliResult {
	t.Helper()
	return runCLIContext(t, context.Background(), addr, stdin, argv...)
}

func runCLIContext(t *testing.T, ctx context.Context, addr string, stdin string, argv ...string) cliResult {
	t.Helper()
	env := map[string]string{"USER": "alice"}
	if addr != "" {
		env["DURE_ADDR"] = addr
	}
	var stdout, stderr bytes.Buffer
	a := &app{
		env:    func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		stdout: &stdout, stderr: &stderr, stdin: strings.NewReader(stdin),
		now: func() time.Time { return t0 }, loc: time.UTC,
		isTerminal: func(io.Writer) bool { return false },
	}
	root := a.rootCommand()
	root.SetArgs(argv)
	code := execute(ctx, root)
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}
