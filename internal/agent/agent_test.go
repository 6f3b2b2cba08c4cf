package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/exec"
)

func TestAgentRegistersAndHeartbeats(t *testing.T) {
	cp := newControlPlane(t)
	a := startAgent(t, testConfig(t, cp.URL()))
	cp.waitFor("two heartbeats", func(cp *controlPlane) bool { return cp.heartbeats >= 2 })

	cp.mu.Lock()
	reg := cp.regs[0]
	cp.mu.Unlock()
	if len(reg.SessionID) != 32 {
		t.Errorf("session ID %q: want 32 hex digits", reg.SessionID)
	}
	want := api.NodeRegistration{
		Name:         "node1",
		Address:      a.Addr(),
		Capacity:     api.Resources{MilliCPU: 2000, MemoryBytes: 1 << 30, GPUs: 2, ScratchBytes: 1 << 30},
		GPUs:         []api.GPU{{Index: 0}, {Index: 1}},
		Labels:       map[string]string{"pool": "test", "rack": "r1"},
		AgentVersion: "test-1",
	}
	if diff := cmp.Diff(want, reg, cmpopts.IgnoreFields(api.NodeRegistration{}, "SessionID")); diff != "" {
		t.Errorf("registration (-want +got):\n%s", diff)
	}
}

func TestAgentRunsTaskAndReportsItsExit(t *testing.T) {
	cp := newControlPlane(t)
	a := startAgent(t, testConfig(t, cp.URL()))
	cp.add(shellAlloc("1.0.0", "echo to-stdout; echo to-stderr >&2; exit 3"))

	ups := cp.waitEnded("1.0.0")
	run, end, ok := startAndEnd(ups)
	if !ok || end.Status != "exited" {
		t.Fatalf("statuses = %v, want [running exited] or [exited]", statuses(ups))
	}
	if run.StartedAt.IsZero() || run.Node != "node1" {
		t.Errorf("running update %+v: want node1 and a start time", run)
	}
	if end.ExitCode != 3 || end.Message != "exited with code 3" || end.Signal != "" {
		t.Errorf("exit update %+v: want exit code 3, \"exited with code 3\"", end)
	}
	if end.FinishedAt.Before(end.StartedAt) || end.StartedAt.IsZero() {
		t.Errorf("exit update times: started %v, finished %v", end.StartedAt, end.FinishedAt)
	}
	for stream, want := range map[string]string{"stdout": "to-stdout\n", "stderr": "to-stderr\n"} {
		code, body := getLogs(t, a, "1.0.0", "?stream="+stream)
		if code != http.StatusOK || body != want {
			t.Errorf("GET logs %s = %d %q, want 200 %q", stream, code, body, want)
		}
	}
	if code, body := getLogs(t, a, "1.0.0", "?offset=3"); code != http.StatusOK || body != "stdout\n" {
		t.Errorf("GET logs from offset 3 = %d %q, want 200 \"stdout\\n\"", code, body)
	}
}

// startAndEnd splits a task's updates into the one that reported its start
// and the one that reported its end: "running" then an end, or only the
// end when both fell into one request (it carries the start time then).
func startAndEnd(ups []api.AllocUpdate) (run, end api.AllocUpdate, ok bool) {
	switch {
	case len(ups) == 2 && ups[0].Status == "running" && ups[1].Status != "running":
		return ups[0], ups[1], true
	case len(ups) == 1 && ups[0].Status != "running":
		return ups[0], ups[0], true
	}
	return api.AllocUpdate{}, api.AllocUpdate{}, false
}

func statuses(ups []api.AllocUpdate) []string {
	var out []string
	for _, u := range ups {
		out = append(out, u.Status)
	}
	return out
}

