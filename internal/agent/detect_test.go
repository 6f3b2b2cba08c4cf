package agent

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

// Real output of `nvidia-smi --query-gpu=index,uuid,name,memory.total
// --format=csv,noheader,nounits` on an 8×H100 SXM machine (UUIDs shortened).
const h100SMI = `0, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e50, NVIDIA H100 80GB HBM3, 81559
1, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e51, NVIDIA H100 80GB HBM3, 81559
2, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e52, NVIDIA H100 80GB HBM3, 81559
3, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e53, NVIDIA H100 80GB HBM3, 81559
4, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e54, NVIDIA H100 80GB HBM3, 81559
5, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e55, NVIDIA H100 80GB HBM3, 81559
6, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e56, NVIDIA H100 80GB HBM3, 81559
7, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e57, NVIDIA H100 80GB HBM3, 81559
`

func TestParseNvidiaSMI(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []api.GPU
		wantErr string
	}{
		{
			name: "one H100",
			in:   "0, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e50, NVIDIA H100 80GB HBM3, 81559\n",
			want: []api.GPU{{Index: 0, UUID: "GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e50", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 << 20}},
		},
		{
			name: "A100 pair with CRLF line ends and no trailing newline",
			in:   "0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960\r\n1, GPU-bbbb, NVIDIA A100-SXM4-40GB, 40960",
			want: []api.GPU{
				{Index: 0, UUID: "GPU-aaaa", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40960 << 20},
				{Index: 1, UUID: "GPU-bbbb", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40960 << 20},
			},
		},
		{
			name: "memory not available is zero",
			in:   "0, GPU-cccc, NVIDIA GH200 480GB, [N/A]\n1, GPU-dddd, Some GPU, [Not Supported]\n",
			want: []api.GPU{
				{Index: 0, UUID: "GPU-cccc", Model: "NVIDIA GH200 480GB"},
				{Index: 1, UUID: "GPU-dddd", Model: "Some GPU"},
			},
		},
		{
			name: "comma inside the model name",
			in:   "3, GPU-eeee, Weird, Model, 1024\n",
			want: []api.GPU{{Index: 3, UUID: "GPU-eeee", Model: "Weird,Model", MemoryBytes: 1 << 30}},
		},
		{name: "no GPUs is empty output", in: "\n", want: nil},
		{name: "too few fields", in: "0, GPU-x, 81559\n", wantErr: "want 4 comma-separated fields"},
		{name: "index not a number", in: "zero, GPU-x, H100, 81559\n", wantErr: `index "zero"`},
		{name: "negative index", in: "-1, GPU-x, H100, 81559\n", wantErr: `index "-1"`},
		{name: "duplicate index", in: "0, GPU-x, H100, 1\n0, GPU-y, H100, 1\n", wantErr: "listed twice"},
		{name: "memory with unit", in: "0, GPU-x, H100, 81559 MiB\n", wantErr: `memory.total "81559 MiB"`},
		{name: "error text from nvidia-smi", in: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", wantErr: "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNvidiaSMI([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseNvidiaSMI error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseNvidiaSMI: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseNvidiaSMI (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseNvidiaSMIEightH100(t *testing.T) {
	got, err := ParseNvidiaSMI([]byte(h100SMI))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(got))
	}
	for i, g := range got {
		if g.Index != i || g.Model != "NVIDIA H100 80GB HBM3" || g.MemoryBytes != 81559*1024*1024 {
			t.Errorf("GPU %d = %+v, want index %d, model H100 80GB HBM3, 81559 MiB", i, g, i)
		}
	}
}

func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add([]byte(h100SMI))
	f.Add([]byte("0, GPU-cccc, NVIDIA GH200 480GB, [N/A]\n"))
	f.Add([]byte("3, GPU-eeee, Weird, Model, 1024"))
	f.Add([]byte(",,,\n,,,"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gpus, err := ParseNvidiaSMI(b)
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for _, g := range gpus {
			if g.Index < 0 || g.MemoryBytes < 0 || seen[g.Index] {
				t.Fatalf("accepted bad GPU %+v from %q", g, b)
			}
			seen[g.Index] = true
		}
	})
}

const meminfo = `MemTotal:       24682416 kB
MemFree:         1017196 kB
MemAvailable:   19811980 kB
Buffers:          585000 kB
`

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{name: "real meminfo", in: meminfo, want: 24682416 * 1024},
		{name: "MemTotal not first", in: "MemFree: 1 kB\nMemTotal: 2048 kB\n", want: 2048 * 1024},
		{name: "no unit means bytes", in: "MemTotal: 4096\n", want: 4096},
		{name: "missing", in: "MemFree: 1 kB\n", wantErr: "no MemTotal"},
		{name: "empty", in: "", wantErr: "no MemTotal"},
		{name: "not a number", in: "MemTotal: lots kB\n", wantErr: `MemTotal "lots"`},
		{name: "zero", in: "MemTotal: 0 kB\n", wantErr: "positive"},
		{name: "wrong unit", in: "MemTotal: 5 MB\n", wantErr: `unit "MB"`},
		{name: "overflow", in: "MemTotal: 9223372036854775807 kB\n", wantErr: "implausibly large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMeminfo([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMeminfo error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMeminfo = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte(meminfo))
	f.Add([]byte("MemTotal: 4096\n"))
	f.Add([]byte("MemTotal:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseMeminfo(b)
		if err == nil && n <= 0 {
			t.Fatalf("ParseMeminfo(%q) = %d with no error", b, n)
		}
	})
}

// writeTree creates files under root from a path → content map.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadCgroupLimits(t *testing.T) {
	// Mount tables as they appear on a hybrid v1 host (like this build
	// machine) and on a pure v2 host.
	const hybridMounts = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const v2Mounts = `25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	tests := []struct {
		name  string
		files map[string]string
		want  cgroupLimits
	}{
		{
			name: "v1 quota on the leaf and a lower memory limit on the parent",
			files: map[string]string{
				"proc/self/mountinfo":                                    hybridMounts,
				"proc/self/cgroup":                                       "4:memory:/batch/job1\n2:cpu,cpuacct:/batch/job1\n0::/\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":             "-1\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us":            "100000\n",
				"sys/fs/cgroup/cpu,cpuacct/batch/job1/cpu.cfs_quota_us":  "250000\n",
				"sys/fs/cgroup/cpu,cpuacct/batch/job1/cpu.cfs_period_us": "100000\n",
				"sys/fs/cgroup/memory/memory.limit_in_bytes":             "9223372036854771712\n",
				"sys/fs/cgroup/memory/batch/memory.limit_in_bytes":       "1073741824\n",
				"sys/fs/cgroup/memory/batch/job1/memory.limit_in_bytes":  "2147483648\n",
			},
			want: cgroupLimits{milliCPU: 2500, memoryBytes: 1 << 30},
		},
		{
			name: "v1 unlimited everywhere",
			files: map[string]string{
				"proc/self/mountinfo":                         hybridMounts,
				"proc/self/cgroup":                            "4:memory:/\n2:cpu,cpuacct:/\n0::/\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "-1\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
				"sys/fs/cgroup/memory/memory.limit_in_bytes":  "9223372036854771712\n",
			},
			want: cgroupLimits{},
		},
		{
			name: "v2 container: limits on our cgroup",
			files: map[string]string{
				"proc/self/mountinfo": v2Mounts,
				"proc/self/cgroup":    "0::/system.slice/dure.service\n",
				"sys/fs/cgroup/system.slice/dure.service/cpu.max":    "150000 100000\n",
				"sys/fs/cgroup/system.slice/dure.service/memory.max": "536870912\n",
				"sys/fs/cgroup/system.slice/memory.max":              "max\n",
			},
			want: cgroupLimits{milliCPU: 1500, memoryBytes: 512 << 20},
		},
		{
			name: "v2 without limits",
			files: map[string]string{
				"proc/self/mountinfo":                 v2Mounts,
				"proc/self/cgroup":                    "0::/user.slice\n",
				"sys/fs/cgroup/user.slice/cpu.max":    "max 100000\n",
				"sys/fs/cgroup/user.slice/memory.max": "max\n",
			},
			want: cgroupLimits{},
		},
		{
			name:  "no cgroup files at all",
			files: map[string]string{"proc/meminfo": meminfo},
			want:  cgroupLimits{},
		},
		{
			name: "path escaping the mount is kept inside it",
			files: map[string]string{
				"proc/self/mountinfo":      v2Mounts,
				"proc/self/cgroup":         "0::/../../etc\n",
				"sys/fs/cgroup/memory.max": "1048576\n",
			},
			want: cgroupLimits{memoryBytes: 1 << 20},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir() + "/"
			writeTree(t, root, tc.files)
			got := readCgroupLimits(root)
			if got != tc.want {
				t.Errorf("readCgroupLimits = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzCgroupFiles(f *testing.F) {
	f.Add([]byte("4:memory:/a/b\n0::/\n"), []byte("35 31 0:32 /x /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n"))
	f.Add([]byte("0::/../..\n"), []byte("25 30 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	f.Fuzz(func(t *testing.T, cg, mi []byte) {
		paths := parseProcCgroup(cg)
		mounts := parseMountinfo(mi)
		for _, c := range []string{"cpu", "memory"} {
			dirs, _ := cgroupDirs("/fuzzroot", c, paths, mounts)
			for _, d := range dirs {
				if d != "/fuzzroot" && !strings.HasPrefix(d, "/fuzzroot/") {
					t.Fatalf("cgroup dir %q escapes the root (cgroup %q, mountinfo %q)", d, cg, mi)
				}
			}
		}
		_ = cfsMilliCPU(string(cg), string(mi))
		_ = parseMemLimit(string(cg))
	})
}

func TestDetectResourcesOverridesAndFakeNvidiaSMI(t *testing.T) {
	dir := t.TempDir()
	smi := filepath.Join(dir, "fake-nvidia-smi")
	// A stand-in for nvidia-smi that checks it was asked the right query.
	script := "#!/bin/sh\n[ \"$1\" = --query-gpu=index,uuid,name,memory.total ] && [ \"$2\" = --format=csv,noheader,nounits ] || exit 2\ncat <<'EOF'\n" +
		"0, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e50, NVIDIA H100 80GB HBM3, 81559\n1, GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e51, NVIDIA H100 80GB HBM3, 81559\nEOF\n"
	if err := os.WriteFile(smi, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(dir, "broken-nvidia-smi")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	three := 3
	tests := []struct {
		name     string
		cfg      Config
		wantGPUs []api.GPU
		check    func(t *testing.T, d Detected)
	}{
		{
			name: "fake nvidia-smi is parsed",
			cfg:  Config{GPUCommand: smi, MilliCPU: 4000, MemoryBytes: 8 << 30, ScratchBytes: 1 << 30},
			wantGPUs: []api.GPU{
				{Index: 0, UUID: "GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e50", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 << 20},
				{Index: 1, UUID: "GPU-5f3c1a2b-9d4e-4c7a-8b1f-0a1b2c3d4e51", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 << 20},
			},
			check: func(t *testing.T, d Detected) {
				want := api.Resources{MilliCPU: 4000, MemoryBytes: 8 << 30, GPUs: 2, ScratchBytes: 1 << 30}
				if diff := cmp.Diff(want, d.Capacity); diff != "" {
					t.Errorf("capacity (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "failing nvidia-smi means no GPUs",
			cfg:   Config{GPUCommand: failing},
			check: func(t *testing.T, d Detected) {},
		},
		{
			name:  "nvidia-smi not installed means no GPUs",
			cfg:   Config{GPUCommand: "dure-test-no-such-nvidia-smi"},
			check: func(t *testing.T, d Detected) {},
		},
		{
			name:     "GPU count override gives fake-indexed devices",
			cfg:      Config{GPUs: &three, GPUCommand: smi},
			wantGPUs: []api.GPU{{Index: 0}, {Index: 1}, {Index: 2}},
			check: func(t *testing.T, d Detected) {
				if d.Capacity.GPUs != 3 {
					t.Errorf("capacity GPUs = %d, want 3", d.Capacity.GPUs)
				}
			},
		},
		{
			name: "detection of this machine",
			cfg:  Config{DataDir: dir, GPUs: new(int)},
			check: func(t *testing.T, d Detected) {
				if d.Capacity.MilliCPU < 1 {
					t.Errorf("MilliCPU = %d, want at least one CPU", d.Capacity.MilliCPU)
				}
				if d.Capacity.MemoryBytes < 64<<20 {
					t.Errorf("MemoryBytes = %d, want a real machine's memory", d.Capacity.MemoryBytes)
				}
				if d.Capacity.ScratchBytes <= 0 {
					t.Errorf("ScratchBytes = %d, want the free space of %s", d.Capacity.ScratchBytes, dir)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DetectResources(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantGPUs, d.GPUs); diff != "" {
				t.Errorf("GPUs (-want +got):\n%s", diff)
			}
			tc.check(t, d)
		})
	}
}

func TestDetectMilliCPUMatchesAffinity(t *testing.T) {
	got, err := detectMilliCPU("/")
	if err != nil {
		t.Fatal(err)
	}
	// This process may be limited by a cgroup quota, never raised above
	// the CPUs it may run on.
	if got <= 0 || got > int64(runtime.NumCPU())*1000 {
		t.Errorf("detectMilliCPU = %d, want between 1 and %d", got, runtime.NumCPU()*1000)
	}
}
