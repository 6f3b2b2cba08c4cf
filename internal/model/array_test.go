package model

import (
	"fmt"
	"slices"
	"testing"
)

func TestArrayIndices(t *testing.T) {
	tests := []struct {
		name   string
		ranges []ArrayRange
		limit  int
		want   []int
	}{
		{"one range", []ArrayRange{{First: 1, Last: 4}}, 10, []int{1, 2, 3, 4}},
		{"step stops before last", []ArrayRange{{First: 0, Last: 15, Step: 4}}, 10, []int{0, 4, 8, 12}},
		{"sorted and deduplicated", []ArrayRange{{First: 7, Last: 7}, {First: 1, Last: 9, Step: 3}}, 10, []int{1, 4, 7}},
		{"an index named twice counts twice", []ArrayRange{{First: 0, Last: 1}, {First: 0, Last: 1}}, 3, nil},
		{"exactly the limit", []ArrayRange{{First: 0, Last: 2}}, 3, []int{0, 1, 2}},
		{"over the limit", []ArrayRange{{First: 0, Last: 3}}, 3, nil},
		{"huge range stops at the limit", []ArrayRange{{First: 0, Last: 1 << 62}}, 5, nil},
		{"range at the top of int", []ArrayRange{{First: 1<<63 - 2, Last: 1<<63 - 1, Step: 5}}, 5, []int{1<<63 - 2}},
		{"backwards", []ArrayRange{{First: 3, Last: 1}}, 5, nil},
		{"negative", []ArrayRange{{First: -1, Last: 1}}, 5, nil},
		{"negative step", []ArrayRange{{First: 1, Last: 3, Step: -1}}, 5, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Array{Ranges: tc.ranges}).Indices(tc.limit); !slices.Equal(got, tc.want) {
				t.Errorf("Indices = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestFormatIndices(t *testing.T) {
	tests := map[string][]int{
		"":              nil,
		"7":             {7},
		"0-19":          {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
		"1,3":           {1, 3},
		"1-2":           {1, 2},
		"0-12:4":        {0, 4, 8, 12},
		"1,3,5-7":       {1, 3, 5, 6, 7},
		"1-3,10-30:10":  {1, 2, 3, 10, 20, 30},
		"1,100,200,250": {1, 100, 200, 250},
	}
	for want, idx := range tests {
		if got := FormatIndices(idx); got != want {
			t.Errorf("FormatIndices(%v) = %q; want %q", idx, got, want)
		}
	}
}

// The element ArrayDependencyVerdict names must give the scheduler, which
// judges one job's state at a time, the same verdict as the whole array.
func TestArrayDependencyVerdictDeciderAgrees(t *testing.T) {
	all := []JobState{JobPending, JobRunning, JobSucceeded, JobFailed, JobCancelled}
	var combos [][]JobState
	for _, a := range all {
		combos = append(combos, []JobState{a})
		for _, b := range all {
			combos = append(combos, []JobState{a, b})
			for _, c := range all {
				combos = append(combos, []JobState{a, b, c})
			}
		}
	}
	for _, typ := range []DependencyType{AfterOK, AfterAny, AfterNotOK} {
		for _, states := range combos {
			ok, never, k := ArrayDependencyVerdict(typ, states)
			if k < 0 || k >= len(states) {
				t.Fatalf("%s %v: decider %d out of range", typ, states, k)
			}
			dok, dnever := Dependency{Type: typ}.Satisfied(states[k])
			if dok != ok || dnever != never {
				t.Errorf("%s %v: verdict ok=%v never=%v, but element %d (%s) gives ok=%v never=%v", typ, states, ok, never, k, states[k], dok, dnever)
			}
			// The verdict itself, by its definition.
			ended, succeeded := 0, 0
			for _, s := range states {
				if s.Terminal() {
					ended++
				}
				if s == JobSucceeded {
					succeeded++
				}
			}
			var wantOK, wantNever bool
			switch typ {
			case AfterOK:
				wantOK, wantNever = succeeded == len(states), ended > succeeded
			case AfterAny:
				wantOK = ended == len(states)
			case AfterNotOK:
				wantOK, wantNever = ended == len(states) && succeeded < ended, succeeded == len(states)
			}
			if ok != wantOK || never != wantNever {
				t.Errorf("%s %v: ok=%v never=%v; want ok=%v never=%v", typ, states, ok, never, wantOK, wantNever)
			}
		}
	}
	if ok, never, k := ArrayDependencyVerdict(AfterAny, nil); ok || !never || k != -1 {
		t.Errorf("empty array: ok=%v never=%v decider=%d; want never, -1", ok, never, k)
	}
}

func ExampleFormatIndices() {
	fmt.Println(FormatIndices([]int{0, 1, 2, 3, 8, 12, 16}))
	// Output: 0-3,8-16:4
}
