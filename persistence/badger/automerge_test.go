package badger

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"

	"github.com/tandemsync/tandem/persistence"
)

func headStrings(hs []automerge.ChangeHash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	slices.Sort(out)
	return out
}

// materialize loads a record the way the engine does: the snapshot, then
// every chunk with LoadIncremental.
func materialize(t *testing.T, r persistence.Record) *automerge.Doc {
	t.Helper()
	doc := automerge.New()
	if r.Snapshot != nil {
		var err error
		if doc, err = automerge.Load(r.Snapshot); err != nil {
			t.Fatalf("automerge.Load(snapshot): %v", err)
		}
	}
	for _, c := range r.Chunks {
		if err := doc.LoadIncremental(c.Data); err != nil {
			t.Fatalf("LoadIncremental(chunk %d): %v", c.Seq, err)
		}
	}
	return doc
}

// edit makes one change to doc and returns the incremental chunk for it.
func edit(t *testing.T, doc *automerge.Doc, i int) []byte {
	t.Helper()
	if err := doc.RootMap().Set(fmt.Sprintf("widget-%d", i%7), int64(i)); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.Commit(fmt.Sprintf("change %d", i)); err != nil {
		t.Fatal(err)
	}
	return doc.SaveIncremental()
}

// TestCompactCrashAutomerge stores a real Automerge document, compacts it
// twice (the second time over an existing snapshot) and interrupts each
// compaction at every stage; after every restart the stored record must
// load to a document with exactly the original heads and values.
func TestCompactCrashAutomerge(t *testing.T) {
	for round := 0; round < 2; round++ {
		for k := 0; ; k++ {
			cfg := testSizes(DefaultConfig(t.TempDir()))
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			doc := automerge.New()
			var cutHeads []automerge.ChangeHash
			var cut uint64
			for i := 1; i <= 12; i++ {
				seq := mustAppendHeads(t, s, "doc", edit(t, doc, i), headStrings(doc.Heads()))
				if i == 5 {
					// The first compaction (round 1 does it cleanly
					// beforehand) covers chunks 1..5.
					cutHeads, cut = doc.Heads(), seq
				}
			}
			snapshotAt := func(hs []automerge.ChangeHash) []byte {
				f, err := doc.Fork(hs...)
				if err != nil {
					t.Fatal(err)
				}
				return f.Save()
			}
			upTo, snap := cut, snapshotAt(cutHeads)
			if round == 1 {
				if err := s.Compact(bg, "doc", snap, cut, headStrings(doc.Heads())); err != nil {
					t.Fatal(err)
				}
				for i := 13; i <= 15; i++ {
					mustAppendHeads(t, s, "doc", edit(t, doc, i), headStrings(doc.Heads()))
				}
				// The second snapshot covers everything but the last chunk.
				r := mustLoad(t, s, "doc")
				upTo = 14
				snap = materialize(t, persistence.Record{Snapshot: r.Snapshot, Chunks: r.Chunks[:len(r.Chunks)-1]}).Save()
			}
			want := headStrings(doc.Heads())
			before := mustLoad(t, s, "doc")
			if got := headStrings(materialize(t, before).Heads()); !slices.Equal(got, want) {
				t.Fatalf("record before Compact loads to heads %v, want %v", got, want)
			}

			s.hooks = *crashAt(k)
			err = s.Compact(bg, "doc", snap, upTo, want)
			if err != nil && !errors.Is(err, errCrash) {
				t.Fatalf("round %d k=%d: Compact: %v", round, k, err)
			}
			crashed := err != nil
			s.Close()

			s = openT(t, cfg)
			r := mustLoad(t, s, "doc")
			loaded := materialize(t, r)
			if got := headStrings(loaded.Heads()); !slices.Equal(got, want) {
				t.Fatalf("round %d k=%d: heads after restart %v, want %v", round, k, got, want)
			}
			for w := range 7 {
				key := fmt.Sprintf("widget-%d", w)
				a, _ := doc.RootMap().Get(key)
				b, _ := loaded.RootMap().Get(key)
				if a.GoString() != b.GoString() {
					t.Fatalf("round %d k=%d: %s = %s, want %s", round, k, key, b.GoString(), a.GoString())
				}
			}
			if r.Chunks[0].Seq != upTo+1 {
				t.Fatalf("round %d k=%d: first live chunk %d, want %d", round, k, r.Chunks[0].Seq, upTo+1)
			}
			s.Close()
			if !crashed {
				break
			}
		}
	}
}

func mustAppendHeads(t *testing.T, s *Store, id string, data []byte, heads []string) uint64 {
	t.Helper()
	seq, err := s.Append(bg, id, data, heads)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}
