package crdt

import (
	"bytes"
	"fmt"
	"slices"
)

// GraphSync is one side of an Automerge sync session (protocol version 1,
// message type 0x42) over a Graph: one per peer per document. It follows
// automerge's generate_sync_message and receive_sync_message, so any
// Automerge peer (automerge-go's SyncState, JavaScript Automerge 3, which
// falls back to version 1 for such a peer) syncs with it. Several sessions
// may share one Graph (a server relaying between peers); they belong to
// the goroutine that owns it.
//
// Differences from automerge, all to keep a session live and bounded:
//   - The "in flight" flag is cleared by every received message, as in
//     automerge since 0.5.2 (automerge-go's core clears it only on an
//     acknowledgement, which can leave both sides silent after a Bloom
//     filter false positive). On top of that, a session that waits for an
//     acknowledgement still sends once when what it needs has changed
//     since its last message.
//   - What we ask for ("need") is only what is missing to reach the
//     peer's heads (automerge's newer missing_deps_from): changes queued
//     from other peers must not block this session.
//   - The "reset" message (their first "have" names a change we lack) is
//     sent once per received message, not on every Generate, so a caller
//     that loops on Generate cannot spin.
//   - Duplicate hashes in the peer's "need" are sent once.
type GraphSync struct {
	g *Graph

	sharedHeads   []Hash // heads both sides are known to have
	lastSentHeads []Hash
	theirHeads    []Hash // nil until their first message (see heard)
	theirNeed     []Hash
	theirHave     []syncHave
	heard         bool               // a message from the peer has arrived
	sent          map[int32]struct{} // changes sent and not known to be acknowledged
	inFlight      bool
	haveResponded bool
	lastNeed      []Hash // the need of our last message
	resetSent     bool   // a reset answered the last received message
}

type syncHave struct {
	lastSync []Hash
	bloom    *bloomFilter
}

// NewGraphSync starts a sync session over g with a peer it knows nothing
// about.
func NewGraphSync(g *Graph) *GraphSync {
	return &GraphSync{g: g, sent: make(map[int32]struct{})}
}

// TheirHeads returns the heads the peer advertised in its last message
// (nil before it sent one).
func (s *GraphSync) TheirHeads() []Hash { return slices.Clone(s.theirHeads) }

// SharedHeads returns the heads both sides are known to have.
func (s *GraphSync) SharedHeads() []Hash { return slices.Clone(s.sharedHeads) }

// Generate returns the next message for the peer, or false when there is
// nothing to send until the graph changes or a message arrives. Call it
// until it returns false.
func (s *GraphSync) Generate() ([]byte, bool) {
	g := s.g
	ourHeads := g.Heads()

	if s.heard && len(s.theirHave) > 0 {
		for _, h := range s.theirHave[0].lastSync {
			if !g.Has(h) {
				// They believe we share changes we do not have (we lost
				// data, or they confused us with another peer): ask for
				// everything, once per message of theirs.
				if s.resetSent {
					return nil, false
				}
				s.resetSent = true
				return encodeSyncV1(ourHeads, nil, []syncHave{{}}, nil), true
			}
		}
	}

	var ourNeed []Hash
	if s.heard {
		ourNeed = g.missingFrom(s.theirHeads)
	}
	// Quiet when nothing changed since our last message and it is still
	// unanswered (or answered and we agree), unless we now need something
	// else: then the peer must hear it even while we wait (the liveness
	// fix, see the type's comment).
	quietable := s.haveResponded && slices.Equal(s.lastSentHeads, ourHeads)
	needChanged := len(ourNeed) > 0 && !slices.Equal(ourNeed, s.lastNeed)
	if quietable && s.inFlight && !needChanged {
		return nil, false
	}
	var toSend []int32
	if s.heard {
		for _, n := range s.hashesToSend() {
			if _, done := s.sent[n]; !done {
				toSend = append(toSend, n)
			}
		}
	}
	if quietable && len(toSend) == 0 && s.heard && slices.Equal(s.theirHeads, ourHeads) {
		return nil, false
	}

	var ourHave []syncHave
	if allIn(ourNeed, s.theirHeads) {
		// Only when what we need is among their heads: otherwise the
		// filter, built since the shared heads, would hide from them
		// that we lack older changes.
		ourHave = []syncHave{{
			lastSync: slices.Clone(s.sharedHeads),
			bloom:    newBloom(g.HashesSince(s.sharedHeads)),
		}}
	}

	s.haveResponded = true
	s.lastSentHeads = ourHeads
	s.lastNeed = ourNeed
	changes := make([][]byte, len(toSend))
	for i, n := range toSend {
		s.sent[n] = struct{}{}
		changes[i] = g.raws[n]
	}
	s.inFlight = true
	return encodeSyncV1(ourHeads, ourNeed, ourHave, changes), true
}

