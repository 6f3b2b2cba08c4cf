package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cgroupLimits are the CPU and memory limits that apply to this process
// through its cgroup and the cgroup's ancestors; zero means no limit found.
type cgroupLimits struct {
	milliCPU    int64
	memoryBytes int64
}

// cgroupMount is one cgroup filesystem from /proc/self/mountinfo.
type cgroupMount struct {
	root        string // the cgroup path mounted at point ("/" unless bind-mounted)
	point       string
	v2          bool
	controllers []string // v1 only
}

// readCgroupLimits finds this process's cgroups (v1 or v2, hybrid included)
// under root (a filesystem prefix, "/" in production, a fixture in tests) and
// returns the tightest CPU quota and memory limit on the way up to the
// hierarchy's root. Unreadable files count as "no limit": the limits only
// ever lower what the machine reports.
func readCgroupLimits(root string) cgroupLimits {
	cg, err := os.ReadFile(root + "proc/self/cgroup")
	if err != nil {
		return cgroupLimits{}
	}
	mi, err := os.ReadFile(root + "proc/self/mountinfo")
	if err != nil {
		return cgroupLimits{}
	}
	paths := parseProcCgroup(cg)
	mounts := parseMountinfo(mi)
	var lim cgroupLimits
	if dirs, v2 := cgroupDirs(root, "cpu", paths, mounts); v2 {
		lim.milliCPU = minPositive(dirs, func(d string) int64 { return readCPUMax(d + "/cpu.max") })
	} else {
		lim.milliCPU = minPositive(dirs, func(d string) int64 {
			return cfsMilliCPU(readFileString(d+"/cpu.cfs_quota_us"), readFileString(d+"/cpu.cfs_period_us"))
		})
	}
	if dirs, v2 := cgroupDirs(root, "memory", paths, mounts); v2 {
		lim.memoryBytes = minPositive(dirs, func(d string) int64 { return parseMemLimit(readFileString(d + "/memory.max")) })
	} else {
		lim.memoryBytes = minPositive(dirs, func(d string) int64 { return parseMemLimit(readFileString(d + "/memory.limit_in_bytes")) })
	}
	return lim
}

// parseProcCgroup reads /proc/self/cgroup ("4:memory:/a/b", "0::/a") into
// controller → path; the v2 unified hierarchy is under the key "".
func parseProcCgroup(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			out[""] = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c != "" {
				out[c] = f[2]
			}
		}
	}
	return out
}

// parseMountinfo returns the cgroup and cgroup2 mounts listed in
// /proc/self/mountinfo.
func parseMountinfo(b []byte) []cgroupMount {
	var out []cgroupMount
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf := strings.Fields(pre)
		qf := strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 {
			continue
		}
		m := cgroupMount{root: unescapeMount(pf[3]), point: unescapeMount(pf[4])}
		switch qf[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			if len(qf) < 3 {
				continue
			}
			m.controllers = strings.Split(qf[2], ",")
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes ("\040" is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupDirs lists the directories whose limits apply to this process for a
// controller, leaf first; v2 says which file names to read. A v1 hierarchy
// carrying the controller wins over the unified one (hybrid hosts keep cpu and
// memory on v1).
func cgroupDirs(root, controller string, paths map[string]string, mounts []cgroupMount) (dirs []string, v2 bool) {
	if p, ok := paths[controller]; ok {
		for _, m := range mounts {
			if !m.v2 && slices.Contains(m.controllers, controller) {
				return chain(root, m, p), false
			}
		}
	}
	if p, ok := paths[""]; ok {
		for _, m := range mounts {
			if m.v2 {
				return chain(root, m, p), true
			}
		}
	}
	return nil, false
}

// chain is the cgroup directory for path p inside mount m and every ancestor
// up to the mount point.
func chain(root string, m cgroupMount, p string) []string {
	rel := p
	if m.root != "/" {
		r, ok := strings.CutPrefix(p, m.root)
		if !ok {
			r = "/" // our cgroup is outside what is mounted; the mount root is the best we see
		}
		rel = r
	}
	top := filepath.Join(root, m.point)
	dir := filepath.Join(top, filepath.Clean("/"+rel))
	var out []string
	for {
		out = append(out, dir)
		if dir == top || !strings.HasPrefix(dir, top+"/") {
			return out
		}
		dir = filepath.Dir(dir)
	}
}

func minPositive(dirs []string, read func(string) int64) int64 {
	var best int64
	for _, d := range dirs {
		if v := read(d); v > 0 && (best == 0 || v < best) {
			best = v
		}
	}
	return best
}

func readFileString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// readCPUMax reads cgroup v2 cpu.max: "max 100000" (no limit) or "150000 100000".
func readCPUMax(path string) int64 {
	f := strings.Fields(readFileString(path))
	if len(f) != 2 {
		return 0
	}
	return cfsMilliCPU(f[0], f[1])
}

// cfsMilliCPU turns a CFS quota and period (µs) into millicores; "max" or a
// negative quota means no limit (0).
func cfsMilliCPU(quota, period string) int64 {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 || q > 1<<40 {
		return 0
	}
	m := q * 1000 / p
	if m == 0 {
		m = 1
	}
	return m
}

// parseMemLimit reads memory.max / memory.limit_in_bytes; "max" and the v1
// "unlimited" value (a page-rounded 2^63-1) mean no limit (0).
func parseMemLimit(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0
	}
	return n
}
