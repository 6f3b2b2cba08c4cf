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
		id, err := a.jobIDOf(c.Context(), argv[0])
		if err != nil {
			return err
		}
		e, err := a.client().Explain(c.Context(), id)
		if err != nil {
			return err
		}
		if *out == outJSON {
			return writeJSON(a.stdout, e)
		}
		renderExplanation(a.stdout, &e, a.now(), a.loc)
		return nil
	}
	return c
}

func renderExplanation(w io.Writer, e *api.Explanation, now time.Time, loc *time.Location) {
	if e.StartsNow {
		fmt.Fprintf(w, "Job %d can start now: the next scheduling pass places it.\n", e.JobID)
		return
	}
	fmt.Fprintf(w, "Job %d is pending: %s\n  %s\n", e.JobID, e.Reason.Code, e.Reason.Message)
	if e.EstimatedStart.IsZero() {
		fmt.Fprintln(w, "Estimated start: unknown (it waits on quota, dependencies or a backoff, or never fits as asked)")
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

func untilText(now, t time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + humanDuration(t.Sub(now))
}
