package exec

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// v1MemoryTaskCgroup makes a v1 memory cgroup parent with one task cgroup
// in it and returns both, or skips; the test's cleanup removes them and
// forgets the parent if it was registered.
func v1MemoryTaskCgroup(t testing.TB) (parent, task string) {
	t.Helper()
	p, err := resolveCgroups(cgroupV1, cgroupParentName())
	if err != nil {
		t.Skipf("no writable cgroup v1 here: %v", err)
	}
	_ = syscall.Rmdir(p.cpuDir)
	parent, task = p.memoryDir, filepath.Join(p.memoryDir, "t1")
	if err := os.Mkdir(task, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cgroupParents.mu.Lock()
		if fd, ok := cgroupParents.fds[parent]; ok {
			_ = unix.Close(fd)
			delete(cgroupParents.fds, parent)
		}
		cgroupParents.mu.Unlock()
		_ = syscall.Rmdir(task)
		_ = syscall.Rmdir(parent)
	})
	return parent, task
}

// A task cgroup's files read and write the same through its registered
// parent as by path, also once the parent was removed and made again (its
// descriptor then names a dead directory).
func TestCgroupFilesThroughTheirParent(t *testing.T) {
	parent, task := v1MemoryTaskCgroup(t)
	registerCgroupParent(parent, openDirPath(parent))
	check := func(when string) {
		t.Helper()
		path := filepath.Join(task, "memory.limit_in_bytes")
		if err := writeFile(path, "1073741824"); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		got, err := readSmallFile(path)
		want, _ := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) || string(got) != "1073741824\n" {
			t.Errorf("%s: read %q, %v; by path %q", when, got, err, want)
		}
	}
	check("through the parent")
	if err := syscall.Rmdir(task); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(parent); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(task, 0o755); err != nil {
		t.Fatal(err)
	}
	check("after the parent was made again")
}

// BenchmarkOpenCgroupFile reads a task cgroup's memory.oom_control by its
// full path and through its parent directory held open.
func BenchmarkOpenCgroupFile(b *testing.B) {
	parent, task := v1MemoryTaskCgroup(b)
	path := filepath.Join(task, "memory.oom_control")
	b.Run("by-path", func(b *testing.B) {
		for range b.N {
			if _, err := readSmallFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	registerCgroupParent(parent, openDirPath(parent))
	b.Run("through-parent", func(b *testing.B) {
		for range b.N {
			if _, err := readSmallFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}
