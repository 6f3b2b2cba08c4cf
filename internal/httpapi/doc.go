// Package httpapi serves dure's HTTP/JSON API under /v1/ (docs/api.md): it
// decodes and validates requests (bad input never reaches the replicated
// state), calls the server, and encodes answers. One function, writeError,
// maps errors to HTTP statuses. Reads come from state snapshots; watches are
// blocking queries (?index=N&wait=D) on the state store's watch channels.
//
// It owns no state and runs no loops of its own.
package httpapi
