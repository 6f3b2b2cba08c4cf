package spec

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func TestParseQueueFile(t *testing.T) {
	f, err := ParseQueueFile([]byte(`
queues:
  - name: research
    weight: 2
  - name: vision
    parent: research
    default_walltime: 2h
    members: [alice, bob]
    quotas:
      - {resource: gpu, nominal: 16, borrowing_limit: 8}
      - {resource: gpu/H100, nominal: 8, lending_limit: 4}
`), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseQueueFile([]byte("queues:\n- name: nlp\n  parent: research\n"), false); err != nil {
		t.Errorf("a partial file whose parent lives on the server: %v", err)
	}
	eight, four := int64(8), int64(4)
	want := api.QueueFile{Queues: []api.QueueSpec{
		{Name: "research", Weight: 2},
		{Name: "vision", Parent: "research", DefaultWalltime: api.Duration(7200e9), Members: []string{"alice", "bob"},
			Quotas: []api.QuotaSpec{{Resource: "gpu", Nominal: 16, BorrowingLimit: &eight}, {Resource: "gpu/H100", Nominal: 8, LendingLimit: &four}}},
	}}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}
	m := QueueToModel(&f.Queues[1])
	if back := QueueFromModel(&m); !cmp.Equal(back, f.Queues[1]) {
		t.Errorf("model round trip: %s", cmp.Diff(f.Queues[1], back))
	}
}

func TestQueueFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml, field, msg string
	}{
		{"unknown field", "queues:\n- name: a\n  colour: red\n", "", `unknown field "colour"`},
		{"empty", "", "", "queue file is empty"},
		{"bad name", "queues:\n- name: Big Queue\n", "queues[0].name", "must be 1-63 characters"},
		{"missing parent", "queues:\n- name: a\n  parent: b\n", "queues[0].parent", `queue "b" is not defined`},
		{"cycle", "queues:\n- name: a\n  parent: b\n- name: b\n  parent: a\n", "queues[0].parent", "cycle: a → b → a"},
		{"self parent", "queues:\n- name: a\n  parent: a\n", "queues[0].parent", "its own parent"},
		{"duplicate", "queues:\n- name: a\n- name: a\n", "queues[1].name", "appears twice"},
		{"negative nominal", "queues:\n- name: a\n  quotas: [{resource: gpu, nominal: -1}]\n", "queues[0].quotas[0].nominal", "between 0"},
		{"lending above nominal", "queues:\n- name: a\n  quotas: [{resource: gpu, nominal: 2, lending_limit: 3}]\n", "queues[0].quotas[0].lending_limit", "nominal quota 2"},
		{"unknown resource spelling", "queues:\n- name: a\n  quotas: [{resource: gpus, nominal: 1}]\n", "queues[0].quotas[0].resource", "use cpu, memory, gpu or scratch"},
		{"empty flavor", "queues:\n- name: a\n  quotas: [{resource: gpu/, nominal: 1}]\n", "queues[0].quotas[0].resource", "flavor"},
		{"two quotas one resource", "queues:\n- name: a\n  quotas: [{resource: cpu, nominal: 1}, {resource: cpu, nominal: 2}]\n", "queues[0].quotas[1].resource", "two quotas"},
		{"negative weight", "queues:\n- name: a\n  weight: -1\n", "queues[0].weight", "between 0"},
		{"bad walltime", "queues:\n- name: a\n  default_walltime: soon\n", "", "duration"},
		{"unknown field has its line", "queues:\n- name: a\n  wieght: 2\n", "", `line 3: queues[0].wieght: unknown field "wieght"; known fields are name,`},
		{"Kueue spelling", "queues:\n- name: a\n  quotas:\n  - {resource: gpu, nominalQuota: 4}\n", "", `line 4: queues[0].quotas[0].nominalQuota: unknown field "nominalQuota"; did you mean "nominal"?`},
		{"quota not a number", "queues:\n- name: a\n  quotas: [{resource: gpu, nominal: lots}]\n", "", `line 3: queues[0].quotas[0].nominal: want a whole number; got "lots"`},
		{"queues not a list", "queues: research\n", "", `line 1: queues: want a list of queues`},
		{"field written twice", "queues:\n- name: a\n  weight: 1\n  weight: 2\n", "", `line 4: queues[0].weight: written twice (first on line 3)`},
		{"negative nominal says what it got", "queues:\n- name: a\n  quotas: [{resource: gpu, nominal: -3}]\n", "queues[0].quotas[0].nominal", "; got -3"},
		{"member with space", "queues:\n- name: a\n  members: [\"al ice\"]\n", "queues[0].members[0]", "without spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseQueueFile([]byte(tt.yaml), true)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if tt.field != "" {
				var fe FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("error %q: field %q, want %q", err, fe.Field, tt.field)
				}
			}
		})
	}
}

// Scalars are the text written: a queue named y, no or on is that name
// (YAML 1.1 would read a boolean), and a default walltime may be a
// duration or, as in the API, a number of seconds.
func TestQueueFileScalarsAreText(t *testing.T) {
	f, err := ParseQueueFile([]byte("queues:\n- name: y\n- name: no\n  parent: y\n  default_walltime: 90\n- name: on\n  parent: y\n  default_walltime: 1h30m\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	want := api.QueueFile{Queues: []api.QueueSpec{
		{Name: "y"},
		{Name: "no", Parent: "y", DefaultWalltime: api.Duration(90e9)},
		{Name: "on", Parent: "y", DefaultWalltime: api.Duration(5400e9)},
	}}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}
	// JSON is YAML too.
	if f, err := ParseQueueFile([]byte(`{"queues":[{"name":"a","weight":1.5,"quotas":[{"resource":"gpu","nominal":2,"lending_limit":1}]}]}`), true); err != nil || f.Queues[0].Weight != 1.5 || *f.Queues[0].Quotas[0].LendingLimit != 1 {
		t.Errorf("JSON file: %+v, %v", f, err)
	}
}

func FuzzParseQueueFile(f *testing.F) {
	f.Add([]byte("queues:\n- name: a\n- name: b\n  parent: a\n  quotas: [{resource: gpu/H100, nominal: 4, borrowing_limit: 2}]\n"))
	f.Add([]byte("queues: []"))
	f.Add([]byte("{\"queues\":[{\"name\":\"x\",\"weight\":1e300}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		qf, err := ParseQueueFile(data, true)
		if err != nil {
			return
		}
		// Whatever is accepted is a valid forest of valid queues.
		parents := map[string]string{}
		for i := range qf.Queues {
			if err := ValidateQueue(&qf.Queues[i]); err != nil {
				t.Fatalf("accepted an invalid queue: %v", err)
			}
			parents[qf.Queues[i].Name] = qf.Queues[i].Parent
		}
		for name, p := range parents {
			if _, ok := parents[p]; p != "" && !ok {
				t.Fatalf("accepted %q with missing parent %q", name, p)
			}
			if c := QueueCycle(parents, name); c != "" {
				t.Fatalf("accepted a cycle %s", c)
			}
		}
	})
}
