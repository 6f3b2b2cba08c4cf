package spec

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// Limits on queue configuration.
const (
	MaxQueues         = 1000
	MaxQuotasPerQueue = 64
	MaxQueueMembers   = 10000
	MaxQueueWeight    = 1e6
	MaxQuotaAmount    = int64(1) << 60
)

// builtinQuotaResources are the resource names a quota may use besides
// custom resource names; "<resource>/<flavor>" narrows one to a flavor.
var builtinQuotaResources = map[string]bool{"cpu": true, "memory": true, "gpu": true, "scratch": true}

// ParseQueueFile reads a queue configuration file (YAML or JSON):
//
//	queues:
//	  - name: research
//	    weight: 2
//	  - name: vision
//	    parent: research
//	    quotas:
//	      - {resource: gpu, nominal: 16, borrowing_limit: 8}
//
// Unknown fields are errors. The file is validated as a whole: names unique,
// no cycles, and — with requireParents, for a file that describes the whole
// tree — every parent defined in the file. (`dure queue apply` passes false:
// its parents may exist on the server already, which checks them.)
func ParseQueueFile(data []byte, requireParents bool) (api.QueueFile, error) {
	f, err := parseQueueYAML(data)
	if err != nil {
		return f, err
	}
	if err := validateQueueSet(f.Queues, requireParents); err != nil {
		return f, err
	}
	return f, nil
}

