package spec

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

func TestParseArray(t *testing.T) {
	tests := []struct {
		text     string
		indices  []int
		throttle int
	}{
		{"0-4", []int{0, 1, 2, 3, 4}, 0},
		{"7", []int{7}, 0},
		{"1,3,5-7", []int{1, 3, 5, 6, 7}, 0},
		{"0-15:4", []int{0, 4, 8, 12}, 0},
		{"1-3%2", []int{1, 2, 3}, 2},
		{" 5-6 , 1 %1", []int{1, 5, 6}, 1},
		{"3,1,2,1", []int{1, 2, 3}, 0},
		{"0-9999", nil, 0}, // 10,000: exactly the limit
		{"9999999", []int{9999999}, 0},
	}
	for _, tc := range tests {
		a, err := ParseArray(tc.text)
		if err != nil {
			t.Errorf("ParseArray(%q): %v", tc.text, err)
			continue
		}
		got := a.Indices(model.MaxArraySize)
		if tc.indices == nil {
			if len(got) != model.MaxArraySize {
				t.Errorf("ParseArray(%q): %d indices; want %d", tc.text, len(got), model.MaxArraySize)
			}
		} else if !slices.Equal(got, tc.indices) {
			t.Errorf("ParseArray(%q) indices = %v; want %v", tc.text, got, tc.indices)
		}
		if a.Throttle != tc.throttle {
			t.Errorf("ParseArray(%q) throttle = %d; want %d", tc.text, a.Throttle, tc.throttle)
		}
	}
}

func TestParseArrayErrors(t *testing.T) {
	tests := map[string]string{
		"":              "want array indices such as 0-99, 1,3,5-7 or 0-15:4, optionally followed by %N",
		"1-10%0":        "throttle %0: must be at least 1 (the most elements that run at once)",
		"1-10%x":        "throttle %x: want a whole number after %, such as 1-100%10",
		"1-10%":         "throttle %: want a whole number after %, such as 1-100%10",
		"1-10%+3":       "throttle %+3: want a whole number after %, such as 1-100%10",
		"5-1":           `range "5-1" runs backwards; write the lower index first`,
		"1-":            `"1-": want an index or a range such as 5 or 0-99`,
		"-1":            `"-1": want an index or a range such as 5 or 0-99`,
		"a-b":           `"a-b": "a" is not an index (a whole number from 0 to 9999999)`,
		"1,,2":          `"": want an index or a range such as 5 or 0-99`,
		"10000000":      `"10000000": index 10000000 is out of range; indices run from 0 to 9999999`,
		"4:2":           `"4:2": a step (:S) needs a range, such as 0-15:4`,
		"0-8:0":         `"0-8:0": the step after : must be a whole number 1 or more`,
		"0-10000":       `"0-10000" has more than 10000 elements; at most 10000 are allowed per submission`,
		"0-5000,0-5000": `"0-5000,0-5000" has more than 10000 elements; at most 10000 are allowed per submission`,
		"1-2%3%4":       "throttle %3%4: want a whole number after %, such as 1-100%10",
		"[1-3]":         `"[1-3]": "[1" is not an index (a whole number from 0 to 9999999)`,
	}
	for text, want := range tests {
		if _, err := ParseArray(text); err == nil || err.Error() != want {
			t.Errorf("ParseArray(%q) error = %v\nwant %q", text, err, want)
		}
	}
	if _, err := ParseArray(strings.Repeat("1,", 1000) + "1"); err == nil || !strings.Contains(err.Error(), "1001 comma-separated parts; at most 1000") {
		t.Errorf("1001 parts: %v", err)
	}
}

