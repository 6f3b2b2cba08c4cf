package state

import (
	"encoding/binary"
	"fmt"
	"reflect"

	"github.com/hashicorp/go-memdb"

	"github.com/durehq/dure/internal/model"
)

const (
	tableJobs   = "jobs"
	tableAllocs = "allocs"
	tableNodes  = "nodes"
	tableQueues = "queues"
	tableMeta   = "meta"
)

// metaEntry is a named counter kept in the replicated state.
type metaEntry struct {
	Key   string
	Value uint64
}

const metaLastJobID = "last_job_id"

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableJobs: {Name: tableJobs, Indexes: map[string]*memdb.IndexSchema{
			"id":    {Name: "id", Unique: true, Indexer: &jobIDIndex{field: "ID"}},
			"state": {Name: "state", Indexer: &memdb.StringFieldIndex{Field: "State"}},
			// Finished jobs only, newest last: the scheduler's history
			// window reads the newest without walking the pending ones.
			"finished": {Name: "finished", AllowMissing: true, Indexer: finishedIndex{}},
			"idem": {Name: "idem", AllowMissing: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
				&memdb.StringFieldIndex{Field: "Owner"}, &memdb.StringFieldIndex{Field: "IdempotencyKey"},
			}}},
		}},
		tableAllocs: {Name: tableAllocs, Indexes: map[string]*memdb.IndexSchema{
			"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			"job":  {Name: "job", Indexer: &jobIDIndex{field: "JobID"}},
			"node": {Name: "node", Indexer: &memdb.StringFieldIndex{Field: "Node"}},
			"live": {Name: "live", Indexer: &memdb.ConditionalIndex{Conditional: func(obj any) (bool, error) {
				return !obj.(*model.Allocation).Status.Terminal(), nil
			}}},
			// An agent's allocation watch reads these two on every change
			// of its node: the live allocations, and the newest change of
			// any allocation there. The "node" index would make it walk
			// every allocation the node ever ran (kept for days).
			"live_node": {Name: "live_node", AllowMissing: true, Indexer: liveNodeIndex{}},
			"node_modify": {Name: "node_modify", Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
				&memdb.StringFieldIndex{Field: "Node"}, &jobIDIndex{field: "ModifyIndex"},
			}}},
		}},
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		tableQueues: {Name: tableQueues, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		tableMeta: {Name: tableMeta, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
		}},
	}}
}

// finishedIndex indexes the jobs in a terminal state under one key, so
// that the index lists them in ID order.
type finishedIndex struct{}

func (finishedIndex) FromObject(obj any) (bool, []byte, error) {
	j, ok := obj.(*model.Job)
	if !ok {
		return false, nil, fmt.Errorf("finishedIndex: not a job: %T", obj)
	}
	return j.State.Terminal(), []byte{1}, nil
}

func (finishedIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 0 {
		return nil, fmt.Errorf("finished index takes no arguments, got %d", len(args))
	}
	return []byte{1}, nil
}

// liveNodeIndex indexes the allocations that still hold resources by node;
// terminal ones are left out.
type liveNodeIndex struct{}

func (liveNodeIndex) FromObject(obj any) (bool, []byte, error) {
	a, ok := obj.(*model.Allocation)
	if !ok {
		return false, nil, fmt.Errorf("liveNodeIndex: not an allocation: %T", obj)
	}
	if a.Status.Terminal() || a.Node == "" {
		return false, nil, nil
	}
	return true, append([]byte(a.Node), 0), nil
}

func (liveNodeIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	node, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a node name, got %T", args[0])
	}
	return append([]byte(node), 0), nil
}

// jobIDIndex indexes a model.JobID field as 8 big-endian bytes, so that radix
// order is numeric order (memdb's UintFieldIndex uses varints, which do not
// sort) and "newest first" is a reverse scan.
type jobIDIndex struct{ field string }

func (x *jobIDIndex) FromObject(obj any) (bool, []byte, error) {
	v := reflect.Indirect(reflect.ValueOf(obj)).FieldByName(x.field)
	if !v.IsValid() || v.Kind() != reflect.Uint64 {
		return false, nil, fmt.Errorf("field %q is not a uint64", x.field)
	}
	return true, encodeJobID(v.Uint()), nil
}

func (x *jobIDIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	switch v := args[0].(type) {
	case model.JobID:
		return encodeJobID(uint64(v)), nil
	case uint64:
		return encodeJobID(v), nil
	}
	return nil, fmt.Errorf("argument must be a JobID, got %T", args[0])
}

func encodeJobID(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
