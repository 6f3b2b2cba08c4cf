package sim

import (
	"fmt"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/spec"
)

// ReadQueues parses the queue file of dure simulate --queues. It is the
// file dure server --queues and dure queue apply read
// (spec.ParseQueueFile), describing the whole tree (every parent listed):
//
//	queues:
//	  - name: research            # a cohort: its children lend each other quota
//	  - name: q1
//	    parent: research
//	    weight: 2                 # fair-share weight against siblings (0 or absent: 1)
//	    default_walltime: 4h      # for jobs that give none
//	    quotas:
//	      - {resource: cpu, nominal: 64000, borrowing_limit: 32000}  # millicores
//	      - {resource: gpu/H100, nominal: 16, lending_limit: 8}      # devices of one flavor
//	      - {resource: memory, nominal: 549755813888}                # bytes
//
// Queue names are matched with the trace's (SWF field 15, Philly's virtual
// cluster, openb's QoS class: docs/simulate.md). members is accepted and
// ignored: the simulator does not check who submits. Errors name the field:
// queues[1].quotas[0].nominal: ….
func ReadQueues(data []byte) ([]*model.Queue, error) {
	f, err := spec.ParseQueueFile(data, true)
	if err != nil {
		return nil, err
	}
	if len(f.Queues) == 0 {
		return nil, fmt.Errorf("queue file: no queues listed (want a top-level \"queues:\" list)")
	}
	out := make([]*model.Queue, len(f.Queues))
	for i := range f.Queues {
		q := spec.QueueToModel(&f.Queues[i])
		out[i] = &q
	}
	return out, nil
}
