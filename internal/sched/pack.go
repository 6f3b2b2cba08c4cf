package sched

// Packing lookahead (PolicyDure's backfill phase), after Shmueli and
// Feitelson's LOS ("Backfilling with lookahead to optimize the packing of
// parallel jobs", JPDC 2005). Greedy backfill in priority order takes the
// first job that fits, which can leave free room that a different choice
// of jobs would have filled. Instead, among the first packLookahead
// candidates, the set that uses the most of the free room now goes first
// (in its own order), then the rest. The arithmetic is on cluster-wide
// totals of one resource (GPUs when most candidates use them, else cores):
//
//	F = free now                 E = F − the room reservations will take back
//	maximize Σ size over a set with Σ size ≤ F and Σ size of its long jobs ≤ E
//
// where a job is long when it would still run when a reservation starts.
// The two bounds are filled one after the other (long jobs within E first,
// then short ones in what is left), each a 0/1 knapsack that prefers
// earlier candidates among equal fills. It only orders the candidates:
// each one is still placed for real and must delay no reservation.

// packLookahead is how many backfill candidates the lookahead weighs.
const packLookahead = 50

// packUnits bounds the knapsack's capacity: sizes are counted in units of
// ⌈F/packUnits⌉ so that a large cluster costs no more than a small one.
const packUnits = 512

// packFirst moves the best-filling set of candidates first, in place (tmp
// is scratch, at least as long as order).
func (d *dure) packFirst(order, tmp []backfillItem) {
	if len(order) < 2 {
		return
	}
	pl := d.pl
	gpus := 0
	for _, it := range order[:min(len(order), packLookahead)] {
		if gangNeed(d.facts[it.fi].j).gpu > 0 {
			gpus++
		}
	}
	byGPU := 2*gpus > min(len(order), packLookahead)
	dim := func(v *vec) int64 { return v.cpu }
	if byGPU {
		dim = func(v *vec) int64 { return v.gpu }
	}
	var free int64
	for i := range pl.p.nodes {
		// dim, written out: a vec passed to it would escape, one
		// allocation per node.
		nd := &pl.p.nodes[i]
		x := nd.cpu
		if byGPU {
			x = min(nd.gpu, nd.freeSlots)
		}
		free += max(x, 0)
	}
	if free <= 0 {
		return
	}
	var back int64
	for _, n := range pl.tl.resNodes {
		def, _ := pl.tl.deficit(n, pl.nowN, pl.nowN+maxWindow)
		back += dim(&def)
	}
	// Count in the largest unit that divides the free room and the sizes
	// (whole cores, usually), times what keeps the capacity in packUnits.
	g := free
	for _, it := range order[:min(len(order), 4*packLookahead)] {
		need := gangNeed(d.facts[it.fi].j)
		if x := dim(&need); x > 0 {
			g = gcd(g, x)
		}
	}
	unit := g * ((free/g + packUnits - 1) / packUnits)
	capAll := free / unit
	capLong := max(free-back, 0) / unit

	type item struct {
		at   int // index in order
		size int64
	}
	var long, short []item
	for i, it := range order {
		if len(long)+len(short) == packLookahead {
			break
		}
		need := gangNeed(d.facts[it.fi].j)
		size := (dim(&need) + unit - 1) / unit
		if size <= 0 || size > capAll {
			continue
		}
		if pl.tl.acquireIn(pl.nowN, pl.nowN+it.run) {
			if size <= capLong {
				long = append(long, item{i, size})
			}
			continue
		}
		short = append(short, item{i, size})
	}
	if len(long)+len(short) < 2 {
		return
	}
	end := 0 // the candidates weighed are all in order[:end]
	for _, x := range long {
		end = max(end, x.at+1)
	}
	for _, x := range short {
		end = max(end, x.at+1)
	}
	chosen := make([]bool, end)
	var used int64
	knapsack(len(long), func(k int) int64 { return long[k].size }, capLong, func(k int) {
		chosen[long[k].at] = true
		used += long[k].size
	})
	knapsack(len(short), func(k int) int64 { return short[k].size }, capAll-used, func(k int) {
		chosen[short[k].at] = true
	})
	// A stable partition of order[:end], the chosen first.
	n, m := 0, 0
	for i, it := range order[:end] {
		if chosen[i] {
			order[n] = it
			n++
		} else {
			tmp[m] = it
			m++
		}
	}
	copy(order[n:end], tmp[:m])
}

// knapsack chooses among n items (sizes size(k) > 0) a set of the largest
// total at most capacity, preferring earlier items among equal totals, and
// calls take for each chosen item.
func knapsack(n int, size func(int) int64, capacity int64, take func(int)) {
	if n == 0 || capacity <= 0 {
		return
	}
	// by[k][x]: reaching total x with the first k+1 items takes item k
	// (reachable without it is preferred, so later items are used only
	// when they add to the total).
	reach := make([]bool, capacity+1)
	reach[0] = true
	by := make([][]bool, n)
	for k := 0; k < n; k++ {
		by[k] = make([]bool, capacity+1)
		s := size(k)
		for x := capacity; x >= s; x-- {
			if !reach[x] && reach[x-s] {
				reach[x] = true
				by[k][x] = true
			}
		}
	}
	x := capacity
	for !reach[x] {
		x--
	}
	for k := n - 1; k >= 0 && x > 0; k-- {
		if by[k][x] {
			take(k)
			x -= size(k)
		}
	}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
