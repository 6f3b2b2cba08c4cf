package exec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The node daemon writes and reads a dozen small kernel files per task
// (cgroup control files, /proc/<pid>/stat) and a status file. Through
// os.File each costs five more system calls than the work itself: the
// file is made non-blocking and added to and removed from the poller
// (cgroup files are pollable), which a write or read of a few bytes
// never needs. These helpers do the open, the I/O and the close alone.
//
// The kernel files' calls are raw system calls, which the Go scheduler
// does not see: each takes microseconds (cgroupfs and procfs: no disk,
// nothing to wait for), and a call the runtime sees as a system call that lasts more than
// 20 µs makes sysmon hand the daemon's only P to another thread, waking it,
// and poll every 20 µs for the next millisecond: that cost more than the
// calls themselves (docs/exec.md).

// writeFile writes a cgroup control file (no create, no truncate games: the
// kernel takes each write as one command).
func writeFile(path, value string) error {
	fd, err := openKernelFile(path, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	err = writeAll(fd, []byte(value))
	if cerr := rawClose(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// readSmallFile reads a whole file, typically a few hundred bytes of a
// kernel file whose size stat does not tell.
func readSmallFile(path string) ([]byte, error) {
	fd, err := openKernelFile(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer rawClose(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rawRead(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// createFile writes data to a new or truncated regular file in a task
// directory. Unlike the cgroup and proc files these calls are ones the Go
// scheduler sees: the task directory may be on a disk (or a network) file
// system, where a call can block for long, and the daemon's other tasks
// must not wait for it.
func createFile(path string, data []byte, perm uint32) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, perm)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, perm)
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	for b := data; len(b) > 0; {
		n, werr := unix.Write(fd, b)
		if errors.Is(werr, unix.EINTR) {
			continue
		}
		if werr != nil {
			err = werr
			break
		}
		b = b[n:]
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func openRetry(path string, flags int, perm uint32) (int, error) {
	return openAtRetry(cwdFD, path, flags, perm)
}

// cgroupParents are the task cgroups' parent directories that the node
// daemon holds open (cgpool.go), by path. A task cgroup's file,
// <parent>/<task>/<file>, is opened relative to its parent: the kernel
// then walks two names instead of the whole cgroupfs path (six or more
// names, each checked) for each of the five files a task's start and end
// open.
var cgroupParents struct {
	mu  sync.RWMutex
	fds map[string]int
}

// registerCgroupParent records dir, opened as fd (O_PATH), for
// openKernelFile; fd must stay open for the life of the process.
func registerCgroupParent(dir string, fd int) {
	cgroupParents.mu.Lock()
	defer cgroupParents.mu.Unlock()
	if cgroupParents.fds == nil {
		cgroupParents.fds = map[string]int{}
	}
	if _, ok := cgroupParents.fds[dir]; !ok {
		cgroupParents.fds[dir] = fd
	}
}

// openKernelFile opens a cgroupfs or procfs file, relative to its cgroup's
// parent directory when that is held open. A parent removed and made again
// since it was opened (possible only while it had no task cgroups) is not
// the one the path names: a file not found through it is opened by path.
func openKernelFile(path string, flags int) (int, error) {
	if task := strings.LastIndexByte(path, '/'); task > 0 {
		if parent := strings.LastIndexByte(path[:task], '/'); parent > 0 {
			cgroupParents.mu.RLock()
			dirfd, ok := cgroupParents.fds[path[:parent]]
			cgroupParents.mu.RUnlock()
			if ok {
				fd, err := openAtRetry(dirfd, path[parent+1:], flags, 0)
				if err != unix.ENOENT {
					return fd, err
				}
			}
		}
	}
	return openAtRetry(cwdFD, path, flags, 0)
}

func openAtRetry(dirfd int, path string, flags int, perm uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	for {
		fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(perm), 0, 0)
		runtime.KeepAlive(p)
		if errno == 0 {
			return int(fd), nil
		}
		if errno != unix.EINTR {
			return -1, errno
		}
	}
}

// cwdFD is AT_FDCWD (-100), a variable so that it converts to a system
// call argument.
var cwdFD = unix.AT_FDCWD

func rawWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawClose(fd int) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// rawRenameIn is os.Rename for cgroupfs: from and to are two entries of
// one directory, and parent, if not -1, is that directory opened: they
// are then named relative to it, by their base names.
func rawRenameIn(parent int, from, to string) error {
	dirfd, fromName, toName := cwdFD, from, to
	if parent >= 0 {
		dirfd, fromName, toName = parent, filepath.Base(from), filepath.Base(to)
	}
	f, err := unix.BytePtrFromString(fromName)
	if err != nil {
		return err
	}
	t, err := unix.BytePtrFromString(toName)
	if err != nil {
		return err
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_RENAMEAT, uintptr(dirfd), uintptr(unsafe.Pointer(f)), uintptr(dirfd), uintptr(unsafe.Pointer(t)), 0, 0)
	runtime.KeepAlive(f)
	runtime.KeepAlive(t)
	if errno != 0 {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: errno}
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := rawWrite(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// homeTasks keeps the forking thread's home cgroups' "tasks" files open:
// the thread goes back to them after every fork (two opens and closes per
// task saved). Only the daemon's own few cgroups are ever kept.
var homeTasks struct {
	mu  sync.Mutex
	fds map[string]int
}

// writeHomeTasks writes value to path (a home cgroup's tasks file) through
// a descriptor kept open; a failed write reopens the file once, so a
// cgroup that was removed and made again still works.
func writeHomeTasks(path, value string) error {
	homeTasks.mu.Lock()
	defer homeTasks.mu.Unlock()
	if fd, ok := homeTasks.fds[path]; ok {
		if err := writeAll(fd, []byte(value)); err == nil {
			return nil
		}
		_ = rawClose(fd)
		delete(homeTasks.fds, path)
	}
	fd, err := openRetry(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := writeAll(fd, []byte(value)); err != nil {
		_ = rawClose(fd)
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	if homeTasks.fds == nil {
		homeTasks.fds = map[string]int{}
	}
	homeTasks.fds[path] = fd
	return nil
}

// ourPID is this process's pid, which never changes: several names and
// checks per task use it, each a system call through os.Getpid.
var ourPID = os.Getpid()

// renameFile is os.Rename for a regular file: os.Rename first stats the
// new name (to refuse replacing a directory, which rename(2) refuses for a
// file anyway), a call more per rename.
func renameFile(from, to string) error {
	if err := unix.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// renameNew renames a directory to a name that must not exist yet, in one
// call where the file system can rename without replacing (os.Rename
// stats the new name first).
func renameNew(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) {
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
