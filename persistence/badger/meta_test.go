package badger

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/persistence"
)

func sampleMetas() []docMeta {
	now := time.Date(2025, 6, 1, 12, 0, 0, 123, time.UTC).UnixNano()
	return []docMeta{
		{},
		{created: now, updated: now, lastSeq: 1, chunks: 1, chunkBytes: 100, heads: []string{strings.Repeat("ab", 32)}},
		{created: now, updated: now + 5, lastSeq: 40, covered: 30, snapshotSize: 1 << 20, chunkBytes: 999, chunks: 10,
			heads: []string{strings.Repeat("01", 32), strings.Repeat("fe", 32), ""}},
		{created: -1, updated: math.MaxInt64, lastSeq: math.MaxUint64, covered: math.MaxUint64},
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range sampleMetas() {
		got, err := decodeMeta(m.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
	m := sampleMetas()[2].toMeta("id")
	if m.Size != m.SnapshotSize+m.ChunkBytes || m.Chunks != 10 || m.Created.Location() != time.UTC {
		t.Fatalf("toMeta = %+v", m)
	}
}

func TestDecodeMetaCorrupt(t *testing.T) {
	good := sampleMetas()[2].encode()
	bad := map[string][]byte{
		"empty":           nil,
		"version 0":       {0},
		"version 2":       append([]byte{2}, good[1:]...),
		"truncated":       good[:len(good)-3],
		"trailing":        append(append([]byte{}, good...), 0),
		"only version":    {metaVersion},
		"varint overflow": append([]byte{metaVersion}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"huge head count": (&docMeta{heads: []string{"x"}}).encode()[:9:9],
		"covered > last":  (&docMeta{lastSeq: 1, covered: 2}).encode(),
		"too many chunks": (&docMeta{lastSeq: 3, covered: 1, chunks: 3, chunkBytes: 9}).encode(),
		"chunks > bytes":  (&docMeta{lastSeq: 3, chunks: 3, chunkBytes: 2}).encode(),
		"size overflow":   (&docMeta{snapshotSize: math.MaxUint64}).encode(),
	}
	bad["huge head count"] = append(bad["huge head count"][:8:8], 0xff, 0xff, 0x03)
	for name, b := range bad {
		if _, err := decodeMeta(b); !errors.Is(err, persistence.ErrCorrupt) {
			t.Errorf("%s: decodeMeta(%x) = %v, want ErrCorrupt", name, b, err)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range sampleMetas() {
		b := m.encode()
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{metaVersion, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, persistence.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// What decodes must survive a round trip and convert sanely.
		again, err := decodeMeta(m.encode())
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
		pm := m.toMeta("x")
		if pm.Size < 0 || pm.ChunkBytes < 0 || pm.SnapshotSize < 0 || pm.Chunks < 0 {
			t.Fatalf("negative sizes from %x: %+v", b, pm)
		}
	})
}
