package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The first election after a start is logged as information, an election
// because a known leader went silent as a warning.
func TestRaftElectionLogLevels(t *testing.T) {
	var buf bytes.Buffer
	w := slogWriter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	w.Write([]byte("2026-11-22T18:38:55.987Z [WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr= last-leader-id=\n"))
	w.Write([]byte("2026-11-22T18:39:55.987Z [WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr=127.0.0.1:7071 last-leader-id=s1\n"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "level=INFO") {
		t.Errorf("first election logged as %q; want level INFO", lines[0])
	}
	if !strings.Contains(lines[1], "level=WARN") {
		t.Errorf("election after losing leader s1 logged as %q; want level WARN", lines[1])
	}
}
