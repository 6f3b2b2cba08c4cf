package exec

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// The node daemon's protocol: frames on a unix stream socket, each a 4-byte
// big-endian length and a JSON object. The runner sends requests with a
// sequence number; the daemon answers each with a reply carrying the same
// number, in any order, and sends task-end events (seq 0) to every
// connection. Everything the daemon sends on one connection is in the order
// it happened, so a task's end event always follows the reply that listed it
// as running.
//
//	hello    {version}              → {pid, version}
//	start    {task, cgroup}         → {started_at} | err, code
//	stop     {id, grace}            → {} | code unknown_task
//	query    {id}                   → {state: running|starting|"", started_at}
//	list     {}                     → {running: [{id, started_at}], starting: [id]}
//	close    {}                     → {exiting}: the daemon exits after this if idle
//	shutdown {kill}                 → {} once the daemon is about to exit
const (
	protoVersion = 1
	maxFrame     = 4 << 20 // a task's environment can be large; anything bigger is junk

	opHello    = "hello"
	opStart    = "start"
	opStop     = "stop"
	opQuery    = "query"
	opList     = "list"
	opClose    = "close"
	opShutdown = "shutdown"

	// Reply codes the runner acts on.
	codeAlreadyStarted = "already_started"
	codeUnknownTask    = "unknown_task"
	codeSetup          = "setup"   // the task's setup failed; its status file says so
	codeExiting        = "exiting" // the daemon is shutting down; connect again
	codeBadRequest     = "bad_request"
	codeLost           = "lost" // made by the runner: the connection broke

	stateRunning  = "running"
	stateStarting = "starting"
)

type request struct {
	Seq     uint64        `json:"seq"`
	Op      string        `json:"op"`
	Version int           `json:"version,omitempty"`
	Task    *TaskSpec     `json:"task,omitempty"`
	Cgroup  *cgroupSpec   `json:"cgroup,omitempty"`
	ID      string        `json:"id,omitempty"`
	Grace   time.Duration `json:"grace,omitempty"`
	Kill    bool          `json:"kill,omitempty"`
}

type reply struct {
	Seq       uint64        `json:"seq,omitempty"`
	Err       string        `json:"err,omitempty"`
	Code      string        `json:"code,omitempty"`
	Pid       int           `json:"pid,omitempty"`
	Version   int           `json:"version,omitempty"`
	StartedAt time.Time     `json:"started_at,omitzero"`
	State     string        `json:"state,omitempty"`
	Running   []runningTask `json:"running,omitempty"`
	Starting  []string      `json:"starting,omitempty"`
	Exiting   bool          `json:"exiting,omitempty"`
	Event     *taskEndEvent `json:"event,omitempty"`
}

type runningTask struct {
	ID        string    `json:"id"`
	StartedAt time.Time `json:"started_at"`
}

type taskEndEvent struct {
	ID     string     `json:"id"`
	Result statusJSON `json:"result"`
}

// appendFrame appends v as one frame to buf.
func appendFrame(buf []byte, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return buf, err
	}
	if len(data) > maxFrame {
		return buf, fmt.Errorf("message of %d bytes exceeds the %d byte limit", len(data), maxFrame)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	return append(buf, data...), nil
}

// readFrame reads one frame's body.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds the %d byte limit", n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// decodeRequest parses and checks a request from a client: whatever it
// returns without error is safe for the daemon to act on.
func decodeRequest(data []byte) (request, error) {
	var req request
	if err := json.Unmarshal(data, &req); err != nil {
		return request{}, fmt.Errorf("request: %w", err)
	}
	if req.Seq == 0 {
		return request{}, errors.New("request: seq: must be > 0")
	}
	switch req.Op {
	case opHello, opList, opClose, opShutdown:
	case opStart:
		if req.Task == nil || req.Cgroup == nil {
			return request{}, errors.New("request: start: task and cgroup must be set")
		}
		if err := validateSpec(*req.Task); err != nil {
			return request{}, err
		}
		if err := checkCgroupSpec(*req.Cgroup); err != nil {
			return request{}, err
		}
	case opStop, opQuery:
		if err := validID(req.ID); err != nil {
			return request{}, fmt.Errorf("request: id: %w", err)
		}
		if req.Grace < 0 {
			return request{}, fmt.Errorf("request: grace: must be >= 0, got %d", req.Grace)
		}
	default:
		return request{}, fmt.Errorf("request: op: must be one of hello, start, stop, query, list, close, shutdown; got %q", req.Op)
	}
	return req, nil
}

// decodeReply parses a frame from the daemon.
func decodeReply(data []byte) (reply, error) {
	var rep reply
	if err := json.Unmarshal(data, &rep); err != nil {
		return reply{}, fmt.Errorf("reply: %w", err)
	}
	if rep.Seq == 0 {
		if rep.Event == nil {
			return reply{}, errors.New("reply: seq 0 must carry an event")
		}
		if err := validID(rep.Event.ID); err != nil {
			return reply{}, fmt.Errorf("reply: event: %w", err)
		}
		if rep.Event.Result.FinishedAt.IsZero() {
			return reply{}, errors.New("reply: event: result.finished_at: must be set")
		}
	}
	for _, t := range rep.Running {
		if err := validID(t.ID); err != nil {
			return reply{}, fmt.Errorf("reply: running: %w", err)
		}
	}
	return rep, nil
}

// checkCgroupSpec checks a cgroup spec that came from outside the process.
func checkCgroupSpec(c cgroupSpec) error {
	switch c.Driver {
	case cgroupOff:
	case cgroupV2:
		if !filepath.IsAbs(c.Dir) {
			return fmt.Errorf("cgroup.dir: must be an absolute path, got %q", c.Dir)
		}
	case cgroupV1:
		for _, d := range []struct{ name, dir string }{{"cpu_dir", c.CPUDir}, {"memory_dir", c.MemoryDir}, {"cpu_home", c.CPUHome}, {"memory_home", c.MemoryHome}} {
			if !filepath.IsAbs(d.dir) {
				return fmt.Errorf("cgroup.%s: must be an absolute path, got %q", d.name, d.dir)
			}
		}
	default:
		return fmt.Errorf("cgroup.driver: must be v1, v2 or off, got %q", c.Driver)
	}
	return nil
}
