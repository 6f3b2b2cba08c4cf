package httpapi

import (
	"context"
	"errors"
	"fmt"
	"github.com/durehq/dure/internal/state"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/server"
)

// forwardedHeader marks a request one server passed to the leader, so a
// request never travels more than one hop (no loops during elections).
const forwardedHeader = "X-Dure-Forwarded-By"

// onLeader runs a write on the leader: on a follower the request is passed
// to the leader unchanged (body unread) and its answer is passed back. With
// no leader known, or on a second hop, the answer is 503: retry.
//
// Reads on a follower come from its own copy of the state, which may lag. So
// that a client which wrote through a follower reads its write back there
// (dure run submits, then watches the job), the leader stamps each write's
// answer with its applied index and the follower answers only once it has
// applied that far too.
func (h *Handler) onLeader(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.b.IsLeader() {
			next(&indexStamper{ResponseWriter: w, store: h.b.Store()}, r)
			return
		}
		leader := h.b.LeaderAddr()
		if leader == "" || leader == h.b.Advertise() || r.Header.Get(forwardedHeader) != "" {
			if err := h.b.StoreFailure(); err != nil {
				// Its own log cannot be written (a full disk): the cause,
				// not "retry shortly", which would not help.
				writeError(w, fmt.Errorf("%w (no leader known to %s; its last write to its log failed: %v)", server.ErrNotLeader, h.b.Name(), err))
				return
			}
			writeError(w, fmt.Errorf("%w (no leader known to %s)", server.ErrNotLeader, h.b.Name()))
			return
		}
		r.Header.Set(forwardedHeader, h.b.Name())
		// A leader cut off by a partition never answers: abandon the
		// forward as soon as this server learns of another leader (or of
		// none), answer 503, and let the client retry on the new one.
		// Submissions carry idempotency keys, so a retry cannot duplicate.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if h.b.LeaderAddr() != leader {
						cancel()
						return
					}
				}
			}
		}()
		h.proxyTo(leader).ServeHTTP(w, r.WithContext(ctx))
	}
}

func (h *Handler) proxyTo(addr string) *httputil.ReverseProxy {
	h.proxyMu.Lock()
	defer h.proxyMu.Unlock()
	if p := h.proxies[addr]; p != nil {
		return p
	}
	if h.proxies == nil {
		h.proxies = map[string]*httputil.ReverseProxy{}
	}
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	// A leader that was partitioned (not crashed) accepts no connection and
	// answers nothing: fail fast so the client retries elsewhere, instead of
	// hanging on the default transport's 30 s dial and unbounded wait.
	p.Transport = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		ResponseHeaderTimeout: 15 * time.Second, // raft applies time out at 10 s
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
	}
	p.FlushInterval = -1 // stream (log follows, snapshots) as it comes
	p.ModifyResponse = func(resp *http.Response) error {
		if idx, err := strconv.ParseUint(resp.Header.Get(api.IndexHeader), 10, 64); err == nil {
			h.waitApplied(resp.Request.Context(), idx)
		}
		return nil
	}
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		writeError(w, fmt.Errorf("%w: forwarding to the leader at %s failed: %v", server.ErrNotLeader, addr, err))
	}
	h.proxies[addr] = p
	return p
}

func (h *Handler) listServers(w http.ResponseWriter, r *http.Request) {
	ms, err := h.b.Members()
	if err != nil {
		writeError(w, err)
		return
	}
	out := []api.ServerMember{}
	for _, m := range ms {
		out = append(out, api.ServerMember{Name: m.Name, Address: m.Address, Voter: m.Voter, Leader: m.Leader})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) joinServer(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case len(req.Name) > 253 || !nodeNameRE.MatchString(req.Name):
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "name", "must be 1-253 letters, digits, '.', '_' or '-', starting with a letter or digit"))
		return
	case req.Address == "" || len(req.Address) > 256:
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "address", "must be the server's host:port"))
		return
	}
	if err := h.b.AddServer(r.Context(), req.Name, req.Address); err != nil {
		writeError(w, err)
		return
	}
	h.listServers(w, r)
}

func (h *Handler) removeServer(w http.ResponseWriter, r *http.Request) {
	err := h.b.RemoveServer(r.Context(), r.PathValue("name"))
	if errors.Is(err, server.ErrNoSuchServer) {
		writeError(w, apiError(http.StatusNotFound, api.CodeNotFound, "", err.Error()))
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	h.listServers(w, r)
}

func (h *Handler) saveSnapshot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := h.b.SaveSnapshot(w); err != nil {
		// Headers may be gone already; an error before the first byte still reads well.
		writeError(w, err)
	}
}

func (h *Handler) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	err := h.b.RestoreSnapshot(http.MaxBytesReader(w, r.Body, server.MaxSnapshotBytes))
	if errors.Is(err, server.ErrBadSnapshot) {
		writeError(w, apiError(http.StatusBadRequest, api.CodeInvalid, "", err.Error()))
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// indexStamper sets the index header to the store's applied index when the
// answer starts: the write it answers for is applied by then.
type indexStamper struct {
	http.ResponseWriter
	store   *state.Store
	stamped bool
}

func (s *indexStamper) WriteHeader(code int) {
	if !s.stamped {
		s.stamped = true
		s.Header().Set(api.IndexHeader, strconv.FormatUint(s.store.Index(), 10))
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *indexStamper) Write(b []byte) (int, error) {
	if !s.stamped {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes flushes through (snapshot streams).
func (s *indexStamper) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// maxApplyWait bounds how long a follower holds a forwarded write's answer
// waiting to apply it: past that it answers anyway (the write is committed).
const maxApplyWait = 5 * time.Second

// waitApplied waits until this server's state has applied index idx.
func (h *Handler) waitApplied(ctx context.Context, idx uint64) {
	store := h.b.Store()
	timer := time.NewTimer(maxApplyWait)
	defer timer.Stop()
	for {
		changed := store.Changed()
		if store.Index() >= idx {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
