package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

func TestRenderExplanation(t *testing.T) {
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	e := api.Explanation{
		JobID:          12,
		Reason:         api.Reason{Code: "Reserved", Message: "reserved for job 11, estimated start 14:30"},
		EstimatedStart: now.Add(40 * time.Minute),
		Sooner: []api.Alternative{
			{Change: "set walltime 30m instead of 1h", Start: now},
			{Change: "ask for 4 GPUs per task instead of 8", Start: now.Add(10 * time.Minute)},
		},
	}
	var b bytes.Buffer
	renderExplanation(&b, "12", &e, now, time.UTC)
	want := `Job 12 is pending: Reserved
  reserved for job 11, estimated start 14:30
Estimated start: 2026-11-22 14:40:00 (in 40m)
It would start sooner if you:
  - set walltime 30m instead of 1h: at once
  - ask for 4 GPUs per task instead of 8: 2026-11-22 14:10:00 (in 10m)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	renderExplanation(&b, "3", &api.Explanation{JobID: 3, StartsNow: true}, now, time.UTC)
	if b.String() != "Job 3 can start now: the next scheduling pass places it.\n" {
		t.Errorf("starts now: %q", b.String())
	}
}

// A job with no estimated start says what it waits for, by reason, and an
// array element is named as the user named it.
func TestRenderExplanationWithoutEstimate(t *testing.T) {
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	e := api.Explanation{JobID: 41, Reason: api.Reason{Code: "QuotaExceeded", Message: "queue vision is at its borrowing limit"}}
	var b bytes.Buffer
	renderExplanation(&b, "36_5", &e, now, time.UTC)
	want := `Job 36_5 is pending: QuotaExceeded
  queue vision is at its borrowing limit
Estimated start: unknown: it starts when its queue's running jobs free quota (or its cohort has quota to lend)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
