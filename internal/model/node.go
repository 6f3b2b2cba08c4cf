package model

import "time"

// NodeStatus is the liveness of a node as the control plane sees it.
type NodeStatus string

const (
	NodeReady NodeStatus = "ready" // heartbeating
	NodeDown  NodeStatus = "down"  // missed its heartbeat deadline; its allocations were lost
)

// GPU is one device on a node as the agent discovered it.
type GPU struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid,omitempty"`
	Model       string `json:"model,omitempty"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
}

// Node is a worker machine running an agent.
type Node struct {
	Name     string            `json:"name"`
	Address  string            `json:"address"` // agent's HTTP address (logs are served from there)
	Capacity Resources         `json:"capacity"`
	GPUs     []GPU             `json:"gpus,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`

	Status NodeStatus `json:"status"`
	// Drain stops new placements; running work continues until it ends.
	Drain       bool   `json:"drain"`
	DrainReason string `json:"drain_reason,omitempty"`

	// AgentVersion is informative; SessionID changes every time the agent
	// process starts, so the server can tell a restart from a reconnect.
	AgentVersion string `json:"agent_version,omitempty"`
	SessionID    string `json:"session_id,omitempty"`

	RegisteredAt    time.Time `json:"registered_at"`
	StatusChangedAt time.Time `json:"status_changed_at"`
	StatusReason    string    `json:"status_reason,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Schedulable reports whether new work may be placed on the node.
func (n *Node) Schedulable() bool { return n.Status == NodeReady && !n.Drain }

// Copy returns a deep copy.
func (n *Node) Copy() *Node {
	c := *n
	c.Capacity = n.Capacity.Copy()
	c.GPUs = append([]GPU(nil), n.GPUs...)
	if n.Labels != nil {
		c.Labels = make(map[string]string, len(n.Labels))
		for k, v := range n.Labels {
			c.Labels[k] = v
		}
	}
	return &c
}