// ValidateQueue checks one queue's fields. Tree rules (parents exist, no
// cycles) need the other queues: see ValidateQueueSet.
func ValidateQueue(q *api.QueueSpec) error {
	v := &validator{}
	v.queue("", q)
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

func (v *validator) queue(prefix string, q *api.QueueSpec) {
	v.name(prefix+"name", q.Name)
	if q.Parent != "" {
		if !validName(q.Parent) {
			v.add(prefix+"parent", "%s; got %q", nameRule, q.Parent)
		} else if q.Parent == q.Name {
			v.add(prefix+"parent", "a queue cannot be its own parent")
		}
	}
	if len(q.Description) > 1024 {
		v.add(prefix+"description", "must be at most 1024 bytes")
	}
	if math.IsNaN(q.Weight) || q.Weight < 0 || q.Weight > MaxQueueWeight {
		v.add(prefix+"weight", "must be between 0 and %g (0 means 1); got %g", MaxQueueWeight, q.Weight)
	}
	if q.DefaultWalltime < 0 || time.Duration(q.DefaultWalltime) > MaxWalltime {
		v.add(prefix+"default_walltime", "must be between 0 and %s; got %s", MaxWalltime, time.Duration(q.DefaultWalltime))
	}
	if len(q.Quotas) > MaxQuotasPerQueue {
		v.add(prefix+"quotas", "at most %d quotas", MaxQuotasPerQueue)
	}
	seen := map[string]bool{}
	for i, qu := range q.Quotas {
		f := fmt.Sprintf("%squotas[%d]", prefix, i)
		if msg := quotaResourceProblem(qu.Resource); msg != "" {
			v.add(f+".resource", "%s; got %q", msg, qu.Resource)
		} else if seen[qu.Resource] {
			v.add(f+".resource", "%q has two quotas; give each resource one", qu.Resource)
		}
		seen[qu.Resource] = true
		if qu.Nominal < 0 || qu.Nominal > MaxQuotaAmount {
			v.add(f+".nominal", "must be between 0 and %d; got %d", MaxQuotaAmount, qu.Nominal)
		}
		if qu.BorrowingLimit != nil && (*qu.BorrowingLimit < 0 || *qu.BorrowingLimit > MaxQuotaAmount) {
			v.add(f+".borrowing_limit", "must be between 0 and %d; got %d", MaxQuotaAmount, *qu.BorrowingLimit)
		}
		if qu.LendingLimit != nil && (*qu.LendingLimit < 0 || *qu.LendingLimit > qu.Nominal) {
			v.add(f+".lending_limit", "must be between 0 and the nominal quota %d; got %d", qu.Nominal, *qu.LendingLimit)
		}
	}
	if len(q.Members) > MaxQueueMembers {
		v.add(prefix+"members", "at most %d members", MaxQueueMembers)
	}
	for i, m := range q.Members {
		if m == "" || len(m) > MaxOwnerLen || strings.ContainsAny(m, " \t\n\x00") {
			v.add(fmt.Sprintf("%smembers[%d]", prefix, i), "must be a user name of 1-%d characters without spaces", MaxOwnerLen)
		}
	}
}

// quotaResourceProblem says what is wrong with a quota's resource name, or "".
func quotaResourceProblem(r string) string {
	base, flavor, flavored := strings.Cut(r, "/")
	switch {
	case r == "":
		return "required"
	case flavored && (flavor == "" || len(flavor) > MaxLabelLen || strings.ContainsAny(flavor, " /=\x00")):
		return "a flavor after '/' must be a non-empty label value without spaces, '/' or '='"
	case builtinQuotaResources[base]:
		return ""
	case builtinResources[base]:
		return "use cpu, memory, gpu or scratch"
	case !validName(base):
		return "must be cpu, memory, gpu, scratch or a custom resource name, optionally followed by /flavor"
	}
	return ""
}

// ValidateQueueSet checks a whole set of queues: each one's fields, unique
// names, parents present in the set, and no cycles.
func ValidateQueueSet(qs []api.QueueSpec) error { return validateQueueSet(qs, true) }

func validateQueueSet(qs []api.QueueSpec, requireParents bool) error {
	v := &validator{}
	if len(qs) > MaxQueues {
		v.add("queues", "at most %d queues", MaxQueues)
	}
	byName := map[string]*api.QueueSpec{}
	for i := range qs {
		prefix := fmt.Sprintf("queues[%d].", i)
		v.queue(prefix, &qs[i])
		if byName[qs[i].Name] != nil {
			v.add(prefix+"name", "queue %q appears twice", qs[i].Name)
		}
		byName[qs[i].Name] = &qs[i]
	}
	for i := range qs {
		if p := qs[i].Parent; requireParents && p != "" && byName[p] == nil {
			v.add(fmt.Sprintf("queues[%d].parent", i), "queue %q is not defined", p)
		}
	}
	parents := map[string]string{}
	for _, q := range qs {
		parents[q.Name] = q.Parent
	}
	for i, q := range qs {
		if cycle := QueueCycle(parents, q.Name); cycle != "" {
			v.add(fmt.Sprintf("queues[%d].parent", i), "queues form a cycle: %s", cycle)
			break
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// QueueCycle follows parents from start and returns the cycle it finds
// ("a → b → a"), or "".
func QueueCycle(parents map[string]string, start string) string {
	path := []string{start}
	seen := map[string]bool{start: true}
	for cur := parents[start]; cur != ""; cur = parents[cur] {
		path = append(path, cur)
		if seen[cur] {
			return strings.Join(path, " → ")
		}
		seen[cur] = true
	}
	return ""
}

// QueueToModel turns a validated queue spec into the domain type.
func QueueToModel(q *api.QueueSpec) model.Queue {
	out := model.Queue{
		Name: q.Name, Description: q.Description, Parent: q.Parent, Weight: q.Weight,
		DefaultWalltime: time.Duration(q.DefaultWalltime), Members: append([]string(nil), q.Members...),
	}
	for _, qu := range q.Quotas {
		mq := model.Quota{Resource: qu.Resource, Nominal: qu.Nominal}
		if qu.BorrowingLimit != nil {
			b := *qu.BorrowingLimit
			mq.BorrowingLimit = &b
		}
		if qu.LendingLimit != nil {
			l := *qu.LendingLimit
			mq.LendingLimit = &l
		}
		out.Quotas = append(out.Quotas, mq)
	}
	return out
}

// QueueFromModel is QueueToModel's inverse, for answers.
func QueueFromModel(q *model.Queue) api.QueueSpec {
	out := api.QueueSpec{
		Name: q.Name, Description: q.Description, Parent: q.Parent, Weight: q.Weight,
		DefaultWalltime: api.Duration(q.DefaultWalltime), Members: q.Members,
	}
	for _, qu := range q.Quotas {
		out.Quotas = append(out.Quotas, api.QuotaSpec{Resource: qu.Resource, Nominal: qu.Nominal, BorrowingLimit: qu.BorrowingLimit, LendingLimit: qu.LendingLimit})
	}
	return out
}
