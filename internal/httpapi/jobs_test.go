package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func listIDs(t *testing.T, c *cluster, f api.JobFilter) []uint64 {
	t.Helper()
	jobs, _, err := c.client.ListJobs(bg(t), f, api.WatchOptions{})
	if err != nil {
		t.Fatalf("ListJobs(%+v): %v", f, err)
	}
	ids := []uint64{}
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

func TestJobsOverHTTP(t *testing.T) {
	c := newCluster(t)

	// The raw answer to a submission: 201 and the ID.
	status, body := c.raw(t, "POST", "/v1/jobs", jsonCT, strings.NewReader(
		`{"name":"train","owner":"ada","groups":[{"count":2,"command":["python","train.py"],"resources":{"millicpu":2000,"gpus":1}}]}`))
	var sub api.SubmitResponse
	if status != http.StatusCreated || json.Unmarshal(body, &sub) != nil || sub.ID != 1 {
		t.Fatalf("submit: %d %s; want 201 with id 1", status, body)
	}

	job, idx, err := c.client.GetJob(bg(t), sub.ID, api.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if idx == 0 {
		t.Error("GET /v1/jobs/1 carried no X-Dure-Index")
	}
	want := api.Job{
		ID: 1, Name: "train", Owner: "ada", Queue: "default", Tasks: 2, State: "pending",
		Groups: []api.TaskGroupSpec{{Name: "main", Count: 2, Command: []string{"python", "train.py"},
			Resources: api.Resources{MilliCPU: 2000, GPUs: 1}}},
	}
	got := job
	got.Reason, got.SubmitTime, got.Events = api.Reason{}, time.Time{}, nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET job (-want +got):\n%s", diff)
	}
	if job.SubmitTime.IsZero() || len(job.Events) == 0 || job.Events[0].Type != "submitted" {
		t.Errorf("job has submit time %v and events %+v; want both set", job.SubmitTime, job.Events)
	}
	if job.Reason.Code == "" {
		t.Error("a pending job has no reason")
	}

	// Defaults and idempotency through the client.
	keyed := jobSpec("sleep", "1")
	keyed.IdempotencyKey = "nightly-7"
	second, err := c.client.SubmitJob(bg(t), keyed)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.client.SubmitJob(bg(t), keyed)
	if err != nil || again != second {
		t.Errorf("resubmission with the same key: %d, %v; want job %d again", again, err, second)
	}
	j2, _, err := c.client.GetJob(bg(t), second, api.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j2.Owner != "anonymous" || j2.Name != "sleep" || j2.Queue != "default" {
		t.Errorf("defaults: owner %q name %q queue %q; want anonymous, sleep, default", j2.Owner, j2.Name, j2.Queue)
	}
	third, err := c.client.SubmitJob(bg(t), jobSpec())
	if err != nil {
		t.Fatal(err)
	}

	// Cancel, and cancel again.
	cancelled, err := c.client.CancelJob(bg(t), third)
	if err != nil || cancelled.State != "cancelled" || cancelled.Reason.Code != "Cancelled" {
		t.Fatalf("cancel: %+v, %v; want the job back, cancelled", cancelled, err)
	}
	_, err = c.client.CancelJob(bg(t), third)
	if e := asAPIError(t, err); e.Status != http.StatusConflict || e.Code != api.CodeConflict || e.Message != fmt.Sprintf("job %d already cancelled", third) {
		t.Errorf("second cancel: %+v; want 409 conflict saying only that it is already cancelled", e)
	}

	filters := []struct {
		name   string
		filter api.JobFilter
		want   []uint64
	}{
		{"all, newest first", api.JobFilter{}, []uint64{3, 2, 1}},
		{"pending", api.JobFilter{State: "pending"}, []uint64{2, 1}},
		{"cancelled", api.JobFilter{State: "cancelled"}, []uint64{3}},
		{"active", api.JobFilter{State: "active"}, []uint64{2, 1}},
		{"finished", api.JobFilter{State: "finished"}, []uint64{3}},
		{"running", api.JobFilter{State: "running"}, []uint64{}},
		{"owner", api.JobFilter{Owner: "ada"}, []uint64{1}},
		{"queue", api.JobFilter{Queue: "default"}, []uint64{3, 2, 1}},
		{"other queue", api.JobFilter{Queue: "gpu"}, []uint64{}},
		{"limit", api.JobFilter{Limit: 2}, []uint64{3, 2}},
		{"active, limit", api.JobFilter{State: "active", Limit: 1}, []uint64{2}},
		{"pending of an owner", api.JobFilter{State: "pending", Owner: "ada"}, []uint64{1}},
		{"active in another queue", api.JobFilter{State: "active", Queue: "gpu"}, []uint64{}},
	}
	for _, tc := range filters {
		if diff := cmp.Diff(tc.want, listIDs(t, c, tc.filter)); diff != "" {
			t.Errorf("list %s (-want +got):\n%s", tc.name, diff)
		}
	}

	queues, err := c.client.ListQueues(bg(t))
	if err != nil || len(queues) != 1 || queues[0].Name != "default" || queues[0].Pending != 2 {
		t.Errorf("queues: %+v, %v; want default with 2 pending", queues, err)
	}
	st, err := c.client.Status(bg(t))
	if err != nil || !st.IsLeader || st.Server != "s1" || st.Index == 0 || st.Version != "test" {
		t.Errorf("status: %+v, %v", st, err)
	}
}

// quiet waits until the scheduler has given a pending job its reason, after
// which nothing changes it, and returns the index to block on.
func quiet(t *testing.T, c *cluster, id uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, idx, err := c.client.GetJob(bg(t), id, api.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if j.Reason.Code != "NotYetScheduled" {
			return idx
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduler never gave the job a reason")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBlockingQueries(t *testing.T) {
	c := newCluster(t)
	id, err := c.client.SubmitJob(bg(t), jobSpec())
	if err != nil {
		t.Fatal(err)
	}
	idx := quiet(t, c, id)

	// Nothing changes: the query answers after wait, with the job as it was.
	j, idx2, err := c.client.GetJob(bg(t), id, api.WatchOptions{Index: idx, Wait: 50 * time.Millisecond})
	if err != nil || j.State != "pending" || idx2 < idx {
		t.Fatalf("blocking GET with nothing changing: %s index %d, %v; want pending, index ≥ %d", j.State, idx2, err, idx)
	}

	// The job changes: the query answers with the change.
	type answer struct {
		job api.Job
		idx uint64
		err error
	}
	jobCh, listCh := make(chan answer, 1), make(chan answer, 1)
	go func() {
		j, i, err := c.client.GetJob(bg(t), id, api.WatchOptions{Index: idx, Wait: time.Minute})
		jobCh <- answer{j, i, err}
	}()
	go func() {
		jobs, i, err := c.client.ListJobs(bg(t), api.JobFilter{State: "cancelled"}, api.WatchOptions{Index: idx, Wait: time.Minute})
		var a answer
		if len(jobs) > 0 {
			a.job = jobs[0]
		}
		a.idx, a.err = i, err
		listCh <- a
	}()
	select {
	case a := <-jobCh:
		t.Fatalf("blocking GET answered before anything changed: %+v", a)
	default:
	}
	if _, err := c.client.CancelJob(bg(t), id); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan answer{"GET /v1/jobs/{id}": jobCh, "GET /v1/jobs": listCh} {
		select {
		case a := <-ch:
			if a.err != nil || a.job.State != "cancelled" || a.idx <= idx {
				t.Errorf("%s: %s index %d, %v; want the cancelled job at an index above %d", name, a.job.State, a.idx, a.err, idx)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not answer after the job changed", name)
		}
	}

	// WaitJob, the client's loop over blocking queries, returns at once for a finished job.
	if j, err := c.client.WaitJob(bg(t), id); err != nil || j.State != "cancelled" {
		t.Errorf("WaitJob: %s, %v", j.State, err)
	}
}

// A follower that installs a snapshot swaps its whole state: blocking
// queries that were waiting on the old state must still see later changes.
func TestBlockingQuerySurvivesSnapshotInstall(t *testing.T) {
	c := newCluster(t)
	id, err := c.client.SubmitJob(bg(t), jobSpec())
	if err != nil {
		t.Fatal(err)
	}
	idx := quiet(t, c, id)
	// Signal when the blocking request reaches the API, so the restore
	// below comes after it took its watch (the handler blocks right away).
	arrived := make(chan struct{}, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") != "" {
			arrived <- struct{}{}
		}
		c.handler.ServeHTTP(w, r)
	}))
	defer hs.Close()
	done := make(chan api.Job, 1)
	go func() {
		j, _, _ := api.NewClient(hs.URL).GetJob(bg(t), id, api.WatchOptions{Index: idx, Wait: 20 * time.Second})
		done <- j
	}()
	<-arrived
	// Restore the same state: only the watch channels change.
	var snap bytes.Buffer
	if err := c.srv.Store().Snapshot().Persist(&snap); err != nil {
		t.Fatal(err)
	}
	if err := c.srv.Store().Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.CancelJob(bg(t), id); err != nil {
		t.Fatal(err)
	}
	select {
	case j := <-done:
		if j.State != "cancelled" {
			t.Errorf("blocking query answered with %q; want the cancelled job", j.State)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a blocking query that began before a snapshot install never saw the later change")
	}
}
