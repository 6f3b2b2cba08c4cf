package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/httpapi"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
)

// cluster is a real one-server cluster behind the real API.
type cluster struct {
	srv     *server.Server
	handler *httpapi.Handler
	http    *httptest.Server
	client  *api.Client
}

// quietLog routes logs to t.Log until the cluster is shut down.
type quietLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *quietLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// newCluster starts a server in a temp dir with raft on a free loopback
// port, waits until it leads, and serves the API on httptest.
func newCluster(t testing.TB) *cluster {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	w := &quietLog{t: t}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(server.Config{
		Name: "s1", DataDir: t.TempDir(), RaftBind: addr, Bootstrap: true, Logger: log,
		HeartbeatInterval: time.Second, HeartbeatTimeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	c := &cluster{srv: srv, handler: httpapi.New(srv, "test", log)}
	c.http = httptest.NewServer(c.handler)
	c.client = api.NewClient(c.http.URL)
	t.Cleanup(func() {
		c.http.Close()
		if err := srv.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	deadline := time.Now().Add(15 * time.Second)
	for !srv.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the server did not become leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The leader creates the default queue as it takes over.
	for srv.Store().Snapshot().Queue(model.DefaultQueue) == nil {
		if time.Now().After(deadline) {
			t.Fatal("no default queue")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// raw sends a request with exactly these bytes and content type.
func (c *cluster) raw(t testing.TB, method, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// apiErr decodes an error body, failing the test if it is not one.
func apiErr(t testing.TB, status int, body []byte) *api.Error {
	t.Helper()
	e := &api.Error{Status: status}
	if err := json.Unmarshal(body, e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("error body is not a JSON {code, message}: %q (%v)", body, err)
	}
	return e
}

// asAPIError unwraps a client error.
func asAPIError(t testing.TB, err error) *api.Error {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *api.Error", err, err)
	}
	return e
}

// jobIDs lists the IDs of every job in the store, ascending.
func (c *cluster) jobIDs() []model.JobID {
	var out []model.JobID
	c.srv.Store().Snapshot().Jobs(func(j *model.Job) bool { out = append([]model.JobID{j.ID}, out...); return true })
	return out
}

// jobSpec is a small valid job spec.
func jobSpec(cmd ...string) api.JobSpec {
	if len(cmd) == 0 {
		cmd = []string{"true"}
	}
	return api.JobSpec{Groups: []api.TaskGroupSpec{{Command: cmd, Resources: api.Resources{MilliCPU: 500, MemoryBytes: 1 << 20}}}}
}
