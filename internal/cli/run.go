package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
)

const (
	// watchWait is how long one blocking query may wait on the server.
	watchWait = 30 * time.Second
	// logGrace bounds how long dure run keeps reading output after the job
	// ended; the server closes followed streams itself, this only guards
	// against one that never does.
	logGrace = 10 * time.Second
	// exitInterrupted is the exit code after Ctrl-C, as shells use.
	exitInterrupted = 130
	// retryFor is how long watches retry while the server is unreachable
	// or has no leader.
	retryFor = 60 * time.Second
)

func (a *app) runCommand() *cobra.Command {
	var f jobFlags
	c := &cobra.Command{
		Use:   "run [JOBFILE] [flags] -- CMD ARGS…",
		Short: "Submit a job, stream its output, exit with its exit code",
		Long: "Submit a job and stay attached: while it waits, a progress line on the\n" +
			"terminal says why; once it runs, every task's stdout and stderr are copied\n" +
			"here as they are produced. dure run exits with the job's exit code (1 if it\n" +
			"failed without one, 130 if interrupted; Ctrl-C, SIGTERM or a hangup cancels\n" +
			"the job).",
		Example: "  dure run -- hostname\n  dure run --tasks 4 --cpus 2 -- python -c 'import os; print(os.environ[\"DURE_TASK_INDEX\"])'",
		RunE: func(c *cobra.Command, argv []string) error {
			js, err := a.buildSpec(c, &f, argv)
			if err != nil {
				return err
			}
			if js.Array != "" {
				return fmt.Errorf("--array: dure run follows one job; submit arrays with dure submit or dure sbatch")
			}
			// SIGHUP too: a terminal or ssh session that goes away must not
			// leave a job running that nobody is attached to (srun does the same).
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			return a.runJob(ctx, js)
		},
	}
	f.register(c.Flags())
	return c
}

// runJob submits js and stays attached until it is final. ctx ending (Ctrl-C)
// cancels the job.
func (a *app) runJob(ctx context.Context, js api.JobSpec) error {
	cl := a.client()
	id, err := cl.SubmitJob(ctx, js)
	if err != nil {
		if ctx.Err() != nil {
			return &ExitError{Code: exitInterrupted, Err: errors.New("interrupted")}
		}
		return err
	}
	out := &lockedWriter{w: a.stdout}
	errw := &lockedWriter{w: a.stderr}
	prog := newProgress(errw, a.isTerminal(a.stderr), id, a.now)
	defer prog.stop()

	logs := &logFollower{cl: cl, id: id, stdout: out, stderr: errw, final: make(chan struct{})}
	logCtx, stopLogs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLogs()

	var idx uint64
	var j api.Job
	warned := false
	for {
		j, idx, err = getJob(ctx, cl, id, api.WatchOptions{Index: idx, Wait: watchWait})
		if err != nil {
			prog.stop()
			stopLogs()
			logs.wg.Wait()
			if ctx.Err() != nil {
				return a.cancelAttached(cl, id)
			}
			return fmt.Errorf("job %d: %w", id, err)
		}
		if j.State == "pending" && !logs.started {
			prog.update(&j)
			if !prog.on && !warned && mayNeverStart(j.Reason.Code) {
				// Off a terminal there is no progress line: say once why a job
				// that no node of the cluster can run as asked is not starting,
				// rather than wait in silence.
				warned = true
				fmt.Fprintf(errw, "dure: job %d is pending and will not start on the cluster as it is: %s: %s (still waiting; Ctrl-C cancels it)\n", id, j.Reason.Code, j.Reason.Message)
			}
			continue
		}
		if !logs.started {
			prog.stop()
			logs.start(logCtx, startedTasks(&j))
		}
		if j.Terminal() {
			break
		}
	}
	// The job is final: tell streams that failed to open to make one last
	// plain read, and give open streams a bounded time to drain.
	close(logs.final)
	done := make(chan struct{})
	go func() { logs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(logGrace):
		stopLogs()
		<-done
	case <-ctx.Done():
		stopLogs()
		<-done
	}
	return jobExit(&j)
}

// cancelAttached cancels the job dure run is attached to after Ctrl-C.
func (a *app) cancelAttached(cl *api.Client, id uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.CancelJob(ctx, id); isConflict(err) {
		return &ExitError{Code: exitInterrupted, Err: fmt.Errorf("interrupted; job %d had already ended", id)}
	} else if err != nil {
		return &ExitError{Code: exitInterrupted, Err: fmt.Errorf("interrupted; cancelling job %d failed: %w", id, err)}
	}
	return &ExitError{Code: exitInterrupted, Err: fmt.Errorf("interrupted: cancelled job %d", id)}
}

