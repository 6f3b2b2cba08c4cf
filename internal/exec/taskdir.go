package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Files in a task's directory <Dir>/<ID>/. The runner writes spec.json and
// stop; the supervisor writes everything else. Logs stay until Remove.
// Seven inodes per task: on ext4, inode allocation is a visible part of the
// per-task cost, so do not add files lightly.
const (
	specFile       = "spec.json"      // supervisorSpec, written once before the supervisor starts
	pidFile        = "supervisor.pid" // the supervisor's pid, so a restarted agent can find it
	supervisorLog  = "supervisor.log" // in Dir, not per task: all supervisors' own stdout/stderr
	statusFile     = "status.json"    // the Result; its presence means "ended and cleaned up"
	stopFile       = "stop"           // grace in nanoseconds, written by Stop before SIGTERM
	scratchDir     = "scratch"        // DURE_SCRATCH; removed when the task ends
	stdoutFile     = "stdout"
	stderrFile     = "stderr"
	specVersion    = 1
	maxControlFile = 1 << 20 // largest status/spec file we agree to read
)

// supervisorSpec is what the runner hands to the supervisor in spec.json.
type supervisorSpec struct {
	Version int        `json:"version"`
	Task    TaskSpec   `json:"task"`
	Cgroup  cgroupSpec `json:"cgroup"`
}

// decodeSpec parses and checks a spec.json.
func decodeSpec(data []byte) (supervisorSpec, error) {
	var s supervisorSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return supervisorSpec{}, fmt.Errorf("spec: %w", err)
	}
	if s.Version != specVersion {
		return supervisorSpec{}, fmt.Errorf("spec: version: must be %d, got %d", specVersion, s.Version)
	}
	if err := validateSpec(s.Task); err != nil {
		return supervisorSpec{}, err
	}
	if err := checkCgroupSpec(s.Cgroup); err != nil {
		return supervisorSpec{}, fmt.Errorf("spec: %w", err)
	}
	return s, nil
}

// statusJSON is the on-disk form of Result: explicit names and RFC 3339
// times, so people and a future agent version can read it.
type statusJSON struct {
	ExitCode   int       `json:"exit_code"`
	Signal     string    `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	TimedOut   bool      `json:"timed_out,omitempty"`
	Stopped    bool      `json:"stopped,omitempty"`
	StartErr   string    `json:"start_error,omitempty"`
	Lost       string    `json:"lost,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

func encodeStatus(r Result) ([]byte, error) {
	return json.MarshalIndent(statusJSON(r), "", "  ")
}

func decodeStatus(data []byte) (Result, error) {
	var s statusJSON
	if err := json.Unmarshal(data, &s); err != nil {
		return Result{}, fmt.Errorf("status: %w", err)
	}
	if s.FinishedAt.IsZero() {
		return Result{}, errors.New("status: finished_at: must be set")
	}
	return Result(s), nil
}

// writeAtomic writes data to path through a temporary file and a rename, so
// a reader sees either nothing or the whole file. There is no fsync: the file
// must survive an agent restart, not a machine crash (after which the task is
// gone anyway).
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := createFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := renameFile(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func writeStatus(taskDir string, r Result) error {
	data, err := encodeStatus(r)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(taskDir, statusFile), data)
}

// readStatus reads a task's status file; ok is false when it does not exist.
func readStatus(taskDir string) (r Result, ok bool, err error) {
	data, err := readSmall(filepath.Join(taskDir, statusFile))
	if errors.Is(err, os.ErrNotExist) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	r, err = decodeStatus(data)
	if err != nil {
		return Result{}, false, fmt.Errorf("%s: %w", filepath.Join(taskDir, statusFile), err)
	}
	return r, true, nil
}

// removeTaskDir deletes a task directory: the files a task directory
// usually holds by name (a few unlinks and an rmdir; os.RemoveAll costs
// several times the system calls), then anything else the slow way.
func removeTaskDir(dir string) error {
	for _, name := range []string{stdoutFile, stderrFile, statusFile} {
		_ = unix.Unlink(filepath.Join(dir, name))
	}
	if err := unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return os.RemoveAll(dir)
}

// removeDir deletes a directory that is usually empty (scratch).
func removeDir(dir string) error {
	if err := unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return os.RemoveAll(dir)
}

// readSmall reads a control file, refusing anything implausibly large.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxControlFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxControlFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxControlFile)
	}
	return data, nil
}

// The start-up handshake: the supervisor writes one line on fd 3.
//
//	ok <unix-nanos>\n     the task runs (or failed to exec: its status file exists)
//	fail <message>\n      setup failed; no task was started
const (
	handshakeOK   = "ok"
	handshakeFail = "fail"
)

func encodeHandshakeOK(startedAt time.Time) []byte {
	return []byte(handshakeOK + " " + strconv.FormatInt(startedAt.UnixNano(), 10) + "\n")
}

func encodeHandshakeFail(msg string) []byte {
	return []byte(handshakeFail + " " + strings.ReplaceAll(msg, "\n", " ") + "\n")
}

// decodeHandshake parses the supervisor's line. A "fail" line yields a
// non-nil failure message and no error.
func decodeHandshake(line []byte) (startedAt time.Time, failure string, err error) {
	s := strings.TrimSuffix(string(line), "\n")
	word, rest, _ := strings.Cut(s, " ")
	switch word {
	case handshakeOK:
		ns, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || ns <= 0 {
			return time.Time{}, "", fmt.Errorf("handshake: bad start time %q", rest)
		}
		return time.Unix(0, ns), "", nil
	case handshakeFail:
		if rest == "" {
			rest = "unknown error"
		}
		return time.Time{}, rest, nil
	}
	return time.Time{}, "", fmt.Errorf("handshake: unexpected line %q", s)
}

// decodeStop parses the stop file: the grace period in nanoseconds.
func decodeStop(data []byte) (time.Duration, error) {
	ns, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stop file: %w", err)
	}
	if ns < 0 {
		return 0, fmt.Errorf("stop file: grace must be >= 0, got %d", ns)
	}
	return time.Duration(ns), nil
}
