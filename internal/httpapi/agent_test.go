package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

func registration(name string) api.NodeRegistration {
	return api.NodeRegistration{
		Name: name, Address: "127.0.0.1:7072", SessionID: "sess-1", AgentVersion: "test",
		Capacity: api.Resources{MilliCPU: 4000, MemoryBytes: 8 << 30, GPUs: 2},
		GPUs:     []api.GPU{{Index: 0, Model: "H100"}, {Index: 1, Model: "H100"}},
		Labels:   map[string]string{"pool": "gpu"},
	}
}

func TestAgentRegistrationIsValidated(t *testing.T) {
	c := newCluster(t)
	tests := []struct {
		name    string
		change  func(r *api.NodeRegistration)
		field   string
		message string
	}{
		{"bad node name", func(r *api.NodeRegistration) { r.Name = "bad name!" }, "name", "must be 1-253 characters"},
		{"empty node name", func(r *api.NodeRegistration) { r.Name = "" }, "name", "must be 1-253 characters"},
		{"name too long", func(r *api.NodeRegistration) { r.Name = strings.Repeat("a", 254) }, "name", "must be 1-253 characters"},
		{"name starting with a dot", func(r *api.NodeRegistration) { r.Name = ".n1" }, "name", "starting with a letter or digit"},
		{"no address", func(r *api.NodeRegistration) { r.Address = "" }, "address", "host:port"},
		{"no session", func(r *api.NodeRegistration) { r.SessionID = "" }, "session_id", "must be 1-128 bytes"},
		{"no CPU", func(r *api.NodeRegistration) { r.Capacity.MilliCPU = 0 }, "capacity.millicpu", "must be positive"},
		{"no memory", func(r *api.NodeRegistration) { r.Capacity.MemoryBytes = -1 }, "capacity.memory_bytes", "must be positive"},
		{"GPU count mismatch", func(r *api.NodeRegistration) { r.GPUs = r.GPUs[:1] }, "gpus", "lists 1 devices but capacity.gpus is 2"},
		{"negative GPUs", func(r *api.NodeRegistration) { r.Capacity.GPUs = -1 }, "capacity", "must not be negative"},
		{"duplicate GPU index", func(r *api.NodeRegistration) { r.GPUs[1].Index = 0 }, "gpus[1].index", "unique on the node"},
		{"empty label key", func(r *api.NodeRegistration) { r.Labels = map[string]string{"": "x"} }, "labels.", "keys must be 1-253 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := registration("n1")
			tc.change(&r)
			_, err := c.client.RegisterNode(bg(t), r)
			e := asAPIError(t, err)
			if e.Status != http.StatusBadRequest || e.Code != api.CodeInvalid || e.Field != tc.field || !strings.Contains(e.Message, tc.message) {
				t.Errorf("got %d %s field %q: %q; want 400 invalid field %q containing %q", e.Status, e.Code, e.Field, e.Message, tc.field, tc.message)
			}
		})
	}
	if nodes, err := c.client.ListNodes(bg(t)); err != nil || len(nodes) != 0 {
		t.Errorf("nodes after only bad registrations: %+v, %v; want none", nodes, err)
	}

	agentErrors := []struct {
		name, method, path, body string
		field, message           string
	}{
		{"heartbeat without a name", "POST", "/v1/agent/heartbeat", `{"session_id":"s"}`, "name", "is required"},
		{"allocations without a node", "GET", "/v1/agent/allocations", "", "node", "is required"},
		{"allocations with a bad index", "GET", "/v1/agent/allocations?node=n1&index=x", "", "index", "non-negative integer"},
		{"allocations with a bad changes flag", "GET", "/v1/agent/allocations?node=n1&changes=maybe", "", "changes", "true or false"},
		{"update with a bad status", "POST", "/v1/agent/updates", `{"updates":[{"alloc_id":"1.0.1","node":"n1","status":"done"}]}`, "updates[0].status", "must be running, exited or failed"},
		{"update without an allocation", "POST", "/v1/agent/updates", `{"updates":[{"alloc_id":"1.0.1","node":"n1","status":"running"},{"node":"n1","status":"running"}]}`, "updates[1]", "alloc_id and node are required"},
		{"update with a bad time", "POST", "/v1/agent/updates", `{"updates":[{"alloc_id":"1.0.1","node":"n1","status":"exited","finished_at":"yesterday"}]}`, "-", "malformed JSON"},
		{"too many updates", "POST", "/v1/agent/updates", `{"updates":[` + strings.TrimSuffix(strings.Repeat(`{"status":"running"},`, 10001), ",") + `]}`, "updates", "at most 10000 updates"},
	}
	for _, tc := range agentErrors {
		t.Run(tc.name, func(t *testing.T) {
			ct := ""
			if tc.body != "" {
				ct = jsonCT
			}
			status, body := c.raw(t, tc.method, tc.path, ct, strings.NewReader(tc.body))
			e := apiErr(t, status, body)
			if status != http.StatusBadRequest || (tc.field != "-" && e.Field != tc.field) || !strings.Contains(e.Message, tc.message) {
				t.Errorf("got %d field %q: %q; want 400 field %q containing %q", status, e.Field, e.Message, tc.field, tc.message)
			}
		})
	}
}

