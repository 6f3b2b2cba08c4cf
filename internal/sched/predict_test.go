package sched

import (
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// TestPredictionsUseTheOwnersLastTwoRuns: the average of the owner's last
// two finished jobs, capped at the walltime; the walltime without history,
// and for anonymous jobs (owner ""), whose history is no one's.
func TestPredictionsUseTheOwnersLastTwoRuns(t *testing.T) {
	now := testkit.Epoch.Add(24 * time.Hour)
	ran := func(owner string, id model.JobID, d time.Duration, ago time.Duration) model.FinishedJob {
		end := now.Add(-ago)
		return model.FinishedJob{ID: id, Owner: owner, Ran: d, StartTime: end.Add(-d), EndTime: end}
	}
	history := []model.FinishedJob{
		ran("ann", 1, 9*time.Hour, 5*time.Hour), // older than her last two
		ran("ann", 2, 10*time.Minute, 3*time.Hour),
		ran("ann", 3, 30*time.Minute, 2*time.Hour),
		ran("", 4, time.Minute, time.Hour),
		ran("", 5, time.Minute, time.Hour),
	}
	job := func(owner string, wall time.Duration) *model.Job {
		return testkit.Job(9).Owner(owner).Walltime(wall).Build()
	}
	for _, tc := range []struct {
		name string
		job  *model.Job
		want time.Duration
	}{
		{"average of the last two", job("ann", 4*time.Hour), 20 * time.Minute},
		{"capped at the walltime", job("ann", 15*time.Minute), 15 * time.Minute},
		{"no history: the walltime", job("bob", 2*time.Hour), 2 * time.Hour},
		{"anonymous: the walltime", job("", 2*time.Hour), 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Snapshot{Pending: []*model.Job{tc.job}, History: history}
			e := newEstimator(s, now, Config{}, nil, true, newHistoryOrder(history))
			if got := time.Duration(e.runFor(tc.job)); got != tc.want {
				t.Errorf("predicted %s, want %s", got, tc.want)
			}
		})
	}
}
