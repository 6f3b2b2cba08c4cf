package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultAddr is the server address used when neither --addr nor DURE_ADDR is set.
const DefaultAddr = "http://127.0.0.1:7070"

// Client talks to dure servers over HTTP. It is safe for concurrent use.
//
// Given several servers it sticks to the one that last answered, moves to
// the next when one cannot be reached, and while a cluster has no leader
// (an election, answered 503) it keeps trying for up to NoLeaderRetry.
// Every call it retries is idempotent: reads, and writes the servers fence
// (SubmitJob carries an idempotency key, so a retried submission never
// creates a second job).
type Client struct {
	bases []string
	cur   atomic.Int32
	http  *http.Client
	// NoLeaderRetry is how long calls keep retrying while the servers
	// answer that no leader is available (default 15s).
	NoLeaderRetry time.Duration
}

// NewClient returns a client for the servers at addrs: a comma-separated
// list of "http://host:port" or "host:port".
func NewClient(addrs string) *Client {
	if addrs == "" {
		addrs = DefaultAddr
	}
	c := &Client{NoLeaderRetry: 15 * time.Second}
	for _, a := range strings.Split(addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		c.bases = append(c.bases, strings.TrimRight(a, "/"))
	}
	if len(c.bases) == 0 {
		c.bases = []string{DefaultAddr}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	// A server cut off by a partition never answers a dial: give up on it
	// quickly and try the next one.
	tr.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	c.http = &http.Client{Transport: tr}
	return c
}

// Addr is the base URL of the server the client talks to now.
func (c *Client) Addr() string { return c.bases[int(c.cur.Load())%len(c.bases)] }

// WatchOptions turn a read into a blocking query: the server answers when its
// state index exceeds Index, or after Wait.
type WatchOptions struct {
	Index uint64
	Wait  time.Duration
}

func (w WatchOptions) query(q url.Values) {
	if w.Index > 0 {
		q.Set("index", strconv.FormatUint(w.Index, 10))
	}
	if w.Wait > 0 {
		q.Set("wait", w.Wait.String())
	}
}

// do sends a JSON request and decodes a JSON answer into out (if non-nil). It
// returns the state index the server reported.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) (uint64, error) {
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	idx, _ := strconv.ParseUint(resp.Header.Get(IndexHeader), 10, 64)
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return idx, fmt.Errorf("decode %s %s answer: %w", method, path, err)
		}
	}
	return idx, nil
}

// send issues the request and turns a non-2xx answer into an *Error. It
// fails over between servers as the Client doc says.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = b
	}
	start := int(c.cur.Load())
	deadline := time.Now().Add(c.NoLeaderRetry)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		i := (start + attempt) % len(c.bases)
		resp, err := c.attempt(ctx, c.bases[i], method, path, q, body)
		if err == nil && resp.StatusCode != http.StatusServiceUnavailable {
			c.cur.Store(int32(i))
			if resp.StatusCode/100 != 2 {
				defer resp.Body.Close()
				return nil, decodeError(resp)
			}
			return resp, nil
		}
		if err == nil { // 503: no leader right now
			err = decodeError(resp)
			resp.Body.Close()
		} else if ctx.Err() != nil {
			return nil, err
		} else if len(c.bases) == 1 {
			return nil, err // the only server cannot be reached: say so now
		} else if (attempt+1)%len(c.bases) != 0 {
			continue // unreachable: try the next server at once
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		if (attempt+1)%len(c.bases) == 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
		}
	}
}

func (c *Client) attempt(ctx context.Context, base, method, path string, q url.Values, body []byte) (*http.Response, error) {
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.http.Do(req)
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Message == "" {
		e.Code = CodeInternal
		e.Message = fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return e
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeNotFound
}

// SubmitJob submits a job and returns its ID. A spec without an idempotency
// key gets a random one, so that a submission retried on another server
// (the answer to the first try was lost) returns the same job.
func (c *Client) SubmitJob(ctx context.Context, spec JobSpec) (uint64, error) {
	if spec.IdempotencyKey == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		spec.IdempotencyKey = "auto-" + hex.EncodeToString(b[:])
	}
	var out SubmitResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/jobs", nil, spec, &out)
	return out.ID, err
}

// JobFilter narrows ListJobs. Empty fields match everything.
type JobFilter struct {
	State string // pending, running, succeeded, failed, cancelled, or "active" (pending+running)
	Queue string
	Owner string
	Array uint64 // only the elements of this job array
	Limit int
}

