package zzsim

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/durehq/dure/internal/model"
)

// ReadQueues parses a queue configuration for dure simulate --queues:
//
//	queues:
//	  - name: research            # a cohort: its children lend each other quota
//	  - name: vision
//	    parent: research
//	    weight: 2                 # fair-share weight against siblings (default 1)
//	    default_walltime: 4h      # for jobs that give none
//	    quotas:
//	      cpu: {nominal: 64, borrowing_limit: 32}    # cores
//	      gpu/H100: {nominal: 16, lending_limit: 8}  # devices of one flavor
//	      memory: {nominal: 512G}                    # K, M, G, T (binary)
//
// Unknown keys are errors; every error names the queue and the field.
func ReadQueues(data []byte) ([]*model.Queue, error) {
	var f struct {
		Queues []struct {
			Name            string                `json:"name"`
			Description     string                `json:"description"`
			Parent          string                `json:"parent"`
			Weight          *float64              `json:"weight"`
			DefaultWalltime string                `json:"default_walltime"`
			Quotas          map[string]quotaEntry `json:"quotas"`
		} `json:"queues"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	if len(f.Queues) == 0 {
		return nil, fmt.Errorf("queues: no queues listed (want a top-level \"queues:\" list)")
	}
	byName := map[string]int{}
	out := make([]*model.Queue, 0, len(f.Queues))
	for i, e := range f.Queues {
		at := fmt.Sprintf("queues[%d]", i)
		if e.Name == "" {
			return nil, fmt.Errorf("%s.name: required", at)
		}
		at = fmt.Sprintf("queues[%d] (%s)", i, e.Name)
		if _, dup := byName[e.Name]; dup {
			return nil, fmt.Errorf("%s.name: %q is listed twice", at, e.Name)
		}
		byName[e.Name] = i
		q := &model.Queue{Name: e.Name, Description: e.Description, Parent: e.Parent}
		if e.Weight != nil {
			if *e.Weight <= 0 || math.IsInf(*e.Weight, 0) || math.IsNaN(*e.Weight) {
				return nil, fmt.Errorf("%s.weight: must be a positive number (got %v)", at, *e.Weight)
			}
			q.Weight = *e.Weight
		}
		if e.DefaultWalltime != "" {
			d, err := time.ParseDuration(e.DefaultWalltime)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%s.default_walltime: %q is not a positive duration like 4h or 30m", at, e.DefaultWalltime)
			}
			q.DefaultWalltime = d
		}
		keys := make([]string, 0, len(e.Quotas))
		for k := range e.Quotas {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, res := range keys {
			qe := e.Quotas[res]
			fat := fmt.Sprintf("%s.quotas.%s", at, res)
			if res == "" || strings.Count(res, "/") > 1 || strings.HasPrefix(res, "/") || strings.HasSuffix(res, "/") {
				return nil, fmt.Errorf("%s: a resource is cpu, memory, gpu, scratch, a custom name, or <resource>/<flavor>", fat)
			}
			if qe.Nominal == nil {
				return nil, fmt.Errorf("%s.nominal: required", fat)
			}
			quota := model.Quota{Resource: res}
			var err error
			if quota.Nominal, err = qe.Nominal.amount(res); err != nil {
				return nil, fmt.Errorf("%s.nominal: %w", fat, err)
			}
			if qe.BorrowingLimit != nil {
				v, err := qe.BorrowingLimit.amount(res)
				if err != nil {
					return nil, fmt.Errorf("%s.borrowing_limit: %w", fat, err)
				}
				quota.BorrowingLimit = &v
			}
			if qe.LendingLimit != nil {
				v, err := qe.LendingLimit.amount(res)
				if err != nil {
					return nil, fmt.Errorf("%s.lending_limit: %w", fat, err)
				}
				quota.LendingLimit = &v
			}
			q.Quotas = append(q.Quotas, quota)
		}
		out = append(out, q)
	}
	for i, q := range out {
		if q.Parent == "" {
			continue
		}
		if _, ok := byName[q.Parent]; !ok {
			return nil, fmt.Errorf("queues[%d] (%s).parent: no queue named %q", i, q.Name, q.Parent)
		}
		// Walk up: a cycle would come back to q.
		seen := map[string]bool{q.Name: true}
		for p := q.Parent; p != ""; p = out[byName[p]].Parent {
			if seen[p] {
				return nil, fmt.Errorf("queues[%d] (%s).parent: the parent chain loops back through %q", i, q.Name, p)
			}
			seen[p] = true
		}
	}
	return out, nil
}

type quotaEntry struct {
	Nominal        *quantity `json:"nominal"`
	BorrowingLimit *quantity `json:"borrowing_limit"`
	LendingLimit   *quantity `json:"lending_limit"`
}

// quantity is a number or a string with a unit, as written.
type quantity string

func (q *quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*q = quantity(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a number or a string like 512G")
	}
	*q = quantity(n.String())
	return nil
}

// amount converts the quantity to the unit model.Quota uses for res:
// millicores for cpu, bytes for memory and scratch, a count otherwise.
func (q quantity) amount(res string) (int64, error) {
	base, _, _ := strings.Cut(res, "/")
	s := strings.TrimSpace(string(q))
	switch base {
	case "cpu":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1e9 || math.IsNaN(f) {
			return 0, fmt.Errorf("%q is not a number of cores (e.g. 64 or 0.5)", s)
		}
		return int64(math.Round(f * 1000)), nil
	case "memory", "scratch":
		num, unit := splitNumber(s)
		mult := int64(1)
		if unit != "" {
			m, ok := memUnits[strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(unit), "B"), "I")]
			if !ok {
				return 0, fmt.Errorf("%q: unknown unit %q (want K, M, G or T)", s, unit)
			}
			mult = m
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f < 0 || f*float64(mult) > 1<<62 {
			return 0, fmt.Errorf("%q is not a size (e.g. 512G)", s)
		}
		return int64(f * float64(mult)), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a whole non-negative count", s)
	}
	return n, nil
}
