package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWaitProgressText(t *testing.T) {
	now := t0
	p := newWaitProgress(&bytes.Buffer{}, false, []string{"12", "13", "14_3", "20"}, func() time.Time { return now })
	p.seen("12", "pending")
	p.seen("13", "running")
	p.seen("14_3", "pending")
	now = t0.Add(14*time.Second + 300*time.Millisecond)
	if got, want := p.textLocked(), "waiting 14s for 4 jobs: 1 running, 2 pending"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	p.finish("12", func() {})
	p.finish("13", func() {})
	p.finish("20", func() {})
	if got, want := p.textLocked(), "waiting 14s for job 14_3: pending"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
}

// On a terminal the line is drawn, erased before each outcome line, and
// erased at the end, so only the outcomes stay on the screen.
func TestWaitProgressErasesItselfAroundOutcomes(t *testing.T) {
	var buf bytes.Buffer
	w := &lockedWriter{w: &buf}
	p := newWaitProgress(w, true, []string{"7", "8"}, func() time.Time { return t0 })
	p.seen("7", "running")
	p.seen("8", "pending")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(bufString(w, &buf), "waiting 0s for 2 jobs: 1 running, 1 pending") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line within 30s; wrote %q", bufString(w, &buf))
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.finish("7", func() { w.Write([]byte("7 succeeded (exit 0)\n")) })
	if got := bufString(w, &buf); !strings.HasSuffix(got, "\r\033[K7 succeeded (exit 0)\n") {
		t.Errorf("outcome not written on an erased line: %q", got)
	}
	p.stop()
	p.stop()
	if got := bufString(w, &buf); !strings.HasSuffix(got, "\r\033[K") && !strings.HasSuffix(got, "7 succeeded (exit 0)\n") {
		t.Errorf("progress not erased at the end: %q", got)
	}
}

func bufString(w *lockedWriter, b *bytes.Buffer) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return b.String()
}
