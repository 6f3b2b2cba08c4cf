// Command dure is the single dure binary: server, agent, dev cluster, task
// supervisor and every client verb. It reads flags and the environment and
// hands plain values to the internal packages; nothing else in the tree does.
package main

import (
	"os"

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
	root := cli.NewRootCommand(os.LookupEnv, os.Stdout, os.Stderr, os.Stdin)
	root.Version = version
	root.AddCommand(serverCommand(), agentCommand(), devCommand())
	os.Exit(cli.Execute(root))
}