// hashesToSend returns the nodes the peer lacks by its last message: those
// it asked for, then those since its last-sync heads that none of its Bloom
// filters contains, with everything that depends on them (if the peer
// lacks a change, it lacks its descendants too), in causal order.
func (s *GraphSync) hashesToSend() []int32 {
	g := s.g
	var need []int32
	for _, h := range s.theirNeed {
		if i, ok := g.index[h]; ok && !slices.Contains(need, i) {
			need = append(need, i)
		}
	}
	if len(s.theirHave) == 0 {
		return need
	}
	var lastSync []Hash
	for _, h := range s.theirHave {
		lastSync = append(lastSync, h.lastSync...)
	}
	since := g.since(lastSync)
	send := make(map[int32]bool)
	for _, n := range since {
		// Causal order: a node's dependencies were decided before it.
		missing := true
		for _, h := range s.theirHave {
			if h.bloom.contains(&g.hashes[n]) {
				missing = false
				break
			}
		}
		if !missing {
			for _, d := range g.depsOf(n) {
				if send[d] {
					missing = true
					break
				}
			}
		}
		if missing {
			send[n] = true
		}
	}
	out := make([]int32, 0, len(need)+len(send))
	for _, n := range need {
		if !send[n] {
			out = append(out, n)
		}
	}
	for _, n := range since {
		if send[n] {
			out = append(out, n)
		}
	}
	return out
}

// Receive applies a message from the peer: its changes join the graph (or
// wait for their dependencies) and the session learns what the peer has.
// It returns the hashes that joined the graph, in causal order. Bad bytes,
// including version-2 messages, give ErrInvalidSync and change nothing.
// The capability trailer of JavaScript Automerge 3 is ignored.
func (s *GraphSync) Receive(msg []byte) ([]Hash, error) {
	m, err := decodeSyncV1(msg)
	if err != nil {
		return nil, err
	}
	g := s.g
	before := g.Heads()
	var added []Hash
	if len(m.changes) > 0 {
		if added, err = g.addChecked(m.changes); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSync, err)
		}
		s.sharedHeads = advanceHeads(before, g.heads, s.sharedHeads)
	}
	s.inFlight = false
	s.resetSent = false

	// What they have now they need not be sent again.
	for _, n := range g.ancestorsOf(g.knownIndexes(m.heads), s.sent) {
		delete(s.sent, n)
	}
	if len(m.changes) == 0 && slices.Equal(m.heads, before) {
		s.lastSentHeads = slices.Clone(m.heads)
	}
	var known []Hash
	for _, h := range m.heads {
		if g.Has(h) {
			known = append(known, h)
		}
	}
	if len(known) == len(m.heads) {
		s.sharedHeads = slices.Clone(m.heads)
		if len(m.heads) == 0 {
			// The peer has nothing (it may have lost everything): start
			// over so that it gets everything again.
			s.lastSentHeads = nil
			clear(s.sent)
		}
	} else {
		s.sharedHeads = sortUnique(append(slices.Clone(s.sharedHeads), known...))
	}
	s.theirHave = m.haves
	s.theirHeads = m.heads
	s.theirNeed = m.need
	s.heard = true
	return added, nil
}

