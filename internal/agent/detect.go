package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/durehq/dure/internal/api"
)

// nvidiaSMIArgs is the query whose CSV output ParseNvidiaSMI reads.
var nvidiaSMIArgs = []string{"--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"}

// gpuProbeTimeout bounds nvidia-smi, which hangs for seconds when a driver is wedged.
const gpuProbeTimeout = 20 * time.Second

// Detected is what DetectResources found on this machine.
type Detected struct {
	Capacity api.Resources // MilliCPU, MemoryBytes, GPUs (= len(GPUs)), ScratchBytes, Custom
	GPUs     []api.GPU
}

// DetectResources works out the node's capacity. Every non-zero override in
// cfg (MilliCPU, MemoryBytes, ScratchBytes, GPUs) wins over detection:
//   - CPU: the CPUs in this process's affinity mask, lowered to the cgroup CPU
//     quota if one is set (cgroup v1 cpu.cfs_quota_us or v2 cpu.max, on this
//     process's cgroup and its ancestors), in millicores.
//   - memory: MemTotal from /proc/meminfo, lowered to the cgroup memory limit.
//   - GPUs: `nvidia-smi --query-gpu=index,uuid,name,memory.total
//     --format=csv,noheader,nounits` when cfg.GPUCommand (default
//     "nvidia-smi") is on PATH; none otherwise. A failing nvidia-smi is logged
//     and counts as no GPUs (the node still serves CPU work).
//   - scratch: free space of the filesystem holding cfg.DataDir.
//
// Nothing is reserved for the operating system or the agent; set the
// overrides to hold some back.
func DetectResources(ctx context.Context, cfg Config) (Detected, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var d Detected
	d.Capacity.MilliCPU = cfg.MilliCPU
	if d.Capacity.MilliCPU == 0 {
		m, err := detectMilliCPU("/")
		if err != nil {
			return d, err
		}
		d.Capacity.MilliCPU = m
	}
	d.Capacity.MemoryBytes = cfg.MemoryBytes
	if d.Capacity.MemoryBytes == 0 {
		m, err := detectMemory("/")
		if err != nil {
			return d, err
		}
		d.Capacity.MemoryBytes = m
	}
	d.Capacity.ScratchBytes = cfg.ScratchBytes
	if d.Capacity.ScratchBytes == 0 && cfg.DataDir != "" {
		var st unix.Statfs_t
		if err := unix.Statfs(cfg.DataDir, &st); err != nil {
			return d, fmt.Errorf("scratch space of data dir %s: %w", cfg.DataDir, err)
		}
		d.Capacity.ScratchBytes = int64(st.Bavail) * int64(st.Bsize)
	}
	switch {
	case cfg.GPUs != nil:
		for i := range *cfg.GPUs {
			d.GPUs = append(d.GPUs, api.GPU{Index: i})
		}
	default:
		cmd := cfg.GPUCommand
		if cmd == "" {
			cmd = "nvidia-smi"
		}
		gpus, err := probeGPUs(ctx, cmd)
		if err != nil {
			log.Warn("GPU detection failed; registering without GPUs (set the GPU count to override)", "command", cmd, "err", err)
		}
		d.GPUs = gpus
	}
	d.Capacity.GPUs = int64(len(d.GPUs))
	if len(cfg.Custom) > 0 {
		d.Capacity.Custom = make(map[string]int64, len(cfg.Custom))
		for k, v := range cfg.Custom {
			d.Capacity.Custom[k] = v
		}
	}
	return d, nil
}

// probeGPUs runs nvidia-smi if it is on PATH. Not being installed is not an error.
func probeGPUs(ctx context.Context, command string) ([]api.GPU, error) {
	path, err := osexec.LookPath(command)
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, gpuProbeTimeout)
	defer cancel()
	var stderr bytes.Buffer
	c := osexec.CommandContext(ctx, path, nvidiaSMIArgs...)
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return ParseNvidiaSMI(out)
}

// ParseNvidiaSMI reads the output of
// `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`,
// one GPU per line: "0, GPU-5f3c…, NVIDIA H100 80GB HBM3, 81559" (memory in MiB).
// A memory of "[N/A]" or "[Not Supported]" is reported as 0.
func ParseNvidiaSMI(out []byte) ([]api.GPU, error) {
	var gpus []api.GPU
	seen := map[int]bool{}
	for n, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 4 {
			return nil, fmt.Errorf("nvidia-smi line %d: want 4 comma-separated fields (index, uuid, name, memory.total), got %d: %q", n+1, len(f), line)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 {
			return nil, fmt.Errorf("nvidia-smi line %d: index %q is not a non-negative integer", n+1, f[0])
		}
		if seen[idx] {
			return nil, fmt.Errorf("nvidia-smi line %d: GPU index %d listed twice", n+1, idx)
		}
		seen[idx] = true
		// A model name may itself contain commas: everything between the
		// UUID and the last field is the name.
		name := strings.Join(f[2:len(f)-1], ",")
		memStr := f[len(f)-1]
		var mem int64
		if !strings.HasPrefix(memStr, "[") {
			mib, err := strconv.ParseInt(memStr, 10, 64)
			if err != nil || mib < 0 || mib > 1<<40 {
				return nil, fmt.Errorf("nvidia-smi line %d: memory.total %q is not a number of MiB", n+1, memStr)
			}
			mem = mib << 20
		}
		gpus = append(gpus, api.GPU{Index: idx, UUID: f[1], Model: name, MemoryBytes: mem})
	}
	return gpus, nil
}

// ParseMeminfo returns MemTotal in bytes from the contents of /proc/meminfo.
func ParseMeminfo(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return 0, fmt.Errorf("meminfo: MemTotal line %q: want \"MemTotal: <n> kB\"", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("meminfo: MemTotal %q is not a positive integer", f[0])
		}
		mult := int64(1)
		if len(f) == 2 {
			if f[1] != "kB" {
				return 0, fmt.Errorf("meminfo: MemTotal unit %q: want kB", f[1])
			}
			mult = 1024
		}
		if n > (1<<62)/mult {
			return 0, fmt.Errorf("meminfo: MemTotal %d %s is implausibly large", n, f[1])
		}
		return n * mult, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

func detectMilliCPU(root string) (int64, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, fmt.Errorf("CPU affinity: %w", err)
	}
	m := int64(set.Count()) * 1000
	lim := readCgroupLimits(root)
	if lim.milliCPU > 0 && lim.milliCPU < m {
		m = lim.milliCPU
	}
	return m, nil
}

func detectMemory(root string) (int64, error) {
	b, err := os.ReadFile(root + "proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("memory size: %w", err)
	}
	m, err := ParseMeminfo(b)
	if err != nil {
		return 0, err
	}
	lim := readCgroupLimits(root)
	if lim.memoryBytes > 0 && lim.memoryBytes < m {
		m = lim.memoryBytes
	}
	return m, nil
}
