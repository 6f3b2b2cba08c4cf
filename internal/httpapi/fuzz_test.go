package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/spec"
)

// specOf turns a stored job back into the spec it stands for.
func specOf(j *model.Job) api.JobSpec {
	s := api.JobSpec{Name: j.Name, Queue: j.Queue, Priority: j.Priority, Walltime: api.Duration(j.Walltime),
		MaxRetries: j.MaxRetries, Owner: j.Owner, IdempotencyKey: j.IdempotencyKey,
		MinTasks: j.MinTasks, Topology: j.Topology, Placement: j.Placement}
	for _, g := range j.Groups {
		r := g.Resources
		s.Groups = append(s.Groups, api.TaskGroupSpec{Name: g.Name, Count: g.Count, Command: g.Command, Env: g.Env,
			WorkDir: g.WorkDir, Constraints: g.Constraints,
			Resources: api.Resources{MilliCPU: r.MilliCPU, MemoryBytes: r.MemoryBytes, GPUs: r.GPUs, ScratchBytes: r.ScratchBytes, Custom: r.Custom}})
	}
	return s
}

// postFuzzed posts body to path and checks what every answer must be: never
// 5xx, and a refusal is a JSON error that created no job (what names the
// request in failures). It returns the answer if it is 201 Created, nil if
// it was refused.
func postFuzzed(t *testing.T, c *cluster, path string, body []byte, what string) *httptest.ResponseRecorder {
	t.Helper()
	before := c.srv.Store().Snapshot().LastJobID()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	c.handler.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("answer %d to %q: %s", rec.Code, body, rec.Body)
	}
	if rec.Code == http.StatusCreated {
		return rec
	}
	var e api.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("answer %d is not a JSON error: %s", rec.Code, rec.Body)
	}
	if after := c.srv.Store().Snapshot().LastJobID(); after != before {
		t.Fatalf("a refused %s (%d %s) created job %d", what, rec.Code, e.Message, after)
	}
	return nil
}

// FuzzSubmitJSON posts arbitrary bytes as a job: the API never answers 5xx,
// and whatever it accepts is a pending job whose spec passes validation.
func FuzzSubmitJSON(f *testing.F) {
	seeds := []string{
		`{"groups":[{"command":["true"]}]}`,
		`{"name":"train","queue":"default","priority":5,"walltime":"1h","max_retries":2,"owner":"ada","idempotency_key":"k",
		  "groups":[{"name":"w","count":4,"resources":{"millicpu":2000,"memory_bytes":1073741824,"gpus":1,"scratch_bytes":1,"custom":{"lic":1}},
		  "command":["python","train.py"],"env":{"A":"1"},"workdir":"/tmp","constraints":{"pool":"gpu"}}]}`,
		`{"groups":[{"name":"a","command":["x"]},{"name":"a","command":["y"]}]}`,
		`{"walltime":3600.5,"groups":[{"command":["x"],"count":100001}]}`,
		`{"groups":[{"command":["\u0000"]}]}`,
		`{"groups":[{"command":["x"],"env":{"=":"\ud800"}}]}`,
		`{"groups":[{"command":["x"]}]}]`,
		`{"array":"0-15:4%2","min_tasks":1,"topology":"rack","placement":"spread","groups":[{"count":2,"command":["x"]}]}`,
		`{"dependencies":[{"type":"afterok","job":"1"},{"type":"afterany","job":"1_0"}],"groups":[{"command":["x"]}]}`,
		`null`, `[]`, `"x"`, ``, `{`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	c := newCluster(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := postFuzzed(t, c, "/v1/jobs", body, "submission")
		if rec == nil {
			return
		}
		var sub api.SubmitResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &sub); err != nil || sub.ID == 0 {
			t.Fatalf("201 without an ID: %s", rec.Body)
		}
		j := c.srv.Store().Snapshot().Job(model.JobID(sub.ID))
		if j == nil {
			t.Fatalf("201 names job %d, which does not exist", sub.ID)
		}
		if j.State != model.JobPending {
			t.Fatalf("new job %d is %s; want pending (there are no nodes)", sub.ID, j.State)
		}
		s := specOf(j)
		if err := spec.Validate(&s); err != nil {
			t.Fatalf("accepted job %d does not pass validation: %v", sub.ID, err)
		}
	})
}

// FuzzSubmitBatchJSON posts arbitrary bytes as a batch: never 5xx, nothing
// created unless the whole batch is accepted, and every accepted job a
// pending job that passes validation.
func FuzzSubmitBatchJSON(f *testing.F) {
	seeds := []string{
		`{"jobs":[{"groups":[{"command":["true"]}]}]}`,
		`{"jobs":[{"groups":[{"command":["a"]}]},{"name":"b","queue":"default","groups":[{"count":2,"command":["b"]}]}]}`,
		`{"jobs":[{"groups":[{"command":["a"]}]},{"groups":[]}]}`,
		`{"jobs":[{"idempotency_key":"k","groups":[{"command":["a"]}]},{"idempotency_key":"k","groups":[{"command":["a"]}]}]}`,
		`{"jobs":[]}`, `{"jobs":null}`, `{"jobs":{}}`, `{}`, `null`, `[]`, ``, `{"jobs":[{"groups":[{"command":["x"]}]}]}]`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	c := newCluster(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := postFuzzed(t, c, "/v1/jobs:batch", body, "batch")
		if rec == nil {
			return
		}
		var sub api.SubmitBatchResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &sub); err != nil || len(sub.IDs) == 0 {
			t.Fatalf("201 without IDs: %s", rec.Body)
		}
		for _, id := range sub.IDs {
			j := c.srv.Store().Snapshot().Job(model.JobID(id))
			if j == nil || j.State != model.JobPending {
				t.Fatalf("201 names job %d: %+v; want a pending job", id, j)
			}
			s := specOf(j)
			if err := spec.Validate(&s); err != nil {
				t.Fatalf("accepted job %d does not pass validation: %v", id, err)
			}
		}
	})
}
