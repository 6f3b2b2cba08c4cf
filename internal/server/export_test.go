package server

import "time"

// ApplyRaw hands raw entry bytes to raft, as a leader running another
// version of dure would write them. Tests only.
func (s *Server) ApplyRaw(b []byte) error { return s.raft.Apply(b, 10*time.Second).Error() }

// TakeSnapshot asks raft for a snapshot now. Tests only.
func (s *Server) TakeSnapshot() error { return s.raft.Snapshot().Error() }
