package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxArraySize is the most elements one array submission may have. The API
// enforces it; the FSM refuses more, whatever a log entry says.
const MaxArraySize = 10000

// MaxArrayRanges bounds the comma-separated ranges of one array.
const MaxArrayRanges = 1000

// ArrayRange is one range of array indices: First, First+Step, … up to and
// including Last when the step reaches it. Step is at least 1.
type ArrayRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
	Step  int `json:"step,omitempty"` // 0 means 1
}

// Array is a job array as submitted: its indices (Slurm's --array A-B:S,C)
// and how many elements may run at once (the %N; 0: no limit).
type Array struct {
	Ranges   []ArrayRange `json:"ranges"`
	Throttle int          `json:"throttle,omitempty"`
}

// Indices returns the array's indices in ascending order without
// duplicates, or nil if the ranges name more than limit indices, counting
// an index named twice twice (so that no input costs more than limit steps),
// or a range is malformed.
func (a Array) Indices(limit int) []int {
	seen := map[int]bool{}
	var out []int
	written := 0
	for _, r := range a.Ranges {
		step := r.Step
		if step == 0 {
			step = 1
		}
		if step < 0 || r.First < 0 || r.Last < r.First {
			return nil
		}
		for i := r.First; i <= r.Last; i += step {
			if written++; written > limit {
				return nil
			}
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
			if i > r.Last-step { // i+step would pass Last (or overflow)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// FormatIndices writes ascending indices compactly in Slurm's syntax:
// "0-19", "1,3,5-7", "0-12:4". Consecutive runs come first; other indices
// form stepped ranges when three or more are evenly spaced.
func FormatIndices(idx []int) string {
	var b strings.Builder
	consecutive := func(i int) bool { return i+1 < len(idx) && idx[i+1] == idx[i]+1 }
	for i := 0; i < len(idx); {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		j := i + 1
		if consecutive(i) {
			for j < len(idx) && idx[j] == idx[j-1]+1 {
				j++
			}
			fmt.Fprintf(&b, "%d-%d", idx[i], idx[j-1])
			i = j
			continue
		}
		if j < len(idx) {
			step := idx[j] - idx[i]
			for j < len(idx) && idx[j]-idx[j-1] == step && !consecutive(j) {
				j++
			}
			if j-i >= 3 {
				fmt.Fprintf(&b, "%d-%d:%d", idx[i], idx[j-1], step)
				i = j
				continue
			}
		}
		b.WriteString(strconv.Itoa(idx[i]))
		i++
	}
	return b.String()
}

// ElementName is how an array element is written: "123_7" (array 123,
// index 7), as Slurm does.
func ElementName(array JobID, index int) string {
	return fmt.Sprintf("%d_%d", uint64(array), index)
}

// DisplayName is how users refer to the job: "123_7" for an element of an array,
// else the ID.
func (j *Job) DisplayName() string {
	if j.ArrayParent != 0 {
		return ElementName(j.ArrayParent, j.ArrayIndex)
	}
	return j.ID.String()
}

// ArrayDependencyVerdict decides a dependency on a whole array from the
// states of its elements: afterok is met when every element succeeded and
// can never be once one did not; afterany when every element ended;
// afternotok when every element ended and at least one did not succeed, and
// never when all succeeded. decider is the index of an element whose state
// alone gives the same verdict under Dependency.Satisfied (the scheduler
// judges dependencies one job at a time), or -1 for an empty array.
func ArrayDependencyVerdict(t DependencyType, states []JobState) (ok, never bool, decider int) {
	if len(states) == 0 {
		return false, true, -1
	}
	firstLive, firstBad, firstGood := -1, -1, -1
	for i, s := range states {
		switch {
		case !s.Terminal():
			if firstLive < 0 {
				firstLive = i
			}
		case s == JobSucceeded:
			if firstGood < 0 {
				firstGood = i
			}
		default:
			if firstBad < 0 {
				firstBad = i
			}
		}
	}
	switch t {
	case AfterOK:
		if firstBad >= 0 {
			return false, true, firstBad
		}
		if firstLive >= 0 {
			return false, false, firstLive
		}
		return true, false, firstGood
	case AfterAny:
		if firstLive >= 0 {
			return false, false, firstLive
		}
		return true, false, 0
	case AfterNotOK:
		if firstLive >= 0 {
			return false, false, firstLive
		}
		if firstBad >= 0 {
			return true, false, firstBad
		}
		return false, true, firstGood
	}
	return false, true, 0
}