// getJob is api.Client.GetJob riding out a leader election or a server
// restart: once a watch is under way (w.Index set: the server answered
// before), transient failures are retried with backoff for up to retryFor,
// so a failover does not end `dure run` or `dure wait`. A first request
// that fails fails at once: the address is probably wrong.
func getJob(ctx context.Context, cl *api.Client, id uint64, w api.WatchOptions) (api.Job, uint64, error) {
	backoff := 100 * time.Millisecond
	giveUp := time.Now().Add(retryFor)
	for {
		j, idx, err := cl.GetJob(ctx, id, w)
		if err == nil || w.Index == 0 || !transient(err) || ctx.Err() != nil || time.Now().After(giveUp) {
			return j, idx, err
		}
		select {
		case <-ctx.Done():
			return j, idx, err
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// transient reports whether err may go away by itself: no leader right now,
// or the server could not be reached.
func transient(err error) bool {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Code == api.CodeUnavailable
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

func isConflict(err error) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Code == api.CodeConflict
}

// jobExit maps a final job to dure run's exit: nil for success, its exit
// code for a task that exited non-zero, 1 (with the reason) otherwise.
func jobExit(j *api.Job) error {
	if j.State == "succeeded" {
		return nil
	}
	why := j.State
	if j.Reason.Code != "" || j.Reason.Message != "" {
		why += ": " + j.Reason.Code
		if j.Reason.Message != "" {
			if j.Reason.Code != "" {
				why += ": "
			}
			why += j.Reason.Message
		}
	}
	err := fmt.Errorf("job %d %s", j.ID, why)
	if j.ExitCode > 0 && j.ExitCode < 256 {
		return &ExitError{Code: j.ExitCode, Err: err}
	}
	return &ExitError{Code: 1, Err: err}
}

// logFollower copies every task's stdout and stderr while the job runs: one
// followed stream per task and stream.
type logFollower struct {
	cl             *api.Client
	id             uint64
	stdout, stderr *lockedWriter
	started        bool
	final          chan struct{} // closed when the job is final
	wg             sync.WaitGroup
}

func (l *logFollower) start(ctx context.Context, tasks int) {
	l.started = true
	lineMode := tasks > 1 // keep lines of different tasks whole
	for task := range tasks {
		for _, s := range []struct {
			name string
			w    *lockedWriter
		}{{"stdout", l.stdout}, {"stderr", l.stderr}} {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				var w io.Writer = s.w
				if lineMode {
					lw := &lineWriter{w: s.w}
					defer lw.flush()
					w = lw
				}
				l.follow(ctx, task, s.name, w)
			}()
		}
	}
}

// follow streams one task's output until the server ends the stream (the
// task ended and everything was sent). A stream that cannot be opened yet —
// the task has not started — is retried with backoff while the job lives,
// and read once more, without following, when it is final.
func (l *logFollower) follow(ctx context.Context, task int, stream string, w io.Writer) {
	var off int64
	backoff := 100 * time.Millisecond
	for {
		final := isClosed(l.final)
		rc, err := l.cl.Logs(ctx, l.id, api.LogOptions{Task: task, Stream: stream, Follow: !final, Offset: off})
		if err == nil {
			n, cerr := io.Copy(w, rc)
			rc.Close()
			off += n
			if cerr == nil || final || ctx.Err() != nil {
				return
			}
			// The connection broke mid-stream: resume from off.
		} else if final || ctx.Err() != nil {
			if !api.IsNotFound(err) && ctx.Err() == nil {
				fmt.Fprintf(l.stderr, "dure: output of task %d (%s) unavailable: %v\n", task, stream, describeError(err))
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-l.final:
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lineWriter passes on only whole lines, so the output of concurrent tasks
// interleaves by line, never inside one. flush writes what is left.
type lineWriter struct {
	w   io.Writer
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 {
		if _, err := l.w.Write(l.buf[:i+1]); err != nil {
			return 0, err
		}
		l.buf = append(l.buf[:0], l.buf[i+1:]...)
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.w.Write(l.buf)
		l.buf = nil
	}
}

// mayNeverStart says whether a pending job's reason code means no node of
// the cluster as it is can run it: only a change to the cluster (a node
// joining, a drain lifted, labels) would start it.
func mayNeverStart(code string) bool {
	switch code {
	case "NoNodeFits", "Constraints", "NoNodes", "InvalidJob":
		return true
	}
	return false
}

// progress draws "⠹ job 12 pending 14s — Resources: no node has room now" on
// a terminal while a job waits. On anything else it draws nothing: scripts
// and logs get only the job's own output.
type progress struct {
	spinnerLine
	id  uint64
	now func() time.Time
	j   api.Job // the latest seen; ID 0: none yet
}

func newProgress(w io.Writer, on bool, id uint64, now func() time.Time) *progress {
	p := &progress{id: id, now: now}
	p.init(w, on, func() (string, bool) {
		return fmt.Sprintf("job %d %s", p.id, progressText(&p.j, p.now())), p.j.ID != 0
	})
	return p
}

func (p *progress) update(j *api.Job) {
	p.mu.Lock()
	p.j = *j
	p.mu.Unlock()
}

// progressText is the part of the progress line after the job ID.
func progressText(j *api.Job, now time.Time) string {
	s := j.State + " " + humanDuration(now.Sub(j.SubmitTime).Truncate(time.Second))
	if j.Reason.Code != "" {
		s += " — " + j.Reason.Code
		if j.Reason.Message != "" {
			s += ": " + j.Reason.Message
		}
	}
	return s
}