// advanceHeads moves the shared heads over the changes just received: our
// new heads that came with them, and the old shared heads that are still
// heads.
func advanceHeads(oldHeads, newHeads, shared []Hash) []Hash {
	var out []Hash
	for _, h := range newHeads {
		if !slices.Contains(oldHeads, h) {
			out = append(out, h)
		}
	}
	for _, h := range shared {
		if slices.Contains(newHeads, h) {
			out = append(out, h)
		}
	}
	return sortUnique(out)
}

func allIn(hs, set []Hash) bool {
	for _, h := range hs {
		if !slices.Contains(set, h) {
			return false
		}
	}
	return true
}

type syncV1 struct {
	heads, need []Hash
	haves       []syncHave
	changes     []changeChunk
}

// decodeSyncV1 decodes and checks a version-1 message completely (framing,
// Bloom filters, the checksum of every change) before anything uses it.
// The structure is parseSyncMessage's; the Bloom filters are copied, the
// change chunks alias msg.
func decodeSyncV1(msg []byte) (syncV1, error) {
	hdr, err := parseSyncMessage(msg)
	if err != nil {
		return syncV1{}, err
	}
	if msg[0] != 0x42 {
		return syncV1{}, fmt.Errorf("%w: message type 0x%02x: only version 1 (0x42) is supported", ErrInvalidSync, msg[0])
	}
	// parseSyncMessage checked the framing read again here.
	r := &byteReader{b: msg, off: 1}
	m := syncV1{changes: hdr.changes}
	m.heads, _ = r.hashes()
	m.need, _ = r.hashes()
	nHave, _ := r.count(2)
	for i := 0; i < nHave; i++ {
		last, _ := r.hashes()
		raw, _ := r.chunk()
		bf, err := decodeBloom(raw)
		if err != nil {
			return syncV1{}, fmt.Errorf("%w (have %d)", err, i)
		}
		bf.bits = bytes.Clone(bf.bits)
		m.haves = append(m.haves, syncHave{lastSync: last, bloom: bf})
	}
	// Each entry must hold change chunks only (checkChunks accepts and
	// skips document chunks).
	n, _ := r.count(1)
	entries, chunks := 0, 0
	for i := 0; i < n; i++ {
		c, _ := r.chunk()
		entries += len(c)
	}
	for _, c := range hdr.changes {
		chunks += len(c.raw)
	}
	if entries != chunks {
		return syncV1{}, fmt.Errorf("%w: a change entry holds a document chunk", ErrInvalidSync)
	}
	return m, nil
}

// encodeSyncV1 builds a version-1 message (see parseSyncMessage for the
// layout). Heads and need must be sorted, as automerge sends them. No
// capability trailer: we do not speak version 2.
func encodeSyncV1(heads, need []Hash, haves []syncHave, changes [][]byte) []byte {
	n := 8 + 32*(len(heads)+len(need))
	for _, h := range haves {
		n += 10 + 32*len(h.lastSync)
		if h.bloom != nil {
			n += 15 + len(h.bloom.bits)
		}
	}
	for _, c := range changes {
		n += 5 + len(c)
	}
	out := make([]byte, 0, n)
	out = append(out, 0x42)
	out = appendHashes(out, heads)
	out = appendHashes(out, need)
	out = appendUleb(out, uint64(len(haves)))
	var bloom []byte
	for _, h := range haves {
		out = appendHashes(out, h.lastSync)
		bloom = h.bloom.appendTo(bloom[:0])
		out = appendUleb(out, uint64(len(bloom)))
		out = append(out, bloom...)
	}
	out = appendUleb(out, uint64(len(changes)))
	for _, c := range changes {
		out = appendUleb(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}
