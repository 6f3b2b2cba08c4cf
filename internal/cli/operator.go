package cli

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
)

// serverCommand is the `dure server` group: cmd/ turns the group itself into
// the server daemon (its flags and RunE) and these client verbs sit under it.
func (a *app) serverCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "server",
		Short: "Run a control-plane server, or manage the cluster's servers",
	}
	members := &cobra.Command{
		Use:     "members",
		Short:   "List the servers of the cluster and which one leads",
		Example: "  dure server members\n  dure server members -o json",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(members, false)
	members.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		ms, err := a.client().ListServers(c.Context())
		if err != nil {
			return err
		}
		if *out == outJSON {
			return writeJSON(a.stdout, ms)
		}
		renderMembers(a.stdout, ms)
		return nil
	}
	remove := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a server from the cluster (to shrink it, or to drop a dead one)",
		Example: "  dure server remove s3",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			if err := a.client().RemoveServer(c.Context(), argv[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed server %s\n", argv[0])
			return nil
		},
	}
	join := &cobra.Command{
		Use:   "join NAME ADDRESS",
		Short: "Add a running, not yet joined server to the cluster (servers started with --join do this themselves)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(c *cobra.Command, argv []string) error {
			if err := a.client().JoinServer(c.Context(), argv[0], argv[1]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "added server %s at %s\n", argv[0], argv[1])
			return nil
		},
	}
	c.AddCommand(members, remove, join)
	return c
}

func renderMembers(w io.Writer, ms []api.ServerMember) {
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "NAME\tADDRESS\tROLE\tVOTER")
	for _, m := range ms {
		role := "follower"
		if m.Leader {
			role = "leader"
		}
		voter := "yes"
		if !m.Voter {
			voter = "no"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", m.Name, m.Address, role, voter)
	}
	t.Flush()
}

// operatorCommand groups disaster-recovery verbs.
func (a *app) operatorCommand() *cobra.Command {
	c := &cobra.Command{Use: "operator", Short: "Cluster operations: snapshots"}
	snap := &cobra.Command{Use: "snapshot", Short: "Save or restore the whole cluster state"}
	save := &cobra.Command{
		Use:     "save FILE",
		Short:   "Save a consistent snapshot of every job, node and queue to FILE",
		Example: "  dure operator snapshot save backup.snap",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			tmp := argv[0] + ".partial"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			if err := a.client().SaveSnapshot(c.Context(), f); err != nil {
				f.Close()
				os.Remove(tmp)
				return err
			}
			if err := f.Close(); err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, argv[0]); err != nil {
				return err
			}
			st, _ := os.Stat(argv[0])
			fmt.Fprintf(a.stdout, "saved snapshot to %s (%d bytes)\n", argv[0], st.Size())
			return nil
		},
	}
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster state with a saved snapshot (disaster recovery: later changes are lost)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			f, err := os.Open(argv[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if err := a.client().RestoreSnapshot(c.Context(), f); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "restored snapshot %s\n", argv[0])
			return nil
		},
	}
	snap.AddCommand(save, restore)
	c.AddCommand(snap)
	return c
}
