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
