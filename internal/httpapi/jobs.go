package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/spec"
	"github.com/durehq/dure/internal/state"
)

func (h *Handler) submitJob(w http.ResponseWriter, r *http.Request) {
	var js api.JobSpec
	if err := decode(w, r, &js); err != nil {
		writeError(w, err)
		return
	}
	job, err := h.jobFromSpec(&js, h.b.Store().Snapshot())
	if err != nil {
		writeError(w, err)
		return
	}
	var id model.JobID
	if js.Array != "" {
		arr, _ := spec.ParseArray(js.Array) // Validate accepted it
		id, err = h.b.SubmitArray(r.Context(), job, arr)
	} else {
		id, err = h.b.SubmitJob(r.Context(), job)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.SubmitResponse{ID: uint64(id)})
}

// resolveDependencies turns dependencies as users write them into job IDs:
// an element ("12_3") becomes its own job's ID, an array's ID stands for
// the whole array. A job that does not exist is refused.
func resolveDependencies(snap *state.Snapshot, specs []api.DependencySpec) ([]model.Dependency, error) {
	var out []model.Dependency
	for i, d := range specs {
		ref, _ := api.ParseJobRef(d.Job) // Validate accepted it
		field := fmt.Sprintf("dependencies[%d].job", i)
		var dep model.Dependency
		switch {
		case ref.Element:
			id, err := elementID(snap, ref)
			if err != nil {
				return nil, apiError(http.StatusBadRequest, api.CodeInvalid, field, fmt.Sprintf("dependency %s:%s: no such job (%s)", d.Type, ref, err.(*api.Error).Message))
			}
			dep = model.Dependency{Type: model.DependencyType(d.Type), JobID: id}
		case len(snap.ArrayElements(model.JobID(ref.ID))) > 0:
			dep = model.Dependency{Type: model.DependencyType(d.Type), JobID: model.JobID(ref.ID), Array: true}
		case snap.Job(model.JobID(ref.ID)) != nil:
			dep = model.Dependency{Type: model.DependencyType(d.Type), JobID: model.JobID(ref.ID)}
		default:
			return nil, apiError(http.StatusBadRequest, api.CodeInvalid, field, fmt.Sprintf("dependency %s:%s: no such job (never submitted, or finished and pruned after its retention)", d.Type, ref))
		}
		if !slices.Contains(out, dep) {
			out = append(out, dep)
		}
	}
	return out, nil
}

// jobFromSpec validates a submitted spec and turns it into a job for snap's
// queues.
func (h *Handler) jobFromSpec(js *api.JobSpec, snap *state.Snapshot) (model.Job, error) {
	spec.Normalize(js)
	if js.Owner == "" {
		js.Owner = "anonymous"
	}
	if err := spec.Validate(js); err != nil {
		return model.Job{}, err
	}
	job := spec.ToModel(js)
	deps, err := resolveDependencies(snap, js.Dependencies)
	if err != nil {
		return model.Job{}, err
	}
	job.Dependencies = deps
	q := snap.Queue(job.Queue)
	if q == nil {
		return model.Job{}, apiError(http.StatusBadRequest, api.CodeInvalid, "queue", fmt.Sprintf("queue %q does not exist (see `dure queues`)", job.Queue))
	}
	if err := mayUseQueue(q, job.Owner); err != nil {
		return model.Job{}, err
	}
	return job, nil
}

// submitJobs is POST /v1/jobs:batch: up to server.MaxSubmitBatch jobs, all
// validated before any is submitted, then committed in one log entry.
func (h *Handler) submitJobs(w http.ResponseWriter, r *http.Request) {
	var in api.SubmitBatch
	if err := decodeLimit(w, r, &in, MaxBatchBodyBytes); err != nil {
		writeError(w, err)
		return
	}
	if len(in.Jobs) == 0 || len(in.Jobs) > server.MaxSubmitBatch {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "jobs", fmt.Sprintf("must hold 1 to %d jobs; got %d", server.MaxSubmitBatch, len(in.Jobs))))
		return
	}
	snap := h.b.Store().Snapshot()
	jobs := make([]model.Job, len(in.Jobs))
	for i := range in.Jobs {
		if in.Jobs[i].Array != "" {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, fmt.Sprintf("jobs[%d].array", i), "a job array cannot be part of a batch; submit it on its own (POST /v1/jobs)"))
			return
		}
		job, err := h.jobFromSpec(&in.Jobs[i], snap)
		if err != nil {
			writeError(w, inBatch(i, err))
			return
		}
		jobs[i] = job
	}
	ids, err := h.b.SubmitJobs(r.Context(), jobs)
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.SubmitBatchResponse{IDs: make([]uint64, len(ids))}
	for i, id := range ids {
		out.IDs[i] = uint64(id)
	}
	writeJSON(w, http.StatusCreated, out)
}

