package test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// arrayElements lists an array's elements with their allocations.
func (c *cluster) arrayElements(id uint64) []api.Job {
	c.t.Helper()
	jobs, _, err := c.client.ListJobs(context.Background(), api.JobFilter{Array: id, Limit: 10000}, api.WatchOptions{})
	if err != nil {
		c.t.Fatalf("list array %d: %v", id, err)
	}
	for i := range jobs {
		jobs[i] = c.job(jobs[i].ID) // the listing leaves allocations out
	}
	return jobs
}

// maxOverlap is the most intervals that are open at one instant.
func maxOverlap(spans [][2]time.Time) int {
	type edge struct {
		t     time.Time
		delta int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s[0], +1}, edge{s[1], -1})
	}
	// Ends before starts at the same instant: one task's exit and the
	// next one's start never count as overlapping.
	sort.Slice(edges, func(a, b int) bool {
		if !edges[a].t.Equal(edges[b].t) {
			return edges[a].t.Before(edges[b].t)
		}
		return edges[a].delta < edges[b].delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// An array of 20 with %3 runs every element once, never more than 3 at a
// time although the cluster has room for 8, and each element sees its index.
func TestArrayThrottleRunsAtMostThreeAtOnce(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", "--cpus", "4")
	c.startAgent("n2", "--cpus", "4")
	id := c.submit("--array", "0-19%3", "--name", "sweep", "--", "sh", "-c", "echo $DURE_ARRAY_TASK_ID $SLURM_ARRAY_TASK_ID $DURE_ARRAY_JOB_ID; sleep 0.3")

	r := c.dure("wait", "--timeout", "120s", itoa(id))
	if r.code != 0 {
		t.Fatalf("dure wait %d: exit %d: %s%s", id, r.code, r.stdout, r.stderr)
	}
	if want := fmt.Sprintf("%d array (20 elements): 20 succeeded\n", id); r.stdout != want {
		t.Errorf("dure wait printed %q; want %q", r.stdout, want)
	}

	elems := c.arrayElements(id)
	if len(elems) != 20 {
		t.Fatalf("array has %d elements; want 20", len(elems))
	}
	var spans [][2]time.Time
	for i, e := range elems {
		if e.Array == nil || e.Array.TaskID != i || e.State != "succeeded" || len(e.Allocations) != 1 {
			t.Fatalf("element %d: array %+v state %s allocations %d; want index %d succeeded once", e.ID, e.Array, e.State, len(e.Allocations), i)
		}
		a := e.Allocations[0]
		spans = append(spans, [2]time.Time{a.StartedAt, a.FinishedAt})
	}
	most := maxOverlap(spans)
	if most > 3 {
		t.Errorf("%d elements ran at the same time; the throttle allows 3", most)
	}
	t.Logf("at most %d elements ran at once", most)

	for _, i := range []int{0, 7, 19} {
		ref := fmt.Sprintf("%d_%d", id, i)
		r := c.dure("logs", ref)
		if want := fmt.Sprintf("%d %d %d\n", i, i, id); r.code != 0 || r.stdout != want {
			t.Errorf("dure logs %s = %q (exit %d, %s); want %q", ref, r.stdout, r.code, r.stderr, want)
		}
	}

	// dure jobs shows the array on one row; -o json lists every element.
	r = c.dure("jobs")
	if want := fmt.Sprintf("%d_[0-19]", id); !strings.Contains(r.stdout, want) || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("dure jobs:\n%s\nwant one row %s", r.stdout, want)
	}
	var listed []api.Job
	if err := json.Unmarshal([]byte(c.dure("jobs", "-o", "json").stdout), &listed); err != nil || len(listed) != 20 {
		t.Errorf("dure jobs -o json: %d jobs (%v); want the 20 elements", len(listed), err)
	}
	r = c.dure("job", itoa(id))
	if !strings.Contains(r.stdout, "20 element(s) (0-19), at most 3 running at once") || !strings.Contains(r.stdout, "States: 20 succeeded") {
		t.Errorf("dure job %d:\n%s", id, r.stdout)
	}
	r = c.dure("job", fmt.Sprintf("%d_7", id))
	if !strings.Contains(r.stdout, fmt.Sprintf("%d_7: element 7 of array %d", id, id)) {
		t.Errorf("dure job %d_7:\n%s", id, r.stdout)
	}
}

// Cancelling an element stops it alone; cancelling the array stops the
// rest, running or pending, and dure wait reports the array failed.
func TestCancelArrayElementAndWholeArray(t *testing.T) {
	c := newCluster(t, "n1")
	id := c.submit("--array", "0-5%1", "--", "sleep", "300")
	c.waitState(id, "running") // element 0
	if r := c.dure("cancel", fmt.Sprintf("%d_3", id)); r.code != 0 || r.stdout != fmt.Sprintf("cancelled %d_3\n", id) {
		t.Fatalf("cancel one element: %+v", r)
	}
	states := func() string {
		var s []string
		for _, e := range c.arrayElements(id) {
			s = append(s, e.State)
		}
		return strings.Join(s, " ")
	}
	if got := states(); got != "running pending pending cancelled pending pending" {
		t.Errorf("after cancelling element 3: %s", got)
	}
	if r := c.dure("cancel", itoa(id)); r.code != 0 || r.stdout != fmt.Sprintf("cancelled array %d\n", id) {
		t.Fatalf("cancel the array: %+v", r)
	}
	c.waitJob(id, "element 0 stopped", 20*time.Second, func(j api.Job) bool {
		return j.State == "cancelled" && len(j.Allocations) == 1 && j.Allocations[0].Status == "exited"
	})
	if got := states(); got != strings.TrimSpace(strings.Repeat("cancelled ", 6)) {
		t.Errorf("after cancelling the array: %s", got)
	}
	if r := c.dure("wait", itoa(id)); r.code != 1 || !strings.Contains(r.stdout, "6 cancelled") {
		t.Errorf("dure wait on a cancelled array: %+v; want exit 1 and the count", r)
	}
}

// `dure explain` on an array's ID explains its first pending element and
// names elements as the user does (12_3, not the element's job ID), and
// says what a throttled element waits for instead of an estimated start.
func TestExplainArrayNamesElements(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", "--cpus", "4")
	id := c.submit("--array", "0-5%2", "--cpus", "100m", "--name", "sweep", "--", "sleep", "30")
	c.eventually("two elements running", 20*time.Second, func() error {
		if n := len(c.runningElements(id)); n != 2 {
			return fmt.Errorf("%d elements running", n)
		}
		return nil
	})

	r := c.dure("explain", itoa(id))
	wantIntro := fmt.Sprintf("Array %d (2 running, 4 pending): explaining its first pending element, %d_2.\nJob %d_2 is pending: ArrayThrottle\n", id, id, id)
	if r.code != 0 || !strings.HasPrefix(r.stdout, wantIntro) || !strings.Contains(r.stdout, "Estimated start: unknown: it starts when an element of its array ends") {
		t.Errorf("dure explain %d: exit %d\n%s%s\nwant it to start with:\n%s", id, r.code, r.stdout, r.stderr, wantIntro)
	}
	r = c.dure("explain", fmt.Sprintf("%d_4", id))
	if want := fmt.Sprintf("Job %d_4 is pending: ArrayThrottle\n", id); r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("dure explain %d_4: exit %d\n%s%s\nwant it to start with %q", id, r.code, r.stdout, r.stderr, want)
	}
	r = c.dure("explain", fmt.Sprintf("%d_0", id))
	if want := fmt.Sprintf("dure: job %d_0 is running, not pending: nothing to explain (see `dure job %d_0`)\n", id, id); r.code != 1 || r.stderr != want {
		t.Errorf("explain of a running element: exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}
	c.dure("cancel", itoa(id))
	r = c.dure("explain", itoa(id))
	if want := fmt.Sprintf("dure: array %d has no pending element (6 cancelled): nothing to explain\n", id); r.code != 1 || r.stderr != want {
		t.Errorf("explain of a finished array: exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}
}

// runningElements lists an array's running elements.
func (c *cluster) runningElements(id uint64) []api.Job {
	var out []api.Job
	for _, e := range c.arrayElements(id) {
		if e.State == "running" {
			out = append(out, e)
		}
	}
	return out
}
