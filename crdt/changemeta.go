package crdt

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"unicode/utf8"
)

// Pure-Go access to what a sync message and a change chunk say about
// themselves, without a document: for peers that relay or count changes
// without applying them (the load generator's light clients).

// Changes returns the changes a version-1 message carries, in order, each
// with its hash, dependencies and chunk bytes (which alias the message).
// Version-2 messages give none (their entries are not plain change chunks).
func (m *SyncMessage) Changes() []Change {
	out := make([]Change, len(m.hdr.changes))
	for i, c := range m.hdr.changes {
		out[i] = Change{Hash: Hash(c.hash), Deps: fromAMHashes(c.deps), Raw: c.raw}
	}
	return out
}

// Version is the message's type byte: 0x42 for version 1, 0x43 for
// version 2.
func (m *SyncMessage) Version() byte { return m.version }

// NeedHashes returns the hashes of the changes the sender asks for.
func (m *SyncMessage) NeedHashes() []Hash {
	if m.hdr.need == 0 {
		return nil
	}
	r := &byteReader{b: m.raw, off: 1}
	if _, ok := r.hashes(); !ok { // heads; parseSyncMessage checked the framing
		return nil
	}
	need, _ := r.hashes()
	return need
}

// ChangeMessage returns the commit message of one change chunk (as
// Change.Raw, SplitChanges or CommitInfo.Bytes give it; "" when the change
// has none). It reads the chunk header and the start of the change:
//
//	magic 85 6f 4a 83 | checksum (4) | type (1: change, 2: DEFLATE-compressed
//	change) | uleb128 length | deps (uleb128 count, 32-byte hashes) | actor
//	(uleb128 length, bytes) | seq (uleb128) | start op (uleb128) | time
//	(sleb128) | message (uleb128 length, UTF-8) | ...
//
// It does not verify the checksum (ParseSyncMessage and SplitChanges do).
func ChangeMessage(raw []byte) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: change chunk: %s", ErrCorrupt, why)
	}
	if len(raw) < 9 || !bytes.Equal(raw[:4], chunkMagic) {
		return bad("no chunk header")
	}
	r := &byteReader{b: raw, off: 8}
	typ := r.byte()
	body, ok := r.chunk()
	if !ok {
		return bad("truncated")
	}
	switch typ {
	case 1:
	case 2:
		inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(body)), maxInflate+1))
		if err != nil || len(inflated) > maxInflate {
			return bad("cannot decompress")
		}
		body = inflated
	default:
		return bad(fmt.Sprintf("chunk type %d is not a change", typ))
	}
	cr := &byteReader{b: body}
	if _, ok := cr.hashes(); !ok {
		return bad("bad dependencies")
	}
	if _, ok := cr.chunk(); !ok {
		return bad("bad actor")
	}
	if _, ok := cr.uleb(); !ok {
		return bad("bad seq")
	}
	if _, ok := cr.uleb(); !ok {
		return bad("bad start op")
	}
	if !cr.skipSleb() {
		return bad("bad time")
	}
	msg, ok := cr.chunk()
	if !ok {
		return bad("bad message")
	}
	if !utf8.Valid(msg) {
		return bad("message is not UTF-8")
	}
	return string(msg), nil
}

// skipSleb skips a signed LEB128 number of at most 10 bytes.
func (r *byteReader) skipSleb() bool {
	for i := 0; i < 10; i++ {
		if r.off >= len(r.b) {
			return false
		}
		c := r.b[r.off]
		r.off++
		if c&0x80 == 0 {
			return true
		}
	}
	return false
}
