package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func TestArraysOverHTTP(t *testing.T) {
	c := newCluster(t)
	plain, err := c.client.SubmitJob(bg(t), jobSpec())
	if err != nil {
		t.Fatal(err)
	}
	s := jobSpec("echo")
	s.Array = "0-6:3,10%2"
	arr, err := c.client.SubmitJob(bg(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if arr != plain+1 {
		t.Fatalf("array ID = %d; want %d, the next ID", arr, plain+1)
	}

	// ?array= lists the elements in index order, with their place in it.
	jobs, _, err := c.client.ListJobs(bg(t), api.JobFilter{Array: arr}, api.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, j := range jobs {
		refs = append(refs, j.Ref())
		if j.Array == nil || j.Array.JobID != arr || j.Array.Throttle != 2 {
			t.Errorf("job %d: array info %+v; want array %d, throttle 2", j.ID, j.Array, arr)
		}
	}
	want := []string{"2_0", "2_3", "2_6", "2_10"}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Errorf("elements (-want +got):\n%s", diff)
	}

	// An element by its name; a missing one says which indices exist.
	j, _, err := c.client.GetJobRef(bg(t), "2_6", api.WatchOptions{})
	if err != nil || j.ID != arr+2 || j.Ref() != "2_6" {
		t.Fatalf("GET 2_6 = job %d (%s), %v; want job %d", j.ID, j.Ref(), err, arr+2)
	}
	_, _, err = c.client.GetJobRef(bg(t), "2_4", api.WatchOptions{})
	if e := asAPIError(t, err); e.Status != http.StatusNotFound || !strings.Contains(e.Message, "array 2 has no element 4 (it has 0-6:3,10)") {
		t.Errorf("GET 2_4: %v; want 404 listing the indices", err)
	}

	// Dependencies name elements and whole arrays; unknown jobs are refused.
	d := jobSpec()
	d.Dependencies = []api.DependencySpec{{Type: "afterok", Job: "2"}, {Type: "afternotok", Job: "2_3"}, {Type: "afterany", Job: "1"}, {Type: "afterok", Job: "2"}}
	dep, err := c.client.SubmitJob(bg(t), d)
	if err != nil {
		t.Fatal(err)
	}
	j, _, err = c.client.GetJob(bg(t), dep, api.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantDeps := []api.Dependency{{Type: "afterok", JobID: arr, Array: true}, {Type: "afternotok", JobID: arr + 1}, {Type: "afterany", JobID: plain}}
	if diff := cmp.Diff(wantDeps, j.Dependencies); diff != "" {
		t.Errorf("resolved dependencies (-want +got):\n%s", diff)
	}

	// Cancelling an element cancels it alone; the array's ID cancels the rest.
	if _, err := c.client.CancelJobRef(bg(t), "2_0"); err != nil {
		t.Fatal(err)
	}
	states := func() []string {
		jobs, _, err := c.client.ListJobs(bg(t), api.JobFilter{Array: arr}, api.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range jobs {
			out = append(out, j.State)
		}
		return out
	}
	if diff := cmp.Diff([]string{"cancelled", "pending", "pending", "pending"}, states()); diff != "" {
		t.Errorf("after cancelling 2_0 (-want +got):\n%s", diff)
	}
	if _, err := c.client.CancelJob(bg(t), arr); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cancelled", "cancelled", "cancelled", "cancelled"}, states()); diff != "" {
		t.Errorf("after cancelling array 2 (-want +got):\n%s", diff)
	}
	_, err = c.client.CancelJob(bg(t), arr)
	if e := asAPIError(t, err); e.Status != http.StatusConflict || !strings.Contains(e.Message, "all 4 elements already finished") {
		t.Errorf("cancelling a finished array: %v; want 409", err)
	}
	if j, _, _ := c.client.GetJob(bg(t), plain, api.WatchOptions{}); j.State != "pending" {
		t.Errorf("job %d, not in the array, is %s after the array was cancelled", plain, j.State)
	}
}
