package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tandemsync/tandem/persistence"
)

// metaVersion is the first byte of every encoded meta record.
const metaVersion = 1

// docMeta is the stored form of a document's meta record. The document id
// is not stored: it is the key.
//
// Encoding (version 1), all integers unsigned LEB128 varints (binary.Uvarint)
// except the two times, which are signed varints (binary.Varint):
//
//	byte     version = 1
//	varint   created, Unix nanoseconds
//	varint   updated, Unix nanoseconds
//	uvarint  lastSeq: highest chunk sequence number handed out
//	uvarint  covered: chunks with seq <= covered are part of the snapshot
//	uvarint  snapshotSize
//	uvarint  chunkBytes: bytes of live chunks (seq > covered)
//	uvarint  chunks: number of live chunks
//	uvarint  number of heads, then per head: uvarint length, bytes
//
// Nothing may follow the last head.
type docMeta struct {
	created, updated int64
	lastSeq, covered uint64
	snapshotSize     uint64
	chunkBytes       uint64
	chunks           uint64
	heads            []string
}

func (m *docMeta) encode() []byte {
	n := 1 + 7*binary.MaxVarintLen64
	for _, h := range m.heads {
		n += binary.MaxVarintLen64 + len(h)
	}
	b := make([]byte, 0, n)
	b = append(b, metaVersion)
	b = binary.AppendVarint(b, m.created)
	b = binary.AppendVarint(b, m.updated)
	b = binary.AppendUvarint(b, m.lastSeq)
	b = binary.AppendUvarint(b, m.covered)
	b = binary.AppendUvarint(b, m.snapshotSize)
	b = binary.AppendUvarint(b, m.chunkBytes)
	b = binary.AppendUvarint(b, m.chunks)
	b = binary.AppendUvarint(b, uint64(len(m.heads)))
	for _, h := range m.heads {
		b = binary.AppendUvarint(b, uint64(len(h)))
		b = append(b, h...)
	}
	return b
}

var errShort = errors.New("truncated")

// metaDecoder reads varints from a byte slice, remembering the first error.
type metaDecoder struct {
	b   []byte
	err error
}

func (d *metaDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *metaDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

// decodeMeta parses and validates an encoded meta record. Every failure
// wraps persistence.ErrCorrupt. The result shares no memory with b.
func decodeMeta(b []byte) (docMeta, error) {
	var m docMeta
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty meta record", persistence.ErrCorrupt)
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("%w: meta record version %d, want %d", persistence.ErrCorrupt, b[0], metaVersion)
	}
	d := metaDecoder{b: b[1:]}
	m.created = d.varint()
	m.updated = d.varint()
	m.lastSeq = d.uvarint()
	m.covered = d.uvarint()
	m.snapshotSize = d.uvarint()
	m.chunkBytes = d.uvarint()
	m.chunks = d.uvarint()
	nHeads := d.uvarint()
	if d.err != nil {
		return docMeta{}, fmt.Errorf("%w: meta record: %v", persistence.ErrCorrupt, d.err)
	}
	// Every head takes at least one byte (its length), which bounds the
	// allocation below by the input size.
	if nHeads > uint64(len(d.b)) {
		return docMeta{}, fmt.Errorf("%w: meta record: %d heads in %d bytes", persistence.ErrCorrupt, nHeads, len(d.b))
	}
	if nHeads > 0 {
		m.heads = make([]string, 0, nHeads)
	}
	for range nHeads {
		l := d.uvarint()
		if d.err != nil || l > uint64(len(d.b)) {
			return docMeta{}, fmt.Errorf("%w: meta record: truncated head", persistence.ErrCorrupt)
		}
		m.heads = append(m.heads, string(d.b[:l]))
		d.b = d.b[l:]
	}
	if len(d.b) != 0 {
		return docMeta{}, fmt.Errorf("%w: meta record: %d trailing bytes", persistence.ErrCorrupt, len(d.b))
	}
	if err := m.check(); err != nil {
		return docMeta{}, err
	}
	return m, nil
}

// check validates the invariants between the fields.
func (m *docMeta) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: meta record: %s", persistence.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	switch {
	case m.covered > m.lastSeq:
		return bad("covered %d > last seq %d", m.covered, m.lastSeq)
	case m.chunks > m.lastSeq-m.covered:
		return bad("%d chunks in seq range (%d, %d]", m.chunks, m.covered, m.lastSeq)
	case m.chunks > m.chunkBytes:
		return bad("%d chunks in %d bytes", m.chunks, m.chunkBytes)
	case m.snapshotSize > math.MaxInt64/2 || m.chunkBytes > math.MaxInt64/2:
		return bad("size out of range")
	case m.chunks > math.MaxInt32:
		return bad("chunk count %d out of range", m.chunks)
	}
	return nil
}

// touch sets updated to now, or to one nanosecond after the previous
// value if the clock did not move forward, and created on first write.
func (m *docMeta) touch(now time.Time) {
	t := now.UnixNano()
	if t <= m.updated {
		t = m.updated + 1
	}
	m.updated = t
	if m.created == 0 {
		m.created = t
	}
}

func (m *docMeta) toMeta(id string) persistence.Meta {
	return persistence.Meta{
		ID:           id,
		Created:      time.Unix(0, m.created).UTC(),
		Updated:      time.Unix(0, m.updated).UTC(),
		Size:         int64(m.snapshotSize + m.chunkBytes),
		SnapshotSize: int64(m.snapshotSize),
		ChunkBytes:   int64(m.chunkBytes),
		Chunks:       int(m.chunks),
		Heads:        slices.Clone(m.heads),
	}
}
