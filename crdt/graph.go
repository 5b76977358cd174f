// Change graphs without the Automerge core.
//
// A Doc materialises its document in the Automerge core, which costs far
// more memory than the changes themselves (about 450 bytes per character of
// text and 1.5 KB per change). A sync server does not need the document:
// it only relays and stores changes. Graph keeps one document's change
// graph (each change's hash, dependencies and raw chunk, exactly as
// received) and GraphSync speaks Automerge sync protocol version 1 over it,
// so a server can sync with Automerge peers without ever loading the
// document.
//
// A Graph trusts nothing it is given: chunk framing and checksums are
// verified (checkChunks) and the hash of every change is computed here. It
// does not look inside the operations of a change, so a well-formed change
// with inconsistent operations is stored and relayed (peers running the
// Automerge core may then reject or choke on it; see Untrusted input in the
// package documentation).
//
// Graph and GraphSync are not safe for concurrent use: like a Doc, one
// goroutine owns a Graph and every GraphSync made for it.

package crdt

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"
)

// Graph is one document's change graph: every change's hash, dependencies
// and raw chunk, without the Automerge core. Changes join in causal order;
// a change whose dependencies are missing waits in a queue, as in
// Automerge, until they arrive.
type Graph struct {
	// Node i is the i-th change to join; its dependencies joined earlier,
	// so index order is a topological order.
	hashes []Hash
	raws   [][]byte
	// deps[depStart[i]:depStart[i+1]] are the indexes of node i's
	// dependencies (depStart has one more entry than there are nodes).
	deps     []int32
	depStart []uint32
	index    map[Hash]int32

	heads []Hash // sorted as Automerge sorts them (bytewise)
	bytes int

	// The queue: changes waiting for dependencies, and for each missing
	// hash the queued changes that wait for it.
	queued  map[Hash]*queuedChange
	waiting map[Hash][]*queuedChange
}

type queuedChange struct {
	hash    Hash
	deps    []Hash
	raw     []byte
	missing int // dependencies not yet in the graph (0: it can join)
}

// maxGraphChanges keeps node indexes within int32.
const maxGraphChanges = 1<<31 - 1

// NewGraph returns an empty change graph.
func NewGraph() *Graph {
	return &Graph{index: make(map[Hash]int32), depStart: []uint32{0}}
}

// Add adds the changes in data, a sequence of change chunks (types 1 and
// 2, as Doc.ChangesSince, CommitInfo.Bytes and SyncResult.Changes give
// them). Changes whose dependencies are all present join the graph; the
// others wait until their dependencies arrive. Changes already held are
// ignored. It returns the hashes that joined, in causal order (including
// earlier queued changes released by this call). Bad bytes or a document
// chunk give an error wrapping ErrCorrupt and leave g unchanged.
func (g *Graph) Add(data []byte) ([]Hash, error) {
	cs, err := checkChunks(data)
	if err != nil {
		return nil, err
	}
	if !onlyChanges(cs, data) {
		return nil, fmt.Errorf("%w: not only change chunks", ErrCorrupt)
	}
	return g.addChecked(cs)
}

// addChecked adds changes checkChunks has verified. It fails (changing
// nothing) only when the graph would outgrow its indexes.
func (g *Graph) addChecked(cs []changeChunk) ([]Hash, error) {
	if len(g.hashes)+len(g.queued)+len(cs) > maxGraphChanges {
		return nil, fmt.Errorf("%w: too many changes", ErrCorrupt)
	}
	var added []Hash
	for i := range cs {
		c := &cs[i]
		h := Hash(c.hash)
		if _, ok := g.index[h]; ok {
			continue
		}
		if _, ok := g.queued[h]; ok {
			continue
		}
		q := &queuedChange{hash: h, deps: fromAMHashes(c.deps), raw: bytes.Clone(c.raw)}
		for _, d := range q.deps {
			if _, ok := g.index[d]; !ok {
				q.missing++
			}
		}
		if q.missing == 0 {
			added = g.join(q, added)
			continue
		}
		if g.queued == nil {
			g.queued = make(map[Hash]*queuedChange)
			g.waiting = make(map[Hash][]*queuedChange)
		}
		g.queued[h] = q
		g.bytes += len(q.raw)
		for _, d := range uniqueMissing(g, q.deps) {
			g.waiting[d] = append(g.waiting[d], q)
		}
	}
	return added, nil
}

