package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func mustJSON(t *testing.T, d *Doc) string {
	t.Helper()
	j, err := d.JSON("")
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestGraphDocParity: the same writes, loads and merges on a plain and a
// graph-backed document give the same content and heads, and the graph
// document's core copy can come and go in between.
func TestGraphDocParity(t *testing.T) {
	// Same actor and same commit times: equal writes make equal hashes.
	fixed := time.UnixMilli(1700000000000)
	commitClock = func() time.Time { return fixed }
	defer func() { commitClock = time.Now }()
	plain, graph := New(), NewGraphDoc()
	if graph.Materialized() || !graph.IsGraph() || plain.IsGraph() {
		t.Fatal("a new graph document is not a bare graph")
	}
	for _, d := range []*Doc{plain, graph} {
		if err := d.SetActorID("aa01"); err != nil {
			t.Fatal(err)
		}
	}
	if graph.Materialized() || graph.ActorID() != "aa01" {
		t.Fatalf("SetActorID: materialized %v, actor %q", graph.Materialized(), graph.ActorID())
	}
	other := mustFromJSON(t, `{"shared":{"n":0}}`)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 60 {
		switch rng.IntN(5) {
		case 0, 1: // a local write
			key := fmt.Sprintf("/k%d", rng.IntN(5))
			for _, d := range []*Doc{plain, graph} {
				if err := d.Set(key, i); err != nil {
					t.Fatal(err)
				}
				if _, _, err := d.Commit(fmt.Sprint("w", i)); err != nil {
					t.Fatal(err)
				}
			}
		case 2: // changes from another replica
			if err := other.Set("/shared/n", i); err != nil {
				t.Fatal(err)
			}
			if _, _, err := other.Commit(""); err != nil {
				t.Fatal(err)
			}
			news, err := other.ChangesSince(plain.Heads())
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []*Doc{plain, graph} {
				if err := d.LoadIncremental(news); err != nil {
					t.Fatal(err)
				}
			}
		case 3: // a merge
			for _, d := range []*Doc{plain, graph} {
				if err := d.Merge(other); err != nil {
					t.Fatal(err)
				}
			}
		case 4: // the graph drops its core copy
			graph.Dematerialize()
		}
		if !slices.Equal(plain.Heads(), graph.Heads()) {
			hp, _ := plain.History()
			hg, _ := graph.History()
			t.Fatalf("step %d: heads %v vs %v\n%+v\n%+v", i, plain.Heads(), graph.Heads(), hp, hg)
		}
	}
	if a, b := mustJSON(t, plain), mustJSON(t, graph); a != b {
		t.Fatalf("content differs:\n%s\n%s", a, b)
	}
	// Save writes change chunks, which Load and LoadGraphDoc read.
	saved := graph.Save()
	for name, load := range map[string]func([]byte) (*Doc, error){"Load": Load, "LoadGraphDoc": LoadGraphDoc} {
		re, err := load(saved)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(re.Heads(), plain.Heads()) || mustJSON(t, re) != mustJSON(t, plain) {
			t.Fatalf("%s of the graph's Save differs", name)
		}
	}
	// LoadGraphDoc also reads Automerge's document format (plus changes).
	hs, _ := plain.HashesSince(nil)
	re, err := LoadGraphDoc(plain.Save())
	if err != nil || re.Materialized() || !slices.Equal(re.Heads(), plain.Heads()) {
		t.Fatalf("LoadGraphDoc of a document chunk: %v, materialized %v", err, re.Materialized())
	}
	if got, _ := re.HashesSince(nil); !slices.Equal(got, hs) {
		t.Fatalf("history: %d vs %d changes", len(got), len(hs))
	}
	if inc := graph.SaveIncremental(); len(inc) != 0 {
		t.Fatalf("SaveIncremental right after Save: %d bytes", len(inc))
	}
}

// TestGraphDocSync: a graph-backed document syncs with plain ones through
// its SyncStates (the Go session) and stays a bare graph throughout; queued
// changes wait in the graph and are released when their dependencies come.
func TestGraphDocSync(t *testing.T) {
	server := NewGraphDoc()
	a := mustFromJSON(t, `{"w":{"v":0}}`)
	b := New()
	sa, sb := NewSyncState(server), NewSyncState(server)
	ca, cb := NewSyncState(a), NewSyncState(b)
	exchange := func() {
		t.Helper()
		for range 10 {
			a1, b1 := syncPair(t, ca, sa)
			a2, b2 := syncPair(t, cb, sb)
			if len(a1)+len(b1)+len(a2)+len(b2) == 0 {
				return
			}
		}
		t.Fatal("sync did not settle in 10 rounds")
	}
	exchange()
	for i := range 30 {
		c := a
		if i%2 == 1 {
			c = b
		}
		if err := c.Set(fmt.Sprintf("/x%d", i%3), i); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Commit(""); err != nil {
			t.Fatal(err)
		}
		exchange()
	}
	if server.Materialized() {
		t.Fatal("syncing materialized the server's document")
	}
	if !slices.Equal(a.Heads(), b.Heads()) || !slices.Equal(a.Heads(), server.Heads()) {
		t.Fatalf("heads differ: %v %v %v", a.Heads(), b.Heads(), server.Heads())
	}
	if mustJSON(t, server) != mustJSON(t, a) {
		t.Fatal("the server's content differs")
	}
	// Now materialized, it keeps taking changes in both forms.
	if err := a.Set("/late", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Commit(""); err != nil {
		t.Fatal(err)
	}
	exchange()
	if got, _ := server.Get("/late"); got != true {
		t.Fatalf("materialized copy missed a change: %v", got)
	}

	// Out of order: the second change first waits, then both join.
	c1, c2 := a.Fork()
	if c2 != nil {
		t.Fatal(c2)
	}
	base := c1.Heads()
	for i := range 2 {
		_ = c1.Set("/q", i)
		_, _, _ = c1.Commit("")
	}
	cs, _ := c1.ChangeChunks(base)
	if err := server.LoadIncremental(cs[1]); err != nil {
		t.Fatal(err)
	}
	if !server.HasQueued() || server.HasChange(server.Heads()[0]) == false {
		t.Fatal("the out-of-order change is not queued")
	}
	if err := server.LoadIncremental(cs[0]); err != nil {
		t.Fatal(err)
	}
	if server.HasQueued() || !slices.Equal(server.Heads(), c1.Heads()) {
		t.Fatal("the queued change was not released")
	}
	if got, _ := server.Get("/q"); fmt.Sprint(got) != "1" {
		t.Fatalf("core copy after release: %v", got)
	}
}

// TestGraphDocBadInput: bad bytes change nothing, materialized or not.
func TestGraphDocBadInput(t *testing.T) {
	d := NewGraphDoc()
	src := mustFromJSON(t, `{"a":1}`)
	all, _ := src.ChangesSince(nil)
	if err := d.LoadIncremental(all); err != nil {
		t.Fatal(err)
	}
	heads := d.Heads()
	bad := bytes.Clone(all)
	bad[len(bad)-1] ^= 0xff
	for _, mat := range []bool{false, true} {
		if mat {
			if _, err := d.Get("/a"); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.LoadIncremental(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bad checksum: %v", err)
		}
		if _, err := NewSyncState(d).Receive([]byte{0x42, 1, 2}); !errors.Is(err, ErrInvalidSync) {
			t.Fatalf("bad sync message: %v", err)
		}
		if !slices.Equal(d.Heads(), heads) {
			t.Fatal("bad input changed the document")
		}
	}
	if _, err := LoadGraphDoc(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadGraphDoc of bad bytes: %v", err)
	}
}

// TestDematerializeUnused: the core copy goes at the second check without
// a read or write in between, never while writes are pending, and comes
// back with the same content.
func TestDematerializeUnused(t *testing.T) {
	d := NewGraphDoc()
	if err := d.Set("/cpu", 42); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Commit(""); err != nil {
		t.Fatal(err)
	}
	before := mustJSON(t, d)
	if d.DematerializeUnused() || !d.Materialized() {
		t.Fatal("dropped right after a read")
	}
	if !d.DematerializeUnused() || d.Materialized() {
		t.Fatal("kept though unused since the last check")
	}
	if got := mustJSON(t, d); got != before || !d.Materialized() {
		t.Fatalf("after dropping the core copy: %s (materialized %v), want %s", got, d.Materialized(), before)
	}
	// A read between two checks keeps it.
	d.DematerializeUnused()
	if _, err := d.Get("/cpu"); err != nil {
		t.Fatal(err)
	}
	if d.DematerializeUnused() || !d.Materialized() {
		t.Fatal("dropped though read since the last check")
	}
	// Pending writes keep it, however long they wait.
	if err := d.Set("/cpu", 43); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if d.DematerializeUnused() || !d.Materialized() {
			t.Fatal("dropped with a pending write")
		}
	}
	if v, err := d.Get("/cpu"); err != nil || v != int64(43) {
		t.Fatalf("pending write: %v, %v", v, err)
	}
	// Plain documents have nothing to drop.
	p := New()
	if p.DematerializeUnused() || p.DematerializeUnused() || !p.Materialized() {
		t.Fatal("a plain document lost its core")
	}
}

// TestExport: a graph document exports Automerge's compact document format
// (far smaller than its saved change chunks) with the same content and
// heads, and exporting leaves incremental saving alone, for both kinds.
func TestExport(t *testing.T) {
	for _, graph := range []bool{false, true} {
		d := New()
		if graph {
			d = NewGraphDoc()
		}
		for i := range 200 {
			if err := d.Set(fmt.Sprintf("/w%d", i%20), i); err != nil {
				t.Fatal(err)
			}
			if _, _, err := d.Commit(""); err != nil {
				t.Fatal(err)
			}
		}
		_ = d.SaveIncremental()
		if err := d.Set("/last", true); err != nil { // pending: Export commits it
			t.Fatal(err)
		}
		out, err := d.Export()
		if err != nil {
			t.Fatal(err)
		}
		e, err := Load(out)
		if err != nil {
			t.Fatalf("graph=%v: export does not load: %v", graph, err)
		}
		if !slices.Equal(e.Heads(), d.Heads()) || mustJSON(t, e) != mustJSON(t, d) {
			t.Fatalf("graph=%v: export differs: %s vs %s", graph, mustJSON(t, e), mustJSON(t, d))
		}
		if saved := d.Save(); graph && len(out)*5 > len(saved) {
			t.Errorf("graph export %d bytes, not much smaller than its %d saved bytes", len(out), len(saved))
		}
		// The change committed by Export is still to be saved: Save above
		// took it, so make one more and see it come out incrementally.
		if err := d.Set("/after", 1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Commit(""); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Export(); err != nil {
			t.Fatal(err)
		}
		if inc := d.SaveIncremental(); len(inc) == 0 {
			t.Errorf("graph=%v: Export swallowed the next incremental save", graph)
		}
	}
}
