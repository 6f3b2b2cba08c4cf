package spec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// ParseArray reads Slurm's --array syntax: comma-separated indices and
// ranges ("1,3,5-7"), a range with a step ("0-15:4" is 0,4,8,12), and an
// optional "%N" at the end that runs at most N elements at once
// ("1-1000%50"). Indices run from 0 to MaxArrayIndex, and one array has at
// most model.MaxArraySize elements.
func ParseArray(s string) (model.Array, error) {
	var a model.Array
	text := strings.TrimSpace(s)
	if text == "" {
		return a, errors.New("want array indices such as 0-99, 1,3,5-7 or 0-15:4, optionally followed by %N")
	}
	if len(text) > MaxArrayText {
		return a, fmt.Errorf("is %d characters; at most %d are allowed", len(text), MaxArrayText)
	}
	if body, throttle, ok := strings.Cut(text, "%"); ok {
		n, err := strconv.Atoi(throttle)
		switch {
		case err != nil || !allDigits(throttle) && !strings.HasPrefix(throttle, "-"):
			return a, fmt.Errorf("throttle %%%s: want a whole number after %%, such as 1-100%%10", throttle)
		case n < 1:
			return a, fmt.Errorf("throttle %%%d: must be at least 1 (the most elements that run at once)", n)
		}
		a.Throttle, text = n, body
	}
	parts := strings.Split(text, ",")
	if len(parts) > model.MaxArrayRanges {
		return a, fmt.Errorf("has %d comma-separated parts; at most %d are allowed", len(parts), model.MaxArrayRanges)
	}
	for _, p := range parts {
		r, err := parseArrayRange(strings.TrimSpace(p))
		if err != nil {
			return a, err
		}
		a.Ranges = append(a.Ranges, r)
	}
	if a.Indices(model.MaxArraySize) == nil {
		return a, fmt.Errorf("%q has more than %d elements; at most %d are allowed per submission", text, model.MaxArraySize, model.MaxArraySize)
	}
	return a, nil
}

func parseArrayRange(p string) (model.ArrayRange, error) {
	var r model.ArrayRange
	span, stepText, hasStep := strings.Cut(p, ":")
	first, last, isRange := strings.Cut(span, "-")
	var err error
	if r.First, err = arrayIndex(first, p); err != nil {
		return r, err
	}
	r.Last = r.First
	if isRange {
		if r.Last, err = arrayIndex(last, p); err != nil {
			return r, err
		}
		if r.Last < r.First {
			return r, fmt.Errorf("range %q runs backwards; write the lower index first", p)
		}
	}
	if hasStep {
		if !isRange {
			return r, fmt.Errorf("%q: a step (:S) needs a range, such as 0-15:4", p)
		}
		n, err := strconv.Atoi(stepText)
		if err != nil || n < 1 || !allDigits(stepText) {
			return r, fmt.Errorf("%q: the step after : must be a whole number 1 or more", p)
		}
		if n > 1 {
			r.Step = n
		}
	}
	return r, nil
}

func arrayIndex(s, part string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !allDigits(s) {
		if s == "" {
			return 0, fmt.Errorf("%q: want an index or a range such as 5 or 0-99", part)
		}
		return 0, fmt.Errorf("%q: %q is not an index (a whole number from 0 to %d)", part, s, MaxArrayIndex)
	}
	if n < 0 || n > MaxArrayIndex {
		return 0, fmt.Errorf("%q: index %d is out of range; indices run from 0 to %d", part, n, MaxArrayIndex)
	}
	return n, nil
}

// dependencyTypes are the dependency types dure supports; hints answer the
// other Slurm types.
var (
	dependencyTypes = []string{string(model.AfterOK), string(model.AfterAny), string(model.AfterNotOK)}
	dependencyHints = map[string]string{
		"after":            "after (start after the job started) is not supported; use afterany or afterok",
		"aftercorr":        "aftercorr (element by element between arrays) is not supported; depend on the whole array with afterok:ID",
		"afterburstbuffer": "afterburstbuffer is not supported; use afterany",
		"singleton":        "singleton is not supported",
	}
)

// ParseDependency reads Slurm's --dependency syntax: conditions separated
// by commas, all of which must hold, each a type and one or more jobs,
// "afterok:12:13,afterany:14_2". Jobs are IDs or array elements (ID_INDEX);
// an array's ID means the whole array.
func ParseDependency(s string) ([]api.DependencySpec, error) {
	text := strings.TrimSpace(s)
	if text == "" {
		return nil, errors.New("want conditions such as afterok:12 or afterok:12:13,afterany:14")
	}
	if strings.Contains(text, "?") {
		return nil, errors.New("'?' (start when any one condition holds) is not supported; every condition must hold: separate them with ','")
	}
	var out []api.DependencySpec
	for _, cond := range strings.Split(text, ",") {
		cond = strings.TrimSpace(cond)
		typ, jobs, ok := strings.Cut(cond, ":")
		if err := checkDependencyType(typ); err != nil {
			return nil, fmt.Errorf("%q: %w", cond, err)
		}
		if !ok || jobs == "" {
			return nil, fmt.Errorf("%q: name the jobs after the type, such as %s:12", cond, typ)
		}
		for _, ref := range strings.Split(jobs, ":") {
			if strings.Contains(ref, "+") {
				return nil, fmt.Errorf("%q: delays (+MINUTES) are not supported", cond)
			}
			if _, err := api.ParseJobRef(ref); err != nil {
				return nil, fmt.Errorf("%q: %w", cond, err)
			}
			out = append(out, api.DependencySpec{Type: typ, Job: ref})
			if len(out) > MaxDependencies {
				return nil, fmt.Errorf("names more than %d jobs; at most %d are allowed", MaxDependencies, MaxDependencies)
			}
		}
	}
	return out, nil
}

// checkDependencyType accepts the supported types.
func checkDependencyType(typ string) error {
	if contains(dependencyTypes, typ) {
		return nil
	}
	if hint, ok := dependencyHints[typ]; ok {
		return errors.New(hint)
	}
	return fmt.Errorf("unknown dependency type %q; want %s", typ, strings.Join(dependencyTypes, ", "))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