func TestAgentGivesTasksTheirEnvironment(t *testing.T) {
	t.Setenv("DURE_TEST_AGENT_SECRET", "must-not-leak")
	cp := newControlPlane(t)
	cfg := testConfig(t, cp.URL())
	cfg.BaseEnv = []string{"PATH=" + DefaultPath, "HOME=/home/test", "LANG=C.UTF-8"}
	a := startAgent(t, cfg)
	al := api.Allocation{
		ID: "7.1.0", JobID: 7, Group: "workers", TaskIndex: 1, TaskCount: 4, JobName: "train", Node: "node1",
		Command: []string{"env"}, Env: map[string]string{"FOO": "bar", "DURE_JOB_ID": "999"},
		Resources: api.Resources{GPUs: 1}, GPUIndices: []int{1},
	}
	cp.add(al)
	if ups := cp.waitEnded("7.1.0"); ups[len(ups)-1].ExitCode != 0 {
		t.Fatalf("env task ended %+v", ups[len(ups)-1])
	}
	_, out := getLogs(t, a, "7.1.0", "")
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	want := map[string]string{
		"PATH": DefaultPath, "HOME": "/home/test", "LANG": "C.UTF-8", "FOO": "bar",
		"DURE_JOB_ID": "7", "DURE_JOB_NAME": "train", "DURE_TASK_INDEX": "1", "DURE_NTASKS": "4",
		"DURE_ALLOC_ID": "7.1.0", "DURE_NODE": "node1", "DURE_GROUP": "workers", "DURE_ATTEMPT": "0",
		"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train",
		"CUDA_VISIBLE_DEVICES": "1",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("task saw %s=%q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["DURE_SCRATCH"]; !ok {
		t.Errorf("task has no DURE_SCRATCH; env:\n%s", out)
	}
	if _, ok := env["DURE_TEST_AGENT_SECRET"]; ok {
		t.Error("the agent's own environment leaked into the task")
	}
}

func TestAgentStopsTaskWhenServersWantItStopped(t *testing.T) {
	cp := newControlPlane(t)
	startAgent(t, testConfig(t, cp.URL()))
	cp.add(shellAlloc("2.0.0", "exec sleep 300"))
	cp.waitStatus("2.0.0", "running")
	cp.stop("2.0.0", "cancelled by alice")

	ups := cp.waitEnded("2.0.0")
	end := ups[len(ups)-1]
	want := api.AllocUpdate{AllocID: "2.0.0", Node: "node1", Status: "exited", ExitCode: 143, Signal: "SIGTERM", Stopped: true, Message: "stopped: cancelled by alice"}
	if diff := cmp.Diff(want, end, cmpopts.IgnoreFields(api.AllocUpdate{}, "StartedAt", "FinishedAt")); diff != "" {
		t.Errorf("final update (-want +got):\n%s", diff)
	}
}

func TestAgentPreemptedTaskCheckpointsOnSIGTERM(t *testing.T) {
	cp := newControlPlane(t)
	a := startAgent(t, testConfig(t, cp.URL()))
	cp.add(shellAlloc("2.0.0", "trap 'echo checkpoint; exit 0' TERM; echo started; while :; do sleep 0.1; done"))
	cp.waitStatus("2.0.0", "running")
	waitLog(t, a, "2.0.0", "started\n")
	cp.preempt("2.0.0", "preempted by job 9", 30*time.Second)

	ups := cp.waitEnded("2.0.0")
	end := ups[len(ups)-1]
	want := api.AllocUpdate{AllocID: "2.0.0", Node: "node1", Status: "exited", Stopped: true, Message: "stopped: preempted by job 9"}
	if diff := cmp.Diff(want, end, cmpopts.IgnoreFields(api.AllocUpdate{}, "StartedAt", "FinishedAt")); diff != "" {
		t.Errorf("final update (-want +got):\n%s", diff)
	}
	if _, out := getLogs(t, a, "2.0.0", ""); out != "started\ncheckpoint\n" {
		t.Errorf("task output %q; want it to have written its checkpoint line on SIGTERM", out)
	}
}

// A preempted task that ignores SIGTERM is killed after the allocation's
// grace, not the agent's far longer kill grace (the test would time out).
func TestAgentKillsPreemptedTaskAfterTheAllocationsGrace(t *testing.T) {
	cp := newControlPlane(t)
	cfg := testConfig(t, cp.URL())
	cfg.KillGrace = time.Hour
	a := startAgent(t, cfg)
	cp.add(shellAlloc("2.0.0", "trap '' TERM; echo started; while :; do sleep 0.1; done"))
	cp.waitStatus("2.0.0", "running")
	waitLog(t, a, "2.0.0", "started\n")
	cp.preempt("2.0.0", "preempted by job 9", 200*time.Millisecond)

	ups := cp.waitEnded("2.0.0")
	if end := ups[len(ups)-1]; end.Signal != "SIGKILL" || !end.Stopped {
		t.Errorf("final update %+v; want killed by SIGKILL after a stop", end)
	}
}

// waitLog waits until a task's stdout is want (so that a shell has set
// its traps before the test signals it).
func waitLog(t *testing.T, a *testAgent, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, out := getLogs(t, a, id, "")
		if out == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s output %q; want %q", id, out, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentReportsAllocationStoppedBeforeItStarted(t *testing.T) {
	cp := newControlPlane(t)
	startAgent(t, testConfig(t, cp.URL()))
	al := shellAlloc("3.0.0", "echo should not run")
	al.Desired, al.DesiredReason = "stop", "preempted by job 9"
	cp.add(al)
	ups := cp.waitEnded("3.0.0")
	if got := statuses(ups); !cmp.Equal(got, []string{"failed"}) {
		t.Fatalf("statuses = %v, want [failed]", got)
	}
	if ups[0].Message != "stopped before it started: preempted by job 9" {
		t.Errorf("message = %q", ups[0].Message)
	}
}

func TestAgentReportsCommandNotFound(t *testing.T) {
	cp := newControlPlane(t)
	startAgent(t, testConfig(t, cp.URL()))
	al := shellAlloc("4.0.0", "")
	al.Command = []string{"dure-test-no-such-command", "--flag"}
	cp.add(al)
	ups := cp.waitEnded("4.0.0")
	end := ups[len(ups)-1]
	if end.Status != "failed" || end.ExitCode != 127 || !strings.Contains(end.Message, "dure-test-no-such-command") {
		t.Errorf("final update %+v: want failed, exit code 127 and a message naming the command", end)

	}
}

func TestAgentRunsManyTasksAndReportsEach(t *testing.T) {
	cp := newControlPlane(t)
	startAgent(t, testConfig(t, cp.URL()))
	const n = 20
	for i := range n {
		cp.add(shellAlloc(fmt.Sprintf("5.%d.0", i), fmt.Sprintf("exit %d", i)))
	}
	for i := range n {
		id := fmt.Sprintf("5.%d.0", i)
		ups := cp.waitEnded(id)
		if run, end, ok := startAndEnd(ups); !ok || end.Status != "exited" || end.ExitCode != i || run.StartedAt.IsZero() {
			t.Errorf("%s: updates %+v, want its start time and then exited with code %d", id, ups, i)
		}
	}
	cp.mu.Lock()
	t.Logf("%d updates in %d requests", len(cp.updates), cp.requests)
	cp.mu.Unlock()
}

func TestAgentLogsFollowUntilTaskEnds(t *testing.T) {
	cp := newControlPlane(t)
	a := startAgent(t, testConfig(t, cp.URL()))
	gate := gatePath(t)
	cp.add(shellAlloc("6.0.0", `echo one; while [ ! -e "`+gate+`" ]; do sleep 0.01; done; echo two; exit 4`))
	cp.waitStatus("6.0.0", "running")

	resp, err := http.Get("http://" + a.Addr() + LogPathPrefix + "6.0.0?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "one\n" {
		t.Fatalf("first line = %q, %v; want \"one\\n\" while the task still runs", first, err)
	}
	touch(t, gate)
	rest, err := io.ReadAll(br) // returns only once the agent ends the stream
	if err != nil || string(rest) != "two\n" {
		t.Fatalf("rest of the stream = %q, %v; want \"two\\n\" then the end", rest, err)
	}
	if ups := cp.waitEnded("6.0.0"); ups[len(ups)-1].ExitCode != 4 {
		t.Errorf("task ended %+v, want exit code 4", ups[len(ups)-1])
	}
	// Following a task that has already ended returns its output and ends.
	if code, body := getLogs(t, a, "6.0.0", "?follow=true&offset=4"); code != 200 || body != "two\n" {
		t.Errorf("follow after the end = %d %q, want 200 \"two\\n\"", code, body)
	}
}

func TestAgentLogsRejectsBadRequests(t *testing.T) {
	cp := newControlPlane(t)
	a := startAgent(t, testConfig(t, cp.URL()))
	cp.add(shellAlloc("8.0.0", "echo hi"))
	cp.waitEnded("8.0.0")
	tests := []struct {
		name, path string
		status     int
		want       api.Error
	}{
		{"unknown allocation", "99.0.0", 404, api.Error{Code: "not_found", Message: "allocation 99.0.0 has no task on node node1"}},
		{"bad stream", "8.0.0?stream=stdin", 400, api.Error{Code: "invalid", Field: "stream", Message: `stream "stdin": must be stdout or stderr`}},
		{"negative offset", "8.0.0?offset=-1", 400, api.Error{Code: "invalid", Field: "offset", Message: `offset "-1": must be a non-negative number of bytes`}},
		{"bad follow", "8.0.0?follow=maybe", 400, api.Error{Code: "invalid", Field: "follow", Message: `follow "maybe": must be true or false`}},
		{"bad id", "8.0.0%2Fx", 400, api.Error{Code: "invalid", Field: "alloc", Message: `allocation ID "8.0.0/x": must be 1-200 letters, digits, '.', '_' or '-'`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := getLogs(t, a, tc.path, "")
			var got api.Error
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q is not a JSON error: %v", body, err)
			}
			if code != tc.status {
				t.Errorf("status = %d, want %d", code, tc.status)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAgentFailsOverToAnotherServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String() // nothing listens there once closed
	l.Close()
	unavailable := newUnavailableServer(t)
	cp := newControlPlane(t)
	startAgent(t, testConfig(t, dead, unavailable, cp.URL()))
	cp.add(shellAlloc("10.0.0", "exit 0"))
	if ups := cp.waitEnded("10.0.0"); ups[len(ups)-1].Status != "exited" {
		t.Errorf("task through the third server ended %+v", ups[len(ups)-1])
	}
}

func newUnavailableServer(t *testing.T) string {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusServiceUnavailable, api.Error{Code: api.CodeUnavailable, Message: "no leader"})
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestAgentRegistersAgainWhenAsked(t *testing.T) {
	cp := newControlPlane(t)
	startAgent(t, testConfig(t, cp.URL()))
	cp.waitFor("first registration", func(cp *controlPlane) bool { return len(cp.regs) == 1 })
	cp.askReregister()
	cp.waitFor("second registration", func(cp *controlPlane) bool { return len(cp.regs) == 2 })
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.regs[0].SessionID != cp.regs[1].SessionID {
		t.Errorf("session changed from %s to %s; the agent process did not restart", cp.regs[0].SessionID, cp.regs[1].SessionID)
	}
}

func TestAgentRestartKeepsTasksAndAdoptsThem(t *testing.T) {
	cp := newControlPlane(t)
	cfg := testConfig(t, cp.URL())
	first := startAgent(t, cfg)
	dir := t.TempDir()
	gate, pidFile := dir+"/gate", dir+"/pid"
	cp.add(shellAlloc("11.0.0", `echo $$; echo $$ > "`+pidFile+`"; while [ ! -e "`+gate+`" ]; do sleep 0.01; done; exit 5`))
	cp.waitStatus("11.0.0", "running")
	pid, err := strconv.Atoi(waitFile(t, pidFile))
	if err != nil {
		t.Fatal(err)
	}
	first.stop(t)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("task process %d died with the agent: %v", pid, err)
	}

	cfg.Logger = newTestLogger(t)
	second := startAgent(t, cfg)
	cp.waitFor("the second agent to register", func(cp *controlPlane) bool { return len(cp.regs) == 2 })
	touch(t, gate)
	ups := cp.waitEnded("11.0.0")
	_, end, ok := startAndEnd(ups)
	if !ok || end.Status != "exited" {
		t.Fatalf("statuses = %v, want [running exited] or [exited]: started once, ended once; updates %+v", statuses(ups), ups)
	}
	if end.ExitCode != 5 {
		t.Errorf("exit update %+v, want exit code 5", end)
	}
	cp.mu.Lock()
	s1, s2 := cp.regs[0].SessionID, cp.regs[1].SessionID
	cp.mu.Unlock()
	if s1 == s2 {
		t.Error("a restarted agent registered with its predecessor's session ID")
	}
	if code, body := getLogs(t, second, "11.0.0", ""); code != 200 || strings.TrimSpace(body) != strconv.Itoa(pid) {
		t.Errorf("logs through the second agent = %d %q, want the pid %d", code, body, pid)
	}
}

func TestAgentRestartReportsWhatTheEarlierProcessCouldNot(t *testing.T) {
	cp := newControlPlane(t)
	cp.refuseUpdates(true) // the first agent's reports never arrive
	cfg := testConfig(t, cp.URL())
	first := startAgent(t, cfg)
	dir := t.TempDir()
	cp.add(shellAlloc("15.0.0", `echo $$ > "`+dir+`/pid0"; while [ ! -e "`+dir+`/gate0" ]; do sleep 0.01; done; exit 6`))
	cp.add(shellAlloc("15.1.0", `echo $$ > "`+dir+`/pid1"; while [ ! -e "`+dir+`/gate1" ]; do sleep 0.01; done; exit 7`))
	waitFile(t, dir+"/pid0")
	waitFile(t, dir+"/pid1")
	first.stop(t)

	// 15.1.0 ends while no agent runs.
	touch(t, dir+"/gate1")
	r, err := exec.NewRunner(exec.Config{Dir: first.cfg.Exec.Dir, SupervisorCommand: supervisorCommand(t), Cgroups: "off"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := r.Finished("15.1.0"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("task 15.1.0 did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Close()

	cp.refuseUpdates(false)
	cfg.Logger = newTestLogger(t)
	startAgent(t, cfg)
	ups := cp.waitEnded("15.1.0")
	if run, end, ok := startAndEnd(ups); !ok || end.Status != "exited" || end.ExitCode != 7 || run.StartedAt.IsZero() {
		t.Errorf("task that ended while the agent was away: updates %+v, want its start time and then exited 7", ups)
	}
	cp.waitStatus("15.0.0", "running")
	touch(t, dir+"/gate0")
	ups = cp.waitEnded("15.0.0")
	if run, end, ok := startAndEnd(ups); !ok || end.Status != "exited" || end.ExitCode != 6 || run.StartedAt.IsZero() {
		t.Errorf("task still running at the restart: updates %+v, want running then exited 6", ups)
	}
}

// TestAgentStopsTasksTheServersNoLongerList: the servers end a task the
// agent runs (it leaves the node's list); the agent stops it without a
// report. Against servers that answer the allocation watch with changes
// (the ended allocation is among them) and against older servers that
// answer with the whole list (it is missing from it).
func TestAgentStopsTasksTheServersNoLongerList(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(map[bool]string{false: "changes", true: "whole list"}[old], func(t *testing.T) {
			testAgentStopsOrphans(t, old)
		})
	}
}

func testAgentStopsOrphans(t *testing.T, oldServer bool) {
	cp := newControlPlane(t)
	cp.noChanges = oldServer
	a := startAgent(t, testConfig(t, cp.URL()))
	cp.add(shellAlloc("12.0.0", "exec sleep 300"))
	cp.waitStatus("12.0.0", "running")
	cp.markLost("12.0.0") // e.g. the node was declared down meanwhile
	deadline := time.Now().Add(20 * time.Second)
	for !a.taskDone("12.0.0") {
		if time.Now().After(deadline) {
			t.Fatal("the orphaned task was not stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Its end is not reported: the servers already consider it finished.
	// Updates are sent in order, so once a later task's report is in, an
	// earlier one would be too.
	cp.add(shellAlloc("12.1.0", "exit 0"))
	cp.waitEnded("12.1.0")
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if got := statuses(cp.updatesFor("12.0.0")); !cmp.Equal(got, []string{"running"}) {
		t.Errorf("updates for the orphan = %v, want only [running]", got)
	}
}

func TestAgentRemovesEndedTasksAfterRetention(t *testing.T) {
	cp := newControlPlane(t)
	cfg := testConfig(t, cp.URL())
	cfg.LogRetention = time.Hour
	a := startAgent(t, cfg)
	cp.add(shellAlloc("13.0.0", "echo kept for an hour"))
	cp.waitEnded("13.0.0")
	logFile := a.runner.LogPath("13.0.0", "stdout")

	a.gc(time.Now().Add(59 * time.Minute))
	if _, err := os.Stat(logFile); err != nil {
		t.Fatalf("log removed before its retention ran out: %v", err)
	}
	a.gc(time.Now().Add(61 * time.Minute))
	if _, err := os.Stat(logFile); !os.IsNotExist(err) {
		t.Fatalf("log still there after its retention: %v", err)
	}
	if code, _ := getLogs(t, a, "13.0.0", ""); code != http.StatusNotFound {
		t.Errorf("logs of a removed task: status %d, want 404", code)
	}
}

// TestAgentKeepsAtMostMaxEndedTasks: under a stream of short tasks the
// agent keeps the newest MaxEndedTasks ended ones, whatever the retention,
// without waiting for its periodic pass.
func TestAgentKeepsAtMostMaxEndedTasks(t *testing.T) {
	cp := newControlPlane(t)
	cfg := testConfig(t, cp.URL())
	cfg.MaxEndedTasks = 2
	a := startAgent(t, cfg)
	var logs []string
	for i := range 5 {
		id := fmt.Sprintf("15.%d.0", i)
		cp.add(shellAlloc(id, "echo task "+id))
		cp.waitEnded(id)
		logs = append(logs, a.runner.LogPath(id, "stdout"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, f := range logs[:3] {
		for {
			if _, err := os.Stat(f); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is still there: only the newest 2 of 5 ended tasks should be kept", f)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, f := range logs[3:] {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("one of the newest 2 ended tasks lost its log: %v", err)
		}
	}
	if code, _ := getLogs(t, a, "15.4.0", ""); code != http.StatusOK {
		t.Errorf("logs of the newest task: status %d, want 200", code)
	}
}

func TestAgentRunReturnsOnCancelWithoutKillingTasks(t *testing.T) {
	cp := newControlPlane(t)
	a := startAgent(t, testConfig(t, cp.URL()))
	pidFile := t.TempDir() + "/pid"
	cp.add(shellAlloc("14.0.0", `echo $$ > "`+pidFile+`"; exec sleep 300`))
	cp.waitStatus("14.0.0", "running")
	pid, err := strconv.Atoi(waitFile(t, pidFile))
	if err != nil {
		t.Fatal(err)
	}
	addr := a.Addr()
	a.stop(t)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("task process %d died when Run returned: %v", pid, err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("log listener %s still accepts connections after Run returned", addr)
	}
}
