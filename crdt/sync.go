package crdt

import (
	"fmt"
	"strings"

	"github.com/automerge/automerge-go"
)

// SyncState is one side of an Automerge sync session: one per peer per
// document. It belongs to the goroutine that owns its Doc.
//
// It speaks version 1 of the Automerge sync protocol (message type 0x42),
// the only one automerge-go knows. JavaScript Automerge 3 sends V1 to such
// a peer, followed by a capability trailer (02 02 84) that is accepted and
// ignored.
type SyncState struct {
	doc *Doc
	ss  *automerge.SyncState
	gs  *GraphSync // instead of ss for a graph-backed document

	// For stall recovery (see Generate): the last message received,
	// without its changes, and the heads it advertised.
	last       []byte
	theirHeads []Hash
	nudged     string // the missing heads a recovery message was sent for
}

// NewSyncState starts a sync session for d with a peer it knows nothing
// about.
func NewSyncState(d *Doc) *SyncState {
	if d.g != nil {
		return &SyncState{doc: d, gs: NewGraphSync(d.g)}
	}
	return &SyncState{doc: d, ss: automerge.NewSyncState(d.am)}
}

// LoadSyncState resumes a session saved by SyncState.Save (ErrInvalidSync
// on bad bytes).
func LoadSyncState(d *Doc, data []byte) (*SyncState, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty sync state", ErrInvalidSync)
	}
	if d.g != nil {
		// GraphSync keeps no state worth saving: the peer gets a
		// fresh session, which Automerge peers handle.
		return NewSyncState(d), nil
	}
	var ss *automerge.SyncState
	err := guard(ErrInvalidSync, "load sync state", func() (err error) {
		ss, err = automerge.LoadSyncState(d.am, data)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &SyncState{doc: d, ss: ss}, nil
}

// attach points the automerge sync state at the current inner document,
// which Rollback and LoadIncremental may have replaced.
func (s *SyncState) attach() { s.ss.Doc = s.doc.am }

// Generate returns the next message for the peer, or false when there is
// nothing to send until the document changes or a message arrives. Pending
// writes are committed first.
//
// It also works around a liveness bug of the Automerge sync protocol
// implementation: when a Bloom filter false positive made the peer keep back
// a change while our own sent changes are still unacknowledged, both sides
// fall silent with different heads (automerge-rs waits for an
// acknowledgement that never comes instead of sending its "need"). When
// automerge has nothing to send but the peer's last message advertised
// heads we do not have, Generate sends one extra message, built by a fresh
// session from that message, that asks for what is missing; at most once
// per set of missing heads, so two peers never ping-pong.
func (s *SyncState) Generate() ([]byte, bool) {
	noteForeign(changeCost)
	if err := s.doc.flush(); err != nil {
		return nil, false
	}
	if s.gs != nil {
		return s.gs.Generate()
	}
	s.attach()
	var out []byte
	_ = guard(ErrInvalidSync, "generate", func() error {
		if sm, ok := s.ss.GenerateMessage(); ok {
			out = sm.Bytes()
		}
		return nil
	})
	if out == nil {
		out = s.recover()
	}
	return out, out != nil
}

// noStallRecovery lets tests show the stall that recover works around.
var noStallRecovery bool

// recover returns a message asking for heads the peer advertised and we
// lack, or nil.
func (s *SyncState) recover() []byte {
	if s.last == nil || noStallRecovery {
		return nil
	}
	var missing []string
	for _, h := range s.theirHeads {
		if !s.doc.hasChange(automerge.ChangeHash(h)) {
			missing = append(missing, h.String())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	key := strings.Join(missing, ",")
	if key == s.nudged {
		return nil
	}
	s.nudged = key
	var out []byte
	_ = guard(ErrInvalidSync, "recover", func() error {
		fresh := automerge.NewSyncState(s.doc.am)
		if _, err := fresh.ReceiveMessage(s.last); err != nil {
			return err
		}
		if sm, ok := fresh.GenerateMessage(); ok {
			out = sm.Bytes()
		}
		return nil
	})
	return out
}

// Receive applies a message from the peer to the document. Pending writes
// are committed first. Bad bytes give ErrInvalidSync and leave the
// document unchanged.
func (s *SyncState) Receive(msg []byte) (SyncResult, error) {
	noteForeign(changeCost + len(msg))
	hdr, err := parseSyncMessage(msg)
	if err != nil {
		return SyncResult{}, err
	}
	if msg[0] != 0x42 {
		return SyncResult{}, fmt.Errorf("%w: message type 0x%02x: only version 1 (0x42) is supported", ErrInvalidSync, msg[0])
	}
	if err := s.doc.flush(); err != nil {
		return SyncResult{}, err
	}
	var res SyncResult
	fresh, nFresh := newChanges(s.doc, hdr.changes)
	if s.gs != nil {
		return s.receiveGraph(msg, hdr, fresh, nFresh)
	}
	err = guard(ErrInvalidSync, "receive", func() error {
		before := s.doc.amHeads()
		s.attach()
		s.doc.changed()
		if _, err := s.ss.ReceiveMessage(msg); err != nil {
			return err
		}
		res.Changed = !sameHeads(before, s.doc.amHeads())
		return nil
	})
	if err != nil {
		return SyncResult{}, err
	}
	res.Heads = hdr.heads
	if len(hdr.changes) > 0 {
		// The new changes exactly as they came, each a change chunk:
		// what automerge.SaveChanges of them gives, without another trip
		// through cgo.
		res.Changes, res.NChanges = fresh, nFresh
		s.doc.trackQueued(hdr.changes)
	}
	// Keep the message without its changes for Generate's stall recovery.
	s.last = append(append(s.last[:0], msg[:hdr.changesOff]...), 0)
	s.theirHeads = res.Heads
	s.nudged = ""
	return res, nil
}

// Save encodes the session so that it can be resumed with LoadSyncState
// (Automerge keeps only what is worth keeping: the peer's shared heads).
func (s *SyncState) Save() []byte {
	if s.gs != nil {
		return nil
	}
	var out []byte
	_ = guard(ErrInvalidSync, "save sync state", func() error {
		out = s.ss.Save()
		return nil
	})
	return out
}

// InspectSyncMessage decodes the header of a sync message without a
// document: the sender's heads and the number of changes it carries.
// Version 1 (0x42) and version 2 (0x43) messages are understood, and
// trailing bytes (JavaScript Automerge's capability trailer) are ignored.
func InspectSyncMessage(msg []byte) (heads []Hash, nChanges int, err error) {
	m, err := parseSyncMessage(msg)
	if err != nil {
		return nil, 0, err
	}
	return m.heads, m.nChanges, nil
}

type syncHeader struct {
	heads      []Hash
	need       int // hashes the sender asks for
	nChanges   int
	changesOff int // offset of the change count
	changes    []changeChunk
	// fromScratch: a "have" with no last-sync hashes, as the first
	// message of a new Automerge session says it.
	fromScratch bool
}

// parseSyncMessage checks the structure of a sync message:
//
//	type byte (0x42 or 0x43)
//	heads:   uleb128 count, count × 32-byte hash
//	need:    uleb128 count, count × 32-byte hash
//	have:    uleb128 count, count × (last-sync hashes as above, uleb128-length Bloom filter)
//	changes: uleb128 count, count × (uleb128 length, change chunk)
//	anything after that (capabilities) is ignored
//
// In V1 messages each change must be a change chunk with a valid checksum:
// automerge-go does not check them, and a corrupted change can crash the
// Rust core (see checkChunks).
func parseSyncMessage(b []byte) (syncHeader, error) {
	r := &byteReader{b: b}
	bad := func(what string) (syncHeader, error) {
		return syncHeader{}, fmt.Errorf("%w: %s at byte %d of %d", ErrInvalidSync, what, r.off, len(b))
	}
	if len(b) == 0 {
		return bad("empty message")
	}
	typ := r.byte()
	if typ != 0x42 && typ != 0x43 {
		return syncHeader{}, fmt.Errorf("%w: unknown message type 0x%02x", ErrInvalidSync, typ)
	}
	var h syncHeader
	heads, ok := r.hashes()
	if !ok {
		return bad("bad heads")
	}
	h.heads = heads
	need, ok := r.hashes()
	if !ok {
		return bad("bad need list")
	}
	h.need = len(need)
	nHave, ok := r.count(2)
	if !ok {
		return bad("bad have count")
	}
	for i := 0; i < nHave; i++ {
		last, ok := r.hashes()
		if !ok {
			return bad("bad have heads")
		}
		if _, ok := r.chunk(); !ok {
			return bad("bad Bloom filter")
		}
		if len(last) == 0 {
			h.fromScratch = true
		}
	}
	h.changesOff = r.off
	nChanges, ok := r.count(1)
	if !ok {
		return bad("bad change count")
	}
	for i := 0; i < nChanges; i++ {
		c, ok := r.chunk()
		if !ok {
			return bad("bad change")
		}
		if typ != 0x42 {
			continue // V2 entries are not plain change chunks; only counted
		}
		cs, err := checkChunks(c)
		if err != nil {
			return syncHeader{}, fmt.Errorf("%w: change %d: %w", ErrInvalidSync, i, err)
		}
		h.changes = append(h.changes, cs...)
	}
	h.nChanges = nChanges
	return h, nil
}

type byteReader struct {
	b   []byte
	off int
}

func (r *byteReader) byte() byte {
	if r.off >= len(r.b) {
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// uleb reads an unsigned LEB128 number of at most 63 bits.
func (r *byteReader) uleb() (uint64, bool) {
	var v uint64
	for shift := 0; shift < 63; shift += 7 {
		if r.off >= len(r.b) {
			return 0, false
		}
		c := r.b[r.off]
		r.off++
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}

// count reads a count of items of at least minSize bytes each.
func (r *byteReader) count(minSize int) (int, bool) {
	n, ok := r.uleb()
	if !ok || n > uint64(len(r.b)-r.off)/uint64(minSize) {
		return 0, false
	}
	return int(n), true
}

func (r *byteReader) hashes() ([]Hash, bool) {
	n, ok := r.count(32)
	if !ok {
		return nil, false
	}
	out := make([]Hash, n)
	for i := range out {
		copy(out[i][:], r.b[r.off:r.off+32])
		r.off += 32
	}
	return out, true
}

func (r *byteReader) chunk() ([]byte, bool) {
	n, ok := r.count(1)
	if !ok {
		return nil, false
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out, true
}

// receiveGraph is Receive for a graph-backed document: the graph takes the
// changes through the Go session, and a core copy, if any, takes the same.
func (s *SyncState) receiveGraph(msg []byte, hdr syncHeader, fresh []byte, nFresh int) (SyncResult, error) {
	d := s.doc
	before := d.amHeads()
	graphBefore := d.g.Heads()
	if _, err := s.gs.Receive(msg); err != nil {
		return SyncResult{}, err
	}
	d.changed()
	res := SyncResult{Heads: hdr.heads, Changed: !sameHeads(before, d.amHeads())}
	if len(hdr.changes) > 0 {
		res.Changes, res.NChanges = fresh, nFresh
	}
	if res.Changed {
		d.catchUpCore(graphBefore)
	}
	return res, nil
}
