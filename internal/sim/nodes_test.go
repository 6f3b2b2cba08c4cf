package sim

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
)

func TestParseNodesBuildsTheDescribedCluster(t *testing.T) {
	type shape struct {
		Name   string
		Cap    model.Resources
		GPUs   int
		Model  string
		Labels map[string]string
	}
	summarise := func(ns []*model.Node) []shape {
		var out []shape
		for _, n := range ns {
			s := shape{Name: n.Name, Cap: n.Capacity, GPUs: len(n.GPUs), Labels: n.Labels}
			if len(n.GPUs) > 0 {
				s.Model = n.GPUs[0].Model
			}
			out = append(out, s)
		}
		return out
	}
	for _, tc := range []struct {
		spec string
		want []shape
	}{
		{"2x1cpu", []shape{{Name: "n0", Cap: model.Resources{MilliCPU: 1000}}, {Name: "n1", Cap: model.Resources{MilliCPU: 1000}}}},
		{"(0.5cpu, 1.5G)", []shape{{Name: "n0", Cap: model.Resources{MilliCPU: 500, MemoryBytes: 3 << 29}}}},
		{"1x(8cpu,512GiB,8gpu:H100,rack=r1) + 1x(64cpu,256G)", []shape{
			{Name: "n0", Cap: model.Resources{MilliCPU: 8000, MemoryBytes: 512 << 30, GPUs: 8}, GPUs: 8, Model: "H100",
				Labels: map[string]string{"gpu.model": "H100", "rack": "r1"}},
			{Name: "n1", Cap: model.Resources{MilliCPU: 64000, MemoryBytes: 256 << 30}},
		}},
		{"4gpu", []shape{{Name: "n0", Cap: model.Resources{GPUs: 4}, GPUs: 4}}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			ns, err := ParseNodes(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarise(ns)); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			for _, n := range ns {
				if !n.Schedulable() {
					t.Errorf("node %s is not ready", n.Name)
				}
			}
		})
	}
	ns, err := ParseNodes("11x1cpu")
	if err != nil {
		t.Fatal(err)
	}
	if ns[0].Name != "n00" || ns[10].Name != "n10" {
		t.Errorf("names %s…%s, want zero-padded n00…n10 so they sort in spec order", ns[0].Name, ns[10].Name)
	}
}

func TestParseNodesRejectsBadSpecsSayingWhy(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "empty spec"},
		{"64x(8cpu", `missing ")"`},
		{"64x8cpu)", `unmatched ")"`},
		{"2x((1cpu))", "nested parentheses"},
		{"1cpu+", `term 2 is empty`},
		{"0x1cpu", `term 1 ("0x1cpu"): node count "0" must be between 1 and 1000000`},
		{"2000000x1cpu", "must be between 1 and 1000000"},
		{"600000x1cpu+600000x1cpu", "more than 1000000 nodes in all"},
		{"1000000x(1024gpu)", "more than 4194304 GPUs in all"},
		{"2x8cpu,32G", "several items need parentheses"},
		{"(8cpu)x2", `text after ")"`},
		{"(8cpu,,4G)", "empty item"},
		{"(8cpu,4cpu)", `"4cpu": cpu given twice in one node`},
		{"(1T,16M)", "memory given twice"},
		{"8cores", `"8cores": unknown unit "cores"`},
		{"cpu", `want a number first`},
		{"-1cpu", `want a number first`},
		{"0cpu", "cpu count must be positive"},
		{"0.0001cpu", "in steps of 0.001"},
		{"1.5gpu", "gpu count must be a whole number"},
		{"2gpu:", "empty GPU model"},
		{"rack=r1", "a node needs cpu, memory or gpu"},
		{"(1cpu,=x)", "a label is key=value"},
		{"99999999T", "memory must be positive and below 4 EiB"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			_, err := ParseNodes(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseNodes(%q) err = %v, want it to say %q", tc.spec, err, tc.want)
			}
		})
	}
}

func FuzzParseNodes(f *testing.F) {
	for _, s := range []string{"100x1cpu", "64x(8cpu,512G,8gpu:H100)+32x(64cpu,256G)", "(1cpu,rack=a)", "3x(2gpu)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ns, err := ParseNodes(spec)
		if err != nil {
			return
		}
		if len(ns) == 0 || len(ns) > maxSpecNodes {
			t.Fatalf("%d nodes", len(ns))
		}
		seen := map[string]bool{}
		for _, n := range ns {
			if seen[n.Name] || n.Capacity.IsZero() || int64(len(n.GPUs)) != n.Capacity.GPUs {
				t.Fatalf("bad node %+v", n)
			}
			seen[n.Name] = true
		}
	})
}
