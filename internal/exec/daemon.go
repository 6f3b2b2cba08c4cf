package exec

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Files of the node daemon in Dir, beside the task directories.
const (
	socketFile = "supervisor.sock"
	lockFile   = "supervisor.lock" // flock'd by the daemon for its lifetime; holds its pid
)

// startupGrace is how long a fresh daemon waits for its first connection
// before an idle daemon (no tasks, no clients) exits.
const startupGrace = 10 * time.Second

// handshakeLocked is the daemon's start-up line when another daemon already
// holds Dir's lock: the runner connects to that one instead.
const handshakeLocked = "locked"

// daemon is the node supervisor: one per runner directory. It forks every
// task itself (no process per task), supervises it with taskRun, and
// outlives the agent. It exits when it has neither tasks nor clients.
type daemon struct {
	dir     string
	log     *slog.Logger
	ln      *net.UnixListener
	journal *journal
	devnull int
	pool    *cgroupPool // spare task cgroups (v1)
	dirs    *dirPool    // spare task directories

	exitOnce sync.Once
	homeOnce sync.Once
	home     v1Home
	homeErr  error

	reaper *childReaper   // waits for every child: task leaders and strays
	starts sync.WaitGroup // start requests in flight

	mu          sync.Mutex
	tasks       map[string]*dtask
	conns       map[*dconn]struct{}
	sawConn     bool
	startupOver bool
	draining    bool // shutdown: refuse new starts
	exiting     bool
}

// dtask is one task of the daemon: reserved while starting, then running.
type dtask struct {
	starting   bool
	stopWanted bool          // a stop came while starting
	stopGrace  time.Duration // its requested grace (0: the task's)
	tr         *taskRun
	rec        journalRecord
	stops      chan time.Duration
	done       chan struct{} // closed when its status file is written
}

// daemonMain runs the daemon for dir until it exits; it reports start-up
// on descriptor 3.
func daemonMain(dir string, log *slog.Logger) int {
	log = log.With("daemon", dir)
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		// The daemon's work is system calls and a little JSON; one P
		// spares the scheduler's spinning and thread hand-offs between
		// them: about 20% less CPU and wall time per task measured on two
		// cores (docs/exec.md). Blocked system calls still run in parallel.
		runtime.GOMAXPROCS(1)
	}
	slackErr := RelaxTimers()
	handshake, err := openHandshake()
	if err != nil {
		log.Error(err.Error())
		return 2
	}
	fail := func(format string, args ...any) int {
		msg := fmt.Sprintf(format, args...)
		log.Error("supervisor daemon: start-up failed", "err", msg)
		_, _ = handshake.Write(encodeHandshakeFail(msg))
		_ = handshake.Close()
		return 1
	}
	if !filepath.IsAbs(dir) {
		return fail("directory %q: must be absolute", dir)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fail("lock file: %v", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			_, _ = handshake.Write([]byte(handshakeLocked + "\n"))
			_ = handshake.Close()
			return 0
		}
		return fail("locking %s: %v", lock.Name(), err)
	}
	// Never unlink the lock file: a process blocked on the old inode would
	// then lock a file nobody else sees.
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)

	// Orphans of tasks (double-forked daemons) are re-parented to us, so
	// they do not pile up as zombies under an init that does not reap.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	d := &daemon{
		dir:   dir,
		log:   log,
		tasks: map[string]*dtask{},
		conns: map[*dconn]struct{}{},
		pool:  newCgroupPool(),
	}
	if d.devnull, err = unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return fail("opening %s: %v", os.DevNull, err)
	}
	j, live, err := openJournal(dir)
	if err != nil {
		return fail("%v", err)
	}
	d.journal = j
	d.dirs = newDirPool(dir, log)
	d.reaper = newChildReaper()
	// Adopt before listening: a client's first list must see them.
	d.adopt(live)
	ln, err := listenUnix(filepath.Join(dir, socketFile))
	if err != nil {
		return fail("%v", err)
	}
	d.ln = ln
	time.AfterFunc(startupGrace, func() {
		d.mu.Lock()
		d.startupOver = true
		d.maybeExitLocked()
		d.mu.Unlock()
	})
	_, _ = handshake.Write(encodeHandshakeOK(time.Now()))
	_ = handshake.Close()
	log.Info("supervisor daemon started", "pid", os.Getpid(), "adopted", len(d.tasks))
	if slackErr != nil {
		log.Info("the daemon's timers keep their precision (and sysmon its wake-ups)", "err", slackErr)
	}
	d.serve()
	select {} // exit() ends the process
}

