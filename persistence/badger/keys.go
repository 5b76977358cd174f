package badger

import "encoding/binary"

// Key layout. Every key starts with a one-letter namespace and a slash, so
// the namespaces occupy disjoint key ranges and a prefix iteration over one
// of them never touches another (List reads only the "m/" range):
//
//	m/<id>                     meta record of document id (see meta.go)
//	s/<id>                     the document's snapshot (raw Automerge save)
//	c/<id> 0x00 <seq: 8 B BE>  incremental chunk seq of document id
//	v/<key>                    named value (GetValue, PutValue)
//
// Document ids never contain a NUL byte (persistence.CheckID), so the NUL
// after the id ends it unambiguously: the chunks of "a" (prefix "c/a\x00")
// and those of "a/b" or "ab" never share a prefix. The big-endian sequence
// number makes byte order equal numeric order, so a prefix iteration
// returns a document's chunks in ascending sequence order.
const (
	nsMeta  = "m/"
	nsSnap  = "s/"
	nsChunk = "c/"
	nsValue = "v/"
	seqLen  = 8
)

func metaKey(id string) []byte { return append([]byte(nsMeta), id...) }

func snapKey(id string) []byte { return append([]byte(nsSnap), id...) }

func valueKey(key string) []byte { return append([]byte(nsValue), key...) }

// chunkPrefix is the common prefix of all chunk keys of id.
func chunkPrefix(id string) []byte {
	k := make([]byte, 0, len(nsChunk)+len(id)+1+seqLen)
	k = append(k, nsChunk...)
	k = append(k, id...)
	return append(k, 0)
}

func chunkKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(chunkPrefix(id), seq)
}

// chunkSeq returns the sequence number of a chunk key that starts with
// prefix, and false if the key does not have the chunk key shape.
func chunkSeq(key, prefix []byte) (uint64, bool) {
	if len(key) != len(prefix)+seqLen {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[len(prefix):]), true
}

// splitChunkKey parses any chunk key into its document id and sequence
// number; ok is false if key is not a well-formed chunk key.
func splitChunkKey(key []byte) (id string, seq uint64, ok bool) {
	n := len(key) - seqLen - 1
	if n <= len(nsChunk) || string(key[:len(nsChunk)]) != nsChunk || key[n] != 0 {
		return "", 0, false
	}
	return string(key[len(nsChunk):n]), binary.BigEndian.Uint64(key[n+1:]), true
}
