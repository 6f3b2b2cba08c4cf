package exec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// journalFile is the node daemon's record of the tasks it started, in Dir:
// one JSON line when a task is forked ("run") and one when its status file
// is written ("end"). A daemon that replaces a dead one reads it to find
// the tasks that are still running (or ended unseen). One shared file, not
// a file per task: appends cost no inode.
const journalFile = "supervisor.journal"

// compactAfter is how many ended tasks the journal may hold before it is
// rewritten with only the live ones.
const compactAfter = 8192

type journalRecord struct {
	Op        string        `json:"op"` // "run" or "end"
	ID        string        `json:"id"`
	Pid       int           `json:"pid,omitempty"`
	PidStart  uint64        `json:"pid_start,omitempty"` // /proc/<pid>/stat start time: tells a recycled pid apart
	StartedAt time.Time     `json:"started_at,omitzero"`
	Walltime  time.Duration `json:"walltime,omitempty"`
	KillGrace time.Duration `json:"kill_grace,omitempty"`
	Cgroup    *cgroupSpec   `json:"cgroup,omitempty"`
	// The task's limits and its cgroup's OOM kill count when it started
	// (a reused cgroup, cgpool.go), for a daemon that adopts it.
	MilliCPU    int64 `json:"millicpu,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	OOMBase     int64 `json:"oom_base,omitempty"`
}

const (
	journalRun = "run"
	journalEnd = "end"
)

type journal struct {
	path  string
	mu    sync.Mutex
	f     *os.File
	ended int
}

// openJournal reads the journal in dir and returns the tasks it lists as
// running; the file is then rewritten to hold just those.
func openJournal(dir string) (*journal, []journalRecord, error) {
	j := &journal{path: filepath.Join(dir, journalFile)}
	data, err := os.ReadFile(j.path)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, fmt.Errorf("reading journal: %w", err)
	}
	live, _ := decodeJournal(data)
	if err := j.rewrite(live); err != nil {
		return nil, nil, err
	}
	return j, live, nil
}

// decodeJournal returns the run records with no end record after them, in
// order, and how many lines it could not use (a torn last line after a
// crash, or junk).
func decodeJournal(data []byte) (live []journalRecord, bad int) {
	byID := map[string]int{} // index into live
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxFrame)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec journalRecord
		if err := json.Unmarshal(line, &rec); err != nil || validID(rec.ID) != nil {
			bad++
			continue
		}
		switch rec.Op {
		case journalRun:
			if rec.Pid <= 0 || rec.Cgroup == nil || checkCgroupSpec(*rec.Cgroup) != nil || rec.Walltime < 0 || rec.KillGrace < 0 {
				bad++
				continue
			}
			if i, ok := byID[rec.ID]; ok {
				live[i] = rec
				continue
			}
			byID[rec.ID] = len(live)
			live = append(live, rec)
		case journalEnd:
			if i, ok := byID[rec.ID]; ok {
				live[i].Op = "" // tombstone; dropped below
				delete(byID, rec.ID)
			}
		default:
			bad++
		}
	}
	if sc.Err() != nil {
		bad++
	}
	out := live[:0]
	for _, r := range live {
		if r.Op != "" {
			out = append(out, r)
		}
	}
	return out, bad
}

// rewrite replaces the journal with recs, through a temporary file and a
// rename, and reopens it for appending.
func (j *journal) rewrite(recs []journalRecord) error {
	var buf bytes.Buffer
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if err := writeAtomic(j.path, buf.Bytes()); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening journal: %w", err)
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f, j.ended = f, 0
	return nil
}

// append writes one record as one write(2) (O_APPEND keeps lines whole).
func (j *journal) append(rec journalRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	_, err = j.f.Write(line)
	return err
}

// end records that a task's status file is written. Every compactAfter ends
// the journal is rewritten with live() — the tasks still running — so it
// never grows without bound.
func (j *journal) end(id string, live func() []journalRecord) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(journalEndLine(id)); err != nil {
		return err
	}
	j.ended++
	if j.ended < compactAfter {
		return nil
	}
	return j.rewrite(live())
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	return j.f.Close()
}

// pidStartTime is field 22 of /proc/<pid>/stat: when the process started,
// in clock ticks since boot. A pid and its start time name one process.
func pidStartTime(pid int) (uint64, error) {
	data, err := readSmallFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatStartTime(data)
}

// parseStatStartTime extracts the start time from a /proc/<pid>/stat line.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatStartTime(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("stat: only %d fields after the command name", len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// adopt takes over the tasks a dead daemon left running (the journal's live
// records). They are not our children, so their exit status is lost: one
// still running is watched through a pidfd (walltime and Stop still work)
// and reported with ExitCode -1 when it ends; one that ended while no daemon
// ran is recorded the same way at once. Either way leftovers in its cgroup
// are killed and the cgroup and scratch directory removed.
func (d *daemon) adopt(recs []journalRecord) {
	for _, rec := range recs {
		dir := filepath.Join(d.dir, rec.ID)
		if _, ok, _ := readStatus(dir); ok {
			_ = d.journal.append(journalRecord{Op: journalEnd, ID: rec.ID})
			continue // it ended and was recorded; only the journal missed it
		}
		tr := &taskRun{
			dir: dir, cg: *rec.Cgroup, log: d.log, pid: rec.Pid, pool: d.pool, dirs: d.dirs, oomBase: rec.OOMBase,
			spec: TaskSpec{ID: rec.ID, Walltime: rec.Walltime, KillGrace: rec.KillGrace, MilliCPU: rec.MilliCPU, MemoryBytes: rec.MemoryBytes},
		}
		tr.result.StartedAt = rec.StartedAt
		if rec.Walltime > 0 {
			tr.deadline = rec.StartedAt.Add(rec.Walltime)
		}
		w := openSameProcess(rec.Pid, rec.PidStart)
		if w != nil && w.exited() {
			_ = w.close() // a zombie nobody has reaped yet: it ended unseen
			w = nil
		}
		if w != nil {
			tr.watch = w
			dt := &dtask{tr: tr, rec: rec, stops: make(chan time.Duration, 4), done: make(chan struct{})}
			d.mu.Lock()
			d.tasks[rec.ID] = dt
			d.mu.Unlock()
			d.log.Info("adopted a task of an earlier supervisor daemon", "task", rec.ID, "pid", rec.Pid)
			go d.superviseTask(rec.ID, dt)
			continue
		}
		d.log.Warn("a task ended while no supervisor daemon ran; its exit status is unknown", "task", rec.ID)
		tr.result.ExitCode = -1
		tr.result.Lost = lostRestarted + " (the task ended while no supervisor was running)"
		tr.result.FinishedAt = time.Now()
		if err := killCgroup(tr.cg); err != nil {
			d.log.Error("killing leftover processes", "task", rec.ID, "err", err)
		}
		if n, ok := oomKills(tr.cg); ok {
			tr.result.OOMKilled = n > tr.oomBase
			tr.oomKills, tr.oomRead = n, true
		}
		tr.cleanup()
		if err := writeStatus(dir, tr.result); err != nil {
			d.log.Error("writing status", "task", rec.ID, "err", err)
		}
		_ = d.journal.append(journalRecord{Op: journalEnd, ID: rec.ID})
	}
}

// openSameProcess opens a pidfd for pid if it is still the process that
// started at start (clock ticks since boot), else returns nil. The pidfd is
// opened first, so a match means it refers to that process.
func openSameProcess(pid int, start uint64) *pidWatch {
	w, err := openPidWatch(pid)
	if err != nil {
		return nil
	}
	if got, err := pidStartTime(pid); err != nil || got != start {
		_ = w.close()
		return nil
	}
	return w
}
