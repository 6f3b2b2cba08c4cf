package cli

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"sub-second shows milliseconds", 450 * time.Millisecond, "450ms"},
		{"seconds drop fractions", 12*time.Second + 900*time.Millisecond, "12s"},
		{"whole minutes omit seconds", 3 * time.Minute, "3m"},
		{"minutes and seconds", 3*time.Minute + 12*time.Second, "3m12s"},
		{"hours and minutes drop seconds", 2*time.Hour + 5*time.Minute + 59*time.Second, "2h5m"},
		{"whole hours", 5 * time.Hour, "5h"},
		{"days and hours", 3*24*time.Hour + 4*time.Hour + 30*time.Minute, "3d4h"},
		{"negative is shown by magnitude", -90 * time.Second, "1m30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := humanDuration(tt.in); got != tt.want {
				t.Errorf("humanDuration(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAgo(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"unset time", time.Time{}, "-"},
		{"now", t0, "just now"},
		{"half a second ago", t0.Add(-500 * time.Millisecond), "just now"},
		{"seconds ago", t0.Add(-12 * time.Second), "12s ago"},
		{"hours ago", t0.Add(-2*time.Hour - 5*time.Minute), "2h5m ago"},
		{"server clock ahead", t0.Add(3 * time.Second), "in 3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ago(t0, tt.t); got != tt.want {
				t.Errorf("ago = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAbsTimeUsesLocation(t *testing.T) {
	seoul := time.FixedZone("KST", 9*3600)
	if got, want := absTime(t0, seoul), "2025-03-01 23:00:00"; got != want {
		t.Errorf("absTime = %q, want %q", got, want)
	}
	if got := absTime(time.Time{}, seoul); got != "-" {
		t.Errorf("absTime(zero) = %q, want -", got)
	}
}

func TestFmtCommandQuotesWhatAShellWould(t *testing.T) {
	got := fmtCommand([]string{"python", "-c", "print('hi')", "a b", "", "plain"})
	want := `python -c "print('hi')" "a b" "" plain`
	if got != want {
		t.Errorf("fmtCommand = %s, want %s", got, want)
	}
}

func TestFmtLabelsSortedByKey(t *testing.T) {
	if got, want := fmtLabels(map[string]string{"rack": "r3", "pool": "gpu"}), "pool=gpu,rack=r3"; got != want {
		t.Errorf("fmtLabels = %q, want %q", got, want)
	}
	if got := fmtLabels(nil); got != "-" {
		t.Errorf("fmtLabels(nil) = %q, want -", got)
	}
}

func TestFmtLatency(t *testing.T) {
	tests := map[time.Duration]string{
		1234 * time.Microsecond:  "1.23ms",
		45678 * time.Microsecond: "45.7ms",
		2500 * time.Millisecond:  "2.50s",
	}
	for in, want := range tests {
		if got := fmtLatency(in); got != want {
			t.Errorf("fmtLatency(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckOutput(t *testing.T) {
	if err := checkOutput("wide", false); err == nil || err.Error() != `--output: must be one of table, json (got "wide")` {
		t.Errorf("checkOutput(wide, no wide table) = %v", err)
	}
	for _, v := range []string{"table", "wide", "json"} {
		if err := checkOutput(v, true); err != nil {
			t.Errorf("checkOutput(%q) = %v, want nil", v, err)
		}
	}
}

func TestSummarizeNearestRank(t *testing.T) {
	var ls []time.Duration
	for i := 100; i >= 1; i-- { // 1ms…100ms, unsorted
		ls = append(ls, time.Duration(i)*time.Millisecond)
	}
	got := summarize(ls)
	want := latencyMS{P50: 50, P90: 90, P99: 99, Max: 100}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summarize (-want +got):\n%s", diff)
	}
	if got := summarize(nil); got != (latencyMS{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
	if got := summarize([]time.Duration{1500 * time.Microsecond}); got != (latencyMS{1.5, 1.5, 1.5, 1.5}) {
		t.Errorf("summarize(one) = %+v, want all 1.5", got)
	}
}