// TestAgentFlow plays an agent against the API: register, heartbeat, watch
// allocations, report progress, and see the job finish.
func TestAgentFlow(t *testing.T) {
	c := newCluster(t)
	reg, err := c.client.RegisterNode(bg(t), registration("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if reg.HeartbeatInterval != api.Duration(time.Second) || reg.HeartbeatTimeout != api.Duration(time.Minute) {
		t.Errorf("heartbeat settings %+v; want the server's 1s/1m", reg)
	}
	heartbeats := []struct {
		name, node, session string
		reregister          bool
	}{
		{"known session", "n1", "sess-1", false},
		{"agent restarted", "n1", "sess-2", true},
		{"unknown node", "n9", "sess-1", true},
	}
	for _, hb := range heartbeats {
		resp, err := c.client.Heartbeat(bg(t), api.Heartbeat{Name: hb.node, SessionID: hb.session})
		if err != nil || resp.Reregister != hb.reregister {
			t.Errorf("heartbeat %s: %+v, %v; want reregister=%v", hb.name, resp, err, hb.reregister)
		}
	}

	node, err := c.client.GetNode(bg(t), "n1")
	if err != nil || node.State != "ready" || node.Capacity.GPUs != 2 || len(node.GPUs) != 2 || node.LastSeen.IsZero() {
		t.Errorf("node n1: %+v, %v; want ready with 2 GPUs and a last-seen time", node, err)
	}

	allocs, idx, err := c.client.NodeAllocations(bg(t), "n1", api.WatchOptions{})
	if err != nil || len(allocs) != 0 {
		t.Fatalf("allocations before any job: %+v, %v", allocs, err)
	}
	// The agent's watch answers when the scheduler places a job on it.
	type answer struct {
		allocs []api.Allocation
		idx    uint64
		err    error
	}
	watch := func(idx uint64) chan answer {
		ch := make(chan answer, 1)
		go func() {
			a, i, err := c.client.NodeAllocations(bg(t), "n1", api.WatchOptions{Index: idx, Wait: time.Minute})
			ch <- answer{a, i, err}
		}()
		return ch
	}
	placed := watch(idx)
	js := jobSpec("python", "train.py")
	js.Groups[0].Count, js.Groups[0].Resources.GPUs = 2, 1
	id, err := c.client.SubmitJob(bg(t), js)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-placed:
	case <-time.After(15 * time.Second):
		t.Fatal("the allocation watch did not answer when work was placed")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if len(a.allocs) < 2 {
		// The watch may wake on the first of several writes; read again.
		a.allocs, a.idx, a.err = c.client.NodeAllocations(bg(t), "n1", api.WatchOptions{})
	}
	type view struct {
		ID, Desired, Status string
		Command             []string
		GPUs                int
		TaskCount           int
	}
	var got []view
	for _, al := range a.allocs {
		got = append(got, view{al.ID, al.Desired, al.Status, al.Command, len(al.GPUIndices), al.TaskCount})
	}
	want := []view{
		{"1.0.1", "run", "assigned", []string{"python", "train.py"}, 1, 2},
		{"1.1.1", "run", "assigned", []string{"python", "train.py"}, 1, 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("allocations for n1 (-want +got):\n%s", diff)
	}

	// Progress reports move the job along.
	now := time.Now().UTC().Truncate(time.Second)
	report := func(us ...api.AllocUpdate) {
		t.Helper()
		if err := c.client.UpdateAllocations(bg(t), us); err != nil {
			t.Fatalf("UpdateAllocations: %v", err)
		}
	}
	report(api.AllocUpdate{AllocID: "1.0.1", Node: "n1", Status: "running", StartedAt: now},
		api.AllocUpdate{AllocID: "1.1.1", Node: "n1", Status: "running", StartedAt: now})
	job, _, err := c.client.GetJob(bg(t), id, api.WatchOptions{})
	if err != nil || job.State != "running" || len(job.Allocations) != 2 || job.Allocations[0].Status != "running" {
		t.Fatalf("job after start reports: %+v, %v", job, err)
	}
	// A report from the wrong node is ignored (fencing), not an error.
	report(api.AllocUpdate{AllocID: "1.0.1", Node: "n2", Status: "exited", ExitCode: 1})
	report(api.AllocUpdate{AllocID: "1.0.1", Node: "n1", Status: "exited", FinishedAt: now.Add(time.Minute)},
		api.AllocUpdate{AllocID: "1.1.1", Node: "n1", Status: "exited", FinishedAt: now.Add(time.Minute)})
	job, err = c.client.WaitJob(bg(t), id)
	if err != nil || job.State != "succeeded" || job.Reason.Code != "Completed" || job.ExitCode != 0 {
		t.Fatalf("finished job: %s %+v exit %d, %v; want succeeded, Completed, 0", job.State, job.Reason, job.ExitCode, err)
	}
	if f := job.Allocations[0].FinishedAt; !f.Equal(now.Add(time.Minute)) {
		t.Errorf("allocation finished at %v; want the agent's %v", f, now.Add(time.Minute))
	}
	if allocs, _, err := c.client.NodeAllocations(bg(t), "n1", api.WatchOptions{}); err != nil || len(allocs) != 0 {
		t.Errorf("allocations for n1 after the job ended: %d, %v; want none (finished ones are not sent)", len(allocs), err)
	}

	// Drain and undrain.
	n, err := c.client.DrainNode(bg(t), "n1", true, "firmware")
	if err != nil || n.State != "drained" || n.DrainReason != "firmware" {
		t.Errorf("drain: %+v, %v; want drained (no work) with the reason", n, err)
	}
	n, err = c.client.DrainNode(bg(t), "n1", false, "")
	if err != nil || n.State != "ready" || n.Drain {
		t.Errorf("undrain: %+v, %v; want ready", n, err)
	}
}

// TestAgentAllocationChanges follows a node with the incremental watch: the
// whole live list first, then only the changes its agent must act on (new
// allocations, stop requests, ended ones), never the agent's own reports.
func TestAgentAllocationChanges(t *testing.T) {
	c := newCluster(t)
	if _, err := c.client.RegisterNode(bg(t), registration("n1")); err != nil {
		t.Fatal(err)
	}
	allocs, idx, all, err := c.client.NodeAllocationChanges(bg(t), "n1", api.WatchOptions{})
	if err != nil || len(allocs) != 0 || !all || idx == 0 {
		t.Fatalf("first answer: %+v index %d all=%v, %v; want the whole (empty) list and an index", allocs, idx, all, err)
	}
	type view struct{ ID, Status string }
	changes := func(want int) []view {
		t.Helper()
		var got []view
		for len(got) < want {
			allocs, next, all, err := c.client.NodeAllocationChanges(bg(t), "n1", api.WatchOptions{Index: idx, Wait: 10 * time.Second})
			if err != nil || all || next <= idx {
				t.Fatalf("changes after %d: index %d all=%v, %v; want only changes, at a newer index", idx, next, all, err)
			}
			for _, a := range allocs {
				got = append(got, view{a.ID, a.Status})
			}
			idx = next
		}
		return got
	}
	js := jobSpec("python", "train.py")
	js.Groups[0].Count, js.Groups[0].Resources.GPUs = 2, 1
	if _, err := c.client.SubmitJob(bg(t), js); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]view{{"1.0.1", "assigned"}, {"1.1.1", "assigned"}}, changes(2)); diff != "" {
		t.Errorf("placed (-want +got):\n%s", diff)
	}
	now := time.Now().UTC()
	if err := c.client.UpdateAllocations(bg(t), []api.AllocUpdate{{AllocID: "1.1.1", Node: "n1", Status: "running", StartedAt: now}}); err != nil {
		t.Fatal(err)
	}
	quiet := func(what string) {
		t.Helper()
		allocs, next, all, err := c.client.NodeAllocationChanges(bg(t), "n1", api.WatchOptions{Index: idx, Wait: 300 * time.Millisecond})
		if err != nil || len(allocs) != 0 || all || next < idx {
			t.Errorf("%s: %+v index %d (was %d) all=%v, %v; want no changes", what, allocs, next, idx, all, err)
		}
	}
	// The agent's own report is not sent back to it.
	quiet("after the agent reported a start")
	if err := c.client.UpdateAllocations(bg(t), []api.AllocUpdate{{AllocID: "1.1.1", Node: "n1", Status: "exited", ExitCode: 3, FinishedAt: now}}); err != nil {
		t.Fatal(err)
	}
	// Task 1 failed the job: its sibling is told to stop; the exit the
	// agent reported is not repeated.
	if diff := cmp.Diff([]view{{"1.0.1", "assigned"}}, changes(1)); diff != "" {
		t.Errorf("after one end (-want +got):\n%s", diff)
	}
	if a := c.srv.Store().Snapshot().Alloc("1.1.1"); a == nil || a.Status != model.AllocExited || a.ExitCode != 3 {
		t.Errorf("stored allocation 1.1.1 = %+v; want the reported exit (code 3) recorded", a)
	}
	// Nothing changed: the watch runs out and says so with no allocations.
	quiet("quiet watch")
}