// listenUnix listens on path (replacing a stale socket file: we hold the
// lock, so nobody else serves it), reachable by our user only.
func listenUnix(path string) (*net.UnixListener, error) {
	var ln *net.UnixListener
	err := withSocketPath(path, func(p string) error {
		_ = os.Remove(p)
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return err
		}
		ln.SetUnlinkOnClose(false) // exit() removes it while holding the lock
		return os.Chmod(p, 0o600)
	})
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return ln, nil
}

// withSocketPath calls fn with a path for the socket at path that fits in
// sun_path (108 bytes): the path itself, or one through /proc/self/fd when
// the directory's path is too long.
func withSocketPath(path string, fn func(string) error) error {
	if len(path) < 100 {
		return fn(path)
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn("/proc/self/fd/" + strconv.Itoa(fd) + "/" + filepath.Base(path))
}

func (d *daemon) serve() {
	for {
		c, err := d.ln.AcceptUnix()
		if err != nil {
			d.mu.Lock()
			exiting := d.exiting
			d.mu.Unlock()
			if exiting || errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if uid, ok := peerUID(c); !ok || (uid != 0 && uid != uint32(os.Geteuid())) {
			d.log.Warn("refusing a connection from another user", "uid", uid)
			_ = c.Close()
			continue
		}
		dc := newDconn(c)
		d.mu.Lock()
		if d.exiting {
			d.mu.Unlock()
			_ = c.Close()
			continue
		}
		d.conns[dc] = struct{}{}
		d.sawConn = true
		d.mu.Unlock()
		go d.readLoop(dc)
	}
}

// peerUID is the user of the process on the other end of c.
func peerUID(c *net.UnixConn) (uint32, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}

func (d *daemon) readLoop(dc *dconn) {
	br := bufio.NewReaderSize(dc.c, 64<<10)
	for {
		data, err := readFrame(br)
		if err != nil {
			break
		}
		req, err := decodeRequest(data)
		if err != nil {
			var seq struct {
				Seq uint64 `json:"seq"`
			}
			if json.Unmarshal(data, &seq) != nil || seq.Seq == 0 {
				d.log.Warn("dropping a client that sent junk", "err", err)
				break
			}
			dc.reply(reply{Seq: seq.Seq, Err: err.Error(), Code: codeBadRequest})
			continue
		}
		switch req.Op {
		case opHello:
			if req.Version != protoVersion {
				dc.reply(reply{Seq: req.Seq, Version: protoVersion, Code: codeBadRequest,
					Err: fmt.Sprintf("protocol version %d is not spoken here (the daemon speaks %d): shut the daemon down, or run matching dure binaries", req.Version, protoVersion)})
				continue
			}
			dc.reply(reply{Seq: req.Seq, Version: protoVersion, Pid: os.Getpid()})
		case opStart:
			d.mu.Lock()
			ok := !d.draining && !d.exiting
			if ok {
				d.starts.Add(1)
			}
			d.mu.Unlock()
			if !ok {
				dc.reply(reply{Seq: req.Seq, Code: codeExiting, Err: "the supervisor daemon is shutting down"})
				continue
			}
			go func() {
				defer d.starts.Done()
				d.handleStart(dc, req)
			}()
		case opStop:
			d.handleStop(dc, req)
		case opQuery:
			d.mu.Lock()
			rep := reply{Seq: req.Seq}
			if dt := d.tasks[req.ID]; dt != nil {
				rep.State = stateRunning
				if dt.starting {
					rep.State = stateStarting
				} else {
					rep.StartedAt = dt.tr.result.StartedAt
				}
			}
			drain := dc.enqueue(replyFrame(rep)) // in order with end events, as for list
			d.mu.Unlock()
			if drain {
				dc.drain()
			}
		case opList:
			d.mu.Lock()
			rep := reply{Seq: req.Seq}
			for id, dt := range d.tasks {
				if dt.starting {
					rep.Starting = append(rep.Starting, id)
				} else {
					rep.Running = append(rep.Running, runningTask{ID: id, StartedAt: dt.tr.result.StartedAt})
				}
			}
			// Queued under d.mu: every end event after this reply is
			// for a task the reply listed as running.
			drain := dc.enqueue(replyFrame(rep))
			d.mu.Unlock()
			if drain {
				dc.drain()
			}
		case opClose:
			d.mu.Lock()
			exiting := len(d.conns) == 1 && len(d.tasks) == 0 && !d.draining
			drain := dc.enqueue(replyFrame(reply{Seq: req.Seq, Exiting: exiting}))
			if exiting {
				d.exiting = true
				go d.exit()
			}
			d.mu.Unlock()
			if drain {
				dc.drain()
			}
		case opShutdown:
			go d.handleShutdown(dc, req)
		}
	}
	d.mu.Lock()
	delete(d.conns, dc)
	d.maybeExitLocked()
	d.mu.Unlock()
	dc.finish()
}

// handleStart runs one start request: reserve the ID, make the task
// directory, set up, fork, record, reply — then supervise in the background.
func (d *daemon) handleStart(dc *dconn, req request) {
	spec, cg := *req.Task, *req.Cgroup
	id := spec.ID
	d.mu.Lock()
	if d.tasks[id] != nil {
		d.mu.Unlock()
		dc.reply(reply{Seq: req.Seq, Code: codeAlreadyStarted, Err: "task " + id + " is running"})
		return
	}
	dt := &dtask{starting: true}
	d.tasks[id] = dt
	d.mu.Unlock()

	tr := &taskRun{dir: filepath.Join(d.dir, id), spec: spec, cg: cg, log: d.log, pool: d.pool, dirs: d.dirs, reaper: d.reaper}
	logs, prepared, exists := d.dirs.take(tr.dir)
	tr.prepared, tr.logs = prepared, logs
	if !prepared && !exists {
		if err := os.Mkdir(tr.dir, 0o755); err != nil {
			exists = errors.Is(err, os.ErrExist)
			if !exists {
				d.unreserve(id)
				dc.reply(reply{Seq: req.Seq, Err: "creating task directory: " + err.Error()})
				return
			}
		}
	}
	if exists {
		d.unreserve(id)
		dc.reply(reply{Seq: req.Seq, Code: codeAlreadyStarted, Err: tr.dir + " exists"})
		return
	}
	stdout, stderr, err := tr.setup()
	if err == nil {
		var home v1Home
		if cg.Driver == cgroupV1 {
			home, err = d.v1Home()
		}
		if err == nil {
			err = tr.start([3]int{d.devnull, stdout, stderr}, home)
		} else {
			tr.cleanup()
		}
		closeFDs(stdout, stderr)
	}
	if err != nil {
		// Nothing runs. The status file says why, and the directory stays
		// (a task starts at most once).
		now := time.Now()
		if werr := writeStatus(tr.dir, Result{ExitCode: -1, StartErr: "setup: " + err.Error(), StartedAt: now, FinishedAt: now}); werr != nil {
			d.log.Error("writing status", "task", id, "err", werr)
		}
		d.unreserve(id)
		dc.reply(reply{Seq: req.Seq, Code: codeSetup, Err: err.Error()})
		return
	}
	var rec journalRecord
	if tr.pid > 0 {
		pstart, _ := tr.pidStart()
		rec = journalRecord{Op: journalRun, ID: id, Pid: tr.pid, PidStart: pstart, StartedAt: tr.result.StartedAt,
			Walltime: spec.Walltime, KillGrace: spec.KillGrace, Cgroup: &tr.cg,
			MilliCPU: spec.MilliCPU, MemoryBytes: spec.MemoryBytes, OOMBase: tr.oomBase}
		if err := d.journal.append(rec); err != nil {
			d.log.Error("journal: a replacement daemon will not find this task", "task", id, "err", err)
		}
	}
	d.mu.Lock()
	dt.starting, dt.tr, dt.rec = false, tr, rec
	dt.stops, dt.done = make(chan time.Duration, 4), make(chan struct{})
	stop, grace := dt.stopWanted, dt.stopGrace
	// Queued before the task can end: its end event follows this reply.
	drain := dc.enqueue(startReplyFrame(req.Seq, tr.result.StartedAt))
	d.mu.Unlock()
	if drain {
		dc.drain()
	}
	if stop {
		dt.stops <- killGrace(spec, grace)
	}
	go d.superviseTask(id, dt)
	d.dirs.kick()
}

func (d *daemon) unreserve(id string) {
	d.mu.Lock()
	delete(d.tasks, id)
	d.maybeExitLocked()
	d.mu.Unlock()
}

// v1Home is the daemon's own cgroups, to which a forking thread returns.
func (d *daemon) v1Home() (v1Home, error) {
	d.homeOnce.Do(func() {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			d.homeErr = err
			return
		}
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			d.homeErr = err
			return
		}
		mounts := parseMountinfo(data)
		cpu, ok1 := ownV1Cgroup(mounts, self, "cpu")
		mem, ok2 := ownV1Cgroup(mounts, self, "memory")
		if !ok1 || !ok2 {
			d.homeErr = errors.New("cannot find the supervisor daemon's own cpu and memory cgroups")
			return
		}
		d.home = v1Home{cpu: cpu, memory: mem}
	})
	return d.home, d.homeErr
}

