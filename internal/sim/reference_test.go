package sim

import (
	"os"
	"sort"
	"testing"
	"time"

	"github.com/durehq/dure/internal/sched"
)

// referenceEASY is a deliberately naive EASY backfilling scheduler over one
// pool of procs processors, written straight from the definition (Lifka;
// Mu'alem & Feitelson) with a plain event loop, to check the simulator and
// sched's EASY against on real traces. It returns each job's start time.
// Jobs run min(runtime, walltime), as the simulator's default does.
func referenceEASY(jobs []Job, procs int, fifo bool) []time.Duration {
	return referenceEASYRun(jobs, procs, fifo, false)
}

// referenceEASYRun is referenceEASY, where runPast lets jobs run their
// logged time past their walltime (expected, once overdue, to end now).
func referenceEASYRun(jobs []Job, procs int, fifo, runPast bool) []time.Duration {
	type running struct {
		procs   int
		estEnd  time.Duration
		realEnd time.Duration
	}
	start := make([]time.Duration, len(jobs))
	runOf := func(j *Job) time.Duration {
		if runPast {
			return j.Runtime
		}
		return min(j.Runtime, j.Request.Walltime)
	}
	var queue []int // indices, FCFS
	var run []running
	free := procs
	next := 0
	for next < len(jobs) || len(run) > 0 || len(queue) > 0 {
		// the next instant: an arrival or a completion
		now := time.Duration(1 << 62)
		if next < len(jobs) {
			now = jobs[next].Submit
		}
		for _, r := range run {
			now = min(now, r.realEnd)
		}
		kept := run[:0]
		for _, r := range run {
			if r.realEnd == now {
				free += r.procs
			} else {
				kept = append(kept, r)
			}
		}
		run = kept
		for next < len(jobs) && jobs[next].Submit == now {
			queue = append(queue, next)
			next++
		}
		startJob := func(i int) {
			j := &jobs[i]
			start[i] = now
			free -= j.Request.Tasks
			run = append(run, running{j.Request.Tasks, now + j.Request.Walltime, now + runOf(j)})
		}
		// 1. start from the head while jobs fit
		for len(queue) > 0 && jobs[queue[0]].Request.Tasks <= free {
			startJob(queue[0])
			queue = queue[1:]
		}
		if len(queue) == 0 || fifo {
			continue
		}
		// 2. the head's reservation: shadow time and extra processors
		head := jobs[queue[0]].Request.Tasks
		ends := append([]running(nil), run...)
		for k := range ends {
			ends[k].estEnd = max(ends[k].estEnd, now)
		}
		sort.Slice(ends, func(a, b int) bool { return ends[a].estEnd < ends[b].estEnd })
		// The shadow time is when enough processors will be free for the
		// head; the extra processors are all those free then (every job
		// ending at that instant counts) beyond what the head needs.
		avail := free
		shadow := time.Duration(-1)
		for _, r := range ends {
			if shadow >= 0 && r.estEnd > shadow {
				break
			}
			avail += r.procs
			if shadow < 0 && avail >= head {
				shadow = r.estEnd
			}
		}
		extra := avail - head
		// 3. backfill in queue order
		rest := []int{queue[0]} // a new slice: appending must not overwrite queue while it is read
		for _, i := range queue[1:] {
			j := &jobs[i]
			switch {
			case j.Request.Tasks <= free && now+j.Request.Walltime <= shadow:
				startJob(i)
			case j.Request.Tasks <= free && j.Request.Tasks <= extra:
				startJob(i)
				extra -= j.Request.Tasks
			default:
				rest = append(rest, i)
			}
		}
		queue = rest
	}
	return start
}

func TestReferenceEASYAgreesWithTheHandWorkedExample(t *testing.T) {
	tr := readTiny(t)
	for policy, fifo := range map[sched.Policy]bool{sched.PolicyFIFO: true, sched.PolicyEASY: false} {
		starts := referenceEASY(tr.Jobs, 4, fifo)
		for i, want := range tinyWaits[policy] {
			if got := starts[i] - tr.Jobs[i].Submit; got != want {
				t.Errorf("%s reference: job %d waited %s, want %s", policy, i+1, got, want)
			}
		}
	}
}

// On a slice of the real KTH log, every job must start exactly when the
// naive reference says: the simulator (events, completions, the one-node
// machine) and sched's EASY together against the definition.
func TestEASYMatchesTheReferenceOnTheKTHLog(t *testing.T) {
	const path = "../../../shared/traces/KTH-SP2-1996-2.1-cln.swf.gz"
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("trace not available (%v); CI has it at %s", err, path)
	}
	defer f.Close()
	tr, err := ReadSWF(f, "KTH")
	if err != nil {
		t.Fatal(err)
	}
	tr.Head(3000)
	for policy, fifo := range map[sched.Policy]bool{sched.PolicyFIFO: true, sched.PolicyEASY: false} {
		t.Run(string(policy), func(t *testing.T) {
			res, err := Run(tr, Options{Config: sched.Config{Policy: policy}})
			if err != nil {
				t.Fatal(err)
			}
			want := referenceEASY(tr.Jobs, 100, fifo)
			// Report the earliest divergences: later ones follow from them.
			var bad []JobResult
			for _, r := range res.Jobs {
				if r.Start != want[r.ID-1] {
					bad = append(bad, r)
				}
			}
			sort.Slice(bad, func(a, b int) bool {
				return min(bad[a].Start, want[bad[a].ID-1]) < min(bad[b].Start, want[bad[b].ID-1])
			})
			for i, r := range bad {
				if i == 3 {
					t.Errorf("… %d jobs in all started at another time than the reference's", len(bad))
					break
				}
				t.Errorf("job %d (line %d, submitted %s) started at %s, the reference says %s",
					r.ID, tr.Jobs[r.ID-1].Line, r.Submit, r.Start, want[r.ID-1])
			}
		})
	}
}
