package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
)

// Exit codes of dure wait.
const (
	waitAllSucceeded = 0
	waitSomeFailed   = 1 // a job failed or was cancelled, or an ID is unknown
	waitTimedOut     = 2 // --timeout passed with some job still not final
)

func (a *app) waitCommand() *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "wait ID…",
		Short: "Block until jobs finish; exit 0 if all succeeded",
		Long: "Block until every named job is final, printing one line per job as it ends.\n" +
			"A job array's ID waits for every element (one line for the array); 12_3 waits\n" +
			"for one element. Exit status: 0 if all succeeded; 1 if any failed, was\n" +
			"cancelled or does not exist; 2 if --timeout passed first (and none of the\n" +
			"finished ones failed).",
		Example: "  dure wait 12 13 14\n  dure wait --timeout 10m $(dure submit -- ./step1.sh)\n  dure wait 12_3",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			if timeout < 0 {
				return fmt.Errorf("--timeout: must not be negative (got %s)", timeout)
			}
			refs := make([]api.JobRef, len(argv))
			for i, s := range argv {
				ref, err := parseJobRef(s)
				if err != nil {
					return err
				}
				refs[i] = ref
			}
			ctx := c.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			code := a.waitJobs(ctx, refs, timeout)
			if code != waitAllSucceeded {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit 2), e.g. 30s, 10m; default: wait forever")
	return c
}

// waitJobs waits for every job concurrently, printing each outcome as it
// arrives, and returns the exit code.
func (a *app) waitJobs(ctx context.Context, refs []api.JobRef, timeout time.Duration) int {
	cl := a.client()
	names := make([]string, len(refs))
	for i, ref := range refs {
		names[i] = ref.String()
	}
	prog := newWaitProgress(a.stderr, a.isTerminal(a.stderr), names, a.now)
	defer prog.stop()
	var mu sync.Mutex
	failed, timedOut := false, false
	var wg sync.WaitGroup
	for _, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line, ok, err := waitOne(ctx, cl, ref, func(state string) { prog.seen(ref.String(), state) })
			mu.Lock()
			defer mu.Unlock()
			prog.finish(ref.String(), func() {
				switch {
				case err != nil && ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
					timedOut = true
					fmt.Fprintf(a.stdout, "%s %s after %s\n", ref, line, timeout)
				case err != nil:
					failed = true
					fmt.Fprintf(a.stderr, "dure: %s\n", aboutRef(ref.String(), err))
				default:
					failed = failed || !ok
					fmt.Fprintln(a.stdout, line)
				}
			})
		}()
	}
	wg.Wait()
	switch {
	case failed:
		return waitSomeFailed
	case timedOut:
		return waitTimedOut
	}
	return waitAllSucceeded
}

// waitOne waits for a job, an element or a whole array. It returns the
// outcome line and whether everything succeeded, or on error what it last
// saw ("still running"). seen, if not nil, gets each state it sees while
// waiting (for an array: running while any element runs, else pending).
func waitOne(ctx context.Context, cl *api.Client, ref api.JobRef, seen func(state string)) (line string, ok bool, err error) {
	isArray, j, err := resolveArray(ctx, cl, ref)
	if err != nil {
		return "not finished", false, err
	}
	if isArray {
		elems, err := waitArray(ctx, cl, ref.ID, seen)
		if err != nil {
			if len(elems) == 0 {
				return "not finished", false, err
			}
			return "array still has " + arraySummary(elems), false, err
		}
		ok = true
		for i := range elems {
			ok = ok && elems[i].State == "succeeded"
		}
		return arrayOutcome(ref.ID, elems), ok, nil
	}
	final, err := waitFinalSeen(ctx, cl, j.ID, seen)
	if err != nil {
		return stillState(final.State), false, err
	}
	return outcome(&final), final.State == "succeeded", nil
}

// waitFinal blocks until the job is final, like api.Client.WaitJob, but on
// error (a timeout) also returns the last state it saw.
func waitFinal(ctx context.Context, cl *api.Client, id uint64) (api.Job, error) {
	return waitFinalSeen(ctx, cl, id, nil)
}

// waitFinalSeen is waitFinal that also tells seen, if not nil, each state
// it sees.
func waitFinalSeen(ctx context.Context, cl *api.Client, id uint64, seen func(state string)) (api.Job, error) {
	var last api.Job
	var idx uint64
	for {
		j, newIdx, err := getJob(ctx, cl, id, api.WatchOptions{Index: idx, Wait: watchWait})
		if err != nil {
			return last, err
		}
		if j.Terminal() {
			return j, nil
		}
		if seen != nil {
			seen(j.State)
		}
		last, idx = j, newIdx
	}
}

