// Package api defines dure's HTTP/JSON wire types and a Go client for them.
// The CLI, the agent, the web UI's tests and users' own programs import it;
// it is the only way they talk to servers.
//
// Wire types are deliberately separate from internal/model: the server
// translates at its edge (internal/httpapi), so the domain can change without
// breaking clients. Everything under /v1/ is documented in docs/api.md.
package api
