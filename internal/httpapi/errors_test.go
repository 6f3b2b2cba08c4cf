package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

const jsonCT = "application/json"

// TestBadRequests sends every kind of bad input and checks the answer a
// user gets: status, stable code, the offending field and a message that
// says what is wrong. Afterwards the state holds only what good requests
// made: nothing invalid reached the FSM.
func TestBadRequests(t *testing.T) {
	c := newCluster(t)
	good, err := c.client.SubmitJob(bg(t), jobSpec())
	if err != nil {
		t.Fatalf("a good submission failed: %v", err)
	}

	huge := `{"name":"` + strings.Repeat("a", 1<<20) + `","groups":[{"command":["true"]}]}`
	padded := `{"groups":[{"command":["true"]}]}` + strings.Repeat(" ", 1<<20)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
		field       string // "-": not checked
		message     string // substring
	}{
		// Decoding.
		{"malformed JSON", "POST", "/v1/jobs", jsonCT, `{"groups": [`, 400, api.CodeInvalid, "", "malformed JSON"},
		{"not JSON at all", "POST", "/v1/jobs", jsonCT, `<job/>`, 400, api.CodeInvalid, "", "malformed JSON at byte 1: invalid character '<'"},
		{"empty body", "POST", "/v1/jobs", jsonCT, ``, 400, api.CodeInvalid, "", "empty body: a JSON object is required"},
		{"array instead of object", "POST", "/v1/jobs", jsonCT, `[]`, 400, api.CodeInvalid, "", "the body must be an object, got array"},
		{"unknown field", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["true"]}],"nmae":"x"}`, 400, api.CodeInvalid, "nmae", "unknown field"},
		{"unknown nested field", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["true"],"cpus":2}]}`, 400, api.CodeInvalid, "cpus", "unknown field"},
		{"wrong type", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":"python train.py"}]}`, 400, api.CodeInvalid, "groups.command", "must be an array, got string"},
		{"wrong nested type", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"],"resources":{"gpus":"2"}}]}`, 400, api.CodeInvalid, "groups.resources.gpus", "must be an integer (64 bits), got string"},
		{"number too big", "POST", "/v1/jobs", jsonCT, `{"priority":1e400,"groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "priority", "got number 1e400"},
		{"bad duration", "POST", "/v1/jobs", jsonCT, `{"walltime":"soon","groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "walltime", `must be a duration like "90s" or "1h30m", or a number of seconds, got string "soon"`},
		{"two values", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"]}]} {}`, 400, api.CodeInvalid, "", "exactly one JSON value"},
		{"stray bracket after the value", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"]}]}]`, 400, api.CodeInvalid, "", "exactly one JSON value"},
		{"body over 1 MiB", "POST", "/v1/jobs", jsonCT, huge, 413, api.CodeTooLarge, "", "larger than 1048576 bytes"},
		{"valid JSON padded past 1 MiB", "POST", "/v1/jobs", jsonCT, padded, 413, api.CodeTooLarge, "", "larger than 1048576 bytes"},
		{"wrong content type", "POST", "/v1/jobs", "text/plain", `{"groups":[{"command":["x"]}]}`, 415, api.CodeUnsupported, "", `Content-Type "text/plain" is not application/json`},
		{"curl -d content type with a form body", "POST", "/v1/jobs", "application/x-www-form-urlencoded", `a=b`, 400, api.CodeInvalid, "", "malformed JSON at byte 1"},

		// Validation (messages from internal/spec).
		{"null body", "POST", "/v1/jobs", jsonCT, `null`, 400, api.CodeInvalid, "groups", "a job needs at least one task group"},
		{"no groups", "POST", "/v1/jobs", jsonCT, `{"name":"x"}`, 400, api.CodeInvalid, "groups", "a job needs at least one task group"},
		{"no command", "POST", "/v1/jobs", jsonCT, `{"groups":[{}]}`, 400, api.CodeInvalid, "groups[0].command", "required: the program to run"},
		{"negative cpu", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"],"resources":{"millicpu":-1}}]}`, 400, api.CodeInvalid, "groups[0].resources.millicpu", "must be between 1 and 4096000 (4096 cores); got -1"},
		{"negative count", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"],"count":-1}]}`, 400, api.CodeInvalid, "groups[0].count", "must be between 1 and 100000; got -1"},
		{"huge gpus", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"],"resources":{"gpus":5000}}]}`, 400, api.CodeInvalid, "groups[0].resources.gpus", "must be between 0 and 1024; got 5000"},
		{"huge gpus in the second group", "POST", "/v1/jobs", jsonCT, `{"groups":[{"name":"a","command":["x"]},{"name":"b","command":["x"],"resources":{"gpus":5000}}]}`, 400, api.CodeInvalid, "groups[1].resources.gpus", "got 5000"},
		{"negative memory", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"],"resources":{"memory_bytes":-5}}]}`, 400, api.CodeInvalid, "groups[0].resources.memory_bytes", "got -5"},
		{"several problems", "POST", "/v1/jobs", jsonCT, `{"groups":[{"command":["x"],"count":-1,"resources":{"gpus":5000}}]}`, 400, api.CodeInvalid, "groups[0].count", "groups[0].resources.gpus: must be between 0 and 1024"},
		{"bad queue name", "POST", "/v1/jobs", jsonCT, `{"queue":"Big Queue","groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "queue", `must be 1-63 characters of a-z`},
		{"unknown queue", "POST", "/v1/jobs", jsonCT, `{"queue":"gpu","groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "queue", `queue "gpu" does not exist`},
		{"negative walltime", "POST", "/v1/jobs", jsonCT, `{"walltime":"-1h","groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "walltime", "must not be negative"},
		{"priority out of range", "POST", "/v1/jobs", jsonCT, `{"priority":2000000,"groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "priority", "got 2000000"},
		{"owner with a space", "POST", "/v1/jobs", jsonCT, `{"owner":"a b","groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "owner", "without spaces"},
		{"dependency on an unknown job", "POST", "/v1/jobs", jsonCT, `{"dependencies":[{"type":"afterok","job":"99"}],"groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "dependencies[0].job", "dependency afterok:99: no such job"},
		{"dependency on an element of no array", "POST", "/v1/jobs", jsonCT, `{"dependencies":[{"type":"afterany","job":"1"},{"type":"afterok","job":"1_4"}],"groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "dependencies[1].job", "dependency afterok:1_4: no such job (job 1_4 not found: 1 is not a job array"},
		{"dependency with a number for a job", "POST", "/v1/jobs", jsonCT, `{"dependencies":[{"type":"afterok","job":1}],"groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "dependencies.job", "must be a string"},
		{"bad array", "POST", "/v1/jobs", jsonCT, `{"array":"1-0","groups":[{"command":["x"]}]}`, 400, api.CodeInvalid, "array", `range "1-0" runs backwards`},
		{"min_tasks above the tasks", "POST", "/v1/jobs", jsonCT, `{"min_tasks":3,"groups":[{"count":2,"command":["x"]}]}`, 400, api.CodeInvalid, "min_tasks", "between 1 and the job's task count (2)"},

		// Paths and queries.
		{"unknown job", "GET", "/v1/jobs/999", "", "", 404, api.CodeNotFound, "", "job 999 not found"},
		{"non-numeric job ID", "GET", "/v1/jobs/abc", "", "", 400, api.CodeInvalid, "id", `invalid job ID "abc": want a positive number like 12, or an array element like 12_3`},
		{"job ID zero", "GET", "/v1/jobs/0", "", "", 400, api.CodeInvalid, "id", `invalid job ID "0"`},
		{"bad array index", "GET", "/v1/jobs/3_x", "", "", 400, api.CodeInvalid, "id", "the array index after _ must be a number 0 or more"},
		{"element of no array", "GET", "/v1/jobs/3_0", "", "", 404, api.CodeNotFound, "", "job 3_0 not found: 3 is not a job array"},
		{"bad array filter", "GET", "/v1/jobs?array=x", "", "", 400, api.CodeInvalid, "array", "must be a job array's ID"},
		{"cancel of an unknown job", "POST", "/v1/jobs/999/cancel", jsonCT, `{}`, 404, api.CodeNotFound, "", "job 999 not found"},
		{"cancel with a bad ID", "POST", "/v1/jobs/-1/cancel", jsonCT, `{}`, 400, api.CodeInvalid, "id", `invalid job ID "-1"`},
		{"unknown endpoint", "GET", "/v1/nope", "", "", 404, api.CodeNotFound, "", "no such endpoint: GET /v1/nope"},
		{"unknown version", "GET", "/v2/jobs", "", "", 404, api.CodeNotFound, "", "no such endpoint"},
		{"wrong method", "DELETE", "/v1/jobs", "", "", 405, api.CodeUnsupported, "", "DELETE is not allowed on /v1/jobs; use GET or POST"},
		{"wrong method on a job", "PUT", "/v1/jobs/1", "", "", 405, api.CodeUnsupported, "", "use GET"},
		{"bad index", "GET", "/v1/jobs?index=abc", "", "", 400, api.CodeInvalid, "index", "must be a non-negative integer"},
		{"negative index", "GET", "/v1/jobs/1?index=-3", "", "", 400, api.CodeInvalid, "index", "must be a non-negative integer"},
		{"bad wait", "GET", "/v1/jobs?index=1&wait=forever", "", "", 400, api.CodeInvalid, "wait", `must be a duration like "30s"`},
		{"negative wait", "GET", "/v1/jobs/1?index=1&wait=-1s", "", "", 400, api.CodeInvalid, "wait", "must be a duration"},
		{"bad state filter", "GET", "/v1/jobs?state=done", "", "", 400, api.CodeInvalid, "state", "must be one of pending, running"},
		{"bad limit", "GET", "/v1/jobs?limit=0", "", "", 400, api.CodeInvalid, "limit", "must be an integer from 1 to 100000"},
		{"bad log task", "GET", "/v1/jobs/1/logs?task=-1", "", "", 400, api.CodeInvalid, "task", "non-negative integer"},
		{"log task out of range", "GET", "/v1/jobs/1/logs?task=5", "", "", 400, api.CodeInvalid, "task", "job 1 has 1 task(s), numbered from 0 to 0; got 5"},
		{"bad log stream", "GET", "/v1/jobs/1/logs?stream=stdin", "", "", 400, api.CodeInvalid, "stream", "must be stdout or stderr"},
		{"logs of a job that has not run", "GET", "/v1/jobs/1/logs", "", "", 404, api.CodeNotFound, "", "task 0 of job 1 has not run (job is pending)"},
		{"unknown node", "GET", "/v1/nodes/n9", "", "", 404, api.CodeNotFound, "", `node "n9" not found`},
		{"drain an unknown node", "POST", "/v1/nodes/n9/drain", jsonCT, `{"drain":true}`, 404, api.CodeNotFound, "", `node "n9" not found`},
		{"drain with a long reason", "POST", "/v1/nodes/n9/drain", jsonCT, `{"drain":true,"reason":"` + strings.Repeat("x", 1025) + `"}`, 400, api.CodeInvalid, "reason", "at most 1024 bytes"},
		{"drain with a wrong type", "POST", "/v1/nodes/n9/drain", jsonCT, `{"drain":"yes"}`, 400, api.CodeInvalid, "drain", "must be true or false, got string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := c.raw(t, tc.method, tc.path, tc.contentType, strings.NewReader(tc.body))
			if status != tc.status {
				t.Fatalf("status %d; want %d (body %s)", status, tc.status, body)
			}
			e := apiErr(t, status, body)
			if e.Code != tc.code {
				t.Errorf("code %q; want %q", e.Code, tc.code)
			}
			if tc.field != "-" && e.Field != tc.field {
				t.Errorf("field %q; want %q (message %q)", e.Field, tc.field, e.Message)
			}
			if !strings.Contains(e.Message, tc.message) {
				t.Errorf("message %q; want it to contain %q", e.Message, tc.message)
			}
		})
	}

	// The Go client surfaces the same errors as *api.Error.
	bad := jobSpec()
	bad.Groups[0].Resources.GPUs = 5000
	_, err = c.client.SubmitJob(bg(t), bad)
	if e := asAPIError(t, err); e.Status != http.StatusBadRequest || e.Field != "groups[0].resources.gpus" {
		t.Errorf("client error %+v; want 400 on groups[0].resources.gpus", e)
	}
	_, _, err = c.client.GetJob(bg(t), 12345, api.WatchOptions{})
	if !api.IsNotFound(err) {
		t.Errorf("client GetJob of an unknown job: %v; want a not-found error", err)
	}

	if diff := cmp.Diff([]model.JobID{model.JobID(good)}, c.jobIDs()); diff != "" {
		t.Errorf("jobs in the state after the bad requests (-want +got):\n%s", diff)
	}
}
