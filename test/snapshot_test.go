package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// TestSnapshotSaveRestore saves the state of a three-server cluster with
// `dure operator snapshot save`, changes it, and restores it: every server
// goes back to the saved jobs. A damaged snapshot file is refused with a
// clear error and changes nothing.
func TestSnapshotSaveRestore(t *testing.T) {
	h := newHACluster(t, 3)
	addrs := strings.Join(h.addrs, ",")
	all := api.NewClient(addrs)
	submit := func(name string) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// No agent runs here: the jobs stay pending, which is all the state
		// this test needs.
		id, err := all.SubmitJob(ctx, api.JobSpec{Name: name, Owner: "e2e", Groups: []api.TaskGroupSpec{{
			Resources: api.Resources{MilliCPU: 100}, Command: []string{"true"},
		}}})
		if err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		return id
	}
	var early, late []string
	for i := range 3 {
		early = append(early, fmt.Sprintf("%d early-%d", submit(fmt.Sprintf("early-%d", i)), i))
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	if r := runCLI(t, addrs, nil, "operator", "snapshot", "save", file); r.code != 0 || !strings.Contains(r.stdout, "saved snapshot to "+file) {
		t.Fatalf("dure operator snapshot save: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for i := range 3 {
		late = append(late, fmt.Sprintf("%d late-%d", submit(fmt.Sprintf("late-%d", i)), i))
	}
	both := append(slices.Clone(early), late...)
	h.waitJobsEverywhere(t, both)

	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	damaged := []struct {
		name string
		data []byte
	}{
		{"truncated", good[:len(good)/2]},
		{"garbage", bytes.Repeat([]byte{0x5a, 0xc3, 0x00, 0x17}, 1024)},
		{"empty", nil},
		{"last record missing", good[:bytes.LastIndexByte(good[:len(good)-1], '\n')+1]},
	}
	for _, d := range damaged {
		bad := filepath.Join(t.TempDir(), d.name+".snap")
		if err := os.WriteFile(bad, d.data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, addrs, nil, "operator", "snapshot", "restore", bad)
		if r.code == 0 || !strings.Contains(r.stderr, "not a valid dure snapshot") {
			t.Errorf("restore of a %s snapshot: exit %d, stderr %q; want an error saying it is not a valid dure snapshot", d.name, r.code, r.stderr)
		}
		h.waitJobsEverywhere(t, both) // unchanged
	}

	if r := runCLI(t, addrs, nil, "operator", "snapshot", "restore", file); r.code != 0 || !strings.Contains(r.stdout, "restored snapshot "+file) {
		t.Fatalf("dure operator snapshot restore: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	h.waitJobsEverywhere(t, early)

	// The cluster keeps working after the restore, and a new job does not
	// take the ID of a job the restore removed.
	next := submit("after-restore")
	for _, l := range late {
		if strings.HasPrefix(l, fmt.Sprintf("%d ", next)) {
			t.Errorf("job submitted after the restore got ID %d, which %q had before the restore", next, l)
		}
	}
	h.waitJobsEverywhere(t, append(slices.Clone(early), fmt.Sprintf("%d after-restore", next)))
}

// TestSnapshotRestoreRefusesAlteredRecord restores a snapshot file in
// which one byte inside a record changed (bit rot in a backup), leaving the
// JSON well-formed: the restore must be refused, not load the altered data.
func TestSnapshotRestoreRefusesAlteredRecord(t *testing.T) {
	c := newCluster(t)
	id := c.submit("--name", "precious", "--", "true")
	file := filepath.Join(t.TempDir(), "backup.snap")
	if r := c.dure("operator", "snapshot", "save", file); r.code != 0 {
		t.Fatalf("dure operator snapshot save: exit %d: %s", r.code, r.stderr)
	}
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(good, []byte(`"precious"`), []byte(`"precioes"`), 1)
	if bytes.Equal(altered, good) {
		t.Fatalf("the snapshot does not hold the job name as JSON text; adapt the test to the format:\n%s", good)
	}
	if err := os.WriteFile(file, altered, 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.dure("operator", "snapshot", "restore", file)
	if r.code == 0 {
		t.Errorf("restore of a snapshot with an altered record succeeded; want it refused (the file needs a checksum)")
	}
	if j := c.job(id); j.Name != "precious" {
		t.Errorf("job %d is now named %q: the altered snapshot was loaded", id, j.Name)
	}
}

// waitJobsEverywhere waits until every server lists exactly want
// ("ID name" each).
func (h *haCluster) waitJobsEverywhere(t *testing.T, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	poll(t, fmt.Sprintf("every server to list exactly %q", want), 20*time.Second, func() error {
		for i, name := range h.names {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			jobs, _, err := h.client(i).ListJobs(ctx, api.JobFilter{}, api.WatchOptions{})
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			var got []string
			for _, j := range jobs {
				got = append(got, fmt.Sprintf("%d %s", j.ID, j.Name))
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s lists %q", name, got)
			}
		}
		return nil
	})
}
