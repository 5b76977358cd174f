package crdt

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/automerge/automerge-go"
)

// Automerge's storage format is a sequence of chunks:
//
//	magic 85 6f 4a 83 | checksum (4) | type (1) | uleb128 length | data
//
// where checksum is the first 4 bytes of SHA-256(type | uleb128 length |
// data). Type 0 is a document, 1 a change, 2 a change whose data is
// DEFLATE-compressed (its checksum is that of the uncompressed change, type
// 1). automerge-go's LoadIncremental silently ignores everything from the
// first chunk it cannot parse, and automerge-go's sync messages do not
// check the checksums of the changes they carry; so Load, LoadIncremental
// and SyncState.Receive check framing and checksums here first.
//
// This catches corruption, not malice: the Rust core of automerge-go 0.5
// aborts the whole process (a Rust panic across the C boundary, which Go
// cannot recover) on some changes that are well-formed and correctly
// checksummed but semantically invalid, such as an op that uses a list
// position as a map key. Only accept changes from peers you trust.

var chunkMagic = []byte{0x85, 0x6f, 0x4a, 0x83}

// maxInflate bounds the size of one decompressed change chunk.
const maxInflate = 256 << 20

// inflateBudget bounds what one call may decompress in all: a crafted
// 200 KB message of compressed chunks otherwise made the server inflate
// 200 MB (0.8 s of CPU) before any checksum could fail. Real changes
// compress far less than 64 to 1.
func inflateBudget(compressed int) int {
	return min(maxInflate, max(16<<20, 64*compressed))
}

// changeChunk is one change found by checkChunks.
type changeChunk struct {
	hash automerge.ChangeHash   // SHA-256 of the (uncompressed) change chunk
	deps []automerge.ChangeHash // the change's dependencies
	raw  []byte                 // the chunk as it appeared in the input
}

// checkChunks verifies the framing and checksum of every chunk in data and
// returns the changes among them (document chunks are checked but not
// listed).
func checkChunks(data []byte) ([]changeChunk, error) {
	var changes []changeChunk
	r := &byteReader{b: data}
	budget := inflateBudget(len(data))
	for n := 0; r.off < len(data); n++ {
		start := r.off
		bad := func(why string) error {
			return fmt.Errorf("%w: chunk %d at byte %d: %s", ErrCorrupt, n, start, why)
		}
		if len(data)-r.off < 9 || !bytes.Equal(data[r.off:r.off+4], chunkMagic) {
			return nil, bad("no chunk header")
		}
		r.off += 4
		var sum [4]byte
		copy(sum[:], data[r.off:r.off+4])
		r.off += 4
		typ := r.byte()
		lenStart := r.off
		body, ok := r.chunk()
		if !ok {
			return nil, bad("truncated")
		}
		h := sha256.New()
		change := body
		switch typ {
		case 0, 1:
			h.Write([]byte{typ})
			h.Write(data[lenStart : r.off-len(body)]) // the uleb128 length
			h.Write(body)
		case 2:
			raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(body)), int64(budget)+1))
			if err != nil {
				return nil, bad("cannot decompress")
			}
			if len(raw) > budget {
				return nil, bad("decompresses to more than 64 times its size")
			}
			budget -= len(raw)
			h.Write([]byte{1})
			h.Write(appendUleb(nil, uint64(len(raw))))
			h.Write(raw)
			change = raw
		default:
			return nil, bad(fmt.Sprintf("unsupported chunk type %d", typ))
		}
		var hash automerge.ChangeHash
		h.Sum(hash[:0])
		if !bytes.Equal(hash[:4], sum[:]) {
			return nil, bad("checksum mismatch")
		}
		if typ != 0 {
			// A change's data starts with its dependencies.
			cr := &byteReader{b: change}
			deps, ok := cr.hashes()
			if !ok {
				return nil, bad("bad change dependencies")
			}
			c := changeChunk{hash: hash, raw: data[start:r.off], deps: make([]automerge.ChangeHash, len(deps))}
			for i, dep := range deps {
				c.deps[i] = automerge.ChangeHash(dep)
			}
			changes = append(changes, c)
		}
	}
	return changes, nil
}

// onlyChanges reports whether cs, checkChunks' result for data, covers all
// of data: no document chunk among them.
func onlyChanges(cs []changeChunk, data []byte) bool {
	total := 0
	for _, c := range cs {
		total += len(c.raw)
	}
	return total == len(data)
}

func appendUleb(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
