package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/spec"
)

// renderQueues prints the queues table: the tree (parent, weight), fair
// share, the load, and each quota resource as used/quota of the whole
// subtree, with what is borrowed beyond it or could be lent to siblings.
func renderQueues(w io.Writer, qs []api.Queue) {
	t := newTable(w)
	row(t, "NAME", "PARENT", "WEIGHT", "SHARE", "PENDING", "RUNNING", "USED", "QUOTA (used/quota)", "DESCRIPTION")
	for _, q := range qs {
		used := "-"
		if !toModel(q.Used).IsZero() {
			used = fmtResources(q.Used)
		}
		weight := "1"
		if q.Weight > 0 {
			weight = strconv.FormatFloat(q.Weight, 'g', -1, 64)
		}
		row(t, q.Name, orDash(q.Parent), weight, strconv.FormatFloat(q.Share, 'f', 2, 64), strconv.Itoa(q.Pending), strconv.Itoa(q.Running),
			used, quotaSummary(q), orDash(q.Description))
	}
	t.Flush()
}

// quotaSummary is "gpu 6/4 (+2 borrowed), cpu 2/8 (4 lent of 6
// lendable)": used of the subtree's quota (its own nominal plus its
// children's), what is used beyond it, and, in a cohort, what siblings use
// of its quota and may use at most.
func quotaSummary(q api.Queue) string {
	if len(q.QuotaUsage) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(q.QuotaUsage))
	for _, u := range q.QuotaUsage {
		p := fmt.Sprintf("%s %s/%s", u.Resource, quotaAmount(u.Resource, u.Used), quotaAmount(u.Resource, u.Effective))
		switch {
		case u.Borrowed > 0:
			p += fmt.Sprintf(" (+%s borrowed)", quotaAmount(u.Resource, u.Borrowed))
		case u.Lent > 0:
			p += fmt.Sprintf(" (%s lent of %s lendable)", quotaAmount(u.Resource, u.Lent), quotaAmount(u.Resource, u.Lendable))
		case u.Lendable > 0 && q.Parent != "":
			p += fmt.Sprintf(" (%s lendable)", quotaAmount(u.Resource, u.Lendable))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func quotaAmount(resource string, v int64) string {
	base, _, _ := strings.Cut(resource, "/")
	switch base {
	case "cpu":
		return model.FormatMilliCPU(v)
	case "memory", "scratch":
		return model.FormatBytes(v)
	}
	return strconv.FormatInt(v, 10)
}

// queueCommand is `dure queue apply FILE`.
func (a *app) queueCommand() *cobra.Command {
	c := &cobra.Command{Use: "queue", Short: "Configure queues"}
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Create or update the queues a YAML file describes (parents before children)",
		Long: "The file has the shape of the server's --queues file:\n\n" +
			"  queues:\n    - name: research\n      weight: 2\n    - name: vision\n      parent: research\n" +
			"      quotas:\n        - {resource: gpu, nominal: 16, borrowing_limit: 8}\n\n" +
			"Queues not in the file are left as they are.",
		Example: "  dure queue apply queues.yaml",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			b, err := a.readInput(argv[0])
			if err != nil {
				return err
			}
			f, err := spec.ParseQueueFile(b, false)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(argv[0]), err)
			}
			for _, q := range parentsFirst(f.Queues) {
				if _, err := a.client().PutQueue(c.Context(), q); err != nil {
					return fmt.Errorf("queue %s: %w", q.Name, err)
				}
				fmt.Fprintf(a.stdout, "applied queue %s\n", q.Name)
			}
			return nil
		},
	}
	c.AddCommand(apply)
	return c
}

// parentsFirst orders a validated (acyclic) queue set so every parent comes
// before its children, keeping file order otherwise.
func parentsFirst(qs []api.QueueSpec) []api.QueueSpec {
	done := map[string]bool{}
	inSet := map[string]bool{}
	for _, q := range qs {
		inSet[q.Name] = true
	}
	var out []api.QueueSpec
	for len(out) < len(qs) {
		for _, q := range qs {
			if !done[q.Name] && (q.Parent == "" || done[q.Parent] || !inSet[q.Parent]) {
				done[q.Name] = true
				out = append(out, q)
			}
		}
	}
	return out
}
