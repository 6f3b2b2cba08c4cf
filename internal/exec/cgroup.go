package exec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroup drivers as written in Config.Cgroups and in the supervisor's spec.
const (
	cgroupAuto = "auto"
	cgroupV1   = "v1"
	cgroupV2   = "v2"
	cgroupOff  = "off"
)

// cfsPeriodUS is the CPU bandwidth period: a task with MilliCPU m may run
// m*100µs per 100ms. minQuotaUS is the kernel's smallest accepted quota.
const (
	cfsPeriodUS = 100000
	minQuotaUS  = 1000
)

// cpuQuotaUS converts millicores to a CFS quota per cfsPeriodUS, clamped to
// the kernel minimum (so MilliCPU below 10 behaves like 10).
func cpuQuotaUS(milliCPU int64) int64 {
	q := milliCPU * cfsPeriodUS / 1000
	if q < minQuotaUS {
		q = minQuotaUS
	}
	return q
}

// cgroupSpec says where a task's cgroup lives; the runner fills it in and the
// supervisor acts on it without detecting anything itself (keeps its start
// fast). Directories are absolute.
type cgroupSpec struct {
	Driver    string `json:"driver"`               // v1, v2 or off
	Dir       string `json:"dir,omitempty"`        // v2: the task's cgroup
	CPUDir    string `json:"cpu_dir,omitempty"`    // v1: the task's cgroup in the cpu hierarchy
	MemoryDir string `json:"memory_dir,omitempty"` // v1: the task's cgroup in the memory hierarchy
	// v1: the cgroups the supervisor starts in (the runner's), to which it
	// returns after starting the task inside the task's cgroups.
	CPUHome    string `json:"cpu_home,omitempty"`
	MemoryHome string `json:"memory_home,omitempty"`
}

// dirs lists the task's cgroup directories (one for v2, one per hierarchy for v1).
func (c cgroupSpec) dirs() []string {
	switch c.Driver {
	case cgroupV2:
		return []string{c.Dir}
	case cgroupV1:
		return []string{c.CPUDir, c.MemoryDir}
	}
	return nil
}

// procsDir is the directory whose cgroup.procs lists every process of the task.
func (c cgroupSpec) procsDir() string {
	switch c.Driver {
	case cgroupV2:
		return c.Dir
	case cgroupV1:
		return c.MemoryDir
	}
	return ""
}

// cgroupParent is what NewRunner resolved: the parent directories under
// which task cgroups are made.
type cgroupParent struct {
	driver     string
	dir        string // v2
	cpuDir     string // v1
	memoryDir  string // v1
	cpuHome    string // v1: the runner's own cgroups
	memoryHome string
}

func (p cgroupParent) forTask(id string) cgroupSpec {
	switch p.driver {
	case cgroupV2:
		return cgroupSpec{Driver: cgroupV2, Dir: filepath.Join(p.dir, id)}
	case cgroupV1:
		return cgroupSpec{
			Driver: cgroupV1, CPUDir: filepath.Join(p.cpuDir, id), MemoryDir: filepath.Join(p.memoryDir, id),
			CPUHome: p.cpuHome, MemoryHome: p.memoryHome,
		}
	}
	return cgroupSpec{Driver: cgroupOff}
}

// v2Controllers are the controllers a v2 task cgroup needs.
var v2Controllers = []string{"cpu", "memory"}

// mount is one cgroup line of /proc/self/mountinfo.
type mount struct {
	root    string // the directory of the hierarchy mounted here
	point   string
	fstype  string   // "cgroup" or "cgroup2"
	options []string // super options: the v1 controllers, "rw", …
}

// parseMountinfo returns the cgroup and cgroup2 mounts listed in a
// /proc/<pid>/mountinfo file (see proc(5)); other lines are skipped.
func parseMountinfo(data []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		out = append(out, mount{
			root:    unescapeMountinfo(fields[3]),
			point:   unescapeMountinfo(fields[4]),
			fstype:  fstype,
			options: strings.Split(fields[sep+3], ","),
		})
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, …) the kernel
// writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[0] <= '3' // fits in a byte
}

