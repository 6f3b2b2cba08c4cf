package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/durehq/dure/internal/api"
)

// Queue files are read like job files: go.yaml.in/yaml/v3's node tree walked
// by hand, so every error has a line number and the file's own field names,
// scalars are the text the user wrote (a queue named y or no stays a string,
// not YAML 1.1's boolean), and unknown or repeated fields are refused.

var (
	queueFileFields = []string{"queues"}
	queueFields     = []string{"name", "description", "parent", "weight", "quotas", "default_walltime", "members"}
	quotaFields     = []string{"resource", "nominal", "borrowing_limit", "lending_limit"}
)

// queueFieldHints answer unknown fields people are likely to write, from
// Kueue (nominalQuota, borrowingLimit, cohort), Slurm or the job file.
var queueFieldHints = map[string]string{
	"queue": "queues", "cohort": "parent", "parent_queue": "parent",
	"share": "weight", "fairshare": "weight", "fair_share": "weight", "priority": "weight",
	"quota": "quotas", "resources": "quotas", "limits": "quotas",
	"walltime": "default_walltime", "time": "default_walltime", "default_time": "default_walltime", "defaultwalltime": "default_walltime",
	"users": "members", "allowed_users": "members", "allow": "members",
	"nominalquota": "nominal", "nominal_quota": "nominal", "quota_nominal": "nominal",
	"borrowinglimit": "borrowing_limit", "borrow_limit": "borrowing_limit", "borrow": "borrowing_limit",
	"lendinglimit": "lending_limit", "lend_limit": "lending_limit", "lend": "lending_limit",
	"type": "resource", "kind": "resource",
}

func parseQueueYAML(data []byte) (api.QueueFile, error) {
	var f api.QueueFile
	if len(data) > MaxJobFileBytes {
		return f, &ParseError{Message: fmt.Sprintf("the queue file is %d bytes; at most %d are allowed", len(data), MaxJobFileBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, &ParseError{Message: `queue file is empty: want a top-level "queues:" list`}
		}
		return f, yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return f, &ParseError{Line: next.Line, Message: "a queue file holds one YAML document; found a second"}
	case !errors.Is(err, io.EOF):
		return f, yamlError(err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return f, &ParseError{Message: `queue file is empty: want a top-level "queues:" list`}
	}
	p := &fileParser{}
	entries, err := p.mapping(doc.Content[0], "", `a mapping with a "queues:" list`)
	if err != nil {
		return f, err
	}
	for i := range entries {
		e := &entries[i]
		if e.key != "queues" {
			return f, unknownQueueField(e, "", queueFileFields)
		}
		list, err := p.resolve(e.val)
		if err != nil {
			return f, err
		}
		if isNull(list) {
			continue
		}
		if list.Kind != yaml.SequenceNode {
			return f, &ParseError{Line: list.Line, Field: "queues", Message: "want a list of queues (each item \"- name: …\"); got " + describe(list)}
		}
		for qi, item := range list.Content {
			q, err := p.queue(item, fmt.Sprintf("queues[%d]", qi))
			if err != nil {
				return f, err
			}
			f.Queues = append(f.Queues, q)
		}
	}
	return f, nil
}

func (p *fileParser) queue(n *yaml.Node, prefix string) (api.QueueSpec, error) {
	var q api.QueueSpec
	entries, err := p.mapping(n, prefix, "a queue: a mapping of fields such as name:, parent: and quotas:")
	if err != nil {
		return q, err
	}
	for i := range entries {
		e := &entries[i]
		field := join(prefix, e.key)
		if null, err := p.isNullEntry(e); err != nil {
			return q, err
		} else if null {
			if !contains(queueFields, e.key) {
				return q, unknownQueueField(e, prefix, queueFields)
			}
			continue // an empty field is the default
		}
		switch e.key {
		case "name":
			q.Name, err = p.str(e.val, field)
		case "description":
			q.Description, err = p.str(e.val, field)
		case "parent":
			q.Parent, err = p.str(e.val, field)
		case "weight":
			q.Weight, err = p.float(e.val, field)
		case "default_walltime":
			var d time.Duration
			d, err = p.duration(e.val, field)
			q.DefaultWalltime = api.Duration(d)
		case "members":
			q.Members, err = p.strList(e.val, field)
		case "quotas":
			q.Quotas, err = p.quotas(e.val, field)
		default:
			return q, unknownQueueField(e, prefix, queueFields)
		}
		if err != nil {
			return q, err
		}
	}
	return q, nil
}

func (p *fileParser) quotas(n *yaml.Node, prefix string) ([]api.QuotaSpec, error) {
	n, err := p.resolve(n)
	if err != nil {
		return nil, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, &ParseError{Line: n.Line, Field: prefix, Message: "want a list of quotas, such as [{resource: gpu, nominal: 8}]; got " + describe(n)}
	}
	out := make([]api.QuotaSpec, 0, len(n.Content))
	for i, item := range n.Content {
		field := fmt.Sprintf("%s[%d]", prefix, i)
		entries, err := p.mapping(item, field, "a quota: a mapping such as {resource: gpu, nominal: 8}")
		if err != nil {
			return nil, err
		}
		var q api.QuotaSpec
		for j := range entries {
			e := &entries[j]
			f := join(field, e.key)
			var v int64
			switch e.key {
			case "resource":
				q.Resource, err = p.str(e.val, f)
			case "nominal":
				q.Nominal, err = p.int64(e.val, f)
			case "borrowing_limit":
				v, err = p.int64(e.val, f)
				q.BorrowingLimit = &v
			case "lending_limit":
				v, err = p.int64(e.val, f)
				q.LendingLimit = &v
			default:
				return nil, unknownQueueField(e, field, quotaFields)
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, q)
	}
	return out, nil
}

func (p *fileParser) int64(n *yaml.Node, field string) (int64, error) {
	text, err := p.str(n, field)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	if err != nil {
		return 0, &ParseError{Line: n.Line, Field: field, Message: fmt.Sprintf("want a whole number; got %q", text)}
	}
	return v, nil
}

func (p *fileParser) float(n *yaml.Node, field string) (float64, error) {
	text, err := p.str(n, field)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, &ParseError{Line: n.Line, Field: field, Message: fmt.Sprintf("want a number; got %q", text)}
	}
	return v, nil
}

// duration reads a Go duration ("2h", "90m") or, as the API does, a number
// of seconds.
func (p *fileParser) duration(n *yaml.Node, field string) (time.Duration, error) {
	text, err := p.str(n, field)
	if err != nil {
		return 0, err
	}
	text = strings.TrimSpace(text)
	if d, err := time.ParseDuration(text); err == nil {
		return d, nil
	}
	if secs, err := strconv.ParseFloat(text, 64); err == nil && !math.IsNaN(secs) && math.Abs(secs) < float64(math.MaxInt64)/float64(time.Second) {
		return time.Duration(secs * float64(time.Second)), nil
	}
	return 0, &ParseError{Line: n.Line, Field: field, Message: fmt.Sprintf("want a duration (like \"2h\" or \"90m\") or a number of seconds; got %q", text)}
}

func unknownQueueField(e *entry, prefix string, known []string) error {
	msg := fmt.Sprintf("unknown field %q", e.key)
	if hint, ok := queueFieldHints[strings.ToLower(e.key)]; ok && contains(known, hint) {
		msg += fmt.Sprintf("; did you mean %q?", hint)
	} else {
		msg += "; known fields are " + strings.Join(known, ", ")
	}
	return &ParseError{Line: e.line, Field: join(prefix, e.key), Message: msg}
}