// aboutRef describes an error about one job, named as the user wrote it
// (12, 12_3), naming the job unless the message already does.
func aboutRef(ref string, err error) string {
	msg := describeError(err)
	if ref != "" && !strings.Contains(msg, "job "+ref) && !strings.Contains(msg, "array "+ref) {
		return fmt.Sprintf("job %s: %s", ref, msg)
	}
	return msg
}

func stillState(state string) string {
	if state == "" {
		return "not finished"
	}
	return "still " + state
}

// outcome is one line about a final job: "12 succeeded (exit 0)",
// "13 failed (exit 3)", "14 cancelled (Cancelled: by alice)".
func outcome(j *api.Job) string {
	s := j.Ref() + " " + j.State
	switch {
	case j.State == "succeeded" || j.ExitCode > 0: // a negative code is none: the reason says why
		return s + " (exit " + strconv.Itoa(j.ExitCode) + ")"
	case j.Reason.Code != "" && j.Reason.Message != "":
		return s + " (" + j.Reason.Code + ": " + j.Reason.Message + ")"
	case j.Reason.Code != "" || j.Reason.Message != "":
		return s + " (" + j.Reason.Code + j.Reason.Message + ")"
	}
	return s
}

func (a *app) cancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID…",
		Short: "Cancel pending or running jobs",
		Long: "Cancel jobs. A job array's ID cancels every unfinished element of the array,\n" +
			"as scancel does; 12_3 cancels one element.",
		Example: "  dure cancel 12\n  dure cancel 12 13 14\n  dure cancel 12_3",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			cl := a.client()
			failed := false
			for _, s := range argv {
				ref, err := parseJobRef(s)
				if err != nil {
					failed = true
					fmt.Fprintf(a.stderr, "dure: %v\n", err)
					continue
				}
				j, err := cl.CancelJobRef(c.Context(), ref.String())
				if err != nil {
					failed = true
					fmt.Fprintf(a.stderr, "dure: %s\n", aboutRef(ref.String(), err))
					continue
				}
				if !ref.Element && j.Array != nil && j.Array.JobID == ref.ID {
					fmt.Fprintf(a.stdout, "cancelled array %s\n", ref)
				} else {
					fmt.Fprintf(a.stdout, "cancelled %s\n", ref)
				}
			}
			if failed {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
}

func (a *app) logsCommand() *cobra.Command {
	var o api.LogOptions
	var stderr bool
	c := &cobra.Command{
		Use:   "logs ID",
		Short: "Print (or follow with -f) a task's output",
		Long: "Print a task's standard output, or with --stderr its standard error, to this\n" +
			"command's standard output. -f keeps streaming until the task ends.",
		Example: "  dure logs 12\n  dure logs 12 -f --task 3\n  dure logs 12 --stderr\n  dure logs 12_3",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			id, err := a.jobIDOf(c.Context(), argv[0])
			if err != nil {
				return err
			}
			if o.Task < 0 {
				return fmt.Errorf("--task: must be 0 or more (got %d)", o.Task)
			}
			o.Stream = "stdout"
			if stderr {
				o.Stream = "stderr"
			}
			return followLogs(c.Context(), a.client(), id, o, a.stdout)
		},
	}
	c.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep streaming until the task ends")
	c.Flags().IntVar(&o.Task, "task", 0, "task index within the job")
	c.Flags().BoolVar(&stderr, "stderr", false, "print the task's standard error instead of its standard output")
	return c
}

// followLogs copies a task's output to w. With o.Follow, a stream that
// breaks (the server restarted, or a leader election) is opened again from
// where it broke, retrying transient failures with backoff for up to
// retryFor, as `dure run` does; the first request fails at once.
func followLogs(ctx context.Context, cl *api.Client, id uint64, o api.LogOptions, w io.Writer) error {
	opened := false
	backoff := 100 * time.Millisecond
	var giveUp time.Time
	for {
		rc, err := cl.Logs(ctx, id, o)
		if err != nil {
			if !opened || !transient(err) || ctx.Err() != nil || time.Now().After(giveUp) {
				return err
			}
		} else {
			opened = true
			n, cerr := io.Copy(w, rc)
			rc.Close()
			o.Offset += n
			if cerr == nil || ctx.Err() != nil {
				return nil
			}
			if !o.Follow {
				return fmt.Errorf("reading logs of job %d task %d: %w", id, o.Task, cerr)
			}
			giveUp = time.Now().Add(retryFor) // the stream broke: resume from o.Offset
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}
