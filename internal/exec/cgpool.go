package exec

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// cgroupPool keeps the cgroup v1 directories of ended tasks (the node
// daemon's only) for the next tasks. Creating a task's cpu and memory
// cgroups, writing their limits and removing them again costs about 0.3 ms
// of CPU per task on top of the deferred kernel work of freeing a memory
// cgroup; renaming a spare into place (v1 allows renames within a parent)
// costs two system calls, and memory limits equal to the spare's last ones
// are not written again. While a task runs its cgroups have their usual names
// (<parent>/<task ID>), so nothing else needs to know about the pool.
//
// A reused memory cgroup keeps its cumulative counters: the OOM kill count
// at the end of the last task is kept as the next task's baseline. Page
// cache the last task left charged stays charged until the kernel reclaims
// it, which it does before it would OOM-kill the new task. cgroup v2 has no
// renames (and a cheaper mkdir): no pool there.
type cgroupPool struct {
	mu     sync.Mutex
	seq    int
	byPair map[[2]string]*spares // by cpu and memory parent directory
}

// maxSpares bounds the spares kept per parent: a burst of task ends beyond
// it removes cgroups as before.
const maxSpares = 64

// spareName is a spare's name: "spare+" cannot be a task ID (validID).
const spareName = "spare+"

type spares struct {
	list  []spareCgroup
	swept bool // spares of an earlier daemon have been looked for
	// parents are the cpu and memory parent directories opened (O_PATH),
	// or -1: renames name the cgroups relative to them, which spares the
	// kernel walking the long cgroupfs paths four times per task.
	parents [2]int
}

// spareCgroup is an empty task cgroup (the same name in the cpu and the
// memory hierarchy) and what was last written to it.
type spareCgroup struct {
	name     string
	known    bool  // the fields below are what we wrote (else: found, unknown)
	quotaUS  int64 // cpu.cfs_quota_us; -1 unlimited
	memory   int64 // memory.limit_in_bytes (and memsw); -1 unlimited
	oomKills int64 // memory.oom_control oom_kill when the last task ended
}

func newCgroupPool() *cgroupPool { return &cgroupPool{byPair: map[[2]string]*spares{}} }

func pairOf(c cgroupSpec) [2]string {
	return [2]string{filepath.Dir(c.CPUDir), filepath.Dir(c.MemoryDir)}
}

// take renames a spare into c's place and gives it the task's limits. ok is
// false when there is no spare (or it could not be used): create c then.
// oomBase is the spare's OOM kill count, the task's baseline.
func (p *cgroupPool) take(c cgroupSpec, milliCPU, memoryBytes int64) (oomBase int64, ok bool) {
	if p == nil || c.Driver != cgroupV1 {
		return 0, false
	}
	pair := pairOf(c)
	p.mu.Lock()
	s := p.sparesLocked(pair)
	if len(s.list) == 0 {
		p.mu.Unlock()
		return 0, false
	}
	sp := s.list[len(s.list)-1]
	s.list = s.list[:len(s.list)-1]
	from := cgroupSpec{Driver: cgroupV1, CPUDir: filepath.Join(pair[0], sp.name), MemoryDir: filepath.Join(pair[1], sp.name)}
	cpuErr := rawRenameIn(s.parents[0], from.CPUDir, c.CPUDir)
	var memErr error
	if cpuErr == nil {
		memErr = rawRenameIn(s.parents[1], from.MemoryDir, c.MemoryDir)
	}
	p.mu.Unlock()
	if cpuErr != nil {
		discard(from)
		return 0, false
	}
	if memErr != nil {
		_ = syscall.Rmdir(c.CPUDir)
		discard(from)
		return 0, false
	}
	if err := sp.retune(c, milliCPU, memoryBytes); err != nil {
		discard(c)
		return 0, false
	}
	if !sp.known {
		n, ok := oomKills(c)
		if !ok {
			discard(c)
			return 0, false
		}
		sp.oomKills = n
	}
	return sp.oomKills, true
}

