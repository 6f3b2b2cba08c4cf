package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/server"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// Backend is what the API needs from a server. *server.Server implements it.
type Backend interface {
	Store() *state.Store
	Name() string
	IsLeader() bool
	LeaderAddr() string
	// InContact reports whether this server hears from a leader (a leader
	// always does). A follower that does not serves stale reads, but refuses
	// to hold blocking queries, so watchers move to a server that knows more.
	InContact() bool
	HeartbeatConfig() (interval, timeout time.Duration)
	LastSeen(node string) time.Time
	LiveReason(id model.JobID) (model.Reason, bool)
	// CaughtUp is closed once the server has applied the log it found on
	// disk at start (server.Server.CaughtUp); reads wait for it.
	CaughtUp() <-chan struct{}
	// StoreFailure is why this server's last write to its raft log failed
	// (a full disk), or nil.
	StoreFailure() error

	SubmitJob(ctx context.Context, j model.Job) (model.JobID, error)
	SubmitArray(ctx context.Context, j model.Job, a model.Array) (model.JobID, error)
	SubmitJobs(ctx context.Context, jobs []model.Job) ([]model.JobID, error)
	CancelJob(ctx context.Context, id model.JobID, reason string) error
	CancelArray(ctx context.Context, id model.JobID, reason string) error
	DrainNode(ctx context.Context, name string, drain bool, reason string) error
	RegisterNode(ctx context.Context, n model.Node) error
	Heartbeat(name, session string) (reregister bool, err error)
	UpdateAllocs(ctx context.Context, updates []fsm.AllocUpdate) error

	Advertise() string
	Members() ([]server.Member, error)
	AddServer(ctx context.Context, name, address string) error
	RemoveServer(ctx context.Context, name string) error
	UpsertQueue(ctx context.Context, q model.Queue) error
	Explain(id model.JobID) (*sched.Explanation, error)
	// QueueStatus is the scheduler's view of the queues in snap: quota
	// usage and fair share per queue.
	QueueStatus(snap *state.Snapshot) []sched.QueueStatus
	SaveSnapshot(w io.Writer) error
	RestoreSnapshot(r io.Reader) error
}

// Limits on what a request may carry.
const (
	MaxBodyBytes = 1 << 20 // 1 MiB: a job spec is far smaller; larger is a mistake or an attack
	// MaxBatchBodyBytes bounds POST /v1/jobs:batch (up to 1000 specs).
	MaxBatchBodyBytes = 16 << 20
	DefaultWait       = 30 * time.Second
	MaxWait           = 5 * time.Minute
	DefaultJobLimit   = 1000
	MaxJobLimit       = 100_000
)

// Handler serves the API.
type Handler struct {
	b       Backend
	log     *slog.Logger
	version string
	mux     *http.ServeMux
	logHTTP *http.Client // to agents, for log streaming

	proxyMu sync.Mutex
	proxies map[string]*httputil.ReverseProxy // to the leader, by address
}

