package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

func (a *app) nodesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "nodes",
		Short:   "List nodes with their state and usage",
		Example: "  dure nodes\n  dure nodes -o wide",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(c, true)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out, true); err != nil {
			return err
		}
		nodes, err := a.client().ListNodes(c.Context())
		if err != nil {
			return err
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
		if *out == outJSON {
			if nodes == nil {
				nodes = []api.Node{}
			}
			return writeJSON(a.stdout, nodes)
		}
		if len(nodes) == 0 {
			fmt.Fprintln(a.stderr, "no nodes")
			return nil
		}
		renderNodes(a.stdout, nodes, a.now(), *out == outWide)
		return nil
	}
	return c
}

// renderNodes prints the nodes table.
func renderNodes(w io.Writer, nodes []api.Node, now time.Time, wide bool) {
	t := newTable(w)
	if wide {
		row(t, "NAME", "STATE", "CPU", "MEM", "GPU", "ALLOCS", "LABELS", "ADDRESS", "LAST SEEN", "VERSION", "REASON")
	} else {
		row(t, "NAME", "STATE", "CPU", "MEM", "GPU", "ALLOCS", "LABELS")
	}
	for i := range nodes {
		n := &nodes[i]
		cells := []string{
			n.Name, orDash(n.State),
			usedOf(model.FormatMilliCPU(n.Used.MilliCPU), model.FormatMilliCPU(n.Capacity.MilliCPU)),
			usedOf(model.FormatBytes(n.Used.MemoryBytes), model.FormatBytes(n.Capacity.MemoryBytes)),
			usedOf(strconv.FormatInt(n.Used.GPUs, 10), strconv.FormatInt(n.Capacity.GPUs, 10)),
			strconv.Itoa(n.Allocations), fmtLabels(n.Labels),
		}
		if wide {
			cells = append(cells, orDash(n.Address), ago(now, n.LastSeen), orDash(n.AgentVersion), orDash(nodeReason(n)))
		}
		row(t, cells...)
	}
	t.Flush()
}

// nodeReason says why a node takes no new work, if it does not.
func nodeReason(n *api.Node) string {
	switch {
	case n.Drain:
		return n.DrainReason
	case n.Status != "ready":
		return n.StatusReason
	}
	return ""
}

func (a *app) nodeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "node NAME | node drain NAME | node undrain NAME",
		Short: "Show one node, or drain/undrain it",
		Long: "dure node NAME shows one node. dure node drain NAME stops new work from being\n" +
			"placed on it (running work finishes); dure node undrain NAME lets work in again.",
		Example: "  dure node n1\n  dure node drain n1 --reason \"disk replacement\"\n  dure node undrain n1",
		Args:    args(cobra.ExactArgs(1)),
	}
	out := outputFlag(c, false)
	c.RunE = func(c *cobra.Command, argv []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		n, err := a.client().GetNode(c.Context(), argv[0])
		if err != nil {
			return err
		}
		if *out == outJSON {
			return writeJSON(a.stdout, n)
		}
		renderNode(a.stdout, &n, a.now(), a.loc)
		return nil
	}

	var reason string
	drain := &cobra.Command{
		Use:     "drain NAME",
		Short:   "Stop placing new work on a node; running work finishes",
		Example: "  dure node drain n1 --reason \"disk replacement\"",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			n, err := a.client().DrainNode(c.Context(), argv[0], true, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: %s\n", n.Name, describeNodeState(&n))
			return nil
		},
	}
	drain.Flags().StringVar(&reason, "reason", "", "why, shown in dure nodes -o wide and dure node NAME")
	undrain := &cobra.Command{
		Use:     "undrain NAME",
		Short:   "Let new work be placed on a drained node again",
		Example: "  dure node undrain n1",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			n, err := a.client().DrainNode(c.Context(), argv[0], false, "")
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: %s\n", n.Name, describeNodeState(&n))
			return nil
		},
	}
	c.AddCommand(drain, undrain)
	return c
}

