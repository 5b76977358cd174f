package crdt

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCheckChunksDeps(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	o, _ := d.Fork()
	_ = o.Set("/b", 2)
	mustCommit(t, o, "")
	_ = d.Set("/c", 3)
	mustCommit(t, d, "")
	_ = d.Merge(o)
	_ = d.Set("/d", 4)
	mustCommit(t, d, "")
	all, _ := d.ChangesSince(nil)
	cs, err := checkChunks(all)
	if err != nil {
		t.Fatal(err)
	}
	hist, _ := d.History()
	if len(cs) != len(hist) {
		t.Fatalf("%d chunks, %d changes", len(cs), len(hist))
	}
	for i, h := range hist {
		if Hash(cs[i].hash) != h.Hash {
			t.Errorf("change %d: hash %x, want %v", i, cs[i].hash, h.Hash)
		}
		if got := fromAMHashes(cs[i].deps); !reflect.DeepEqual(got, h.Deps) && !(len(got) == 0 && len(h.Deps) == 0) {
			t.Errorf("change %d: deps %v, want %v", i, got, h.Deps)
		}
	}
	// A saved document is one chunk and lists no changes.
	if cs, err := checkChunks(d.Save()); err != nil || len(cs) != 0 {
		t.Errorf("document: %v, %d changes", err, len(cs))
	}
}

// compressChange turns an uncompressed change chunk into the compressed
// form (type 2) that Automerge also reads.
func compressChange(t *testing.T, chunk []byte) []byte {
	r := &byteReader{b: chunk, off: 9}
	body, ok := r.chunk()
	if !ok || chunk[8] != 1 {
		t.Fatal("not a change chunk")
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(body)
	w.Close()
	out := append([]byte{}, chunk[:8]...) // magic and the checksum of the uncompressed change
	out = append(out, 2)
	out = appendUleb(out, uint64(z.Len()))
	return append(out, z.Bytes()...)
}

func TestCompressedChunks(t *testing.T) {
	d := New()
	_ = d.Set("/text", strings.Repeat("automerge ", 200))
	info := mustCommit(t, d, "")
	packed := compressChange(t, info.Bytes)
	cs, err := checkChunks(packed)
	if err != nil || len(cs) != 1 || Hash(cs[0].hash) != info.Hash {
		t.Fatalf("checkChunks(compressed) = %v, %v", cs, err)
	}
	e := New()
	if err := e.LoadIncremental(append(packed, packed...)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e.Heads(), []Hash{info.Hash}) {
		t.Errorf("heads %v", e.Heads())
	}
	bad := append([]byte{}, packed...)
	bad[len(bad)-3] ^= 0x55
	if _, err := checkChunks(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt compressed chunk: %v", err)
	}
}

func TestCheckChunksErrors(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	good := d.Save()
	rechecksum := func(b []byte) []byte {
		r := &byteReader{b: b, off: 9}
		body, _ := r.chunk()
		h := sha256.Sum256(append(append([]byte{b[8]}, b[9:r.off-len(body)]...), body...))
		c := append([]byte{}, b...)
		copy(c[4:8], h[:4])
		return c
	}
	tests := map[string][]byte{
		"magic":       append([]byte{0, 0, 0, 0}, good[4:]...),
		"short":       good[:8],
		"truncated":   good[:len(good)-1],
		"checksum":    flip(good, 5),
		"body":        flip(good, len(good)-2),
		"chunk type":  rechecksum(append(append(append([]byte{}, good[:8]...), 7), good[9:]...)),
		"trailing":    append(append([]byte{}, good...), 0x85),
		"huge length": append(append([]byte{}, good[:9]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	}
	for name, in := range tests {
		if _, err := checkChunks(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if cs, err := checkChunks(nil); err != nil || cs != nil {
		t.Errorf("empty: %v", err)
	}
}

// TestInflateBudget: a small compressed chunk that inflates far beyond its
// size is refused before it costs the server hundreds of megabytes.
func TestInflateBudget(t *testing.T) {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	_, _ = w.Write(make([]byte, 20<<20))
	_ = w.Close()
	body := z.Bytes()
	chunk := append([]byte{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2}, appendUleb(nil, uint64(len(body)))...)
	chunk = append(chunk, body...)
	_, err := SplitChanges(chunk)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "64 times") {
		t.Fatalf("a %d-byte chunk inflating to 20 MB: %v", len(chunk), err)
	}
	if b := inflateBudget(len(chunk)); b != 16<<20 {
		t.Fatalf("budget for a small input: %d", b)
	}
	if b := inflateBudget(1 << 30); b != maxInflate {
		t.Fatalf("budget for a huge input: %d", b)
	}
}
