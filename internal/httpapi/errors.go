package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"syscall"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/spec"
)

// apiError builds an API error for a status, code and field.
func apiError(status int, code, field, msg string) *api.Error {
	return &api.Error{Status: status, Code: code, Field: field, Message: msg}
}

// writeError is the one place errors become HTTP statuses.
func writeError(w http.ResponseWriter, err error) {
	var ae *api.Error
	var fe spec.FieldErrors
	var fe1 spec.FieldError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe) && len(fe) > 0:
		ae = apiError(http.StatusBadRequest, api.CodeInvalid, fe[0].Field, err.Error())
		if len(fe) == 1 {
			ae.Message = fe[0].Message
		}
	case errors.As(err, &fe1):
		ae = apiError(http.StatusBadRequest, api.CodeInvalid, fe1.Field, fe1.Message)
	case errors.Is(err, fsm.ErrNotFound):
		ae = apiError(http.StatusNotFound, api.CodeNotFound, "", withoutSentinel(err, fsm.ErrNotFound))
	case errors.Is(err, fsm.ErrConflict):
		ae = apiError(http.StatusConflict, api.CodeConflict, "", withoutSentinel(err, fsm.ErrConflict))
	case errors.Is(err, fsm.ErrInvalid):
		ae = apiError(http.StatusBadRequest, api.CodeInvalid, "", withoutSentinel(err, fsm.ErrInvalid))
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device"):
		// raft wraps the store's error in text, so the errno is often lost.
		ae = apiError(http.StatusInsufficientStorage, api.CodeNoSpace, "", "the server's disk is full: writes are refused until space is freed (reads still work); "+err.Error())
	case errors.Is(err, server.ErrNotLeader):
		ae = apiError(http.StatusServiceUnavailable, api.CodeUnavailable, "", "no leader available right now; retry shortly ("+err.Error()+")")
	default:
		ae = apiError(http.StatusInternalServerError, api.CodeInternal, "", err.Error())
	}
	if ae.Status == 0 {
		ae.Status = http.StatusInternalServerError
	}
	writeJSON(w, ae.Status, ae)
}

// withoutSentinel is err's message without the trailing ": conflict" (or
// ": not found", ": invalid") the FSM wraps its sentinel in: the answer's
// code says it, and people read "job 2 already succeeded".
func withoutSentinel(err, sentinel error) string {
	msg := err.Error()
	if trimmed := strings.TrimSuffix(msg, ": "+sentinel.Error()); trimmed != "" {
		return trimmed
	}
	return msg
}

// prettyMarker is a response header ServeHTTP sets for ?pretty requests and
// writeJSON removes before answering; it travels through any ResponseWriter
// wrappers because they share the header map.
const prettyMarker = "X-Dure-Internal-Pretty"

// writeJSON answers compact JSON (cheaper to make and to parse), indented
// when the request asked for ?pretty.
func writeJSON(w http.ResponseWriter, status int, v any) {
	pretty := w.Header().Get(prettyMarker) != ""
	w.Header().Del(prettyMarker)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	if pretty {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(v)
}