// v1MountFor returns the mount point of the v1 hierarchy carrying controller.
func v1MountFor(mounts []mount, controller string) (string, bool) {
	for _, m := range mounts {
		if m.fstype != "cgroup" {
			continue
		}
		if slices.Contains(m.options, controller) {
			return m.point, true
		}
	}
	return "", false
}

// v2Mount returns the cgroup2 mount to use: /sys/fs/cgroup when it is one,
// else the first cgroup2 mount listed.
func v2Mount(mounts []mount) (string, bool) {
	first := ""
	for _, m := range mounts {
		if m.fstype != "cgroup2" {
			continue
		}
		if m.point == "/sys/fs/cgroup" {
			return m.point, true
		}
		if first == "" {
			first = m.point
		}
	}
	return first, first != ""
}

// resolveCgroups picks the driver for Config.Cgroups and prepares the parent
// cgroups (created if missing, v2 controllers enabled along the path).
func resolveCgroups(mode, parent string) (cgroupParent, error) {
	if mode == cgroupOff {
		return cgroupParent{driver: cgroupOff}, nil
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups %q: reading mounts: %w", mode, err)
	}
	mounts := parseMountinfo(data)
	switch mode {
	case cgroupV2:
		root, ok := v2Mount(mounts)
		if !ok {
			return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups \"v2\": no cgroup2 file system is mounted")
		}
		return prepareV2(root, parent, v2Controllers)
	case cgroupV1:
		return prepareV1(mounts, parent)
	case cgroupAuto:
		if root, ok := v2Mount(mounts); ok && root == "/sys/fs/cgroup" {
			if missing := missingControllers(root, v2Controllers); len(missing) == 0 {
				return prepareV2(root, parent, v2Controllers)
			}
		}
		p, err := prepareV1(mounts, parent)
		if err != nil {
			return cgroupParent{}, fmt.Errorf("%w (auto: /sys/fs/cgroup is not a cgroup2 mount with the cpu and memory controllers either; set Cgroups to \"off\" to run without limits)", err)
		}
		return p, nil
	}
	return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups: must be auto, v1, v2 or off, got %q", mode)
}

// missingControllers lists which of want the v2 cgroup at root cannot give.
func missingControllers(root string, want []string) []string {
	data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return want
	}
	have := strings.Fields(string(data))
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	return missing
}

// prepareV2 creates root/parent and enables controllers in the subtree_control
// of every cgroup from root down to parent, so task cgroups get them.
func prepareV2(root, parent string, controllers []string) (cgroupParent, error) {
	if missing := missingControllers(root, controllers); len(missing) > 0 {
		return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups \"v2\": the cgroup2 mount at %s lacks the %s controller(s) (bound to a cgroup v1 hierarchy?)", root, strings.Join(missing, ", "))
	}
	dir := root
	for _, part := range append([]string{""}, strings.Split(parent, "/")...) {
		if part != "" {
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return cgroupParent{}, fmt.Errorf("exec: Config.CgroupParent: creating cgroup %s: %w", dir, err)
			}
		}
		if len(controllers) == 0 {
			continue
		}
		var b strings.Builder
		for i, c := range controllers {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString("+" + c)
		}
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), b.String()); err != nil {
			return cgroupParent{}, fmt.Errorf("exec: Config.CgroupParent: enabling %s for the children of %s (a v2 cgroup with processes in it cannot delegate controllers): %w", strings.Join(controllers, ", "), dir, err)
		}
	}
	return cgroupParent{driver: cgroupV2, dir: dir}, nil
}

