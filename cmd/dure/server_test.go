package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Retention flags the server would quietly replace with its defaults are
// refused, naming the flag.
func TestServerRefusesNonPositiveRetention(t *testing.T) {
	for _, tc := range []struct {
		name      string
		retention time.Duration
		max       int
		want      string
	}{
		{"negative retention", -time.Second, 100, "--job-retention -1s: must be positive"},
		{"zero retention", 0, 100, "--job-retention 0s: must be positive"},
		{"zero cap", time.Hour, 0, "--max-finished-jobs 0: must be at least 1"},
		{"negative cap", time.Hour, -5, "--max-finished-jobs -5: must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := serverFlags{data: t.TempDir(), httpAddr: "127.0.0.1:0", preemptGrace: time.Second,
				retention: tc.retention, maxFinished: tc.max}
			srv, _, err := startServer(f, slog.New(slog.DiscardHandler))
			if err == nil {
				_ = srv.shutdown()
				t.Fatalf("startServer accepted --job-retention %s --max-finished-jobs %d", tc.retention, tc.max)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
