package crdt

import (
	"encoding/binary"
	"fmt"
	"math"
)

// bloomFilter is the Bloom filter of the Automerge sync protocol: a peer's
// "have" summarises the changes it added since the last sync, and the
// other side sends the changes the filter does not contain.
//
// Wire form (empty for a filter of no entries):
//
//	uleb128 entries | uleb128 bits per entry | uleb128 probes |
//	ceil(entries × bits per entry / 8) bytes of bits
//
// The probes of a hash come from its first 12 bytes read as three
// little-endian u32 values x, y, z (each modulo the number of bits m): x is
// the first probe, and each next one is x += y, y += z (mod m). Bit i is
// bit i%8 of byte i/8. This must stay bit-compatible with automerge:
// filters cross implementations.
type bloomFilter struct {
	entries    uint32
	bitsPerEnt uint32
	probes     uint32
	bits       []byte
}

// Automerge's parameters (about 1% false positives). They travel in each
// filter, so a decoder takes whatever the sender chose within limits.
const (
	bloomBitsPerEntry = 10
	bloomProbes       = 7

	// maxBloomProbes bounds the work a hostile filter can cause per
	// lookup; automerge uses 7.
	maxBloomProbes = 64
	// maxBloomBytes keeps 8×len below 2^31, so that probe arithmetic is
	// exact in u32 as automerge computes it.
	maxBloomBytes = 1 << 28
)

// newBloom builds a filter holding hashes.
func newBloom(hashes []Hash) *bloomFilter {
	f := &bloomFilter{entries: uint32(len(hashes)), bitsPerEnt: bloomBitsPerEntry, probes: bloomProbes}
	f.bits = make([]byte, bloomCapacity(f.entries, f.bitsPerEnt))
	for i := range hashes {
		f.add(&hashes[i])
	}
	return f
}

// bloomCapacity is the number of bytes the bits of a filter take.
func bloomCapacity(entries, bitsPerEntry uint32) uint64 {
	return (uint64(entries)*uint64(bitsPerEntry) + 7) / 8
}

// probeIter yields the bit indexes of one hash.
type probeIter struct {
	x, y, z, m uint64
	left       uint32
}

func (f *bloomFilter) probes0(h *Hash) probeIter {
	m := uint64(len(f.bits)) * 8
	if m == 0 {
		return probeIter{}
	}
	// Like automerge, zero probes still test the first bit.
	return probeIter{
		x:    uint64(binary.LittleEndian.Uint32(h[0:4])) % m,
		y:    uint64(binary.LittleEndian.Uint32(h[4:8])) % m,
		z:    uint64(binary.LittleEndian.Uint32(h[8:12])) % m,
		m:    m,
		left: max(f.probes, 1),
	}
}

// next returns the next bit index, or false when done.
func (p *probeIter) next() (uint64, bool) {
	if p.left == 0 {
		return 0, false
	}
	bit := p.x
	p.left--
	p.x = (p.x + p.y) % p.m
	p.y = (p.y + p.z) % p.m
	return bit, true
}

func (f *bloomFilter) add(h *Hash) {
	for p := f.probes0(h); ; {
		bit, ok := p.next()
		if !ok {
			return
		}
		f.bits[bit>>3] |= 1 << (bit & 7)
	}
}

// contains reports whether h may be in the filter (never for an empty
// one).
func (f *bloomFilter) contains(h *Hash) bool {
	if f == nil || f.entries == 0 {
		return false
	}
	for p := f.probes0(h); ; {
		bit, ok := p.next()
		if !ok {
			return true
		}
		if f.bits[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
	}
}

// appendTo appends the wire form of f (nothing for an empty filter).
func (f *bloomFilter) appendTo(b []byte) []byte {
	if f == nil || f.entries == 0 {
		return b
	}
	b = appendUleb(b, uint64(f.entries))
	b = appendUleb(b, uint64(f.bitsPerEnt))
	b = appendUleb(b, uint64(f.probes))
	return append(b, f.bits...)
}

// decodeBloom parses a filter. The bits alias data. Bytes after the bits
// are ignored, as automerge ignores them. Errors wrap ErrInvalidSync.
func decodeBloom(data []byte) (*bloomFilter, error) {
	f := &bloomFilter{}
	if len(data) == 0 {
		return f, nil
	}
	r := &byteReader{b: data}
	bad := func(why string) (*bloomFilter, error) {
		return nil, fmt.Errorf("%w: Bloom filter: %s", ErrInvalidSync, why)
	}
	var vals [3]uint32
	for i := range vals {
		v, ok := r.uleb()
		if !ok || v > math.MaxUint32 {
			return bad("bad header")
		}
		vals[i] = uint32(v)
	}
	f.entries, f.bitsPerEnt, f.probes = vals[0], vals[1], vals[2]
	n := bloomCapacity(f.entries, f.bitsPerEnt)
	if n > uint64(len(data)-r.off) {
		return bad("truncated")
	}
	if n > maxBloomBytes {
		return bad("too large")
	}
	if f.probes > maxBloomProbes {
		return bad("too many probes")
	}
	if f.entries > 0 && n == 0 {
		// Entries but no bits: automerge would divide by zero.
		return bad("no bits")
	}
	f.bits = data[r.off : r.off+int(n)]
	return f, nil
}
