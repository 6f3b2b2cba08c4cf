package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/spec"
)

// ExitError carries an exit code out of a verb (dure run exits with its
// job's exit code, dure wait with 2 on timeout). Err, when set, is printed as
// "dure: <Err>"; a nil Err means the verb already said everything.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "exit status " + strconv.Itoa(e.Code)
}

func (e *ExitError) Unwrap() error { return e.Err }

// usageError marks a mistake in how a verb was called (unknown flag, wrong
// number of arguments); Execute adds a pointer to --help.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Execute runs the root command and returns the process exit code. It prints
// any error to the command's error stream as "dure: <error>" (server errors
// as "dure: <field>: <message>"), so cmd/dure only has to os.Exit with the
// result. Errors from subcommands added by cmd/ are printed the same way.
func Execute(root *cobra.Command) int {
	return execute(context.Background(), root)
}

func execute(ctx context.Context, root *cobra.Command) int {
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	stderr := root.ErrOrStderr()
	code := 1
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
		err = ee.Err
	}
	var fes spec.FieldErrors
	if errors.As(err, &fes) && len(fes) > 1 {
		for _, fe := range fes { // one problem per line
			fmt.Fprintf(stderr, "dure: %s\n", fe)
		}
	} else if err != nil {
		fmt.Fprintf(stderr, "dure: %s\n", describeError(err))
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", ue.cmd.CommandPath())
		} else if strings.HasPrefix(err.Error(), "unknown command") {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", root.CommandPath())
		}
	}
	return code
}

// describeError turns transport failures into advice; everything else
// (including *api.Error, whose Error() is "field: message") prints as is.
func describeError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Op == "parse" {
		// The only URLs the CLI builds from outside text are the server's.
		return fmt.Sprintf("invalid server address (from --addr or DURE_ADDR): %v; want host:port or http://host:port", ue.Err)
	}
	if errors.As(err, &ue) {
		var op *net.OpError
		if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial") {
			u, _ := url.Parse(ue.URL)
			host := ue.URL
			if u != nil {
				host = u.Scheme + "://" + u.Host
			}
			return fmt.Sprintf("cannot reach the dure server at %s: %v (is `dure dev` or `dure server` running? set --addr or DURE_ADDR)", host, errors.Unwrap(ue))
		}
	}
	return err.Error()
}

// app is what every verb shares: the injected environment, streams, clock
// and the global flags.
type app struct {
	env    func(string) (string, bool)
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader

	now        func() time.Time
	loc        *time.Location // absolute times in detail views
	isTerminal func(io.Writer) bool

	addr string // --addr
}

// NewRootCommand returns the `dure` root command with every client verb
// attached. env is how the CLI reads its environment (DURE_ADDR, USER):
// cmd/ passes os.LookupEnv, tests pass a map.
func NewRootCommand(env func(string) (string, bool), stdout, stderr io.Writer, stdin io.Reader) *cobra.Command {
	a := &app{
		env: env, stdout: stdout, stderr: stderr, stdin: stdin,
		now: time.Now, loc: time.Local, isTerminal: isTerminal,
	}
	return a.rootCommand()
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "dure",
		Short: "dure: a cluster manager and batch scheduler",
		Long: "dure turns many machines into one: submit work from here, the servers decide\n" +
			"where and when it runs, agents on the workers run it.",
		SilenceErrors: true, // Execute prints errors itself, as "dure: …"
		SilenceUsage:  true, // a wrong flag gets a pointer to --help, not a page of usage
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{cmd: c, err: err} })
	root.PersistentFlags().StringVar(&a.addr, "addr", "", "server address (default $DURE_ADDR, else "+api.DefaultAddr+")")

	root.AddCommand(
		a.submitCommand(),
		a.sbatchCommand(),
		a.runCommand(),
		a.jobsCommand(),
		a.jobCommand(),
		a.explainCommand(),
		a.waitCommand(),
		a.logsCommand(),
		a.cancelCommand(),
		a.nodesCommand(),
		a.nodeCommand(),
		a.queuesCommand(),
		a.queueCommand(),
		a.statusCommand(),
		a.benchCommand(),
		a.serverCommand(),
		a.operatorCommand(),
	)
	return root
}

// serverAddr resolves --addr, then DURE_ADDR, then the default.
func (a *app) serverAddr() string {
	if a.addr != "" {
		return a.addr
	}
	if v, ok := a.env("DURE_ADDR"); ok && v != "" {
		return v
	}
	return api.DefaultAddr
}

func (a *app) client() *api.Client { return api.NewClient(a.serverAddr()) }

// user is the submitting user as the environment names them, "" if unknown
// (the server then decides).
func (a *app) user() string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v, ok := a.env(k); ok && v != "" {
			return v
		}
	}
	return ""
}

// args wraps a cobra argument validator so its complaints count as usage
// errors.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := v(c, a); err != nil {
			return &usageError{cmd: c, err: err}
		}
		return nil
	}
}

// parseJobRef reads a job argument: an ID (12) or an array element (12_3).
func parseJobRef(s string) (api.JobRef, error) {
	ref, err := api.ParseJobRef(strings.TrimSpace(s))
	if err != nil {
		return ref, fmt.Errorf("invalid job ID %q: want a positive number like 12, or an array element like 12_3", s)
	}
	return ref, nil
}

// jobIDOf reads a job argument and returns the job's ID, asking the server
// for the ID of an array element (12_3).
func (a *app) jobIDOf(ctx context.Context, arg string) (uint64, error) {
	ref, err := parseJobRef(arg)
	if err != nil || !ref.Element {
		return ref.ID, err
	}
	j, _, err := a.client().GetJobRef(ctx, ref.String(), api.WatchOptions{})
	return j.ID, err
}

// parseJobID reads a job ID argument.
func parseJobID(s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("invalid job ID %q: want a positive number like 12", s)
	}
	return id, nil
}