// New returns the API handler.
func New(b Backend, version string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{b: b, log: log.With("component", "http"), version: version, mux: http.NewServeMux(), logHTTP: &http.Client{}}
	m := h.mux
	m.HandleFunc("POST /v1/jobs", h.onLeader(h.submitJob))
	m.HandleFunc("POST /v1/jobs:batch", h.onLeader(h.submitJobs))
	m.HandleFunc("GET /v1/jobs", h.listJobs)
	m.HandleFunc("GET /v1/jobs/{id}", h.getJob)
	m.HandleFunc("POST /v1/jobs/{id}/cancel", h.onLeader(h.cancelJob))
	m.HandleFunc("GET /v1/jobs/{id}/logs", h.jobLogs)
	m.HandleFunc("GET /v1/jobs/{id}/explain", h.explainJob)
	m.HandleFunc("GET /v1/nodes", h.listNodes)
	m.HandleFunc("GET /v1/nodes/{name}", h.getNode)
	m.HandleFunc("POST /v1/nodes/{name}/drain", h.onLeader(h.drainNode))
	m.HandleFunc("GET /v1/queues", h.listQueues)
	m.HandleFunc("PUT /v1/queues/{name}", h.onLeader(h.putQueue))
	m.HandleFunc("GET /v1/status", h.status)
	m.HandleFunc("POST /v1/agent/register", h.onLeader(h.register))
	m.HandleFunc("POST /v1/agent/heartbeat", h.onLeader(h.heartbeat))
	m.HandleFunc("GET /v1/agent/allocations", h.nodeAllocs)
	m.HandleFunc("POST /v1/agent/updates", h.onLeader(h.allocUpdates))
	m.HandleFunc("GET /v1/operator/servers", h.listServers)
	m.HandleFunc("POST /v1/operator/servers", h.onLeader(h.joinServer))
	m.HandleFunc("DELETE /v1/operator/servers/{name}", h.onLeader(h.removeServer))
	m.HandleFunc("GET /v1/operator/snapshot", h.onLeader(h.saveSnapshot))
	m.HandleFunc("POST /v1/operator/snapshot", h.onLeader(h.restoreSnapshot))
	m.HandleFunc("/", h.noRoute)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("pretty") {
		w.Header().Set(prettyMarker, "1")
	}
	if r.Method == http.MethodGet && r.URL.Path != "/v1/status" {
		// Right after a restart the state is the last snapshot's until
		// raft replays the rest: a read then would show jobs that have
		// since ended as running. Status answers at once, for operators,
		// and a server that cannot catch up (a follower cut off from its
		// leader) serves what it has after catchUpWait.
		select {
		case <-h.b.CaughtUp():
		default:
			t := time.NewTimer(catchUpWait)
			select {
			case <-h.b.CaughtUp():
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
			t.Stop()
		}
	}
	h.mux.ServeHTTP(w, r)
}

// catchUpWait is the longest a read waits for the server to apply the log
// it found on disk at start (Backend.CaughtUp): a single server restarting
// elects itself and replays within a second or two.
const catchUpWait = 10 * time.Second

// decode reads a JSON body strictly: size-limited, unknown fields rejected,
// exactly one value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeLimit(w, r, v, MaxBodyBytes)
}

// decodeLimit is decode with a body limit of its own.
func decodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	// No type, JSON, or curl's default for -d (form-urlencoded: the body is
	// still parsed as JSON). Anything else is refused.
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return apiError(http.StatusUnsupportedMediaType, api.CodeUnsupported, "", fmt.Sprintf("Content-Type %q is not application/json", ct))
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// dec.More is not enough: it reports false for a stray ']' or '}'.
	if _, err := dec.Token(); err != io.EOF {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return decodeError(err)
		}
		return apiError(http.StatusBadRequest, api.CodeInvalid, "", "the body must hold exactly one JSON value; found more after it")
	}
	return nil
}

// jsonKind names what JSON value a Go type is decoded from, for messages
// that speak of the input rather than of Go types.
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeOf(api.Duration(0)) {
		return `a duration like "90s" or "1h30m", or a number of seconds`
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer (%d bits)", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer (%d bits)", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

func decodeError(err error) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &tooBig):
		return apiError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "", fmt.Sprintf("body is larger than %d bytes", tooBig.Limit))
	case errors.As(err, &typeErr):
		what := "must be"
		if typeErr.Field == "" {
			what = "the body must be"
		}
		return apiError(http.StatusBadRequest, api.CodeInvalid, typeErr.Field, fmt.Sprintf("%s %s, got %s", what, jsonKind(typeErr.Type), typeErr.Value))
	case errors.As(err, &syntaxErr):
		return apiError(http.StatusBadRequest, api.CodeInvalid, "", fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err))
	case errors.Is(err, io.EOF):
		return apiError(http.StatusBadRequest, api.CodeInvalid, "", "empty body: a JSON object is required")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apiError(http.StatusBadRequest, api.CodeInvalid, field, "unknown field")
	}
	return apiError(http.StatusBadRequest, api.CodeInvalid, "", "malformed JSON: "+err.Error())
}

// watchParams reads ?index=N&wait=D.
func watchParams(r *http.Request) (index uint64, wait time.Duration, err error) {
	q := r.URL.Query()
	if s := q.Get("index"); s != "" {
		if index, err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, 0, apiError(http.StatusBadRequest, api.CodeInvalid, "index", "must be a non-negative integer")
		}
	}
	wait = DefaultWait
	if s := q.Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			return 0, 0, apiError(http.StatusBadRequest, api.CodeInvalid, "wait", `must be a duration like "30s"`)
		}
		wait = min(wait, MaxWait)
	}
	return index, wait, nil
}

