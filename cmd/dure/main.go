// Command dure is the single dure binary: server, agent, dev cluster, task
// supervisor and every client verb. It reads flags and the environment and
// hands plain values to the internal packages; nothing else in the tree does.
package main

import (
	"os"
	"os/user"

	"github.com/durehq/dure/internal/cli"
	"github.com/durehq/dure/internal/exec"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// The supervisor is started once per task: keep its path free of cobra
	// and of everything the other subcommands set up.
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		os.Exit(exec.SupervisorMain(os.Args[2:]))
	}
	root := cli.NewRootCommand(lookupEnv, os.Stdout, os.Stderr, os.Stdin)
	root.Version = version
	for _, c := range root.Commands() {
		if c.Name() == "server" {
			configureServerCommand(c)
		}
	}
	root.AddCommand(agentCommand(), devCommand())
	addSimulationCommands(root)
	os.Exit(cli.Execute(root))
}

// lookupEnv is os.LookupEnv, except that a missing USER falls back to the
// account the process runs as (cron, containers and some shells do not set
// it), so jobs are never submitted as "anonymous" by accident.
func lookupEnv(key string) (string, bool) {
	v, ok := os.LookupEnv(key)
	if key == "USER" && v == "" {
		if u, err := user.Current(); err == nil {
			return u.Username, true
		}
	}
	return v, ok
}
