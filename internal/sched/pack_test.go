package sched

import (
	"slices"
	"testing"
)

// TestKnapsackFillsBestPreferringEarlierItems checks the lookahead's
// knapsack against every subset (naive reference).
func TestKnapsackFillsBestPreferringEarlierItems(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sizes    []int64
		capacity int64
		want     []int // chosen items, ascending
	}{
		{"greedy leaves room, a pair fills it", []int64{3, 2, 2}, 4, []int{1, 2}},
		{"everything fits", []int64{1, 2, 3}, 10, []int{0, 1, 2}},
		{"equal fills: the earlier items", []int64{2, 2, 2}, 4, []int{0, 1}},
		{"nothing fits", []int64{5, 6}, 4, nil},
		{"one exact item beats two smaller", []int64{1, 1, 4}, 4, []int{2}},
		{"zero capacity", []int64{1}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			knapsack(len(tc.sizes), func(k int) int64 { return tc.sizes[k] }, tc.capacity, func(k int) { got = append(got, k) })
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("chose %v, want %v", got, tc.want)
			}
			// The naive reference: the best total over all subsets.
			best := int64(0)
			for m := 0; m < 1<<len(tc.sizes); m++ {
				var s int64
				for k := range tc.sizes {
					if m&(1<<k) != 0 {
						s += tc.sizes[k]
					}
				}
				if s <= tc.capacity {
					best = max(best, s)
				}
			}
			var total int64
			for _, k := range got {
				total += tc.sizes[k]
			}
			if total != best {
				t.Errorf("filled %d of %d, the best subset fills %d", total, tc.capacity, best)
			}
		})
	}
}
