package crdt

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
)

// branchyDoc builds a document of about n changes made on three replicas
// that merge now and then, and returns it with heads seen along the way
// (old heads of every replica, including concurrent ones).
func branchyDoc(t testing.TB, rng *rand.Rand, n int) (*Doc, [][]Hash) {
	t.Helper()
	base := mustFromJSON(t, `{"title":"x","n":0,"list":[]}`)
	reps := []*Doc{base}
	for i := 0; i < 2; i++ {
		f, err := base.Fork()
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, f)
	}
	var snaps [][]Hash
	for i := 0; i < n; i++ {
		r := reps[rng.Intn(len(reps))]
		switch rng.Intn(10) {
		case 0:
			o := reps[rng.Intn(len(reps))]
			if o != r {
				if err := r.Merge(o); err != nil {
					t.Fatal(err)
				}
			}
		case 1:
			_ = r.Add("/list/-", i)
		default:
			_ = r.Set(fmt.Sprintf("/k%d", rng.Intn(20)), i)
		}
		if r.HasUncommitted() {
			mustCommit(t, r, "")
		}
		if rng.Intn(n/8+1) == 0 {
			snaps = append(snaps, r.Heads())
		}
	}
	d := reps[0]
	for _, o := range reps[1:] {
		snaps = append(snaps, o.Heads()) // concurrent with d's own branch
		if err := d.Merge(o); err != nil {
			t.Fatal(err)
		}
	}
	return d, snaps
}

func splitAll(t testing.TB, d *Doc) []Change {
	t.Helper()
	all, err := d.ChangesSince(nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := SplitChanges(all)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func hashSet(hs []Hash) map[Hash]bool {
	m := make(map[Hash]bool, len(hs))
	for _, h := range hs {
		m[h] = true
	}
	return m
}

// chunkHashes returns the hashes of raw change chunks and checks that
// each comes after its dependencies among them (causal order).
func chunkHashes(t testing.TB, chunks [][]byte) []Hash {
	t.Helper()
	seen := make(map[Hash]bool)
	var deps []Hash
	var out []Hash
	for _, c := range chunks {
		cs, err := SplitChanges(c)
		if err != nil || len(cs) != 1 {
			t.Fatalf("chunk: %v (%d changes)", err, len(cs))
		}
		out = append(out, cs[0].Hash)
		seen[cs[0].Hash] = true
		deps = append(deps, cs[0].Deps...)
	}
	// A dependency inside the result must come before its dependent.
	pos := make(map[Hash]int)
	for i, h := range out {
		pos[h] = i
	}
	for i, c := range chunks {
		cs, _ := SplitChanges(c)
		for _, d := range cs[0].Deps {
			if p, ok := pos[d]; ok && p > i {
				t.Fatalf("change %d depends on later change %d", i, p)
			}
		}
	}
	return out
}

func TestGraphMatchesDoc(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	d, snaps := branchyDoc(t, rng, 400)
	cs := splitAll(t, d)
	rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })

	g := NewGraph()
	joined := 0
	for start := 0; start < len(cs); {
		end := min(len(cs), start+1+rng.Intn(60))
		var batch []byte
		for _, c := range cs[start:end] {
			batch = append(batch, c.Raw...)
		}
		// Some changes twice, within and across calls: ignored.
		batch = append(batch, cs[start].Raw...)
		added, err := g.Add(batch)
		if err != nil {
			t.Fatal(err)
		}
		joined += len(added)
		if g.Len() != joined || g.Len()+g.Queued() != end {
			t.Fatalf("after %d changes: Len %d, Queued %d, reported %d", end, g.Len(), g.Queued(), joined)
		}
		start = end
	}
	if !reflect.DeepEqual(g.Heads(), d.Heads()) {
		t.Fatalf("heads %v, doc %v", g.Heads(), d.Heads())
	}
	if g.Queued() != 0 || len(g.MissingDeps(nil)) != 0 {
		t.Fatalf("queued %d, missing %v", g.Queued(), g.MissingDeps(nil))
	}
	total := 0
	for _, c := range cs {
		total += len(c.Raw)
		raw, ok := g.Change(c.Hash)
		if !ok || !bytes.Equal(raw, c.Raw) || !g.Has(c.Hash) {
			t.Fatalf("Change(%s) = %v", c.Hash, ok)
		}
	}
	if g.Bytes() != total {
		t.Errorf("Bytes = %d, want %d", g.Bytes(), total)
	}

	var unknown Hash
	unknown[0] = 0xee
	old := snaps[0]
	cases := [][]Hash{nil, {}, {unknown}, append(slices.Clone(old), unknown), d.Heads()}
	cases = append(cases, snaps...)
	for i := 0; i+1 < len(snaps); i += 3 {
		cases = append(cases, sortUnique(append(slices.Clone(snaps[i]), snaps[i+1]...)))
	}
	for i, heads := range cases {
		want, err := d.ChangesSince(heads)
		if err != nil {
			t.Fatal(err)
		}
		wcs, _ := SplitChanges(want)
		var wantHashes []Hash
		for _, c := range wcs {
			wantHashes = append(wantHashes, c.Hash)
		}
		got := chunkHashes(t, g.ChangesSince(heads))
		if !reflect.DeepEqual(hashSet(got), hashSet(wantHashes)) || len(got) != len(wantHashes) {
			t.Errorf("case %d (%d heads): %d changes, doc %d", i, len(heads), len(got), len(wantHashes))
		}
		if hs := g.HashesSince(heads); !reflect.DeepEqual(hs, got) && len(got) > 0 {
			t.Errorf("case %d: HashesSince differs from ChangesSince", i)
		}
	}
}

