package crdt

import (
	"fmt"

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
}

// NewSyncState starts a sync session for d with a peer it knows nothing
// about.
func NewSyncState(d *Doc) *SyncState {
	return &SyncState{doc: d, ss: automerge.NewSyncState(d.am)}
}

// LoadSyncState resumes a session saved by SyncState.Save (ErrInvalidSync
// on bad bytes).
func LoadSyncState(d *Doc, data []byte) (*SyncState, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty sync state", ErrInvalidSync)
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
func (s *SyncState) Generate() ([]byte, bool) {
	if err := s.doc.flush(); err != nil {
		return nil, false
	}
	s.attach()
	var out []byte
	_ = guard(ErrInvalidSync, "generate", func() error {
		if sm, ok := s.ss.GenerateMessage(); ok {
			out = sm.Bytes()
		}
		return nil
	})
	return out, out != nil
}

// Receive applies a message from the peer to the document. Pending writes
// are committed first. Bad bytes give ErrInvalidSync and leave the
// document unchanged.
func (s *SyncState) Receive(msg []byte) (SyncResult, error) {
	if _, err := parseSyncMessage(msg); err != nil {
		return SyncResult{}, err
	}
	if err := s.doc.flush(); err != nil {
		return SyncResult{}, err
	}
	var res SyncResult
	err := guard(ErrInvalidSync, "receive", func() error {
		before := s.doc.am.Heads()
		s.attach()
		sm, err := s.ss.ReceiveMessage(msg)
		if err != nil {
			return err
		}
		res.Heads = fromAMHashes(sm.Heads())
		if cs := sm.Changes(); len(cs) > 0 {
			res.NChanges = len(cs)
			res.Changes = automerge.SaveChanges(cs)
		}
		res.Changed = !sameHeads(before, s.doc.am.Heads())
		return nil
	})
	if err != nil {
		return SyncResult{}, err
	}
	return res, nil
}

// Save encodes the session so that it can be resumed with LoadSyncState
// (Automerge keeps only what is worth keeping: the peer's shared heads).
func (s *SyncState) Save() []byte {
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
	heads    []Hash
	nChanges int
}

// parseSyncMessage checks the structure of a sync message:
//
//	type byte (0x42 or 0x43)
//	heads:   uleb128 count, count × 32-byte hash
//	need:    uleb128 count, count × 32-byte hash
//	have:    uleb128 count, count × (last-sync hashes as above, uleb128-length Bloom filter)
//	changes: uleb128 count, count × (uleb128 length, bytes)
//	anything after that (capabilities) is ignored
func parseSyncMessage(b []byte) (syncHeader, error) {
	r := &byteReader{b: b}
	bad := func(what string) (syncHeader, error) {
		return syncHeader{}, fmt.Errorf("%w: %s at byte %d of %d", ErrInvalidSync, what, r.off, len(b))
	}
	if len(b) == 0 {
		return bad("empty message")
	}
	if t := r.byte(); t != 0x42 && t != 0x43 {
		return syncHeader{}, fmt.Errorf("%w: unknown message type 0x%02x", ErrInvalidSync, t)
	}
	var h syncHeader
	heads, ok := r.hashes()
	if !ok {
		return bad("bad heads")
	}
	h.heads = heads
	if _, ok := r.hashes(); !ok {
		return bad("bad need list")
	}
	nHave, ok := r.count(2)
	if !ok {
		return bad("bad have count")
	}
	for i := 0; i < nHave; i++ {
		if _, ok := r.hashes(); !ok {
			return bad("bad have heads")
		}
		if _, ok := r.chunk(); !ok {
			return bad("bad Bloom filter")
		}
	}
	nChanges, ok := r.count(1)
	if !ok {
		return bad("bad change count")
	}
	for i := 0; i < nChanges; i++ {
		if _, ok := r.chunk(); !ok {
			return bad("bad change")
		}
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
