package httpapi_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

// GET /v1/queues shows quota usage as the scheduler computes it: per
// subtree, with what a queue borrows from its cohort siblings and what
// they can lend.
func TestQueuesShowQuotaUsageAsTheSchedulerSeesIt(t *testing.T) {
	c := newCluster(t)
	one := int64(1)
	for _, q := range []api.QueueSpec{
		{Name: "research"},
		{Name: "vision", Parent: "research", Weight: 2, Quotas: []api.QuotaSpec{{Resource: "gpu", Nominal: 1}}},
		{Name: "nlp", Parent: "research", Quotas: []api.QuotaSpec{{Resource: "gpu", Nominal: 1, LendingLimit: &one}}},
	} {
		if _, err := c.client.PutQueue(bg(t), q); err != nil {
			t.Fatalf("PutQueue(%s): %v", q.Name, err)
		}
	}
	if _, err := c.client.RegisterNode(bg(t), registration("n1")); err != nil {
		t.Fatal(err)
	}
	id, err := c.client.SubmitJob(bg(t), api.JobSpec{Queue: "vision", Owner: "ada", Groups: []api.TaskGroupSpec{
		{Count: 2, Resources: api.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30, GPUs: 1}, Command: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, _, err := c.client.GetJob(bg(t), id, api.WatchOptions{})
		if err == nil && j.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: %+v, %v; want it running on vision's quota and one GPU borrowed from nlp", id, j, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	queues, err := c.client.ListQueues(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]api.QuotaUsage{}
	share := map[string]float64{}
	for _, q := range queues {
		got[q.Name] = q.QuotaUsage
		share[q.Name] = q.Share
	}
	want := map[string][]api.QuotaUsage{
		"default":  nil,
		"research": {{Resource: "gpu", Effective: 2, Used: 2}},
		"vision":   {{Resource: "gpu", Nominal: 1, Effective: 1, Used: 2, Borrowed: 1}},
		"nlp":      {{Resource: "gpu", Nominal: 1, Effective: 1, LendingLimit: &one, Lendable: 1, Lent: 1, Room: 0}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("quota usage (-want +got):\n%s", diff)
	}
	if share["vision"] <= 0 || share["nlp"] != 0 {
		t.Errorf("fair shares %v; want vision's above 0 (it runs) and nlp's 0 (idle)", share)
	}
}