// TestGraphMissingDeps compares MissingDeps with what automerge asks for
// (a new sync session's "need" is get_missing_deps of no heads) while
// changes arrive out of order.
func TestGraphMissingDeps(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	d, _ := branchyDoc(t, rng, 120)
	cs := splitAll(t, d)
	// The first change first: automerge loads the first bytes given to
	// an empty document as a whole document, which refuses missing
	// dependencies instead of queuing.
	rng.Shuffle(len(cs)-1, func(i, j int) { cs[i+1], cs[j+1] = cs[j+1], cs[i+1] })
	g := NewGraph()
	oracle := New()
	compared := 0
	for i, c := range cs {
		if _, err := g.Add(c.Raw); err != nil {
			t.Fatal(err)
		}
		if err := oracle.LoadIncremental(c.Raw); err != nil {
			t.Fatal(err)
		}
		if i%7 != 0 && i != len(cs)-1 {
			continue
		}
		msg, ok := NewSyncState(oracle).Generate()
		if !ok {
			t.Fatal("no first message")
		}
		m, err := decodeSyncV1(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.MissingDeps(nil); !reflect.DeepEqual(got, m.need) && len(got)+len(m.need) > 0 {
			t.Fatalf("after %d changes: MissingDeps %d hashes, automerge %d", i+1, len(got), len(m.need))
		}
		if !reflect.DeepEqual(g.Heads(), oracle.Heads()) {
			t.Fatalf("after %d changes: heads differ", i+1)
		}
		if len(m.need) > 0 {
			compared++
		}
	}
	if compared < 3 {
		t.Fatalf("only %d comparisons with missing dependencies", compared)
	}
}

func TestGraphMissingDepsHeads(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	c0 := splitAll(t, d)[0]
	_ = d.Set("/a", 2)
	c1 := mustCommit(t, d, "")
	_ = d.Set("/a", 3)
	c2 := mustCommit(t, d, "")
	g := NewGraph()
	if _, err := g.Add(c2.Bytes); err != nil {
		t.Fatal(err)
	}
	var unknown Hash
	unknown[0] = 1
	// c2 waits for c1; c2 itself and c0 (known) are not missing.
	want := sortUnique([]Hash{c1.Hash, unknown})
	if got := g.MissingDeps([]Hash{c2.Hash, unknown}); !reflect.DeepEqual(got, want) {
		t.Fatalf("MissingDeps = %v, want %v", got, want)
	}
	if got := g.missingFrom([]Hash{c2.Hash}); !reflect.DeepEqual(got, []Hash{c1.Hash}) {
		t.Fatalf("missingFrom = %v", got)
	}
	if _, err := g.Add(c0.Raw); err != nil {
		t.Fatal(err)
	}
	added, err := g.Add(c1.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(added, []Hash{c1.Hash, c2.Hash}) {
		t.Fatalf("added = %v", added)
	}
	if !reflect.DeepEqual(g.Heads(), []Hash{c2.Hash}) || g.Queued() != 0 {
		t.Fatalf("heads %v queued %d", g.Heads(), g.Queued())
	}
}

// graphState is what must not change when Add fails.
func graphState(g *Graph) string {
	return fmt.Sprint(g.Heads(), g.Len(), g.Queued(), g.Bytes(), g.MissingDeps(nil))
}

func TestGraphAddRejects(t *testing.T) {
	d, _, _ := seedDoc(t)
	cs := splitAll(t, d)
	g := NewGraph()
	if _, err := g.Add(cs[0].Raw); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(cs[2].Raw); err != nil { // queued
		t.Fatal(err)
	}
	before := graphState(g)
	good := cs[1].Raw
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 1
	wrongType := bytes.Clone(good)
	wrongType[8] = 9
	rng := rand.New(rand.NewSource(3))
	random := make([]byte, 200)
	rng.Read(random)
	for name, data := range map[string][]byte{
		"document chunk":         d.Save(),
		"change then document":   append(bytes.Clone(good), d.Save()...),
		"bad checksum":           badSum,
		"good then bad checksum": append(bytes.Clone(good), badSum...),
		"truncated":              good[:len(good)-1],
		"header only":            good[:9],
		"wrong chunk type":       wrongType,
		"random":                 random,
		"magic then random":      append([]byte{0x85, 0x6f, 0x4a, 0x83}, random...),
	} {
		if _, err := g.Add(data); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v", name, err)
		}
		if got := graphState(g); got != before {
			t.Errorf("%s: graph changed: %s -> %s", name, before, got)
		}
	}
	if added, err := g.Add(nil); err != nil || len(added) != 0 {
		t.Errorf("Add(nil) = %v, %v", added, err)
	}
	added, err := g.Add(good)
	if err != nil || len(added) != 2 {
		t.Fatalf("Add(good) = %v, %v", added, err)
	}
	if !reflect.DeepEqual(g.Heads(), d.Heads()) {
		t.Fatal("heads differ from the document's")
	}
}

// TestGraphCompressedChunk: a DEFLATE-compressed change (type 2, which
// automerge may write for large changes) is stored as received, under the
// hash of its uncompressed form.
func TestGraphCompressedChunk(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	raw := splitAll(t, d)[0].Raw
	r := &byteReader{b: raw, off: 9}
	body, ok := r.chunk()
	if !ok || raw[8] != 1 {
		t.Fatal("not an uncompressed change chunk")
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	_, _ = w.Write(body)
	_ = w.Close()
	comp := append(bytes.Clone(raw[:8]), 2)
	comp = appendUleb(comp, uint64(z.Len()))
	comp = append(comp, z.Bytes()...)

	g := NewGraph()
	added, err := g.Add(comp)
	if err != nil || len(added) != 1 || !reflect.DeepEqual(added, d.Heads()) {
		t.Fatalf("Add = %v, %v; doc heads %v", added, err, d.Heads())
	}
	if got, _ := g.Change(added[0]); !bytes.Equal(got, comp) {
		t.Fatal("stored chunk is not the compressed one received")
	}
	// Automerge reads it too.
	e := New()
	if err := e.LoadIncremental(comp); err != nil || !reflect.DeepEqual(e.Heads(), d.Heads()) {
		t.Fatalf("automerge: %v, heads %v", err, e.Heads())
	}
}

func TestGraphEmpty(t *testing.T) {
	g := NewGraph()
	if len(g.Heads()) != 0 || g.Len() != 0 || len(g.ChangesSince(nil)) != 0 || g.Bytes() != 0 {
		t.Fatal("empty graph not empty")
	}
	var h Hash
	if g.Has(h) || len(g.ChangesSince([]Hash{h})) != 0 {
		t.Fatal("empty graph has a change")
	}
	if _, ok := g.Change(h); ok {
		t.Fatal("Change on empty graph")
	}
}