// watchChans are the channels a blocking read waits on: closed when what it
// looked at changes. Unused ones are nil (never ready).
type watchChans [2]<-chan struct{}

// block runs read until it reports a result newer than index, the wait
// passes, or the client goes away. read returns the highest modify index of
// what it looked at and channels closed when any of it changes. A restore
// of the store (a follower installing a snapshot) replaces every watch
// channel, so it wakes the reader too.
func (h *Handler) block(ctx context.Context, index uint64, wait time.Duration, read func() (uint64, watchChans, error)) error {
	if index == 0 {
		_, _, err := read()
		return err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	contact := time.NewTicker(contactCheck)
	defer contact.Stop()
	store := h.b.Store()
	for {
		if !h.b.InContact() {
			return fmt.Errorf("%w: %s has lost contact with the leader", server.ErrNotLeader, h.b.Name())
		}
		restored := store.Restored() // before read's snapshot; see Store.Restored
		modified, ch, err := read()
		if err != nil || modified > index {
			return err
		}
		select {
		case <-ch[0]:
		case <-ch[1]:
		case <-restored:
		case <-contact.C: // re-read (cheap) and re-check contact
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// contactCheck is how often a blocking query checks that its server still
// hears from a leader.
const contactCheck = 500 * time.Millisecond

func setIndex(w http.ResponseWriter, idx uint64) {
	w.Header().Set(api.IndexHeader, strconv.FormatUint(idx, 10))
}

// pathJobID reads the job named in the path: an ID ("130") or an array
// element ("123_7"), resolved to the element's own ID.
func (h *Handler) pathJobID(r *http.Request) (model.JobID, error) {
	id, _, err := h.pathJobRef(r)
	return id, err
}

// pathJobRef is pathJobID that also says whether the path names a whole
// array: an array's ID on its own ("123"), as scancel reads it.
func (h *Handler) pathJobRef(r *http.Request) (id model.JobID, wholeArray bool, err error) {
	ref, err := api.ParseJobRef(r.PathValue("id"))
	if err != nil {
		return 0, false, apiError(http.StatusBadRequest, api.CodeInvalid, "id", err.Error())
	}
	snap := h.b.Store().Snapshot()
	if !ref.Element {
		id = model.JobID(ref.ID)
		return id, len(snap.ArrayElements(id)) > 0, nil
	}
	id, err = elementID(snap, ref)
	return id, false, err
}

// elementID finds the job ID of an array element.
func elementID(snap *state.Snapshot, ref api.JobRef) (model.JobID, error) {
	elems := snap.ArrayElements(model.JobID(ref.ID))
	if len(elems) == 0 {
		return 0, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("job %s not found: %d is not a job array (or its elements were all pruned)", ref, ref.ID))
	}
	i, found := slices.BinarySearchFunc(elems, ref.Index, func(j *model.Job, idx int) int { return cmp.Compare(j.ArrayIndex, idx) })
	if !found {
		idx := make([]int, len(elems))
		for k, e := range elems {
			idx[k] = e.ArrayIndex
		}
		return 0, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("job %s not found: array %d has no element %d (it has %s)", ref, ref.ID, ref.Index, model.FormatIndices(idx)))
	}
	return elems[i].ID, nil
}

func notFoundJob(id model.JobID) error {
	return apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("job %d not found (never submitted, or finished and pruned after its retention)", id))
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Status{
		Server: h.b.Name(), Address: h.b.Advertise(), Leader: h.b.LeaderAddr(), IsLeader: h.b.IsLeader(),
		Index: h.b.Store().Index(), Version: h.version,
	})
}

// noRoute answers requests no route took: 405 with an Allow header when the
// path exists under other methods, else 404. (The catch-all keeps every
// answer JSON, but it also hides the mux's own 405, so we ask the mux.)
func (h *Handler) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, apiError(http.StatusMethodNotAllowed, api.CodeUnsupported, "",
			fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))))
		return
	}
	writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)))
}
