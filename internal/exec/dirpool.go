package exec

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// dirPool keeps task directories made ahead (the node daemon's only): each
// spare holds scratch/, stdout, stderr and an empty status.json.tmp, and a
// start renames one to <Dir>/<ID> instead of creating five inodes while the
// task waits. The spare keeps stdout and stderr open from their creation,
// and the task gets those descriptors: no second open and close of each. Making an inode is the dearest step of a start on some file
// systems (ext4 without a journal scans for an inode not freed in the last
// seconds, and a busy machine frees many); a background goroutine makes
// the spares while the daemon has nothing else to do. An ended task's
// scratch directory, when the task left it empty, goes into the next spare
// instead of being removed, so a task frees no inode either.
//
// On tmpfs there is no pool: making an inode there costs less than keeping
// spares. Spare names start with '+', which no task ID does (validID): Recover and
// everything else that lists Dir skip them. A daemon removes the spares
// it finds at start (an earlier daemon may have died making one) and the
// ones it made when it exits.
type dirPool struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	spares  []spareDir // ready
	scratch []string   // empty scratch directories to reuse, by name in dir
	seq     int
	off     bool // renames without replacing are not supported here
	closed  bool
	wake    chan struct{}
}

// spareDir is a spare task directory, by name in dir, with its stdout and
// stderr open (write-only, appending, close-on-exec).
type spareDir struct {
	name string
	logs [2]int
}

const (
	spareDirPrefix     = "+spare-"
	spareScratchPrefix = "+scratch-"
	// spareDirs is how many spares the daemon keeps ready: a burst of
	// starts beyond it makes directories as before.
	spareDirs = 16
	// maxSpareScratch bounds the scratch directories kept for reuse.
	maxSpareScratch = 64
)

// newDirPool removes what an earlier daemon left in dir and starts making
// spares, unless dir is on tmpfs: there an inode costs less than the
// renames and checks of keeping spares (nil then).
func newDirPool(dir string, log *slog.Logger) *dirPool {
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), spareDirPrefix) || strings.HasPrefix(e.Name(), spareScratchPrefix) {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err == nil && fs.Type == unix.TMPFS_MAGIC {
		return nil
	}
	return startDirPool(dir, log)
}

func startDirPool(dir string, log *slog.Logger) *dirPool {
	p := &dirPool{dir: dir, log: log, wake: make(chan struct{}, 1)}
	go p.fill()
	p.kick()
	return p
}

// kick has spares made up for those taken. The daemon calls it once a
// start or an end has been answered: making spares shares the daemon's
// one thread with the task waiting for it.
func (p *dirPool) kick() {
	if p == nil {
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take renames a spare to path (a task directory, which must not exist)
// and stamps it with the current time. ok is false when there is no spare
// or renames cannot be used: make the directory then. With ok, logs are
// the task's stdout and stderr, open, for the caller to close. exists
// reports that path is there already (the task was started before).
func (p *dirPool) take(path string) (logs [2]int, ok, exists bool) {
	logs = [2]int{-1, -1}
	if p == nil {
		return logs, false, false
	}
	p.mu.Lock()
	if p.off || len(p.spares) == 0 {
		p.mu.Unlock()
		return logs, false, false
	}
	sp := p.spares[len(p.spares)-1]
	p.spares = p.spares[:len(p.spares)-1]
	p.mu.Unlock()

	from := filepath.Join(p.dir, sp.name)
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		// The directory's time says when the task started (the agent reads
		// it for tasks it adopts), not when the spare was made.
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}, 0)
		return sp.logs, true, false
	case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY):
		p.give(sp)
		return logs, false, true
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP):
		p.log.Info("this file system cannot rename without replacing; task directories are made at start", "dir", p.dir, "err", err)
		p.mu.Lock()
		p.off = true
		p.mu.Unlock()
	}
	closeFDs(sp.logs[:]...)
	_ = os.RemoveAll(from)
	return logs, false, false
}

// give puts a spare back.
func (p *dirPool) give(sp spareDir) {
	p.mu.Lock()
	p.spares = append(p.spares, sp)
	p.mu.Unlock()
}