// uniqueMissing returns the distinct dependencies not in the graph (a
// change may name a dependency twice; it must wait for it once).
func uniqueMissing(g *Graph, deps []Hash) []Hash {
	var out []Hash
	for _, d := range deps {
		if _, ok := g.index[d]; !ok && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// join adds q, whose dependencies are all present, and then every queued
// change it completes.
func (g *Graph) join(q *queuedChange, added []Hash) []Hash {
	stack := []*queuedChange{q}
	for len(stack) > 0 {
		q := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := g.queued[q.hash]; ok {
			delete(g.queued, q.hash)
			g.bytes -= len(q.raw)
		}
		g.insert(q)
		added = append(added, q.hash)
		for _, w := range g.waiting[q.hash] {
			// Recount rather than count down: a change may name the
			// same dependency twice.
			w.missing = g.countMissing(w.deps)
			if w.missing == 0 {
				stack = append(stack, w)
			}
		}
		delete(g.waiting, q.hash)
	}
	return added
}

func (g *Graph) countMissing(deps []Hash) int {
	n := 0
	for _, d := range deps {
		if _, ok := g.index[d]; !ok {
			n++
		}
	}
	return n
}

// insert appends a node whose dependencies are all present.
func (g *Graph) insert(q *queuedChange) {
	idx := int32(len(g.hashes))
	g.hashes = append(g.hashes, q.hash)
	g.raws = append(g.raws, q.raw)
	for _, d := range q.deps {
		g.deps = append(g.deps, g.index[d])
	}
	g.depStart = append(g.depStart, uint32(len(g.deps)))
	g.index[q.hash] = idx
	g.bytes += len(q.raw)

	// The new change replaces its dependencies among the heads.
	heads := g.heads[:0]
	for _, h := range g.heads {
		if !slices.Contains(q.deps, h) {
			heads = append(heads, h)
		}
	}
	pos, _ := slices.BinarySearchFunc(heads, q.hash, compareHash)
	g.heads = slices.Insert(heads, pos, q.hash)
}

func compareHash(a, b Hash) int { return bytes.Compare(a[:], b[:]) }

func (g *Graph) depsOf(i int32) []int32 { return g.deps[g.depStart[i]:g.depStart[i+1]] }

// Heads returns the hashes of the changes nothing depends on, sorted as
// Automerge sorts them (Doc.Heads gives the same for the same changes).
func (g *Graph) Heads() []Hash { return slices.Clone(g.heads) }

// Has reports whether h is in the graph (queued changes are not).
func (g *Graph) Has(h Hash) bool {
	_, ok := g.index[h]
	return ok
}

// Len is the number of changes in the graph (not counting queued ones).
func (g *Graph) Len() int { return len(g.hashes) }

// Queued is the number of changes waiting for dependencies.
func (g *Graph) Queued() int { return len(g.queued) }

// Bytes is the size of the raw change chunks held, queued ones included.
func (g *Graph) Bytes() int { return g.bytes }

// Change returns the raw chunk of change h as it was received. The caller
// must not modify it.
func (g *Graph) Change(h Hash) ([]byte, bool) {
	i, ok := g.index[h]
	if !ok {
		return nil, false
	}
	return g.raws[i], true
}

// MissingDeps returns, sorted, the hashes needed to complete the graph as
// Automerge's get_missing_deps reports them: the dependencies of queued
// changes that are neither queued nor in the graph, and those of heads that
// are neither.
func (g *Graph) MissingDeps(heads []Hash) []Hash {
	var out []Hash
	consider := func(h Hash) {
		if _, ok := g.index[h]; ok {
			return
		}
		if _, ok := g.queued[h]; ok {
			return
		}
		out = append(out, h)
	}
	for d := range g.waiting {
		consider(d)
	}
	for _, h := range heads {
		consider(h)
	}
	return sortUnique(out)
}

// missingFrom returns, sorted, the first hashes on each path back from
// start that are neither in the graph nor queued, looking through queued
// changes: what must arrive for the graph to reach start. Unlike
// MissingDeps it ignores queued changes that start does not lead to (as
// automerge now does for sync: orphans from elsewhere must not block a
// session).
func (g *Graph) missingFrom(start []Hash) []Hash {
	var out []Hash
	seen := make(map[Hash]bool)
	stack := slices.Clone(start)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if g.Has(h) || seen[h] {
			continue
		}
		seen[h] = true
		if q, ok := g.queued[h]; ok {
			stack = append(stack, q.deps...)
		} else {
			out = append(out, h)
		}
	}
	return sortUnique(out)
}

func sortUnique(hs []Hash) []Hash {
	slices.SortFunc(hs, compareHash)
	return slices.Compact(hs)
}

// ChangesSince returns the raw chunks of every change that is not an
// ancestor of heads nor in heads, in causal order. Hashes the graph does
// not know are ignored, as automerge-go's Doc.Changes ignores them; when
// none is known (or heads is empty) that means the whole history. The
// caller must not modify the chunks.
func (g *Graph) ChangesSince(heads []Hash) [][]byte {
	idx := g.since(heads)
	out := make([][]byte, len(idx))
	for i, n := range idx {
		out[i] = g.raws[n]
	}
	return out
}

// HashesSince is ChangesSince's list of hashes.
func (g *Graph) HashesSince(heads []Hash) []Hash {
	idx := g.since(heads)
	out := make([]Hash, len(idx))
	for i, n := range idx {
		out[i] = g.hashes[n]
	}
	return out
}

// knownIndexes returns the indexes of the hashes of hs in the graph.
func (g *Graph) knownIndexes(hs []Hash) []int32 {
	var out []int32
	for _, h := range hs {
		if i, ok := g.index[h]; ok {
			out = append(out, i)
		}
	}
	return out
}

// since returns, in increasing (causal) order, the indexes of the nodes
// that are not ancestors-or-equal of the known hashes of heads.
//
// It walks back from both our heads and theirs in decreasing index order
// (a max-heap), marking what theirs reach; a node's descendants all have
// higher indexes, so its mark is final when it is popped. The walk stops
// when only their nodes remain queued: everything below is theirs too.
// So the cost follows the changes since heads, not the history.
func (g *Graph) since(heads []Hash) []int32 {
	theirs := g.knownIndexes(heads)
	if len(theirs) == 0 {
		out := make([]int32, len(g.hashes))
		for i := range out {
			out[i] = int32(i)
		}
		return out
	}
	w := walker{mark: make(map[int32]bool)} // true: theirs
	for _, t := range theirs {
		w.push(t, true)
	}
	for _, h := range g.heads {
		w.push(g.index[h], false)
	}
	var out []int32
	for w.ours > 0 {
		n, isTheirs := w.pop()
		if !isTheirs {
			out = append(out, n)
		}
		for _, d := range g.depsOf(n) {
			w.push(d, isTheirs)
		}
	}
	slices.Reverse(out)
	return out
}

// ancestorsOf reports which of the nodes in set are ancestors-or-equal of
// the nodes from; it walks no lower than the smallest index in set.
func (g *Graph) ancestorsOf(from []int32, set map[int32]struct{}) []int32 {
	if len(set) == 0 || len(from) == 0 {
		return nil
	}
	lowest := int32(maxGraphChanges)
	for n := range set {
		lowest = min(lowest, n)
	}
	var out []int32
	w := walker{mark: make(map[int32]bool)}
	for _, f := range from {
		w.push(f, true)
	}
	for w.h.Len() > 0 {
		n, _ := w.pop()
		if n < lowest {
			break // the heap is a max-heap: everything left is lower
		}
		if _, ok := set[n]; ok {
			out = append(out, n)
		}
		for _, d := range g.depsOf(n) {
			w.push(d, true)
		}
	}
	return out
}

// walker is a max-heap of node indexes, each marked theirs or ours
// (theirs wins), counting the queued nodes marked ours.
type walker struct {
	h    indexHeap
	mark map[int32]bool
	ours int
}

func (w *walker) push(n int32, theirs bool) {
	m, seen := w.mark[n]
	switch {
	case !seen:
		w.mark[n] = theirs
		heap.Push(&w.h, n)
		if !theirs {
			w.ours++
		}
	case theirs && !m:
		w.mark[n] = true // still queued: descendants are popped first
		w.ours--
	}
}

func (w *walker) pop() (int32, bool) {
	n := heap.Pop(&w.h).(int32)
	theirs := w.mark[n]
	if !theirs {
		w.ours--
	}
	return n, theirs
}

type indexHeap []int32

func (h indexHeap) Len() int           { return len(h) }
func (h indexHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h indexHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *indexHeap) Push(x any)        { *h = append(*h, x.(int32)) }
func (h *indexHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