// ListJobs lists jobs, newest first.
func (c *Client) ListJobs(ctx context.Context, f JobFilter, w WatchOptions) ([]Job, uint64, error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Queue != "" {
		q.Set("queue", f.Queue)
	}
	if f.Owner != "" {
		q.Set("owner", f.Owner)
	}
	if f.Array != 0 {
		q.Set("array", strconv.FormatUint(f.Array, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	w.query(q)
	var out []Job
	idx, err := c.do(ctx, http.MethodGet, "/v1/jobs", q, nil, &out)
	return out, idx, err
}

// GetJob returns one job with its allocations and events. With a WatchOptions
// index it blocks until the job changes after that index (or Wait passes).
func (c *Client) GetJob(ctx context.Context, id uint64, w WatchOptions) (Job, uint64, error) {
	q := url.Values{}
	w.query(q)
	var out Job
	idx, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/jobs/%d", id), q, nil, &out)
	return out, idx, err
}

// GetJobRef is GetJob for a job named as people write it: "130", or an
// array element "123_7" (see JobRef).
func (c *Client) GetJobRef(ctx context.Context, ref string, w WatchOptions) (Job, uint64, error) {
	q := url.Values{}
	w.query(q)
	var out Job
	idx, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(ref), q, nil, &out)
	return out, idx, err
}

// CancelJob cancels a pending or running job. The ID of a job array (its
// first element's) cancels the whole array; CancelJobRef with "123_0"
// cancels the first element alone.
func (c *Client) CancelJob(ctx context.Context, id uint64) (Job, error) {
	return c.CancelJobRef(ctx, strconv.FormatUint(id, 10))
}

// CancelJobRef cancels a job named as people write it: "130", an array
// element "123_7", or a whole array "123".
func (c *Client) CancelJobRef(ctx context.Context, ref string) (Job, error) {
	var out Job
	_, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(ref)+"/cancel", nil, struct{}{}, &out)
	return out, err
}

// WaitJob blocks until the job reaches a final state or ctx ends.
func (c *Client) WaitJob(ctx context.Context, id uint64) (Job, error) {
	var idx uint64
	for {
		j, newIdx, err := c.GetJob(ctx, id, WatchOptions{Index: idx, Wait: 30 * time.Second})
		if err != nil {
			return j, err
		}
		if j.Terminal() {
			return j, nil
		}
		idx = newIdx
	}
}

// LogOptions select which log to read.
type LogOptions struct {
	Task   int    // task index within the job (default 0)
	Stream string // "stdout" (default) or "stderr"
	Follow bool   // keep streaming until the task ends
	Offset int64  // start at this byte
}

// Logs opens a task's output. With Follow the stream ends when the task has
// ended and all its output was sent. The caller closes the reader.
func (c *Client) Logs(ctx context.Context, id uint64, o LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	q.Set("task", strconv.Itoa(o.Task))
	if o.Stream != "" {
		q.Set("stream", o.Stream)
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Offset > 0 {
		q.Set("offset", strconv.FormatInt(o.Offset, 10))
	}
	resp, err := c.send(ctx, http.MethodGet, fmt.Sprintf("/v1/jobs/%d/logs", id), q, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ListNodes lists every node the cluster knows.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	var out []Node
	_, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil, &out)
	return out, err
}

// GetNode returns one node.
func (c *Client) GetNode(ctx context.Context, name string) (Node, error) {
	var out Node
	_, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// DrainNode sets or clears a node's drain flag.
func (c *Client) DrainNode(ctx context.Context, name string, drain bool, reason string) (Node, error) {
	var out Node
	_, err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/drain", nil, DrainRequest{Drain: drain, Reason: reason}, &out)
	return out, err
}

// ListQueues lists queues with their current load.
func (c *Client) ListQueues(ctx context.Context) ([]Queue, error) {
	var out []Queue
	_, err := c.do(ctx, http.MethodGet, "/v1/queues", nil, nil, &out)
	return out, err
}

// Status is the answer of GET /v1/status.
type Status struct {
	Server   string `json:"server"`  // name of the answering server
	Address  string `json:"address"` // its API (and raft) address as other servers reach it
	Leader   string `json:"leader"`  // address of the leader, "" if none
	IsLeader bool   `json:"is_leader"`
	Index    uint64 `json:"index"` // last applied state index
	Version  string `json:"version"`
}

// Status reports the answering server's view of the cluster.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	_, err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &out)
	return out, err
}

// RegisterNode is called by an agent when it starts and whenever the server
// asks it to register again.
func (c *Client) RegisterNode(ctx context.Context, r NodeRegistration) (RegisterResponse, error) {
	var out RegisterResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/agent/register", nil, r, &out)
	return out, err
}

// Heartbeat tells the server the agent is alive.
func (c *Client) Heartbeat(ctx context.Context, h Heartbeat) (HeartbeatResponse, error) {
	var out HeartbeatResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/agent/heartbeat", nil, h, &out)
	return out, err
}

// SubmitJobs submits up to 1000 jobs in one request and one log entry:
// all are accepted or none. It returns their IDs in order. Specs without
// an idempotency key get a random one each, so that a batch retried on
// another server returns the same jobs.
func (c *Client) SubmitJobs(ctx context.Context, specs []JobSpec) ([]uint64, error) {
	b := SubmitBatch{Jobs: make([]JobSpec, len(specs))}
	for i, spec := range specs {
		if spec.IdempotencyKey == "" {
			var r [16]byte
			if _, err := rand.Read(r[:]); err != nil {
				return nil, err
			}
			spec.IdempotencyKey = "auto-" + hex.EncodeToString(r[:])
		}
		b.Jobs[i] = spec
	}
	var out SubmitBatchResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/jobs:batch", nil, b, &out); err != nil {
		return nil, err
	}
	if len(out.IDs) != len(specs) {
		return nil, fmt.Errorf("POST /v1/jobs:batch answered %d IDs for %d jobs", len(out.IDs), len(specs))
	}
	return out.IDs, nil
}

// NodeAllocations returns the allocations on a node that are not yet
// terminal, blocking as a watch when w.Index is set.
func (c *Client) NodeAllocations(ctx context.Context, node string, w WatchOptions) ([]Allocation, uint64, error) {
	q := url.Values{}
	q.Set("node", node)
	w.query(q)
	var out []Allocation
	idx, err := c.do(ctx, http.MethodGet, "/v1/agent/allocations", q, nil, &out)
	return out, idx, err
}

// NodeAllocationChanges is the incremental form of NodeAllocations, what
// agents watch with: with w.Index 0 it returns the node's live allocations
// (all true); after that, blocking until something changed after w.Index,
// only the allocations of the node changed after w.Index, ended ones
// included (all false), oldest change first. Against a server without the
// incremental form it returns the whole live list every time (all true).
func (c *Client) NodeAllocationChanges(ctx context.Context, node string, w WatchOptions) (allocs []Allocation, index uint64, all bool, err error) {
	q := url.Values{}
	q.Set("node", node)
	q.Set("changes", "true")
	w.query(q)
	resp, err := c.send(ctx, http.MethodGet, "/v1/agent/allocations", q, nil)
	if err != nil {
		return nil, 0, false, err
	}
	defer resp.Body.Close()
	index, _ = strconv.ParseUint(resp.Header.Get(IndexHeader), 10, 64)
	if err := json.NewDecoder(resp.Body).Decode(&allocs); err != nil {
		return nil, index, false, fmt.Errorf("decode GET /v1/agent/allocations answer: %w", err)
	}
	return allocs, index, resp.Header.Get(AllocationsHeader) != AllocationsChanges, nil
}

// UpdateAllocations reports a batch of task state changes.
func (c *Client) UpdateAllocations(ctx context.Context, u []AllocUpdate) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/agent/updates", nil, AllocUpdates{Updates: u}, nil)
	return err
}

