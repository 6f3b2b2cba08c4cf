package sched

import (
	"time"

	"github.com/durehq/dure/internal/model"
)

// Scratch is memory one scheduling pass leaves to the next. A caller that
// schedules again and again (the server's loop, the simulator, dure bench
// sched) passes the same Scratch to every pass, so that a pass allocates
// little besides its Plan: the node states, shape indexes, timeline and
// per-job tables of a pass over 100,000 jobs are tens of megabytes, which
// the garbage collector would otherwise trace and free every pass.
//
// A Scratch holds no input of a pass: every buffer is written before it is
// read, and the plan is the same with a fresh Scratch or a used one. The
// plan never points into it. It keeps about as much as the largest pass
// needed (about 90 MB for 100,000 pending jobs on 10,000 nodes). The zero
// value is ready; a Scratch is used by one pass at a time.
type Scratch struct {
	// The present state (buildNodes).
	nodes     []nodeState
	ready     []*model.Node
	allocNode []int32
	byName    map[string]int32
	// Shape indexes and future states' nodes given back (pass.recycle),
	// for the next pass or the next future state to take.
	indexes []*shapeIndex
	rooms   []*roomTable
	clones  [][]nodeState
	// The timeline of live allocations' releases and of events added.
	tl timeline
	// groupFacts' memo and shapeOf's table, and the epochs of the passes
	// that last took them.
	groups     *[groupMemoSize]groupMemo
	groupEpoch uint32
	front      *[frontSize]frontShape
	frontEpoch uint32
	// PolicyDure's per-job tables (dure.gather, scheduleDure, planner).
	facts       []jobFacts
	ordered     []jobFacts
	keys        []jobKey
	keyBuf      []jobKey
	jobs        []*model.Job
	byUser      []queuedJob
	items, tmp  []backfillItem
	later       []laterReason
	allocQ      []*qnode
	releaseKeys []releaseKey
	relBuf      []releaseKey
	amounts     []vec
	fill        []int32
	// placements is how many placements the last plan had: the next
	// plan's list starts with room for as many.
	placements int
}

// Schedule is the package's Schedule, reusing sc's memory.
func (sc *Scratch) Schedule(s *Snapshot, now time.Time, cfg Config) *Plan {
	return schedule(s, now, cfg, sc)
}

// frontTable hands a pass shapeOf's table and a fresh epoch (epochTable).
func (sc *Scratch) frontTable() (*[frontSize]frontShape, uint32) {
	return epochTable(&sc.front, &sc.frontEpoch)
}

// groupMemo hands a pass the groupFacts table and a fresh epoch.
func (sc *Scratch) groupMemo() (*[groupMemoSize]groupMemo, uint32) {
	return epochTable(&sc.groups, &sc.groupEpoch)
}

// epochTable returns the table *t (made on first use) and the next epoch:
// entries a pass writes carry its epoch, so those of earlier passes read
// as empty and nothing is cleared, but when the epoch wraps around.
func epochTable[T any](t **T, epoch *uint32) (*T, uint32) {
	if *t == nil {
		*t = new(T)
	}
	if *epoch++; *epoch == 0 {
		var empty T
		**t = empty
		*epoch = 1
	}
	return *t, *epoch
}

// maxRecycled bounds the future states' node tables a Scratch keeps (a
// pass uses a few at a time).
const maxRecycled = 4

// grab returns *buf resized to n, reallocated only when too short. The
// contents are stale: the caller writes every element before reading it.
func grab[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		// A quarter more: the next pass may well need a little more
		// (the running jobs grow from pass to pass).
		*buf = make([]T, n, n+n/4)
	}
	return (*buf)[:n]
}

// takeIndex returns a shape index over n nodes (heap empty; pos and key
// stale until rebuild).
func (sc *Scratch) takeIndex(n int) *shapeIndex {
	for len(sc.indexes) > 0 {
		ix := sc.indexes[len(sc.indexes)-1]
		sc.indexes[len(sc.indexes)-1] = nil
		sc.indexes = sc.indexes[:len(sc.indexes)-1]
		if len(ix.pos) == n {
			*ix = shapeIndex{heap: ix.heap[:0], pos: ix.pos, key: ix.key}
			return ix
		}
	}
	return &shapeIndex{heap: make([]int32, 0, n), pos: make([]int32, n), key: make([]int64, n)}
}

// takeRooms returns a room table over n nodes and d domains (room zero;
// dom and contrib stale until written).
func (sc *Scratch) takeRooms(n, d int) *roomTable {
	for len(sc.rooms) > 0 {
		t := sc.rooms[len(sc.rooms)-1]
		sc.rooms[len(sc.rooms)-1] = nil
		sc.rooms = sc.rooms[:len(sc.rooms)-1]
		if len(t.dom) == n {
			*t = roomTable{dom: t.dom, contrib: t.contrib, room: grab(&t.room, d)}
			clear(t.room)
			return t
		}
	}
	return &roomTable{dom: make([]int32, n), contrib: make([]int64, n), room: make([]int64, d)}
}

// takeNodes returns a node table of n entries (stale: the caller writes
// every one).
func (sc *Scratch) takeNodes(n int) []nodeState {
	for len(sc.clones) > 0 {
		c := sc.clones[len(sc.clones)-1]
		sc.clones[len(sc.clones)-1] = nil
		sc.clones = sc.clones[:len(sc.clones)-1]
		if cap(c) >= n {
			return c[:n]
		}
	}
	return make([]nodeState, n)
}

// recycle gives a future state's node table and p's shape indexes back to
// sc: p is not used again.
func (p *pass) recycle(sc *Scratch, nodes bool) {
	for _, ix := range p.indexes {
		ix.owner.idx = nil
		ix.owner = nil
		if len(sc.indexes) < 2*maxIndexes(len(ix.pos)) {
			sc.indexes = append(sc.indexes, ix)
		}
	}
	p.indexes = nil
	for _, t := range p.roomList {
		if len(sc.rooms) < maxRoomTables {
			t.s = nil
			sc.rooms = append(sc.rooms, t)
		}
	}
	p.roomList, p.rooms = nil, nil
	if nodes && len(sc.clones) < maxRecycled {
		sc.clones = append(sc.clones, p.nodes)
		p.nodes = nil
	}
}
