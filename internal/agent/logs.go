package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/durehq/dure/internal/api"
)

// logPollInterval is how often a follower looks for new output.
const logPollInterval = 50 * time.Millisecond

// LogPathPrefix is the agent's log endpoint; the allocation ID follows it.
const LogPathPrefix = "/v1/agent/logs/"

var allocIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`) // length checked apart, see nodeNameRe

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LogPathPrefix+"{alloc}", a.serveLogs)
	return mux
}

// serveLogs answers GET /v1/agent/logs/{alloc}?stream=stdout|stderr&offset=N&follow=true
// with the raw bytes of a task's output from offset on. With follow it keeps
// sending as the file grows until the task has ended and everything is sent.
func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("alloc")
	if len(id) > 200 || !allocIDRe.MatchString(id) || id == "." || id == ".." {
		writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Field: "alloc",
			Message: fmt.Sprintf("allocation ID %q: must be 1-200 letters, digits, '.', '_' or '-'", id)})
		return
	}
	q := r.URL.Query()
	stream := q.Get("stream")
	if stream == "" {
		stream = "stdout"
	}
	if stream != "stdout" && stream != "stderr" {
		writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Field: "stream",
			Message: fmt.Sprintf("stream %q: must be stdout or stderr", stream)})
		return
	}
	var offset int64
	if s := q.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Field: "offset",
				Message: fmt.Sprintf("offset %q: must be a non-negative number of bytes", s)})
			return
		}
		offset = n
	}
	follow := false
	if s := q.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Field: "follow",
				Message: fmt.Sprintf("follow %q: must be true or false", s)})
			return
		}
		follow = b
	}
	path := a.runner.LogPath(id, stream)
	if path == "" || !a.knowsTask(id, path) {
		writeError(w, http.StatusNotFound, api.Error{Code: api.CodeNotFound,
			Message: fmt.Sprintf("allocation %s has no task on node %s", id, a.cfg.Name)})
		return
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the client sees the headers before the first byte of output

	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var tick *time.Ticker
	for {
		// Decide "ended" before reading: whatever the task wrote before it
		// ended is then in the file when we read it.
		ended := !follow || a.taskDone(id)
		if f == nil {
			var err error
			f, err = os.Open(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				a.log.Warn("cannot open task log", "alloc", id, "stream", stream, "err", err)
				return
			}
		}
		if f != nil {
			n, err := io.Copy(w, io.NewSectionReader(f, offset, 1<<62))
			offset += n
			if err != nil {
				return // the client went away, or the file vanished under us
			}
			if n > 0 && rc.Flush() != nil {
				return
			}
		}
		if ended {
			return
		}
		if tick == nil {
			tick = time.NewTicker(logPollInterval)
			defer tick.Stop()
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// knowsTask: the agent acted on the allocation in this process, or its task
// directory is on disk (an earlier process ran it).
func (a *Agent) knowsTask(id, logPath string) bool {
	a.mu.Lock()
	_, ok := a.tasks[id]
	a.mu.Unlock()
	if ok {
		return true
	}
	_, err := os.Stat(filepath.Dir(logPath))
	return err == nil
}

func writeError(w http.ResponseWriter, status int, e api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}
