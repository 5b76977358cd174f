package crdt

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand"
	"testing"
)

// firstHaveBloom returns the raw Bloom filter of the first "have" of a
// version-1 message.
func firstHaveBloom(t testing.TB, msg []byte) []byte {
	t.Helper()
	r := &byteReader{b: msg, off: 1}
	r.hashes()
	r.hashes()
	if n, ok := r.count(2); !ok || n == 0 {
		t.Fatal("message has no have")
	}
	r.hashes()
	raw, ok := r.chunk()
	if !ok {
		t.Fatal("bad have")
	}
	return raw
}

// TestBloomMatchesAutomerge: a new automerge session's first message holds
// a filter of every change; ours, built from the same hashes, must be the
// same bytes.
func TestBloomMatchesAutomerge(t *testing.T) {
	for _, n := range []int{1, 3, 40, 500} {
		rng := rand.New(rand.NewSource(int64(n)))
		d, _ := branchyDoc(t, rng, n)
		var hashes []Hash
		for _, c := range splitAll(t, d) {
			hashes = append(hashes, c.Hash)
		}
		msg, ok := NewSyncState(d).Generate()
		if !ok {
			t.Fatal("no message")
		}
		theirs := firstHaveBloom(t, msg)
		ours := newBloom(hashes).appendTo(nil)
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("%d changes: filter differs from automerge's (%d vs %d bytes)", len(hashes), len(ours), len(theirs))
		}
		f, err := decodeBloom(theirs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range hashes {
			if !f.contains(&hashes[i]) {
				t.Fatalf("automerge's filter lacks change %d", i)
			}
		}
	}
}

func TestBloomFalsePositives(t *testing.T) {
	hashes := make([]Hash, 5000)
	for i := range hashes {
		hashes[i] = sha256.Sum256([]byte{byte(i), byte(i >> 8), 1})
	}
	f := newBloom(hashes)
	for i := range hashes {
		if !f.contains(&hashes[i]) {
			t.Fatal("false negative")
		}
	}
	fp := 0
	for i := 0; i < 20000; i++ {
		h := Hash(sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16), 2}))
		if f.contains(&h) {
			fp++
		}
	}
	// About 1% expected with 10 bits per entry and 7 probes.
	if fp > 600 {
		t.Errorf("%d false positives in 20000", fp)
	}
}

func TestBloomEmpty(t *testing.T) {
	f := newBloom(nil)
	if b := f.appendTo(nil); len(b) != 0 {
		t.Fatalf("empty filter encodes as %x", b)
	}
	g, err := decodeBloom(nil)
	if err != nil {
		t.Fatal(err)
	}
	var h Hash
	if f.contains(&h) || g.contains(&h) {
		t.Fatal("empty filter contains a hash")
	}
	// Zero entries with a header: automerge reads it as empty.
	g, err = decodeBloom([]byte{0, 10, 7})
	if err != nil || g.contains(&h) {
		t.Fatalf("zero-entry filter: %v", err)
	}
}

func TestBloomDecodeRejects(t *testing.T) {
	good := newBloom([]Hash{{1}, {2}, {3}}).appendTo(nil)
	for name, b := range map[string][]byte{
		"truncated bits":        good[:len(good)-1],
		"header only":           good[:3],
		"truncated header":      good[:2],
		"entries without bits":  {5, 0, 7},
		"too many probes":       {1, 10, 200, 1, 0xff, 0xff},
		"entries beyond u32":    {0xff, 0xff, 0xff, 0xff, 0x1f, 10, 7},
		"huge claimed size":     {0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f, 7, 1},
		"unterminated leb128":   {0x80, 0x80, 0x80},
		"probes beyond u32":     {1, 10, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0},
		"bits per entry absent": {1},
	} {
		if _, err := decodeBloom(b); !errors.Is(err, ErrInvalidSync) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	f, err := decodeBloom(append(bytes.Clone(good), 0xaa)) // trailing byte: ignored, as automerge does
	if err != nil || !f.contains(&Hash{2}) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func FuzzBloomDecode(f *testing.F) {
	f.Add(newBloom([]Hash{{1}, {2}}).appendTo(nil))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 1, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		bf, err := decodeBloom(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidSync) {
				t.Fatalf("error %v does not wrap ErrInvalidSync", err)
			}
			return
		}
		h := Hash(sha256.Sum256(b))
		bf.contains(&h)
	})
}