// superviseTask follows a started (or adopted) task to its end, records it
// and tells every client.
func (d *daemon) superviseTask(id string, dt *dtask) {
	tr := dt.tr
	if tr.pid > 0 {
		tr.supervise(dt.stops)
		tr.cleanup()
	}
	file, compact, err := encodeStatusOnce(tr.result)
	if err == nil {
		err = writeStatusData(tr.dir, file)
	}
	if err != nil {
		d.log.Error("writing status", "task", id, "err", err)
	}
	if tr.pid > 0 {
		if err := d.journal.end(id, d.liveRecords); err != nil {
			d.log.Error("journal", "task", id, "err", err)
		}
	}
	var frame []byte
	if compact != nil {
		frame, err = endEventFrame(id, compact)
	}
	var drain []*dconn
	d.mu.Lock()
	delete(d.tasks, id)
	close(dt.done)
	if err == nil {
		for dc := range d.conns {
			if dc.enqueue(frame) {
				drain = append(drain, dc)
			}
		}
	}
	d.maybeExitLocked()
	d.mu.Unlock()
	for i, dc := range drain {
		if i == 0 {
			dc.drain()
		} else {
			go dc.drain() // a client that stops reading must not hold up the others
		}
	}
	d.dirs.kick()
}

// liveRecords lists the journal records of the running tasks.
func (d *daemon) liveRecords() []journalRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []journalRecord
	for _, dt := range d.tasks {
		if !dt.starting && dt.rec.Op == journalRun {
			out = append(out, dt.rec)
		}
	}
	return out
}

