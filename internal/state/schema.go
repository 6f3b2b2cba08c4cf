package state

import (
	"fmt"

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
			"id":    {Name: "id", Unique: true, Indexer: idField("ID", func(j *model.Job) uint64 { return uint64(j.ID) })},
			"state": {Name: "state", Indexer: stringField("State", func(j *model.Job) string { return string(j.State) })},
			// Finished jobs only, newest last: the scheduler's history
			// window reads the newest without walking the pending ones.
			"finished": {Name: "finished", AllowMissing: true, Indexer: finishedIndex{}},
			"idem": {Name: "idem", AllowMissing: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
				stringField("Owner", func(j *model.Job) string { return j.Owner }),
				stringField("IdempotencyKey", func(j *model.Job) string { return j.IdempotencyKey }),
			}}},
		}},
		tableAllocs: {Name: tableAllocs, Indexes: map[string]*memdb.IndexSchema{
			"id":  {Name: "id", Unique: true, Indexer: stringField("ID", func(a *model.Allocation) string { return a.ID })},
			"job": {Name: "job", Indexer: idField("JobID", func(a *model.Allocation) uint64 { return uint64(a.JobID) })},
			"live": {Name: "live", Indexer: &memdb.ConditionalIndex{Conditional: func(obj any) (bool, error) {
				return !obj.(*model.Allocation).Status.Terminal(), nil
			}}},
			// An agent's allocation watch reads these two on every change
			// of its node: the live allocations, and the newest change of
			// any allocation there its agent must hear about. An index on
			// the node alone would make it walk every allocation the node
			// ever ran (kept for days); every allocation on a node, which
			// only a node going down reads, comes from node_agent.
			"live_node": {Name: "live_node", AllowMissing: true, Indexer: liveNodeIndex{}},
			"node_agent": {Name: "node_agent", Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
				stringField("Node", func(a *model.Allocation) string { return a.Node }),
				idField("AgentIndex", func(a *model.Allocation) uint64 { return agentIndex(a) }),
			}}},
		}},
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: stringField("Name", func(n *model.Node) string { return n.Name })},
		}},
		tableQueues: {Name: tableQueues, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: stringField("Name", func(q *model.Queue) string { return q.Name })},
		}},
		tableMeta: {Name: tableMeta, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: stringField("Key", func(m *metaEntry) string { return m.Key })},
		}},
	}}
}

// stringFieldIndex gives the keys of memdb.StringFieldIndex (the string
// and a NUL; no entry for an empty string) from a typed getter: the
// reflection that StringFieldIndex reads a field with was a tenth of the
// cost of a write.
type stringFieldIndex struct {
	memdb.StringFieldIndex // FromArgs and PrefixFromArgs
	get                    func(obj any) (string, bool)
}

func stringField[T any](field string, get func(*T) string) *stringFieldIndex {
	return &stringFieldIndex{StringFieldIndex: memdb.StringFieldIndex{Field: field}, get: func(obj any) (string, bool) {
		o, ok := obj.(*T)
		if !ok {
			return "", false
		}
		return get(o), true
	}}
}

func (x *stringFieldIndex) FromObject(obj any) (bool, []byte, error) {
	v, ok := x.get(obj)
	if !ok {
		return false, nil, fmt.Errorf("index on %s: unexpected object %T", x.Field, obj)
	}
	if v == "" {
		return false, nil, nil
	}
	return true, append([]byte(v), 0), nil
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

// jobIDIndex indexes a model.JobID (or other uint64) field as 16 bytes of
// one hex digit each, most significant first, so that radix order is
// numeric order (memdb's UintFieldIndex uses varints, which do not sort) and
// "newest first" is a reverse scan. One digit per byte rather than eight
// big-endian bytes keeps every radix node at 16 children or fewer: a write
// copies the nodes on its path, and with sequential IDs the last byte's
// nodes had up to 256 (4 KiB each). BenchmarkJobLifecycle: 14% less time,
// 20% fewer bytes allocated per job.
type jobIDIndex struct {
	field string
	get   func(obj any) (uint64, bool)
}

func idField[T any](field string, get func(*T) uint64) *jobIDIndex {
	return &jobIDIndex{field: field, get: func(obj any) (uint64, bool) {
		o, ok := obj.(*T)
		if !ok {
			return 0, false
		}
		return get(o), true
	}}
}

func (x *jobIDIndex) FromObject(obj any) (bool, []byte, error) {
	v, ok := x.get(obj)
	if !ok {
		return false, nil, fmt.Errorf("index on %s: unexpected object %T", x.field, obj)
	}
	return true, encodeJobID(v), nil
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
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(v>>(60-4*i)) & 0xf
	}
	return b
}

// agentIndex is an allocation's AgentIndex; one restored from a snapshot
// written before the field existed has its ModifyIndex instead, which is
// never lower (every change, the agent's included, counts there).
func agentIndex(a *model.Allocation) uint64 {
	if a.AgentIndex == 0 {
		return a.ModifyIndex
	}
	return a.AgentIndex
}
