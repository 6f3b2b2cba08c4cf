package server

import (
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
)

func TestHoldBackoffKeepsRequeuedJobsOutUntilEligible(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	fresh := &model.Job{ID: 1}
	due := &model.Job{ID: 2, Attempt: 1, EligibleAt: now}
	later := &model.Job{ID: 3, Attempt: 2, EligibleAt: now.Add(2 * time.Second)}
	soonest := &model.Job{ID: 4, Attempt: 1, EligibleAt: now.Add(time.Second)}
	ready, held, wake := holdBackoff([]*model.Job{fresh, due, later, soonest}, now)
	if len(ready) != 2 || ready[0] != fresh || ready[1] != due {
		t.Errorf("ready = %v; want jobs 1 and 2 (no backoff, backoff over)", ready)
	}
	if len(held) != 2 || held[3].Code != model.ReasonBackoff || held[4].Code != model.ReasonBackoff {
		t.Errorf("held = %v; want jobs 3 and 4 with reason %s", held, model.ReasonBackoff)
	}
	if want := "retry 2 waits out its backoff until 12:00:02 (2s from now)"; held[3].Message != want {
		t.Errorf("message %q; want %q", held[3].Message, want)
	}
	if !wake.Equal(now.Add(time.Second)) {
		t.Errorf("wake at %v; want the earliest eligibility, %v", wake, now.Add(time.Second))
	}
	if got := model.RetryBackoff(1); got != time.Second {
		t.Errorf("first backoff %s; want 1s", got)
	}
	if got := model.RetryBackoff(30); got != time.Minute {
		t.Errorf("backoff cap %s; want 1m", got)
	}
}