func TestParseDependency(t *testing.T) {
	got, err := ParseDependency("afterok:12:13_2, afterany:14,afternotok:3")
	if err != nil {
		t.Fatal(err)
	}
	want := []api.DependencySpec{{Type: "afterok", Job: "12"}, {Type: "afterok", Job: "13_2"}, {Type: "afterany", Job: "14"}, {Type: "afternotok", Job: "3"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseDependency (-want +got):\n%s", diff)
	}
	errs := map[string]string{
		"":                    "want conditions such as afterok:12 or afterok:12:13,afterany:14",
		"afterok":             `"afterok": name the jobs after the type, such as afterok:12`,
		"afterok:":            `"afterok:": name the jobs after the type, such as afterok:12`,
		"afterok:0":           `"afterok:0": invalid job ID "0": want a positive number like 12, or an array element like 12_3`,
		"afterok:12_":         `"afterok:12_": invalid job ID "12_": the array index after _ must be a number 0 or more, like 12_3`,
		"afterok:12_-1":       `"afterok:12_-1": invalid job ID "12_-1": the array index after _ must be a number 0 or more, like 12_3`,
		"afterok:x":           `"afterok:x": invalid job ID "x": want a positive number like 12, or an array element like 12_3`,
		"after:12":            `"after:12": after (start after the job started) is not supported; use afterany or afterok`,
		"aftercorr:12":        `"aftercorr:12": aftercorr (element by element between arrays) is not supported; depend on the whole array with afterok:ID`,
		"singleton":           `"singleton": singleton is not supported`,
		"before:1":            `"before:1": unknown dependency type "before"; want afterok, afterany, afternotok`,
		"afterok:1?afterok:2": "'?' (start when any one condition holds) is not supported; every condition must hold: separate them with ','",
		"afterany:1+60":       `"afterany:1+60": delays (+MINUTES) are not supported`,
		"afterok:" + strings.Repeat("1:", 100) + "1": "names more than 100 jobs; at most 100 are allowed",
	}
	for text, want := range errs {
		if _, err := ParseDependency(text); err == nil || err.Error() != want {
			t.Errorf("ParseDependency(%q) error = %v\nwant %q", text, err, want)
		}
	}
}

func TestJobFileArrayDependencyAndGang(t *testing.T) {
	s, err := ParseJobFile([]byte("name: sweep\narray: 0-99%10\ndependency: afterok:12:13_1,afterany:14\nmin_tasks: 2\ntopology: rack\nplacement: spread\ntasks: 4\ncommand: [./run.sh]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := api.JobSpec{Name: "sweep", Array: "0-99%10", MinTasks: 2, Topology: "rack", Placement: "spread",
		Dependencies: []api.DependencySpec{{Type: "afterok", Job: "12"}, {Type: "afterok", Job: "13_1"}, {Type: "afterany", Job: "14"}},
		Groups:       []api.TaskGroupSpec{{Count: 4, Command: []string{"./run.sh"}}}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("ParseJobFile (-want +got):\n%s", diff)
	}
	s, err = ParseJobFile([]byte("dependency:\n  - afterok:12\n  - afternotok:13\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.DependencySpec{{Type: "afterok", Job: "12"}, {Type: "afternotok", Job: "13"}}; !cmp.Equal(want, s.Dependencies) {
		t.Errorf("dependency list = %+v; want %+v", s.Dependencies, want)
	}

	errs := map[string]string{
		"command: [x]\narray: 1-10%0\n":                       "line 2: array: throttle %0: must be at least 1 (the most elements that run at once)",
		"command: [x]\ndependency: after:3\n":                 `line 2: dependency: "after:3": after (start after the job started) is not supported; use afterany or afterok`,
		"command: [x]\ndependency:\n  - afterok:1\n  - x:2\n": `line 4: dependency[1]: "x:2": unknown dependency type "x"; want afterok, afterany, afternotok`,
		"command: [x]\ndependency: {afterok: 1}\n":            "line 2: dependency: want a single value; got a mapping",
		"command: [x]\nmin_tasks: two\n":                      `line 2: min_tasks: want a whole number; got "two"`,
		"command: [x]\ndependencies: afterok:1\n":             `line 2: unknown field "dependencies"; did you mean "dependency"?`,
		"command: [x]\nspread: true\n":                        `line 2: unknown field "spread"; did you mean "placement"?`,
		"groups:\n  - command: [x]\n    array: 1-3\n":         "line 3: groups[0].array: is a field of the job, not of a group; write it at the top level",
	}
	for text, want := range errs {
		if _, err := ParseJobFile([]byte(text)); err == nil || err.Error() != want {
			t.Errorf("ParseJobFile(%q) error = %v\nwant %q", text, err, want)
		}
	}
}

// Run briefly with: go test ./internal/spec -run '^$' -fuzz FuzzParseArray -fuzztime 20s

// FuzzParseArray: an accepted --array text has 1 to MaxArraySize indices in
// range, and the indices written back compactly read as the same ones.
func FuzzParseArray(f *testing.F) {
	for _, s := range []string{"0-99", "1,3,5-7", "0-15:4", "1-1000%50", "7", "5-1", "1-10%0", "0-10000", "0-9999999:1000", " 3 , 1 ", "1-2:3", "00-01%01", "+1", "1-+2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArray(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		idx := a.Indices(model.MaxArraySize)
		if len(idx) < 1 || len(idx) > model.MaxArraySize || idx[0] < 0 || idx[len(idx)-1] > MaxArrayIndex {
			t.Fatalf("ParseArray(%q) accepted indices %v", s, idx)
		}
		if a.Throttle < 0 {
			t.Fatalf("ParseArray(%q) throttle %d", s, a.Throttle)
		}
		if n := naiveArraySize(s); n != len(idx) {
			t.Fatalf("ParseArray(%q): %d indices; the naive count says %d", s, len(idx), n)
		}
		text := model.FormatIndices(idx)
		if len(text) > MaxArrayText || strings.Count(text, ",") >= model.MaxArrayRanges {
			return // an irregular union of ranges can be too long to write out
		}
		back, err := ParseArray(text)
		if err != nil {
			t.Fatalf("FormatIndices(%v) = %q does not parse: %v", idx, model.FormatIndices(idx), err)
		}
		if again := back.Indices(model.MaxArraySize); !slices.Equal(again, idx) {
			t.Fatalf("%q → %q → %v; want %v", s, model.FormatIndices(idx), again, idx)
		}
	})
}

// FuzzParseDependency: accepted conditions have a supported type and a job
// reference that reads back as itself.
func FuzzParseDependency(f *testing.F) {
	for _, s := range []string{"afterok:12", "afterok:12:13_2,afterany:14", "afternotok:1", "after:1", "afterok:1?afterok:2", "afterok:0", "afterok:1_", "afterany:1+5", ",", "afterok:1,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := ParseDependency(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(ds) < 1 || len(ds) > MaxDependencies {
			t.Fatalf("ParseDependency(%q) = %d conditions", s, len(ds))
		}
		for _, d := range ds {
			if err := checkDependencyType(d.Type); err != nil {
				t.Fatalf("ParseDependency(%q) accepted type %q", s, d.Type)
			}
			r, err := api.ParseJobRef(d.Job)
			if err != nil || r.ID == 0 {
				t.Fatalf("ParseDependency(%q) accepted job %q: %v", s, d.Job, err)
			}
			if !naiveJobRef.MatchString(d.Job) {
				t.Fatalf("ParseDependency(%q) accepted job %q, which is not digits[_digits]", s, d.Job)
			}
		}
	})
}
