package repo

import (
	"bytes"
	"cmp"
	"slices"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// The direct path. Automerge's sync session costs time proportional to the
// document's history for every message it generates or receives (DESIGN.md).
// Once a peer's heads are known, the owner skips it: each flushed batch of
// new changes goes to every such peer as one crdt.DirectMessage (cost: the
// size of the changes), and a message from the peer whose changes fit on
// what we have is applied with crdt.Doc.ApplyDirectly. Automerge's session
// stays for what needs its Bloom filters: first contact, a peer that has
// changes we lack or asks for some, and any doubt. Every decision below is
// conservative: when unsure, the peer goes back to the session, whose
// messages are self-describing, so a stale session only costs duplicates.
//
// Per peer, has is a set of hashes whose ancestry the peer has, or will have
// once the messages already queued for it arrive (the connection is
// reliable and ordered). The owner keeps deltaBase, its sorted heads at the
// last distribution, and delta, the changes applied since. A peer whose has
// covers deltaBase gets delta (minus what it has) at the next flush and
// then has = our heads.

// directState is the owner's side of the direct path.
type directState struct {
	doc   *crdt.Doc   // the document base describes; another one resets all
	base  []crdt.Hash // sorted heads at the last distribution
	delta [][]byte    // change chunks applied since

	// all caches every change chunk of the document, in causal order, for
	// peers that start with nothing (every fresh client). Asking Automerge
	// for them costs a result that only a Go finalizer frees, about ten
	// times the changes' bytes: nine clients opening a 10,000-change
	// document at once held 100 MB of C memory. Built on first need, kept
	// up to date by distribute, dropped when the document leaves memory or
	// outgrows maxAllBytes. allBase is the sorted heads it covers (nil: no
	// cache).
	all      [][]byte
	allBase  []crdt.Hash
	allBytes int
}

// maxAllBytes bounds directState.all.
const maxAllBytes = 16 << 20

func (ds *directState) dropAll() { ds.all, ds.allBase, ds.allBytes = nil, nil, 0 }

// extendAll appends a distributed batch to the cache, which must then
// cover exactly heads; otherwise (a change that reached the document
// another way) the cache goes.
func (ds *directState) extendAll(changes []crdt.Change, heads []crdt.Hash) {
	if ds.allBase == nil {
		return
	}
	if !slices.Equal(ds.allBase, ds.base) {
		ds.dropAll()
		return
	}
	set := make(map[crdt.Hash]bool, len(ds.allBase)+len(changes))
	for _, h := range ds.allBase {
		set[h] = true
	}
	for _, c := range changes {
		for _, d := range c.Deps {
			delete(set, d)
		}
		set[c.Hash] = true
		ds.all = append(ds.all, c.Raw)
		ds.allBytes += len(c.Raw)
	}
	if len(set) != len(heads) || ds.allBytes > maxAllBytes {
		ds.dropAll()
		return
	}
	for _, h := range heads {
		if !set[h] {
			ds.dropAll()
			return
		}
	}
	ds.allBase = heads
}

// fullMessage is a direct message with every change, for a peer that has
// nothing, from the cache when it is current.
func (o *owner) fullMessage() ([]byte, error) {
	heads := o.heads()
	if o.doc.IsGraph() {
		// The graph is the change list already (no copy, no cgo).
		all, err := o.doc.ChangeChunks(nil)
		if err != nil {
			return nil, err
		}
		o.repo.net.stats.fullCached.Add(1)
		return crdt.DirectMessage(heads, all), nil
	}
	sorted := sortedHashes(heads)
	if o.direct.allBase == nil || !slices.Equal(o.direct.allBase, sorted) {
		all, err := o.doc.ChangeChunks(nil)
		if err != nil {
			return nil, err
		}
		o.direct.dropAll()
		n := 0
		for _, c := range all {
			n += len(c)
		}
		if n <= maxAllBytes {
			o.direct.all, o.direct.allBase, o.direct.allBytes = all, sorted, n
		}
		o.repo.net.stats.fullBuilt.Add(1)
		return crdt.DirectMessage(heads, all), nil
	}
	o.repo.net.stats.fullCached.Add(1)
	return crdt.DirectMessage(heads, o.direct.all), nil
}

// directSync resets the direct path when the document object was replaced
// (loaded, reloaded after a failed write, or history rewritten): every peer
// goes back to its Automerge session.
func (o *owner) directSync() {
	if o.direct.doc == o.doc {
		return
	}
	if o.direct.doc == nil && o.doc != nil && o.direct.base != nil &&
		slices.Equal(o.direct.base, sortedHashes(o.heads())) {
		// Loaded again after hibernating, unchanged: the peers' state
		// still holds; only their sessions start afresh.
		o.direct.doc = o.doc
		for _, pd := range o.peers {
			if pd.ss == nil {
				pd.ss = crdt.NewSyncState(o.doc)
			}
		}
		return
	}
	replaced := o.direct.doc != nil
	o.direct.doc = o.doc
	o.direct.delta = nil
	o.direct.base = nil
	o.direct.dropAll()
	if o.doc != nil {
		o.direct.base = sortedHashes(o.heads())
	}
	for _, pd := range o.peers {
		pd.hasOK, pd.behind, pd.out = false, false, nil
		if o.doc != nil && (pd.ss == nil || replaced) {
			// A session bound to a replaced document object would
			// work on the old one.
			pd.ss = crdt.NewSyncState(o.doc)
		}
	}
}

// hibernate drops the document and the peers' sync sessions from memory
// when nothing but peers that have all of it holds it: no subscribers, no
// unsaved, unconfirmed or coalescing local work, and every peer on the
// direct path with nothing to send or answer. The owner and each peer's
// direct-path state (a few hashes) stay, so the document syncs on as before
// once something loads it again.
func (o *owner) hibernate() {
	if o.doc == nil || o.asleep || len(o.subs) > 0 || o.coalesce.active() || o.doc.HasUncommitted() ||
		len(o.pending) > 0 || len(o.local) > 0 || len(o.waiters) > 0 || len(o.findWaiters) > 0 ||
		len(o.syncWaiters) > 0 || len(o.direct.delta) > 0 || o.doc.HasQueued() || len(o.events) > 0 {
		return
	}
	o.directSync()
	heads := sortedHashes(o.heads())
	for p, pd := range o.peers {
		if !pd.hasOK || pd.behind || len(pd.out) > 0 || pd.push != nil || pd.unanswered || pd.request ||
			!containsAll(pd.has, heads) {
			return
		}
		if _, dirty := o.dirtyPeers[p]; dirty {
			return
		}
	}
	for _, pd := range o.peers {
		pd.ss = nil
	}
	o.direct.doc, o.direct.base = nil, heads
	o.direct.dropAll()
	o.doc, o.view, o.viewDoc = nil, nil, nil
	o.mutated()
	o.noteSize()
	o.setAsleep(true)
	o.repo.log.Debug("hibernating", "doc", o.id, "peers", len(o.peers))
}

// setAsleep records whether the document is hibernating, for Repo.Live.
func (o *owner) setAsleep(on bool) {
	if o.asleep == on {
		return
	}
	o.asleep = on
	o.sleeping.Store(on)
	if on {
		o.repo.released.Add(1)
		o.repo.hibernated.Add(1)
	} else {
		o.repo.hibernated.Add(-1)
	}
}

// distribute queues the changes applied since the last distribution for
// every peer on the direct path. It runs after they are durable.
func (o *owner) distribute() {
	o.directSync()
	if o.doc == nil || len(o.direct.delta) == 0 {
		return
	}
	heads := sortedHashes(o.heads())
	ok := !o.doc.HasQueued()
	var changes []crdt.Change
	for _, b := range o.direct.delta {
		if !ok {
			break
		}
		cs, err := crdt.SplitChanges(b)
		if err != nil {
			ok = false
		}
		changes = append(changes, cs...)
	}
	for _, pd := range o.peers {
		if !pd.hasOK || pd.behind {
			continue // the session, or a catch-up from has, sends everything
		}
		if !ok || !containsAll(pd.has, o.direct.base) {
			pd.demote()
			continue
		}
		pd.out = appendUnknown(pd.out, changes, pd.has)
		pd.has = heads
	}
	if ok {
		if !o.doc.IsGraph() {
			o.direct.extendAll(changes, heads)
		}
	} else {
		o.direct.dropAll()
	}
	o.direct.base = heads
	o.direct.delta = o.direct.delta[:0]
}

// demote makes p catch up from has, or, when changes are queued for it
// (has already counts them), go back to the session.
func (pd *peerDoc) demote() {
	if len(pd.out) > 0 {
		pd.hasOK, pd.out = false, nil
		return
	}
	pd.behind = true
}

// learnHeads records what a message from the peer told us. heads are the
// peer's heads; usable means every one of them is a change of ours and the
// peer asked for nothing.
func (o *owner) learnHeads(pd *peerDoc, heads []crdt.Hash, usable bool) {
	o.directSync()
	if !usable {
		pd.hasOK, pd.behind, pd.out = false, false, nil
		return
	}
	heads = sortedHashes(heads)
	switch {
	case !pd.hasOK:
		pd.has, pd.hasOK, pd.out = heads, true, nil
	case len(pd.has)+len(heads) > 64 && len(pd.out) == 0:
		pd.has = heads // bounded; a smaller has only costs a catch-up
	default:
		pd.has = unionSorted(pd.has, heads)
	}
	pd.behind = !containsAll(pd.has, o.direct.base)
}

// appendUnknown appends the changes the holder of has lacks: all but those
// in has and their ancestors within changes (in causal order).
func appendUnknown(out [][]byte, changes []crdt.Change, has []crdt.Hash) [][]byte {
	known := map[crdt.Hash]bool{}
	for _, h := range has {
		known[h] = true
	}
	skip := make([]bool, len(changes))
	for i := len(changes) - 1; i >= 0; i-- {
		if known[changes[i].Hash] {
			skip[i] = true
			for _, d := range changes[i].Deps {
				known[d] = true
			}
		}
	}
	for i, c := range changes {
		if !skip[i] {
			out = append(out, c.Raw)
		}
	}
	return out
}

func compareHash(a, b crdt.Hash) int { return bytes.Compare(a[:], b[:]) }

// containsAll reports whether sorted set a contains every element of sorted b.
func containsAll(a, b []crdt.Hash) bool {
	i := 0
	for _, h := range b {
		for i < len(a) && compareHash(a[i], h) < 0 {
			i++
		}
		if i == len(a) || a[i] != h {
			return false
		}
	}
	return true
}

// unionSorted merges two sorted sets.
func unionSorted(a, b []crdt.Hash) []crdt.Hash {
	out := make([]crdt.Hash, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.SortFunc(out, compareHash)
	return slices.Compact(out)
}

// generateDirect returns the next message for a peer on the direct path, or
// nil. It may send the peer back to its session (pd.hasOK false). Peers
// given the same queued chunks in one distribution share one encoding
// through shared (nil: no sharing).
func (o *owner) generateDirect(p *peer, pd *peerDoc, shared *directShare) []byte {
	heads := o.heads()
	sorted := sortedHashes(heads)
	var msg []byte
	switch {
	case pd.behind:
		var m []byte
		var err error
		if len(pd.has) == 0 {
			m, err = o.fullMessage()
		} else {
			m, err = o.doc.PushMessage(pd.has)
		}
		if err != nil {
			pd.hasOK, pd.behind = false, false
			return nil
		}
		msg, pd.has, pd.behind = m, sorted, false
	case len(pd.out) > 0:
		if shared != nil && sameChunks(pd.out, shared.out) {
			msg = shared.msg
		} else {
			msg = crdt.DirectMessage(heads, pd.out)
			if shared != nil {
				shared.out, shared.msg = pd.out, msg
			}
		}
		pd.out = nil
	case pd.unanswered && p.accepted:
		// A server answers every message, so that a client learns we have
		// its changes; not a change-less one from a peer that already has
		// our heads and was told them.
		if pd.lastEmpty && slices.Equal(pd.sentHeads, sorted) && containsAll(pd.has, sorted) {
			break
		}
		msg = crdt.DirectMessage(heads, nil)
	}
	pd.unanswered = false
	if msg != nil {
		pd.sent = true
		pd.sentHeads = sorted
	}
	return msg
}

// reapQuiet is how long a document must have been quiet before Repo.reap
// may make it hibernate.
const reapQuiet = time.Second

// reap keeps documents in memory under Config.MaxLiveDocuments: twice a
// second, when over, it asks the least recently active documents to
// hibernate (each does only if it can; see owner.hibernate).
func (r *Repo) reap() {
	defer close(r.reaperDone)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	type cand struct {
		o    *owner
		last int64
	}
	var cands []cand
	var trimmedAt time.Time
	var trimmedCount int64
	for {
		select {
		case <-r.reaperStop:
			return
		case <-t.C:
		}
		// Freed Automerge documents stay in the C allocator's arenas
		// until trimmed; do it after many left memory, at most every 5s.
		if n := r.released.Load(); n-trimmedCount >= 100 && time.Since(trimmedAt) >= 5*time.Second {
			crdt.ReleaseMemory()
			trimmedAt, trimmedCount = time.Now(), n
		}
		over := r.Live() - r.cfg.MaxLiveDocuments
		if over <= 0 {
			continue
		}
		cutoff := time.Now().Add(-reapQuiet).UnixNano()
		cands = cands[:0]
		r.mu.Lock()
		for _, o := range r.docs {
			if last := o.lastActive.Load(); last <= cutoff && !o.sleeping.Load() {
				cands = append(cands, cand{o, last})
			}
		}
		r.mu.Unlock()
		slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.last, b.last) })
		// Ask a few more than needed: some cannot hibernate, some already do.
		for i := 0; i < len(cands) && i < over+over/4+16; i++ {
			select {
			case cands[i].o.sleepReq <- struct{}{}:
			default:
			}
		}
	}
}
