package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// maxArrayList is how many elements the CLI asks for when it reads one
// array whole (an array has at most model.MaxArraySize elements).
const maxArrayList = model.MaxArraySize

// jobRow is one line of the jobs table: a job, or several elements of one
// array that are alike (same state and REASON/EXIT), shown as 123_[5-19%3].
type jobRow struct {
	ref  string
	job  *api.Job // the first job of the row; its columns stand for all
	jobs int      // how many jobs the row stands for
}

// compactRows turns jobs (in table order) into rows: a plain job is one row;
// the elements of an array are gathered where the array first appears, each
// running element on its own row and the others grouped by state and
// REASON/EXIT, in index order, as squeue shows pending array ranges.
func compactRows(jobs []api.Job) []jobRow {
	byArray := map[uint64][]*api.Job{}
	for i := range jobs {
		if a := jobs[i].Array; a != nil {
			byArray[a.JobID] = append(byArray[a.JobID], &jobs[i])
		}
	}
	var rows []jobRow
	done := map[uint64]bool{}
	for i := range jobs {
		j := &jobs[i]
		if j.Array == nil {
			rows = append(rows, jobRow{ref: j.Ref(), job: j, jobs: 1})
			continue
		}
		if done[j.Array.JobID] {
			continue
		}
		done[j.Array.JobID] = true
		rows = append(rows, arrayRows(byArray[j.Array.JobID])...)
	}
	return rows
}

