package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
)

func TestReadQueuesParsesTheTree(t *testing.T) {
	const y = `
queues:
  - name: research
  - name: vision
    parent: research
    weight: 2
    default_walltime: 4h
    quotas:
      cpu: {nominal: 64, borrowing_limit: 32.5}
      gpu/H100: {nominal: 16, lending_limit: 8}
      memory: {nominal: 512G}
`
	qs, err := ReadQueues([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	want := []*model.Queue{
		{Name: "research"},
		{Name: "vision", Parent: "research", Weight: 2, DefaultWalltime: 4 * time.Hour, Quotas: []model.Quota{
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
		{"empty", "", "no queues listed"},
		{"unknown key", "queues: [{name: a, wieght: 2}]", `unknown field "wieght"`},
		{"no name", "queues: [{weight: 2}]", "queues[0].name: required"},
		{"twice", "queues: [{name: a}, {name: a}]", `queues[1] (a).name: "a" is listed twice`},
		{"bad weight", "queues: [{name: a, weight: -1}]", "queues[0] (a).weight: must be a positive number"},
		{"bad walltime", "queues: [{name: a, default_walltime: soon}]", `queues[0] (a).default_walltime: "soon" is not a positive duration`},
		{"missing nominal", "queues: [{name: a, quotas: {cpu: {borrowing_limit: 1}}}]", "queues[0] (a).quotas.cpu.nominal: required"},
		{"bad cpu", "queues: [{name: a, quotas: {cpu: {nominal: lots}}}]", `queues[0] (a).quotas.cpu.nominal: "lots" is not a number of cores`},
		{"bad memory unit", "queues: [{name: a, quotas: {memory: {nominal: 5Q}}}]", `unknown unit "Q"`},
		{"fractional gpus", "queues: [{name: a, quotas: {gpu: {nominal: 1.5}}}]", `quotas.gpu.nominal: "1.5" is not a whole non-negative count`},
		{"bad resource", "queues: [{name: a, quotas: {gpu/: {nominal: 1}}}]", "quotas.gpu/: a resource is"},
		{"unknown parent", "queues: [{name: a, parent: b}]", `queues[0] (a).parent: no queue named "b"`},
		{"cycle", "queues: [{name: a, parent: b}, {name: b, parent: a}]", "the parent chain loops back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadQueues([]byte(tc.y))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func FuzzReadQueues(f *testing.F) {
	f.Add([]byte("queues: [{name: a, weight: 2, quotas: {cpu: {nominal: 4}}}, {name: b, parent: a}]"))
	f.Add([]byte("queues:\n  - name: x\n    quotas:\n      memory: {nominal: 1.5T, lending_limit: 1G}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		qs, err := ReadQueues(data)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, q := range qs {
			if q.Name == "" || names[q.Name] || q.Weight < 0 {
				t.Fatalf("bad queue %+v", q)
			}
			names[q.Name] = true
			for _, qu := range q.Quotas {
				if qu.Nominal < 0 {
					t.Fatalf("negative quota %+v", qu)
				}
			}
		}
		for _, q := range qs {
			if q.Parent != "" && !names[q.Parent] {
				t.Fatalf("dangling parent %q", q.Parent)
			}
		}
	})
}