// describeNodeState is "draining (2 allocations still running)", "drained",
// "ready", "down (missed heartbeats)".
func describeNodeState(n *api.Node) string {
	s := orDash(n.State)
	switch {
	case n.State == "draining" && n.Allocations > 0:
		s += fmt.Sprintf(" (%d allocation%s still running)", n.Allocations, plural(n.Allocations))
	case n.State == "down" && n.StatusReason != "":
		s += " (" + n.StatusReason + ")"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// renderNode prints the detail view of one node.
func renderNode(w io.Writer, n *api.Node, now time.Time, loc *time.Location) {
	t := newTable(w)
	kv := func(k, v string) { row(t, k+":", v) }
	kv("Name", n.Name)
	kv("State", orDash(n.State))
	kv("Status", orDash(n.Status))
	if n.StatusReason != "" {
		kv("Status reason", n.StatusReason)
	}
	if n.Drain {
		kv("Drain", "yes ("+orDash(n.DrainReason)+")")
	} else {
		kv("Drain", "no")
	}
	kv("Address", orDash(n.Address))
	kv("Version", orDash(n.AgentVersion))
	kv("Registered", fmt.Sprintf("%s (%s)", absTime(n.RegisteredAt, loc), ago(now, n.RegisteredAt)))
	kv("Last seen", fmt.Sprintf("%s (%s)", absTime(n.LastSeen, loc), ago(now, n.LastSeen)))
	kv("Allocations", strconv.Itoa(n.Allocations))
	kv("Labels", fmtLabels(n.Labels))
	t.Flush()

	fmt.Fprintln(w, "\nResources:")
	t = newTable(w)
	row(t, "  RESOURCE", "USED", "TOTAL", "FREE")
	res := func(name string, used, total int64, f func(int64) string) {
		row(t, "  "+name, f(used), f(total), f(total-used))
	}
	res("cpu", n.Used.MilliCPU, n.Capacity.MilliCPU, model.FormatMilliCPU)
	res("memory", n.Used.MemoryBytes, n.Capacity.MemoryBytes, model.FormatBytes)
	res("gpu", n.Used.GPUs, n.Capacity.GPUs, func(v int64) string { return strconv.FormatInt(v, 10) })
	if n.Capacity.ScratchBytes > 0 {
		res("scratch", n.Used.ScratchBytes, n.Capacity.ScratchBytes, model.FormatBytes)
	}
	keys := make([]string, 0, len(n.Capacity.Custom))
	for k := range n.Capacity.Custom {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		res(k, n.Used.Custom[k], n.Capacity.Custom[k], func(v int64) string { return strconv.FormatInt(v, 10) })
	}
	t.Flush()

	if len(n.GPUs) > 0 {
		fmt.Fprintln(w, "\nGPUs:")
		t = newTable(w)
		row(t, "  INDEX", "MODEL", "MEMORY", "UUID")
		for _, g := range n.GPUs {
			mem := "-"
			if g.MemoryBytes > 0 {
				mem = model.FormatBytes(g.MemoryBytes)
			}
			row(t, "  "+strconv.Itoa(g.Index), orDash(g.Model), mem, orDash(g.UUID))
		}
		t.Flush()
	}
}

func (a *app) queuesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "queues",
		Short: "List queues with their load",
		Long: "List every queue: its place in the tree (PARENT) and fair-share WEIGHT; SHARE,\n" +
			"its weighted dominant share (0 idle, about 1/weight after using the whole cluster);\n" +
			"its own PENDING and RUNNING jobs and what they USE; and per quota resource of its\n" +
			"subtree, QUOTA as used/quota with what it borrows beyond it (+N borrowed) or, in a\n" +
			"cohort, what its siblings use of its quota (N lent of M lendable). -o json has\n" +
			"every number (see quota_usage in docs/api.md).",
		Example: "  dure queues\n  dure queues -o json",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(c, false)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		qs, err := a.client().ListQueues(c.Context())
		if err != nil {
			return err
		}
		sort.Slice(qs, func(i, j int) bool { return qs[i].Name < qs[j].Name })
		if *out == outJSON {
			if qs == nil {
				qs = []api.Queue{}
			}
			return writeJSON(a.stdout, qs)
		}
		if len(qs) == 0 {
			fmt.Fprintln(a.stderr, "no queues")
			return nil
		}
		renderQueues(a.stdout, qs)
		return nil
	}
	return c
}

func (a *app) statusCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "status",
		Short:   "Show the answering server, the leader and the state index",
		Example: "  dure status\n  dure status -o json",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(c, false)
	c.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		cl := a.client()
		st, err := cl.Status(c.Context())
		if err != nil {
			return err
		}
		if *out == outJSON {
			return writeJSON(a.stdout, st)
		}
		renderStatus(a.stdout, cl.Addr(), &st)
		return nil
	}
	return c
}

// renderStatus prints the status view.
func renderStatus(w io.Writer, addr string, st *api.Status) {
	t := newTable(w)
	row(t, "Address:", addr)
	row(t, "Server:", orDash(st.Server))
	switch {
	case st.IsLeader:
		row(t, "Leader:", orDash(st.Leader)+" (this server)")
	case st.Leader == "":
		row(t, "Leader:", "none (no quorum: writes will fail until one is elected)")
	default:
		row(t, "Leader:", st.Leader)
	}
	row(t, "Index:", strconv.FormatUint(st.Index, 10))
	row(t, "Version:", orDash(st.Version))
	t.Flush()
}
