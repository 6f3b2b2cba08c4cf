package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func TestSubmitBatch(t *testing.T) {
	c := newCluster(t)
	specs := []api.JobSpec{jobSpec("echo", "a"), jobSpec("echo", "b"), jobSpec("echo", "c")}
	for i := range specs {
		specs[i].Name = "batch-" + string(rune('a'+i))
	}
	ids, err := c.client.SubmitJobs(bg(t), specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[1] != ids[0]+1 || ids[2] != ids[1]+1 {
		t.Fatalf("IDs %v; want three consecutive IDs", ids)
	}
	for i, id := range ids {
		j, _, err := c.client.GetJob(bg(t), id, api.WatchOptions{})
		if err != nil || j.Name != specs[i].Name || j.Owner != "anonymous" || !cmp.Equal(j.Groups[0].Command, specs[i].Groups[0].Command) {
			t.Errorf("job %d: %+v, %v; want %s as submitted", id, j, err, specs[i].Name)
		}
	}

	before := c.jobIDs()
	bad := func(change func(b []api.JobSpec) []api.JobSpec) []api.JobSpec {
		b := []api.JobSpec{jobSpec(), jobSpec(), jobSpec()}
		return change(b)
	}
	tests := []struct {
		name   string
		batch  []api.JobSpec
		status int
		field  string
		msg    string
	}{
		{"invalid job", bad(func(b []api.JobSpec) []api.JobSpec { b[1].Groups[0].Command = nil; return b }),
			http.StatusBadRequest, "jobs[1].groups[0].command", ""},
		{"unknown queue", bad(func(b []api.JobSpec) []api.JobSpec { b[2].Queue = "nosuch"; return b }),
			http.StatusBadRequest, "jobs[2].queue", `queue "nosuch" does not exist`},
		{"empty batch", nil, http.StatusBadRequest, "jobs", "must hold 1 to 1000 jobs; got 0"},
		{"too many", make([]api.JobSpec, 1001), http.StatusBadRequest, "jobs", "must hold 1 to 1000 jobs; got 1001"},
	}
	for _, tc := range tests {
		_, err := c.client.SubmitJobs(bg(t), tc.batch)
		e := asAPIError(t, err)
		if e.Status != tc.status || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %d field %q: %q; want %d field %q containing %q", tc.name, e.Status, e.Field, e.Message, tc.status, tc.field, tc.msg)
		}
	}
	if diff := cmp.Diff(before, c.jobIDs()); diff != "" {
		t.Errorf("refused batches created jobs (-before +after):\n%s", diff)
	}

	// Bodies are held to the usual strictness.
	status, body := c.raw(t, "POST", "/v1/jobs:batch", jsonCT, strings.NewReader(`{"jobs":[{"groups":[{"command":["true"]}]}],"extra":1}`))
	if e := apiErr(t, status, body); status != http.StatusBadRequest || e.Field != "extra" {
		t.Errorf("unknown field: %d %+v; want 400 naming extra", status, e)
	}
}