// put keeps the ended task's cgroup c (empty, its limits those of the
// task, oomKills its OOM kill count) as a spare; false means the caller
// removes it.
func (p *cgroupPool) put(c cgroupSpec, milliCPU, memoryBytes, oomKills int64) bool {
	if p == nil || c.Driver != cgroupV1 {
		return false
	}
	pair := pairOf(c)
	p.mu.Lock()
	s := p.sparesLocked(pair)
	if len(s.list) >= maxSpares {
		p.mu.Unlock()
		return false
	}
	p.seq++
	name := spareName + strconv.Itoa(ourPID) + "." + strconv.Itoa(p.seq)
	defer p.mu.Unlock()
	if err := rawRenameIn(s.parents[0], c.CPUDir, filepath.Join(pair[0], name)); err != nil {
		return false
	}
	if err := rawRenameIn(s.parents[1], c.MemoryDir, filepath.Join(pair[1], name)); err != nil {
		_ = rawRenameIn(s.parents[0], filepath.Join(pair[0], name), c.CPUDir) // the caller removes both
		return false
	}
	s.list = append(s.list, spareCgroup{name: name, known: true, quotaUS: quotaFor(milliCPU), memory: limitFor(memoryBytes), oomKills: oomKills})
	return true
}

// sparesLocked returns the spares of a parent pair; the first time, it
// adopts the spares an earlier daemon left there (killed before it could
// remove them). p.mu is held.
func (p *cgroupPool) sparesLocked(pair [2]string) *spares {
	s := p.byPair[pair]
	if s == nil {
		s = &spares{parents: [2]int{openDirPath(pair[0]), openDirPath(pair[1])}}
		p.byPair[pair] = s
		for i, fd := range s.parents {
			if fd >= 0 {
				registerCgroupParent(pair[i], fd)
			}
		}
	}
	if !s.swept {
		s.swept = true
		entries, _ := os.ReadDir(pair[0])
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), spareName) && pathExists(filepath.Join(pair[1], e.Name())) {
				s.list = append(s.list, spareCgroup{name: e.Name()})
			}
		}
	}
	return s
}

// drain removes every spare; the daemon calls it as it exits.
func (p *cgroupPool) drain() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for pair, s := range p.byPair {
		for _, sp := range s.list {
			discard(cgroupSpec{Driver: cgroupV1, CPUDir: filepath.Join(pair[0], sp.name), MemoryDir: filepath.Join(pair[1], sp.name)})
		}
		s.list = nil
		// The parents stay open: tasks left running (a shutdown without
		// kill) may still open their cgroups' files through them until the
		// process exits, and a closed descriptor's number could name
		// another file by then.
	}
}

// openDirPath opens dir to name files relative to it, or returns -1.
func openDirPath(dir string) int {
	fd, err := openRetry(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// discard removes an empty cgroup that cannot be pooled.
func discard(c cgroupSpec) { _ = removeCgroup(c) }

func pathExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func quotaFor(milliCPU int64) int64 {
	if milliCPU <= 0 {
		return -1
	}
	return cpuQuotaUS(milliCPU)
}

func limitFor(memoryBytes int64) int64 {
	if memoryBytes <= 0 {
		return -1
	}
	return memoryBytes
}

// retune writes the task's limits into a spare that is now c, skipping
// those equal to what the spare already has.
func (sp *spareCgroup) retune(c cgroupSpec, milliCPU, memoryBytes int64) error {
	quota, mem := quotaFor(milliCPU), limitFor(memoryBytes)
	// A quota is written even when it is the spare's: that also refills the
	// period's budget, which the last task may have used up, and the
	// forking thread, which joins the cgroup to fork the task, would
	// otherwise wait out the period.
	if !sp.known || quota != sp.quotaUS || quota > 0 {
		if !sp.known {
			if err := writeFile(filepath.Join(c.CPUDir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriodUS)); err != nil {
				return err
			}
		}
		if err := writeFile(filepath.Join(c.CPUDir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)); err != nil {
			return err
		}
	}
	if sp.known && mem == sp.memory {
		return nil
	}
	// memory+swap must never be below memory: lower memory first, raise
	// memory+swap first. Which one it is need not be known: a memory limit
	// above memory+swap is refused, and then memory+swap goes first.
	limit := filepath.Join(c.MemoryDir, "memory.limit_in_bytes")
	memsw := filepath.Join(c.MemoryDir, "memory.memsw.limit_in_bytes")
	v := strconv.FormatInt(mem, 10)
	if mem < 0 {
		if err := writeIfExists(memsw, v); err != nil {
			return err
		}
		return writeFile(limit, v)
	}
	if err := writeFile(limit, v); err != nil {
		if !errors.Is(err, syscall.EINVAL) {
			return err
		}
		if err := writeIfExists(memsw, v); err != nil {
			return err
		}
		return writeFile(limit, v)
	}
	return writeIfExists(memsw, v)
}
