package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
)

// Submissions go through a group commit: the leader's submit loop takes
// every submission waiting when it is free and replicates them as one log
// entry (SubmitJobs), then takes what arrived meanwhile. An idle server
// commits a lone submission at once, as before (one SubmitJob entry); under
// a flood of concurrent submissions one entry, one disk write and one state
// transaction carry many jobs, and the scheduler wakes once for all of
// them.

// maxGroupCommit bounds the jobs in one group-commit entry; an explicit
// batch (SubmitJobs) larger than that still goes whole.
const maxGroupCommit = 256

// MaxSubmitBatch is the most jobs one SubmitJobs call may carry.
const MaxSubmitBatch = 1000

// submitReq is one SubmitJob or SubmitJobs call waiting for the submit
// loop. Its jobs are committed together, in one entry.
type submitReq struct {
	jobs  []model.Job
	array *model.Array      // set: jobs holds one job, submitted as this array (alone in its entry)
	done  chan submitResult // buffered: the loop never blocks on it
}

type submitResult struct {
	ids []model.JobID
	err error
}

// SubmitJob assigns the job its ID and submission time and replicates it.
// A repeated idempotency key returns the first job's ID.
func (s *Server) SubmitJob(ctx context.Context, j model.Job) (model.JobID, error) {
	ids, err := s.submit(ctx, []model.Job{j}, nil)
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// SubmitArray submits a job array: one job per index of a, with
// consecutive IDs, in one log entry of its own. It returns the array's ID
// (its first element's).
func (s *Server) SubmitArray(ctx context.Context, j model.Job, a model.Array) (model.JobID, error) {
	ids, err := s.submit(ctx, []model.Job{j}, &a)
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// SubmitJobs submits up to MaxSubmitBatch jobs in one log entry: all are
// accepted or none. It returns their IDs in order (an earlier job's for a
// repeated idempotency key).
func (s *Server) SubmitJobs(ctx context.Context, jobs []model.Job) ([]model.JobID, error) {
	if len(jobs) == 0 || len(jobs) > MaxSubmitBatch {
		return nil, fmt.Errorf("server: SubmitJobs takes 1 to %d jobs, got %d", MaxSubmitBatch, len(jobs))
	}
	return s.submit(ctx, jobs, nil)
}

func (s *Server) submit(ctx context.Context, jobs []model.Job, arr *model.Array) ([]model.JobID, error) {
	if err := s.requireLeader(); err != nil {
		return nil, err
	}
	// A retry of a submission that already went through (the common case
	// for a key) is answered from the state, without using up an ID. The
	// FSM still catches a retry that races the first submission.
	snap := s.store.Snapshot()
	known := make([]model.JobID, len(jobs))
	all := true
	for i := range jobs {
		if jobs[i].IdempotencyKey != "" {
			if prev := snap.JobByIdempotencyKey(jobs[i].Owner, jobs[i].IdempotencyKey); prev != nil {
				known[i] = prev.ID
				if prev.ArrayParent != 0 {
					known[i] = prev.ArrayParent
				}
				continue
			}
		}
		all = false
	}
	if all {
		return known, nil
	}
	req := &submitReq{jobs: append([]model.Job(nil), jobs...), array: arr, done: make(chan submitResult, 1)}
	s.subMu.Lock()
	if !s.subOpen {
		s.subMu.Unlock()
		return nil, ErrNotLeader
	}
	now := s.cfg.Now()
	for i := range req.jobs {
		req.jobs[i].SubmitTime = now
	}
	s.subQueue = append(s.subQueue, req)
	s.subMu.Unlock()
	select {
	case s.subWake <- struct{}{}:
	default:
	}
	// Not cut short by ctx: once queued the submission may be committed,
	// and the loop answers every request within the raft timeout.
	res := <-req.done
	return res.ids, res.err
}

// submitLoop commits the queued submissions while this server leads.
func (s *Server) submitLoop(ctx context.Context) {
	defer func() {
		s.subMu.Lock()
		s.subOpen = false
		left := s.subQueue
		s.subQueue = nil
		s.subMu.Unlock()
		for _, r := range left {
			r.done <- submitResult{err: ErrNotLeader}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.subWake:
		}
		for {
			batch := s.takeSubmits()
			if len(batch) == 0 {
				break
			}
			s.commitSubmits(batch, true)
		}
	}
}

// takeSubmits takes queued requests up to maxGroupCommit jobs (at least
// one request, however large). An array goes alone.
func (s *Server) takeSubmits() []*submitReq {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	n, jobs := 0, 0
	for n < len(s.subQueue) && (n == 0 || s.subQueue[0].array == nil && s.subQueue[n].array == nil && jobs+len(s.subQueue[n].jobs) <= maxGroupCommit) {
		jobs += len(s.subQueue[n].jobs)
		n++
	}
	batch := s.subQueue[:n:n]
	s.subQueue = s.subQueue[n:]
	if len(s.subQueue) == 0 {
		s.subQueue = nil
	}
	return batch
}

// commitSubmits replicates the requests' jobs in one entry and answers
// them. IDs are handed out here, in log order (the FSM refuses a used ID).
// If the entry is refused and it holds several requests, each is tried on
// its own (retry), so that one bad request fails alone.
func (s *Server) commitSubmits(batch []*submitReq, retry bool) {
	if len(batch) == 1 && batch[0].array != nil {
		s.commitArray(batch[0])
		return
	}
	var jobs []model.Job
	for _, r := range batch {
		for i := range r.jobs {
			r.jobs[i].ID = model.JobID(s.nextJobID.Add(1) - 1)
		}
		jobs = append(jobs, r.jobs...)
	}
	var cmd fsm.Command = &fsm.SubmitJobs{Jobs: jobs}
	if len(jobs) == 1 {
		cmd = &fsm.SubmitJob{Job: jobs[0]}
	}
	res, err := s.replicateSubmit(cmd)
	if err != nil {
		answerAll(batch, err)
		return
	}
	if res.Err != nil {
		if retry && len(batch) > 1 {
			for _, r := range batch {
				s.commitSubmits([]*submitReq{r}, false)
			}
			return
		}
		answerAll(batch, res.Err)
		return
	}
	ids := res.JobIDs
	if len(jobs) == 1 {
		ids = []model.JobID{res.JobID}
	}
	for _, r := range batch {
		r.done <- submitResult{ids: ids[:len(r.jobs):len(r.jobs)]}
		ids = ids[len(r.jobs):]
	}
}

// commitArray replicates one array submission: its elements take
// consecutive IDs, handed out here in log order like every other ID.
func (s *Server) commitArray(r *submitReq) {
	n := uint64(len(r.array.Indices(model.MaxArraySize))) // the FSM refuses an array with none
	r.jobs[0].ID = model.JobID(s.nextJobID.Add(n) - n)
	res, err := s.replicateSubmit(&fsm.SubmitJob{Job: r.jobs[0], Array: r.array})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		r.done <- submitResult{err: err}
		return
	}
	r.done <- submitResult{ids: []model.JobID{res.JobID}}
}

// replicateSubmit proposes a submission entry and waits for it to apply.
func (s *Server) replicateSubmit(cmd fsm.Command) (fsm.Result, error) {
	f, err := s.propose(context.Background(), cmd)
	if err == nil {
		err = f.Error()
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return fsm.Result{}, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return fsm.Result{}, fmt.Errorf("replicate %T: %w", cmd, err)
	}
	res, _ := f.Response().(fsm.Result)
	return res, nil
}

func answerAll(batch []*submitReq, err error) {
	for _, r := range batch {
		r.done <- submitResult{err: err}
	}
}