// arrayRows groups the elements of one array.
func arrayRows(elems []*api.Job) []jobRow {
	sort.Slice(elems, func(a, b int) bool { return elems[a].Array.TaskID < elems[b].Array.TaskID })
	type group struct {
		first   *api.Job
		indices []int
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, e := range elems {
		key := e.State + "\x00" + reasonOrExit(e)
		if e.State == "running" {
			key += "\x00" + strconv.Itoa(e.Array.TaskID) // one row each
		}
		g := byKey[key]
		if g == nil {
			g = &group{first: e}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.indices = append(g.indices, e.Array.TaskID)
	}
	rows := make([]jobRow, 0, len(groups))
	for _, g := range groups {
		ref := g.first.Ref()
		if len(g.indices) > 1 || g.first.State == "pending" && g.first.Array.Throttle > 0 {
			rng := model.FormatIndices(g.indices)
			if g.first.State == "pending" && g.first.Array.Throttle > 0 {
				rng += "%" + strconv.Itoa(g.first.Array.Throttle)
			}
			ref = fmt.Sprintf("%d_[%s]", g.first.Array.JobID, rng)
		}
		rows = append(rows, jobRow{ref: ref, job: g.first, jobs: len(g.indices)})
	}
	return rows
}

// completeArrays replaces the elements of every array among jobs with all
// of that array's elements that match f, so that a listing cut off by its
// limit still shows each array whole (running elements have the lowest IDs
// and would otherwise fall off the end).
func completeArrays(ctx context.Context, cl *api.Client, jobs []api.Job, f api.JobFilter) ([]api.Job, error) {
	var out []api.Job
	seen := map[uint64]bool{}
	for _, j := range jobs {
		if j.Array == nil {
			out = append(out, j)
			continue
		}
		if seen[j.Array.JobID] {
			continue
		}
		seen[j.Array.JobID] = true
		af := f
		af.Array, af.Limit = j.Array.JobID, maxArrayList
		elems, _, err := cl.ListJobs(ctx, af, api.WatchOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, elems...)
	}
	return out, nil
}

// arraySummary says how many elements of an array are in each state:
// "17 succeeded, 3 running".
func arraySummary(elems []api.Job) string {
	order := []string{"running", "pending", "succeeded", "failed", "cancelled"}
	count := map[string]int{}
	for i := range elems {
		count[elems[i].State]++
	}
	var parts []string
	for _, st := range order {
		if n := count[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return strings.Join(parts, ", ")
}

// renderArray prints `dure job ID` for a job array: what it is, how its
// elements stand, and one row per element.
func renderArray(w io.Writer, id uint64, elems []api.Job, now time.Time) {
	idx := make([]int, len(elems))
	for i := range elems {
		idx[i] = elems[i].Array.TaskID
	}
	throttle := ""
	if t := elems[0].Array.Throttle; t > 0 {
		throttle = fmt.Sprintf(", at most %d running at once", t)
	}
	fmt.Fprintf(w, "Array %d: %s, %d element(s) (%s)%s\n", id, orDash(elems[0].Name), len(elems), model.FormatIndices(idx), throttle)
	fmt.Fprintf(w, "States: %s\n", arraySummary(elems))
	fmt.Fprintf(w, "Show one element with: dure job %s\n\n", elems[0].Ref())
	renderJobList(w, elems, now, false)
}

// arrayOutcome is dure wait's line for a finished array: "12 array (20
// elements): 19 succeeded, 1 failed (12_7 exit 3)".
func arrayOutcome(id uint64, elems []api.Job) string {
	s := fmt.Sprintf("%d array (%d elements): %s", id, len(elems), arraySummary(elems))
	for i := range elems {
		if e := &elems[i]; e.State != "succeeded" {
			s += fmt.Sprintf(" (first not succeeded: %s %s)", e.Ref(), reasonOrExit(e))
			break
		}
	}
	return s
}

// waitArray blocks until every element of an array is final, or ctx ends
// (then it returns the last elements it saw and the error).
func waitArray(ctx context.Context, cl *api.Client, id uint64, seen func(state string)) ([]api.Job, error) {
	var last []api.Job
	var idx uint64
	for {
		elems, newIdx, err := listJobs(ctx, cl, api.JobFilter{Array: id, Limit: maxArrayList}, api.WatchOptions{Index: idx, Wait: watchWait})
		if err != nil {
			return last, err
		}
		if len(elems) == 0 {
			return nil, fmt.Errorf("array %d not found", id)
		}
		final := true
		for i := range elems {
			final = final && elems[i].Terminal()
		}
		if final {
			return elems, nil
		}
		if seen != nil {
			state := "pending"
			for i := range elems {
				if elems[i].State == "running" {
					state = "running"
				}
			}
			seen(state)
		}
		last, idx = elems, newIdx
	}
}

// listJobs is ListJobs that, for a blocking query, retries while the
// server is unreachable or has no leader (as getJob does).
func listJobs(ctx context.Context, cl *api.Client, f api.JobFilter, w api.WatchOptions) ([]api.Job, uint64, error) {
	backoff := 100 * time.Millisecond
	giveUp := time.Now().Add(retryFor)
	for {
		jobs, idx, err := cl.ListJobs(ctx, f, w)
		if err == nil || w.Index == 0 || !transient(err) || ctx.Err() != nil || time.Now().After(giveUp) {
			return jobs, idx, err
		}
		select {
		case <-ctx.Done():
			return jobs, idx, err
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// resolveArray says whether ref names a whole job array ("12", not
// "12_3"), and returns the job the ref names when it is not an array (or
// nil when the server does not know it: the caller reports that).
func resolveArray(ctx context.Context, cl *api.Client, ref api.JobRef) (array bool, j *api.Job, err error) {
	job, _, err := cl.GetJobRef(ctx, ref.String(), api.WatchOptions{})
	switch {
	case err == nil && !ref.Element && job.Array != nil && job.Array.JobID == job.ID:
		return true, &job, nil
	case err == nil:
		return false, &job, nil
	case api.IsNotFound(err) && !ref.Element:
		// The first element may have been pruned while others remain.
		elems, _, lerr := cl.ListJobs(ctx, api.JobFilter{Array: ref.ID, Limit: 1}, api.WatchOptions{})
		if lerr == nil && len(elems) > 0 {
			return true, nil, nil
		}
	}
	return false, nil, err
}