// recycle keeps an ended task's scratch directory for a later spare if
// the task left it empty; false means the caller removes it.
func (p *dirPool) recycle(scratch string) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	full := p.off || p.closed || len(p.scratch) >= maxSpareScratch
	p.mu.Unlock()
	if full || !emptyPrivateDir(scratch) {
		return false
	}
	name := p.name(spareScratchPrefix)
	if err := renameNew(scratch, filepath.Join(p.dir, name)); err != nil {
		return false
	}
	p.mu.Lock()
	p.scratch = append(p.scratch, name)
	p.mu.Unlock()
	return true
}

// emptyPrivateDir reports whether path is an empty directory of mode 0700
// (resetting a mode the task changed), not a symbolic link to one: the
// task may have replaced its scratch directory with a link, which must
// not become a later task's scratch. It reads the directory through a
// plain descriptor: os.Open would also make it non-blocking and try to
// add it to the poller, five calls more.
func emptyPrivateDir(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var buf [512]byte
	for {
		n, err := unix.Getdents(fd, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			if len(b) < 24 {
				return false
			}
			// struct linux_dirent64: ino u64, off s64, reclen u16, type
			// u8, then the NUL-terminated name.
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 24 || reclen > len(b) { // 8-byte aligned, a name of 1 or more
				return false
			}
			if name := b[19:reclen]; !(name[0] == '.' && (name[1] == 0 || name[1] == '.' && name[2] == 0)) {
				return false
			}
			b = b[reclen:]
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	return st.Mode&0o7777 == 0o700 || unix.Fchmod(fd, 0o700) == nil
}

func (p *dirPool) name(prefix string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	return prefix + strconv.Itoa(ourPID) + "." + strconv.Itoa(p.seq)
}

// fill makes spares until there are spareDirs, each time it is woken.
func (p *dirPool) fill() {
	for range p.wake {
		for {
			p.mu.Lock()
			done := p.off || p.closed || len(p.spares) >= spareDirs
			var scratch string
			if !done && len(p.scratch) > 0 {
				scratch = p.scratch[len(p.scratch)-1]
				p.scratch = p.scratch[:len(p.scratch)-1]
			}
			p.mu.Unlock()
			if done {
				break
			}
			sp, err := p.make(scratch)
			if err != nil {
				p.log.Warn("making a spare task directory failed; tasks make theirs at start", "err", err)
				break
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				closeFDs(sp.logs[:]...)
				_ = os.RemoveAll(filepath.Join(p.dir, sp.name))
				break
			}
			p.spares = append(p.spares, sp)
			p.mu.Unlock()
		}
	}
}

// make creates one spare, with the scratch directory named scratch (in
// dir) if set.
func (p *dirPool) make(scratch string) (spareDir, error) {
	sp := spareDir{name: p.name(spareDirPrefix), logs: [2]int{-1, -1}}
	dir := filepath.Join(p.dir, sp.name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if scratch != "" {
			_ = os.Remove(filepath.Join(p.dir, scratch))
		}
		return sp, err
	}
	var err error
	if scratch != "" {
		if err = renameNew(filepath.Join(p.dir, scratch), filepath.Join(dir, scratchDir)); err != nil {
			_ = os.Remove(filepath.Join(p.dir, scratch))
		}
	}
	if scratch == "" || err != nil {
		err = os.Mkdir(filepath.Join(dir, scratchDir), 0o700)
	}
	for i, f := range []string{stdoutFile, stderrFile, statusFile + ".tmp"} {
		if err != nil {
			break
		}
		// The logs stay open for the task, with the flags setup would
		// open them with.
		flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
		if i < len(sp.logs) {
			flags |= unix.O_APPEND
		}
		var fd int
		if fd, err = unix.Open(filepath.Join(dir, f), flags, 0o644); err == nil {
			if i < len(sp.logs) {
				sp.logs[i] = fd
			} else {
				_ = unix.Close(fd)
			}
		}
	}
	if err != nil {
		closeFDs(sp.logs[:]...)
		_ = os.RemoveAll(dir)
		return sp, err
	}
	return sp, nil
}

// close stops making spares and removes them; the daemon calls it as it
// exits.
func (p *dirPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	names := p.scratch
	for _, sp := range p.spares {
		closeFDs(sp.logs[:]...)
		names = append(names, sp.name)
	}
	p.spares, p.scratch = nil, nil
	p.mu.Unlock()
	for _, n := range names {
		_ = os.RemoveAll(filepath.Join(p.dir, n))
	}
}
