package state

// SetFeedLen sets how many writes the job change feed keeps.
func SetFeedLen(s *Store, n int) { s.feedMaxLen = n }