// prepareV1 finds the cpu and memory hierarchies and creates parent in both.
func prepareV1(mounts []mount, parent string) (cgroupParent, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups \"v1\": %w", err)
	}
	p := cgroupParent{driver: cgroupV1}
	for _, c := range []struct {
		name      string
		dir, home *string
	}{{"cpu", &p.cpuDir, &p.cpuHome}, {"memory", &p.memoryDir, &p.memoryHome}} {
		point, ok := v1MountFor(mounts, c.name)
		if !ok {
			return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups \"v1\": no cgroup v1 hierarchy with the %s controller is mounted", c.name)
		}
		home, ok := ownV1Cgroup(mounts, self, c.name)
		if !ok {
			return cgroupParent{}, fmt.Errorf("exec: Config.Cgroups \"v1\": cannot find this process's own %s cgroup under %s", c.name, point)
		}
		dir := filepath.Join(point, parent)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return cgroupParent{}, fmt.Errorf("exec: Config.CgroupParent: creating cgroup %s: %w", dir, err)
		}
		*c.dir, *c.home = dir, home
	}
	return p, nil
}

// createCgroup makes the task's cgroup(s) and writes its limits. On error it
// removes what it made.
func createCgroup(c cgroupSpec, milliCPU, memoryBytes int64) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for _, d := range made {
				_ = syscall.Rmdir(d)
			}
		}
	}()
	for _, d := range c.dirs() {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("creating cgroup: %w", err)
		}
		made = append(made, d)
	}
	switch c.Driver {
	case cgroupV2:
		if milliCPU > 0 {
			if err := writeFile(filepath.Join(c.Dir, "cpu.max"), fmt.Sprintf("%d %d", cpuQuotaUS(milliCPU), cfsPeriodUS)); err != nil {
				return err
			}
		}
		if memoryBytes > 0 {
			if err := writeFile(filepath.Join(c.Dir, "memory.max"), strconv.FormatInt(memoryBytes, 10)); err != nil {
				return err
			}
			if err := writeIfExists(filepath.Join(c.Dir, "memory.swap.max"), "0"); err != nil {
				return err
			}
		}
		// One OOM kill ends the whole task, as a batch user expects, rather
		// than leaving a half-dead process tree.
		if err := writeIfExists(filepath.Join(c.Dir, "memory.oom.group"), "1"); err != nil {
			return err
		}
	case cgroupV1:
		if milliCPU > 0 {
			if err := writeFile(filepath.Join(c.CPUDir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriodUS)); err != nil {
				return err
			}
			if err := writeFile(filepath.Join(c.CPUDir, "cpu.cfs_quota_us"), strconv.FormatInt(cpuQuotaUS(milliCPU), 10)); err != nil {
				return err
			}
		}
		if memoryBytes > 0 {
			if err := writeFile(filepath.Join(c.MemoryDir, "memory.limit_in_bytes"), strconv.FormatInt(memoryBytes, 10)); err != nil {
				return err
			}
			// memory+swap = memory: no swap. The file exists only with swap
			// accounting enabled.
			if err := writeIfExists(filepath.Join(c.MemoryDir, "memory.memsw.limit_in_bytes"), strconv.FormatInt(memoryBytes, 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeIfExists(path, value string) error {
	err := writeFile(path, value)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// cgroupPIDs lists the processes in the task's cgroup.
func cgroupPIDs(c cgroupSpec) ([]int, error) {
	dir := c.procsDir()
	if dir == "" {
		return nil, nil
	}
	data, err := readSmallFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// signalCgroup sends sig to every process in the task's cgroup (never to the
// caller itself).
func signalCgroup(c cgroupSpec, sig syscall.Signal) {
	pids, _ := cgroupPIDs(c)
	self := ourPID
	for _, pid := range pids {
		if pid != self {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// killCgroup SIGKILLs every process in the task's cgroup and waits until the
// cgroup is empty, so nothing the task left behind (a daemon, a background
// job) outlives it. v2 uses cgroup.kill, which also catches processes forking
// during the kill; v1 repeats kill passes until the list stays empty.
func killCgroup(c cgroupSpec) error {
	if c.Driver == cgroupOff || c.procsDir() == "" {
		return nil
	}
	if c.Driver == cgroupV2 {
		if err := writeIfExists(filepath.Join(c.Dir, "cgroup.kill"), "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for wait := 100 * time.Microsecond; ; wait = min(wait*2, 20*time.Millisecond) {
		pids, err := cgroupPIDs(c)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		self := ourPID
		alive := 0
		for _, pid := range pids {
			if pid != self {
				alive++
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if alive == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has %d process(es) after SIGKILL", c.procsDir(), alive)
		}
		time.Sleep(wait) // dying processes leave the cgroup asynchronously
	}
}

// removeCgroup deletes the task's cgroup(s). A cgroup whose last process is
// still exiting reports EBUSY for a moment, so EBUSY is retried briefly.
func removeCgroup(c cgroupSpec) error {
	var errs []error
	for _, d := range c.dirs() {
		deadline := time.Now().Add(5 * time.Second)
		for wait := 100 * time.Microsecond; ; wait = min(wait*2, 20*time.Millisecond) {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
				break
			}
			time.Sleep(wait)
		}
	}
	return errors.Join(errs...)
}

// oomKills reads how many processes the kernel's OOM killer has killed in the
// task's cgroup: v2 memory.events "oom_kill N"; v1 memory.oom_control
// "oom_kill N" (kernels since 4.13). ok is false where the kernel gives no
// counter (then memory.failcnt is the caller's hint).
func oomKills(c cgroupSpec) (n int64, ok bool) {
	var path string
	switch c.Driver {
	case cgroupV2:
		path = filepath.Join(c.Dir, "memory.events")
	case cgroupV1:
		path = filepath.Join(c.MemoryDir, "memory.oom_control")
	default:
		return 0, false
	}
	data, err := readSmallFile(path)
	if err != nil {
		return 0, false
	}
	return parseKeyedCounter(data, "oom_kill")
}

// memoryFailcnt reads v1 memory.failcnt: how often the limit was hit.
func memoryFailcnt(c cgroupSpec) int64 {
	if c.Driver != cgroupV1 {
		return 0
	}
	data, err := readSmallFile(filepath.Join(c.MemoryDir, "memory.failcnt"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return n
}

// parseKeyedCounter finds "key N" in a flat-keyed cgroup file.
func parseKeyedCounter(data []byte, key string) (int64, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		k, v, found := strings.Cut(strings.TrimSpace(line), " ")
		if !found || k != key {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// ownV1Cgroup returns the directory of the calling process's cgroup in the
// v1 hierarchy carrying controller, from /proc/self/cgroup and the mounts.
// The supervisor steps back into it after starting the task inside the task's
// cgroup.
func ownV1Cgroup(mounts []mount, procSelfCgroup []byte, controller string) (string, bool) {
	for _, line := range strings.Split(string(procSelfCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !slices.Contains(strings.Split(parts[1], ","), controller) {
			continue
		}
		for _, m := range mounts {
			if m.fstype != "cgroup" || !slices.Contains(m.options, controller) {
				continue
			}
			rel := parts[2]
			if m.root != "/" {
				var ok bool
				if rel, ok = strings.CutPrefix(rel, m.root); !ok {
					return "", false // our cgroup is not visible through this mount
				}
			}
			return filepath.Join(m.point, rel), true
		}
	}
	return "", false
}

// RemoveCgroupTree removes the cgroup directory name (a path below each
// hierarchy's root) and everything under it, in every mounted hierarchy:
// the v1 controllers and the v2 tree. It is for parents that per-run agents
// made (dure dev, tests); task cgroups are removed as their tasks end.
// Errors are ignored: a cgroup still holding a process stays.
func RemoveCgroupTree(name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	roots = append(roots, "/sys/fs/cgroup/"+name)
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}