func (d *daemon) handleStop(dc *dconn, req request) {
	d.mu.Lock()
	dt := d.tasks[req.ID]
	if dt == nil {
		d.mu.Unlock()
		if _, ok, _ := readStatus(filepath.Join(d.dir, req.ID)); ok {
			dc.reply(reply{Seq: req.Seq}) // it has ended: nothing to stop
			return
		}
		dc.reply(reply{Seq: req.Seq, Code: codeUnknownTask, Err: "no task " + req.ID})
		return
	}
	if dt.starting {
		if !dt.stopWanted || req.Grace < dt.stopGrace {
			dt.stopWanted, dt.stopGrace = true, req.Grace
		}
		d.mu.Unlock()
		dc.reply(reply{Seq: req.Seq})
		return
	}
	grace := killGrace(dt.tr.spec, req.Grace)
	d.mu.Unlock()
	select {
	case dt.stops <- grace:
	case <-dt.done:
	}
	dc.reply(reply{Seq: req.Seq})
}

// handleShutdown stops the daemon: no new starts, the running tasks killed
// (kill) or left running for a later daemon to adopt, then exit.
func (d *daemon) handleShutdown(dc *dconn, req request) {
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	d.starts.Wait()
	d.mu.Lock()
	var all []*dtask
	for _, dt := range d.tasks {
		all = append(all, dt)
	}
	d.mu.Unlock()
	if req.Kill {
		for _, dt := range all {
			select {
			case dt.stops <- time.Nanosecond:
			case <-dt.done:
			}
		}
		for _, dt := range all {
			<-dt.done
		}
	}
	d.log.Info("supervisor daemon shutting down", "kill", req.Kill, "tasks_left_running", len(all)*boolInt(!req.Kill))
	d.mu.Lock()
	d.exiting = true
	d.mu.Unlock()
	dc.reply(reply{Seq: req.Seq})
	d.exit()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maybeExitLocked ends an idle daemon: no tasks and no clients (after the
// first client came, or the start-up grace passed). d.mu is held.
func (d *daemon) maybeExitLocked() {
	if d.exiting || len(d.conns) > 0 || len(d.tasks) > 0 || !(d.sawConn || d.startupOver) {
		return
	}
	d.exiting = true
	go d.exit()
}

// exit stops listening, flushes what the clients are owed and ends the
// process (which releases the lock).
func (d *daemon) exit() {
	d.exitOnce.Do(d.exitNow)
}

func (d *daemon) exitNow() {
	_ = d.ln.Close()
	_ = withSocketPath(filepath.Join(d.dir, socketFile), os.Remove)
	d.mu.Lock()
	conns := make([]*dconn, 0, len(d.conns))
	for dc := range d.conns {
		conns = append(conns, dc)
	}
	d.mu.Unlock()
	for _, dc := range conns {
		dc.finish()
		select {
		case <-dc.flushed:
		case <-time.After(2 * time.Second):
		}
	}
	_ = d.journal.close()
	d.pool.drain()
	d.dirs.close()
	d.log.Info("supervisor daemon exiting")
	os.Exit(0)
}
