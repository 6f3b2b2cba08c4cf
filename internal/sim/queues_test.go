package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
)

// The simulator reads the servers' queue file format (spec.ParseQueueFile).
func TestReadQueuesParsesTheServersQueueFile(t *testing.T) {
	const y = `
queues:
  - name: research
  - name: vision
    parent: research
    weight: 2
    default_walltime: 4h
    members: [alice]
    quotas:
      - {resource: cpu, nominal: 64000, borrowing_limit: 32500}
      - {resource: gpu/H100, nominal: 16, lending_limit: 8}
      - {resource: memory, nominal: 549755813888}
`
	qs, err := ReadQueues([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	want := []*model.Queue{
		{Name: "research"},
		{Name: "vision", Parent: "research", Weight: 2, DefaultWalltime: 4 * time.Hour, Members: []string{"alice"}, Quotas: []model.Quota{
			{Resource: "cpu", Nominal: 64000, BorrowingLimit: i64(32500)},
			{Resource: "gpu/H100", Nominal: 16, LendingLimit: i64(8)},
			{Resource: "memory", Nominal: 512 << 30},
		}},
	}
	if diff := cmp.Diff(want, qs); diff != "" {
		t.Errorf("queues (-want +got):\n%s", diff)
	}
}

func TestReadQueuesRejectsBadFilesNamingTheField(t *testing.T) {
	for _, tc := range []struct{ name, y, want string }{
		{"empty", "", "queue file is empty"},
		{"no queues", "queues: []", "no queues listed"},
		{"unknown key", "queues: [{name: a, wieght: 2}]", `unknown field "wieght"`},
		{"no name", "queues: [{weight: 2}]", "queues[0].name"},
		{"twice", "queues: [{name: a}, {name: a}]", `queues[1].name: queue "a" appears twice`},
		{"bad weight", "queues: [{name: a, weight: -1}]", "queues[0].weight: must be between 0"},
		{"bad walltime", "queues: [{name: a, default_walltime: soon}]", `duration (like "2h" or "90m")`},
		{"the old map of quotas", "queues: [{name: a, quotas: {cpu: {nominal: 4}}}]", "queues[0].quotas: want a list of quotas"},
		{"bad resource", "queues: [{name: a, quotas: [{resource: gpu/, nominal: 1}]}]", "queues[0].quotas[0].resource"},
		{"negative nominal", "queues: [{name: a, quotas: [{resource: gpu, nominal: -1}]}]", "queues[0].quotas[0].nominal: must be between 0"},
		{"lending above nominal", "queues: [{name: a, quotas: [{resource: gpu, nominal: 2, lending_limit: 3}]}]", "queues[0].quotas[0].lending_limit"},
		{"unknown parent", "queues: [{name: a, parent: b}]", `queues[0].parent: queue "b" is not defined`},
		{"cycle", "queues: [{name: a, parent: b}, {name: b, parent: a}]", "queues form a cycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadQueues([]byte(tc.y))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// FuzzReadQueues: whatever the bytes, a queue set ReadQueues accepts has
// unique names, parents that exist, no negative amounts and no cycle.
func FuzzReadQueues(f *testing.F) {
	f.Add([]byte("queues: [{name: a, weight: 2, quotas: [{resource: cpu, nominal: 4000}]}, {name: b, parent: a}]"))
	f.Add([]byte("queues:\n  - name: x\n    quotas:\n      - {resource: memory, nominal: 1099511627776, lending_limit: 1073741824}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		qs, err := ReadQueues(data)
		if err != nil {
			return
		}
		parent := map[string]string{}
		for _, q := range qs {
			if _, dup := parent[q.Name]; q.Name == "" || dup || q.Weight < 0 {
				t.Fatalf("bad queue %+v", q)
			}
			parent[q.Name] = q.Parent
			for _, qu := range q.Quotas {
				if qu.Nominal < 0 {
					t.Fatalf("negative quota %+v", qu)
				}
			}
		}
		for _, q := range qs {
			steps := 0
			for p := q.Parent; p != ""; p = parent[p] {
				if _, ok := parent[p]; !ok {
					t.Fatalf("dangling parent %q", p)
				}
				if steps++; steps > len(qs) {
					t.Fatalf("cycle through %q", q.Name)
				}
			}
		}
	})
}

// Fair shares follow the tree: split by weight among siblings with jobs, a
// queue's own jobs counting as one more child of weight 1; queues without
// jobs take nothing.
func TestFairSharesFollowTheTree(t *testing.T) {
	conf := []*model.Queue{
		{Name: "cohort"},
		{Name: "a", Parent: "cohort", Weight: 3},
		{Name: "b", Parent: "cohort"},
		{Name: "idle", Parent: "cohort", Weight: 5},
		{Name: "d", Weight: 1},
	}
	for _, tc := range []struct {
		name  string
		names []string
		jobs  []int
		want  []float64
	}{
		// roots cohort and d: ½ each; a and b split cohort's ½ 3:1.
		{"leaves", []string{"a", "b", "d", "cohort", "idle"}, []int{5, 5, 5, 0, 0}, []float64{0.375, 0.125, 0.5, 0, 0}},
		// cohort's own jobs are a child of weight 1 beside a (3) and b (1).
		{"a cohort with jobs of its own", []string{"a", "b", "d", "cohort"}, []int{5, 5, 5, 1}, []float64{0.3, 0.1, 0.5, 0.1}},
		// a queue not in the file is a root of weight 1.
		{"unknown queue", []string{"a", "other"}, []int{1, 1}, []float64{0.5, 0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fairShares(conf, tc.names, tc.jobs)
			for i := range got {
				if d := got[i] - tc.want[i]; d > 1e-12 || d < -1e-12 {
					t.Errorf("fair shares of %v = %v, want %v", tc.names, got, tc.want)
					break
				}
			}
		})
	}
}
