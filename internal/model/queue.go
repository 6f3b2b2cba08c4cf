package model

// DefaultQueue is the queue jobs go to when they name none.
const DefaultQueue = "default"

// Queue is a named queue jobs are submitted to. Quotas, cohorts and fair
// share arrive with the scheduler issue; today a queue is a name and a
// priority offset.
type Queue struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}
