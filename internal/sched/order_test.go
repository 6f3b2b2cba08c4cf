package sched

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/durehq/dure/internal/model"
)

// TestSortJobKeysMatchesCmpJobKey checks dure's own sort of order keys
// against the library sort with the same comparison, on random keys with
// many ties (few priorities and submit seconds), for lengths around the
// sort's run size and merge widths.
func TestSortJobKeysMatchesCmpJobKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 0))
	for _, n := range []int{0, 1, 2, 11, 12, 13, 24, 25, 47, 48, 49, 100, 777} {
		for rep := 0; rep < 20; rep++ {
			ks := make([]jobKey, n)
			for i := range ks {
				ks[i] = jobKey{prio: rng.IntN(3) - 1, sec: int64(rng.IntN(5)), nsec: int32(rng.IntN(3)), pos: int32(i), id: model.JobID(rng.IntN(4 * max(n, 1)))}
			}
			want := slices.Clone(ks)
			slices.SortFunc(want, cmpJobKey)
			got := slices.Clone(ks)
			sortJobKeys(got, make([]jobKey, n))
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d: sorted\n%v\nwant\n%v", n, got, want)
			}
		}
	}
}
