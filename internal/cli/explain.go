package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
)

// explainCommand is `dure explain ID`: why a pending job waits, when it
// should start, and what would let it start sooner.
func (a *app) explainCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "explain ID",
		Short:   "Say why a pending job waits, when it should start, and what would start it sooner",
		Example: "  dure explain 12\n  dure explain 12_3\n  dure explain 12 -o json",
		Args:    args(cobra.ExactArgs(1)),
	}
	out := outputFlag(c, false)
	c.RunE = func(c *cobra.Command, argv []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		ref, err := parseJobRef(argv[0])
		if err != nil {
			return err
		}
		cl := a.client()
		isArray, j, err := resolveArray(c.Context(), cl, ref)
		if err != nil {
			return err
		}
		name, intro := j.Ref(), ""
		if isArray {
			// An array's ID names the whole array, as for cancel and wait:
			// explain the element that is next in line, its first pending one.
			elems, _, err := listJobs(c.Context(), cl, api.JobFilter{Array: ref.ID, Limit: maxArrayList}, api.WatchOptions{})
			if err != nil {
				return err
			}
			first := -1
			for i := range elems {
				if elems[i].State == "pending" {
					first = i
					break
				}
			}
			if first < 0 {
				return fmt.Errorf("array %d has no pending element (%s): nothing to explain", ref.ID, arraySummary(elems))
			}
			j, name = &elems[first], elems[first].Ref()
			intro = fmt.Sprintf("Array %d (%s): explaining its first pending element, %s.\n", ref.ID, arraySummary(elems), name)
		}
		e, err := cl.Explain(c.Context(), j.ID)
		if err != nil {
			return err
		}
		if *out == outJSON {
			return writeJSON(a.stdout, e)
		}
		fmt.Fprint(a.stdout, intro)
		renderExplanation(a.stdout, name, &e, a.now(), a.loc)
		return nil
	}
	return c
}

// renderExplanation prints an explanation of the job the user named name
// (12, or 12_3 for an array element).
func renderExplanation(w io.Writer, name string, e *api.Explanation, now time.Time, loc *time.Location) {
	if e.StartsNow {
		fmt.Fprintf(w, "Job %s can start now: the next scheduling pass places it.\n", name)
		return
	}
	fmt.Fprintf(w, "Job %s is pending: %s\n  %s\n", name, e.Reason.Code, e.Reason.Message)
	if e.EstimatedStart.IsZero() {
		fmt.Fprintf(w, "Estimated start: unknown: %s\n", unknownStart(e.Reason.Code))
	} else {
		fmt.Fprintf(w, "Estimated start: %s (%s)\n", absTime(e.EstimatedStart, loc), untilText(now, e.EstimatedStart))
	}
	if len(e.Sooner) == 0 {
		return
	}
	fmt.Fprintln(w, "It would start sooner if you:")
	for _, alt := range e.Sooner {
		when := "at once"
		if alt.Start.After(now) {
			when = absTime(alt.Start, loc) + " (" + untilText(now, alt.Start) + ")"
		}
		fmt.Fprintf(w, "  - %s: %s\n", alt.Change, when)
	}
}

// unknownStart says why a pending job has no estimated start, by its
// reason code: what it waits for instead of a time.
func unknownStart(code string) string {
	switch code {
	case "QuotaExceeded":
		return "it starts when its queue's running jobs free quota (or its cohort has quota to lend)"
	case "Dependency":
		return "it starts after the jobs it depends on"
	case "ArrayThrottle":
		return "it starts when an element of its array ends"
	case "Preempting":
		return "it starts when the jobs preempted for it have stopped (after their grace period)"
	case "Backoff", "Requeued":
		return "it is waiting out its retry backoff"
	case "NoNodeFits", "Constraints", "NoNodes", "Topology", "GangUnplaceable":
		return "no node (or set of nodes) of the cluster as it is can run it as asked"
	case "InvalidJob":
		return "it cannot run as written"
	}
	return "the backfill plan does not place it"
}

func untilText(now, t time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + humanDuration(t.Sub(now))
}