// ServerMember is one server of the raft cluster.
type ServerMember struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
}

// JoinRequest asks the cluster to add a server (POST /v1/operator/servers).
type JoinRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// ListServers lists the servers of the cluster.
func (c *Client) ListServers(ctx context.Context) ([]ServerMember, error) {
	var out []ServerMember
	_, err := c.do(ctx, http.MethodGet, "/v1/operator/servers", nil, nil, &out)
	return out, err
}

// JoinServer adds a server to the cluster as a voter.
func (c *Client) JoinServer(ctx context.Context, name, address string) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/operator/servers", nil, JoinRequest{Name: name, Address: address}, nil)
	return err
}

// RemoveServer removes a server from the cluster.
func (c *Client) RemoveServer(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/operator/servers/"+url.PathEscape(name), nil, nil, nil)
	return err
}

// SaveSnapshot streams a consistent snapshot of the whole cluster state to w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/v1/operator/snapshot", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// RestoreSnapshot replaces the whole cluster state with a saved snapshot.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Addr()+"/v1/operator/snapshot", r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return decodeError(resp)
	}
	return nil
}

// PutQueue creates or replaces a queue; the answer lists every queue.
func (c *Client) PutQueue(ctx context.Context, q QueueSpec) ([]Queue, error) {
	var out []Queue
	_, err := c.do(ctx, http.MethodPut, "/v1/queues/"+url.PathEscape(q.Name), nil, q, &out)
	return out, err
}

// Explain says why a pending job waits and what would let it start sooner.
func (c *Client) Explain(ctx context.Context, id uint64) (Explanation, error) {
	var out Explanation
	_, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/jobs/%d/explain", id), nil, nil, &out)
	return out, err
}
