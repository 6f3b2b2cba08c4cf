package sim

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// maxSpecNodes bounds a --nodes spec: a typo like 1000000000x1cpu should be
// an error, not an out-of-memory.
const maxSpecNodes = 1_000_000

// maxSpecGPUs bounds the GPU devices of a spec for the same reason.
const maxSpecGPUs = 1 << 22

// ParseNodes builds a virtual cluster from a small grammar:
//
//	spec  = term { "+" term }
//	term  = [ count "x" ] node
//	node  = item | "(" item { "," item } ")"
//	item  = N "cpu"                  cores, decimals allowed (0.5cpu)
//	      | N unit                   memory; unit K, M, G, T (binary: G = GiB; "GiB", "GB" also read as GiB)
//	      | N "gpu" [ ":" model ]    GPU devices, optionally of a model (label gpu.model=<model>)
//	      | key "=" value            a node label (rack=r1, pool=gpu)
//
// Examples: "100x1cpu" (a hundred one-core nodes), "64x(8cpu,512G,8gpu:H100)+32x(64cpu,256G)".
// Nodes are named n0, n1, … in spec order (zero-padded so names sort in that
// order). Errors name the term and the rule broken.
func ParseNodes(spec string) ([]*model.Node, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty spec: want e.g. 100x1cpu or 64x(8cpu,512G,8gpu:H100)+32x(64cpu,256G)")
	}
	terms, err := splitTerms(spec)
	if err != nil {
		return nil, err
	}
	type parsed struct {
		count int
		node  *model.Node
	}
	var all []parsed
	total, gpus := 0, int64(0)
	for i, term := range terms {
		count, node, err := parseTerm(term)
		if err != nil {
			return nil, fmt.Errorf("term %d (%q): %w", i+1, term, err)
		}
		total += count
		if total > maxSpecNodes {
			return nil, fmt.Errorf("term %d (%q): more than %d nodes in all", i+1, term, maxSpecNodes)
		}
		gpus += int64(count) * node.Capacity.GPUs
		if gpus > maxSpecGPUs {
			return nil, fmt.Errorf("term %d (%q): more than %d GPUs in all", i+1, term, maxSpecGPUs)
		}
		all = append(all, parsed{count, node})
	}
	width := len(strconv.Itoa(total - 1))
	nodes := make([]*model.Node, 0, total)
	for _, p := range all {
		for k := 0; k < p.count; k++ {
			n := p.node.Copy()
			n.Name = fmt.Sprintf("n%0*d", width, len(nodes))
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

// splitTerms splits on "+" outside parentheses.
func splitTerms(spec string) ([]string, error) {
	var terms []string
	depth, start := 0, 0
	for i, c := range spec {
		switch c {
		case '(':
			depth++
			if depth > 1 {
				return nil, fmt.Errorf("nested parentheses at byte %d: a node is one list of items", i+1)
			}
		case ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unmatched \")\" at byte %d", i+1)
			}
		case '+':
			if depth == 0 {
				terms = append(terms, strings.TrimSpace(spec[start:i]))
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("missing \")\"")
	}
	terms = append(terms, strings.TrimSpace(spec[start:]))
	for i, t := range terms {
		if t == "" {
			return nil, fmt.Errorf("term %d is empty (a \"+\" with nothing on one side)", i+1)
		}
	}
	return terms, nil
}

func parseTerm(term string) (int, *model.Node, error) {
	count := 1
	digits := 0
	for digits < len(term) && term[digits] >= '0' && term[digits] <= '9' {
		digits++
	}
	if digits > 0 && digits < len(term) && term[digits] == 'x' {
		n, err := strconv.Atoi(term[:digits])
		if err != nil || n < 1 || n > maxSpecNodes {
			return 0, nil, fmt.Errorf("node count %q must be between 1 and %d", term[:digits], maxSpecNodes)
		}
		count = n
		term = strings.TrimSpace(term[digits+1:])
	}
	var items []string
	switch {
	case strings.HasPrefix(term, "("):
		if !strings.HasSuffix(term, ")") {
			return 0, nil, fmt.Errorf("text after \")\": a term is [COUNTx]NODE")
		}
		items = strings.Split(term[1:len(term)-1], ",")
	case strings.ContainsAny(term, ",)"):
		return 0, nil, fmt.Errorf("several items need parentheses, e.g. 2x(8cpu,32G)")
	default:
		items = []string{term}
	}
	n := simNode("", model.Resources{}, nil, nil)
	seen := map[string]bool{}
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			return 0, nil, fmt.Errorf("empty item (two commas, or a comma at an end)")
		}
		kind, err := applyItem(n, it)
		if err != nil {
			return 0, nil, fmt.Errorf("%q: %w", it, err)
		}
		if seen[kind] {
			return 0, nil, fmt.Errorf("%q: %s given twice in one node", it, kind)
		}
		seen[kind] = true
	}
	if n.Capacity.MilliCPU == 0 && n.Capacity.MemoryBytes == 0 && n.Capacity.GPUs == 0 {
		return 0, nil, fmt.Errorf("a node needs cpu, memory or gpu (e.g. 8cpu, 32G, 4gpu)")
	}
	return count, n, nil
}

// applyItem sets one item on n and returns what it set ("cpu", "memory",
// "gpu" or "label <key>"), so duplicates can be caught.
func applyItem(n *model.Node, it string) (string, error) {
	if k, v, ok := strings.Cut(it, "="); ok {
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" || v == "" {
			return "", fmt.Errorf("a label is key=value, both non-empty")
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
		return "label " + k, nil
	}
	num, unit := splitNumber(it)
	if num == "" {
		return "", fmt.Errorf("want a number first: 8cpu, 512G, 8gpu:H100 or key=value")
	}
	lower := strings.ToLower(unit)
	switch {
	case lower == "cpu":
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f <= 0 || f > 1e6 || math.Round(f*1000) != f*1000 {
			return "", fmt.Errorf("cpu count must be positive, at most 1e6, in steps of 0.001")
		}
		n.Capacity.MilliCPU = int64(math.Round(f * 1000))
		return "cpu", nil
	case lower == "gpu" || strings.HasPrefix(lower, "gpu:"):
		c, err := strconv.Atoi(num)
		if err != nil || c < 1 || c > 1024 {
			return "", fmt.Errorf("gpu count must be a whole number from 1 to 1024")
		}
		gm := ""
		if strings.HasPrefix(lower, "gpu:") {
			gm = strings.TrimSpace(unit[4:])
			if gm == "" {
				return "", fmt.Errorf("empty GPU model after \":\"")
			}
		}
		n.Capacity.GPUs = int64(c)
		n.GPUs = make([]model.GPU, c)
		for i := range n.GPUs {
			n.GPUs[i] = model.GPU{Index: i, Model: gm}
		}
		if gm != "" {
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels["gpu.model"] = gm
		}
		return "gpu", nil
	}
	mult, ok := memUnits[strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(unit), "B"), "I")]
	if !ok || unit == "" {
		return "", fmt.Errorf("unknown unit %q: want cpu, gpu[:MODEL] or a memory unit K, M, G, T", unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || f*float64(mult) > 1<<62 {
		return "", fmt.Errorf("memory must be positive and below 4 EiB")
	}
	n.Capacity.MemoryBytes = int64(f * float64(mult))
	return "memory", nil
}

var memUnits = map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

// splitNumber splits "512G" into "512" and "G".
func splitNumber(s string) (num, unit string) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	return s[:i], strings.TrimSpace(s[i:])
}
