package state

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-memdb"

	"github.com/durehq/dure/internal/model"
)

// TestTypedIndexesMatchMemdbs: the typed indexers give the keys memdb's
// reflection-based StringFieldIndex gives (so lookups by argument, which
// still go through memdb's FromArgs, find what they found before).
func TestTypedIndexesMatchMemdbs(t *testing.T) {
	jobs := []*model.Job{
		{ID: 1, State: model.JobPending, Owner: "ada", IdempotencyKey: "k"},
		{ID: 2, State: model.JobRunning, Owner: "bob"},
		{ID: 3, Owner: ""},
	}
	for _, field := range []string{"State", "Owner", "IdempotencyKey"} {
		typed := schema().Tables[tableJobs].Indexes["idem"].Indexer.(*memdb.CompoundIndex).Indexes[0].(*stringFieldIndex)
		switch field {
		case "State":
			typed = schema().Tables[tableJobs].Indexes["state"].Indexer.(*stringFieldIndex)
		case "IdempotencyKey":
			typed = schema().Tables[tableJobs].Indexes["idem"].Indexer.(*memdb.CompoundIndex).Indexes[1].(*stringFieldIndex)
		}
		ref := &memdb.StringFieldIndex{Field: field}
		for _, j := range jobs {
			ok1, k1, err1 := typed.FromObject(j)
			ok2, k2, err2 := ref.FromObject(j)
			if ok1 != ok2 || !bytes.Equal(k1, k2) || (err1 == nil) != (err2 == nil) {
				t.Errorf("job %d, %s: typed index gives %v %q %v; memdb's %v %q %v", j.ID, field, ok1, k1, err1, ok2, k2, err2)
			}
		}
	}
	a := &model.Allocation{ID: "7.0.1", JobID: 7, Node: "n1", ModifyIndex: 42}
	allocs := schema().Tables[tableAllocs].Indexes
	nodeAgent := allocs["node_agent"].Indexer.(*memdb.CompoundIndex).Indexes[0]
	for name, idx := range map[string]memdb.Indexer{"id": allocs["id"].Indexer, "node_agent's node": nodeAgent} {
		field := map[string]string{"id": "ID", "node_agent's node": "Node"}[name]
		_, k1, _ := idx.(*stringFieldIndex).FromObject(a)
		_, k2, _ := (&memdb.StringFieldIndex{Field: field}).FromObject(a)
		if !bytes.Equal(k1, k2) {
			t.Errorf("allocation index %s: typed %q, memdb %q", name, k1, k2)
		}
	}
	if _, k, _ := allocs["job"].Indexer.(*jobIDIndex).FromObject(a); !bytes.Equal(k, encodeJobID(7)) {
		t.Errorf("allocation index job: %x", k)
	}
	if _, _, err := allocs["job"].Indexer.(*jobIDIndex).FromObject(jobs[0]); err == nil {
		t.Error("an allocation index given a job must fail")
	}
}