// A task's start changes its allocation, not its job; a blocking GET of the
// job (dure wait, dure run, bench --idle) still wakes for it and shows the
// start.
func TestJobWatchWakesWhenATaskStarts(t *testing.T) {
	c := newCluster(t)
	if _, err := c.client.RegisterNode(bg(t), registration("n1")); err != nil {
		t.Fatal(err)
	}
	id, err := c.client.SubmitJob(bg(t), jobSpec())
	if err != nil {
		t.Fatal(err)
	}
	var idx uint64
	for deadline := time.Now().Add(10 * time.Second); ; {
		j, i, err := c.client.GetJob(bg(t), id, api.WatchOptions{Index: idx, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		idx = i
		if len(j.Allocations) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d was never placed: %+v", id, j)
		}
	}
	type answer struct {
		job api.Job
		idx uint64
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		j, i, err := c.client.GetJob(bg(t), id, api.WatchOptions{Index: idx, Wait: time.Minute})
		ch <- answer{j, i, err}
	}()
	time.Sleep(100 * time.Millisecond) // let the query block
	started := time.Now().UTC().Truncate(time.Millisecond)
	alloc := model.AllocID(model.JobID(id), 0, 1)
	if err := c.client.UpdateAllocations(bg(t), []api.AllocUpdate{{AllocID: alloc, Node: "n1", Status: "running", StartedAt: started}}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-ch:
		if a.err != nil || a.idx <= idx || len(a.job.Allocations) != 1 || !a.job.Allocations[0].StartedAt.Equal(started) {
			t.Errorf("blocking GET after the start: %+v index %d (was %d), %v; want the allocation started at %v, at a newer index", a.job.Allocations, a.idx, idx, a.err, started)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a blocking GET of the job did not wake when its task started")
	}
}
