package sched

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/durehq/dure/internal/model"
)

// TestSortQueuedMatchesCmpJobKey checks dure's own sort of an owner's jobs
// against the library sort with the same comparison, on random keys with
// many ties (few priorities and submit seconds), for lengths around the
// sort's run size and merge widths.
func TestSortQueuedMatchesCmpJobKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 0))
	for _, n := range []int{0, 1, 2, 11, 12, 13, 24, 25, 47, 48, 49, 100, 777} {
		for rep := 0; rep < 20; rep++ {
			ks := make([]queuedJob, n)
			for i := range ks {
				ks[i] = queuedJob{jobKey: jobKey{prio: rng.IntN(3) - 1, sec: int64(rng.IntN(5)), nsec: int32(rng.IntN(3)), pos: int32(i), id: model.JobID(rng.IntN(4 * max(n, 1)))}, run: int64(i)}
			}
			want := slices.Clone(ks)
			slices.SortFunc(want, func(a, b queuedJob) int { return cmpJobKey(a.jobKey, b.jobKey) })
			got := slices.Clone(ks)
			sortQueued(got, make([]queuedJob, n))
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d: sorted\n%v\nwant\n%v", n, got, want)
			}
		}
	}
}

// TestSortReleaseKeysMatchesTheComparison checks the timeline's sort of
// allocation releases against the library sort with the same order.
func TestSortReleaseKeysMatchesTheComparison(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 0))
	for _, n := range []int{0, 1, 12, 13, 25, 100, 1000} {
		ks := make([]releaseKey, n)
		for i := range ks {
			ks[i] = releaseKey{at: int64(rng.IntN(6)), job: model.JobID(rng.IntN(5)) << (62 * rng.IntN(2)), node: int32(rng.IntN(4)), pos: int32(i)}
		}
		want := slices.Clone(ks)
		slices.SortFunc(want, func(x, y releaseKey) int {
			switch {
			case x.at != y.at:
				return cmpInt64(x.at, y.at)
			case x.node != y.node:
				return int(x.node - y.node)
			case x.job != y.job:
				return cmpInt64(int64(x.job), int64(y.job))
			}
			return int(x.pos - y.pos)
		})
		got := slices.Clone(ks)
		sortReleaseKeys(got, make([]releaseKey, n))
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d: sorted\n%v\nwant\n%v", n, got, want)
		}
	}
}
