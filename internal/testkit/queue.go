package testkit

import "github.com/durehq/dure/internal/model"

// Queue builds a queue with the given name (queues carry no policy yet).
func Queue(name string) *model.Queue { return &model.Queue{Name: name} }