// inBatch names job i of a batch in a validation error's field.
func inBatch(i int, err error) error {
	prefix := fmt.Sprintf("jobs[%d]", i)
	join := func(field string) string {
		if field == "" {
			return prefix
		}
		return prefix + "." + field
	}
	var ae *api.Error
	var fe spec.FieldErrors
	var fe1 spec.FieldError
	switch {
	case errors.As(err, &ae):
		c := *ae
		c.Field = join(c.Field)
		return &c
	case errors.As(err, &fe):
		out := make(spec.FieldErrors, len(fe))
		for k, e := range fe {
			out[k] = spec.FieldError{Field: join(e.Field), Message: e.Message}
		}
		return out
	case errors.As(err, &fe1):
		return spec.FieldError{Field: join(fe1.Field), Message: fe1.Message}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// activeStates are the state filters a plain list answers from the state
// index.
var activeStates = map[string][]model.JobState{
	"pending": {model.JobPending}, "running": {model.JobRunning}, "active": {model.JobPending, model.JobRunning},
}

var jobStates = map[string]bool{"pending": true, "running": true, "succeeded": true, "failed": true, "cancelled": true, "active": true, "finished": true}

func (h *Handler) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stateFilter, queue, owner := q.Get("state"), q.Get("queue"), q.Get("owner")
	var array model.JobID
	if s := q.Get("array"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "array", "must be a job array's ID, a positive integer"))
			return
		}
		array = model.JobID(n)
	}
	if stateFilter != "" && !jobStates[stateFilter] {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "state", "must be one of pending, running, succeeded, failed, cancelled, active, finished"))
		return
	}
	limit := DefaultJobLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxJobLimit {
			writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "limit", fmt.Sprintf("must be an integer from 1 to %d", MaxJobLimit)))
			return
		}
		limit = n
	}
	index, wait, err := watchParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	match := func(j *model.Job) bool {
		switch stateFilter {
		case "":
		case "active":
			if j.State.Terminal() {
				return false
			}
		case "finished":
			if !j.State.Terminal() {
				return false
			}
		default:
			if string(j.State) != stateFilter {
				return false
			}
		}
		return (queue == "" || j.Queue == queue) && (owner == "" || j.Owner == owner)
	}
	var out []api.Job
	var snapIndex uint64
	if states := activeStates[stateFilter]; states != nil && index == 0 {
		// A plain read of pending or running jobs walks those alone, not
		// every job the server keeps (a watch still needs the walk below:
		// a job that left the state must wake it).
		snap := h.b.Store().Snapshot()
		// Each state's jobs are read newest first and only as far as the
		// limit needs (a poll with limit 1 costs one job, not the backlog).
		next := make([]func() *model.Job, len(states))
		heads := make([]*model.Job, len(states))
		for i, st := range states {
			next[i] = snap.JobsInStateNewest(st)
			heads[i] = next[i]()
		}
		for len(out) < limit {
			// The newest job left over all states.
			best := -1
			for i, j := range heads {
				if j != nil && (best < 0 || j.ID > heads[best].ID) {
					best = i
				}
			}
			if best < 0 {
				break
			}
			j := heads[best]
			heads[best] = next[best]()
			if match(j) {
				out = append(out, h.withLiveReason(toAPIJob(j)))
			}
		}
		if out == nil {
			out = []api.Job{}
		}
		setIndex(w, snap.Index)
		writeJSON(w, http.StatusOK, out)
		return
	}
	err = h.block(r.Context(), index, wait, func() (uint64, watchChans, error) {
		snap := h.b.Store().Snapshot()
		snapIndex = snap.Index
		out = out[:0]
		var modified uint64
		if array != 0 {
			// An array's elements, in index order; the watch is the table's.
			ch := snap.Jobs(func(*model.Job) bool { return false })
			for _, j := range snap.ArrayElements(array) {
				modified = max(modified, j.ModifyIndex)
				if match(j) && len(out) < limit {
					out = append(out, h.withLiveReason(toAPIJob(j)))
				}
			}
			snapIndex = max(snapIndex, modified)
			return modified, watchChans{ch}, nil
		}
		ch := snap.Jobs(func(j *model.Job) bool {
			modified = max(modified, j.ModifyIndex)
			if match(j) {
				out = append(out, h.withLiveReason(toAPIJob(j)))
			}
			return len(out) < limit
		})
		snapIndex = max(snapIndex, modified)
		return modified, watchChans{ch}, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if out == nil {
		out = []api.Job{}
	}
	setIndex(w, snapIndex)
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := h.pathJobID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	index, wait, err := watchParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var out api.Job
	var snapIndex uint64
	err = h.block(r.Context(), index, wait, func() (uint64, watchChans, error) {
		snap := h.b.Store().Snapshot()
		snapIndex = snap.Index
		j, ch := snap.JobWatch(id)
		if j == nil {
			return 0, watchChans{}, notFoundJob(id)
		}
		// A task's start or end changes its allocation, not its job:
		// watch both.
		allocs, allocsModified, allocsCh := snap.AllocsByJobWatch(id)
		out = h.withLiveReason(toAPIJobDetail(j, allocs))
		modified := max(j.ModifyIndex, allocsModified)
		snapIndex = max(snapIndex, modified)
		return modified, watchChans{ch, allocsCh}, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, snapIndex)
	writeJSON(w, http.StatusOK, out)
}

// cancelJob cancels a job, or with an array's ID (not ID_INDEX) every
// unfinished element of the array, as scancel does. It answers the job
// named (for an array, its first element still known).
func (h *Handler) cancelJob(w http.ResponseWriter, r *http.Request) {
	id, wholeArray, err := h.pathJobRef(r)
	if err != nil {
		writeError(w, err)
		return
	}
	switch {
	case wholeArray:
		err = h.b.CancelArray(r.Context(), id, "by user request")
	case h.b.Store().Snapshot().Job(id) == nil:
		err = notFoundJob(id)
	default:
		err = h.b.CancelJob(r.Context(), id, "by user request")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	snap := h.b.Store().Snapshot()
	j := snap.Job(id)
	if wholeArray && j == nil {
		if elems := snap.ArrayElements(id); len(elems) > 0 {
			j, id = elems[0], elems[0].ID
		}
	}
	if j == nil {
		writeError(w, notFoundJob(id))
		return
	}
	setIndex(w, snap.Index)
	writeJSON(w, http.StatusOK, h.withLiveReason(toAPIJobDetail(j, snap.AllocsByJob(id))))
}

// withLiveReason replaces a pending job's logged reason with the leader's
// latest one, which carries current numbers (see server.LiveReason).
func (h *Handler) withLiveReason(j api.Job) api.Job {
	if j.State != string(model.JobPending) {
		return j
	}
	if r, ok := h.b.LiveReason(model.JobID(j.ID)); ok {
		j.Reason = api.Reason(r)
	}
	return j
}

func (h *Handler) explainJob(w http.ResponseWriter, r *http.Request) {
	id, err := h.pathJobID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	j := h.b.Store().Snapshot().Job(id)
	if j == nil {
		writeError(w, notFoundJob(id))
		return
	}
	if j.State != model.JobPending {
		// Name an array element as the user does (12_3), not by its job ID.
		name := strconv.FormatUint(uint64(id), 10)
		if j.ArrayParent != 0 {
			name = api.JobRef{ID: uint64(j.ArrayParent), Index: j.ArrayIndex, Element: true}.String()
		}
		writeError(w, apiError(http.StatusConflict, api.CodeConflict, "", fmt.Sprintf("job %s is %s, not pending: nothing to explain (see `dure job %s`)", name, j.State, name)))
		return
	}
	e, err := h.b.Explain(id)
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.Explanation{JobID: uint64(e.JobID), StartsNow: e.StartsNow, Reason: api.Reason(e.Reason), EstimatedStart: e.EstimatedStart}
	for _, a := range e.Sooner {
		out.Sooner = append(out.Sooner, api.Alternative{Change: a.Change, Start: a.Start})
	}
	writeJSON(w, http.StatusOK, out)
}
