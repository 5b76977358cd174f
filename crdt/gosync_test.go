package crdt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"
)

// syncStats counts what went over the wire in one direction.
type syncStats struct {
	msgs      int
	changes   int // changes carried
	blooms    int // messages whose have carried a non-empty Bloom filter
	needs     int // messages that asked for changes by hash
	maxChange int // most changes in one message
}

func (st *syncStats) note(t testing.TB, msg []byte) {
	t.Helper()
	m, err := decodeSyncV1(msg)
	if err != nil {
		t.Fatalf("message does not decode: %v", err)
	}
	st.msgs++
	st.changes += len(m.changes)
	st.maxChange = max(st.maxChange, len(m.changes))
	if len(m.need) > 0 {
		st.needs++
	}
	for _, h := range m.haves {
		if h.bloom.entries > 0 {
			st.blooms++
			break
		}
	}
}

// peer is either side of a test exchange.
type peer interface {
	gen() ([]byte, bool)
	recv(t testing.TB, msg []byte)
}

type docPeer struct{ s *SyncState }

func (p docPeer) gen() ([]byte, bool) { return p.s.Generate() }
func (p docPeer) recv(t testing.TB, msg []byte) {
	t.Helper()
	if _, err := p.s.Receive(msg); err != nil {
		t.Fatalf("Doc Receive: %v", err)
	}
}

type graphPeer struct{ s *GraphSync }

func (p graphPeer) gen() ([]byte, bool) { return p.s.Generate() }
func (p graphPeer) recv(t testing.TB, msg []byte) {
	t.Helper()
	if _, err := p.s.Receive(msg); err != nil {
		t.Fatalf("GraphSync Receive: %v", err)
	}
}

// exchange runs a ⇄ b for at most steps rounds, or until both are quiet
// when steps < 0 (failing after maxRounds). It returns whether both went
// quiet.
func exchange(t testing.TB, a, b peer, ab, ba *syncStats, steps, maxRounds int) bool {
	t.Helper()
	for round := 0; steps < 0 || round < steps; round++ {
		if steps < 0 && round >= maxRounds {
			t.Fatalf("no quiet after %d rounds (%d + %d messages)", maxRounds, ab.msgs, ba.msgs)
		}
		m1, ok1 := a.gen()
		if ok1 {
			ab.note(t, m1)
			b.recv(t, m1)
		}
		m2, ok2 := b.gen()
		if ok2 {
			ba.note(t, m2)
			a.recv(t, m2)
		}
		if !ok1 && !ok2 {
			return true
		}
	}
	return false
}

func addAll(t testing.TB, g *Graph, chunks [][]byte) {
	t.Helper()
	if _, err := g.Add(bytes.Join(chunks, nil)); err != nil {
		t.Fatal(err)
	}
}

var editSeq int

// edit makes n random commits on d and returns their bytes.
func edit(t testing.TB, rng *rand.Rand, d *Doc, n int) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < n; i++ {
		editSeq++ // a new value every time: setting the same value makes no change
		if rng.Intn(8) == 0 {
			_ = d.Add("/list/-", editSeq)
		} else {
			_ = d.Set(fmt.Sprintf("/k%d", rng.Intn(30)), editSeq)
		}
		out = append(out, mustCommit(t, d, "").Bytes...)
	}
	return out
}

// checkSame checks that g holds exactly d's changes and that loading
// them gives d's JSON.
func checkSame(t testing.TB, d *Doc, g *Graph) {
	t.Helper()
	if !reflect.DeepEqual(d.Heads(), g.Heads()) {
		t.Fatalf("heads differ: doc %d, graph %d", len(d.Heads()), len(g.Heads()))
	}
	fresh := New()
	if err := fresh.LoadIncremental(bytes.Join(g.ChangesSince(nil), nil)); err != nil {
		t.Fatal(err)
	}
	if jsonOf(t, fresh, "") != jsonOf(t, d, "") {
		t.Fatalf("JSON differs:\n%s\n%s", jsonOf(t, fresh, ""), jsonOf(t, d, ""))
	}
}

// TestGraphSyncConverges: a Doc (automerge's sync) and a Graph
// (GraphSync) with divergent histories and edits arriving on both sides
// between rounds end with the same changes.
func TestGraphSyncConverges(t *testing.T) {
	for _, tc := range []struct {
		seed            int64
		initial, rounds int
		bound           int
	}{
		{1, 0, 10, 10}, {2, 5, 20, 10}, {3, 30, 30, 10}, {4, 200, 40, 12}, {5, 2000, 20, 12},
	} {
		t.Run(fmt.Sprintf("seed=%d/changes=%d", tc.seed, tc.initial), func(t *testing.T) {
			if testing.Short() && tc.initial > 500 {
				t.Skip("large")
			}
			rng := rand.New(rand.NewSource(tc.seed))
			d1 := mustFromJSON(t, `{"list":[]}`)
			d2, err := d1.Fork() // the Graph side's source of changes
			if err != nil {
				t.Fatal(err)
			}
			g := NewGraph()
			addAll(t, g, [][]byte{splitAll(t, d1)[0].Raw})
			if _, err := g.Add(edit(t, rng, d2, tc.initial)); err != nil {
				t.Fatal(err)
			}
			edit(t, rng, d1, tc.initial)

			ss, gs := NewSyncState(d1), NewGraphSync(g)
			var toG, toD syncStats
			for r := 0; r < tc.rounds; r++ {
				exchange(t, docPeer{ss}, graphPeer{gs}, &toG, &toD, 1+rng.Intn(3), 0)
				edit(t, rng, d1, rng.Intn(3))
				if _, err := g.Add(edit(t, rng, d2, rng.Intn(3))); err != nil {
					t.Fatal(err)
				}
				if rng.Intn(4) == 0 {
					// The Graph side's writer catches up and builds on
					// changes from the Doc side.
					if err := d2.LoadIncremental(bytes.Join(g.ChangesSince(d2.Heads()), nil)); err != nil {
						t.Fatal(err)
					}
				}
			}
			before := toG.msgs + toD.msgs
			exchange(t, docPeer{ss}, graphPeer{gs}, &toG, &toD, -1, tc.bound)
			checkSame(t, d1, g)
			if !reflect.DeepEqual(gs.TheirHeads(), g.Heads()) {
				t.Error("session does not know the peer's heads")
			}
			t.Logf("%d messages (%d to finish), changes to graph %d, to doc %d; blooms %d/%d; needs %d/%d",
				toG.msgs+toD.msgs, toG.msgs+toD.msgs-before, toG.changes, toD.changes,
				toG.blooms, toD.blooms, toG.needs, toD.needs)
			if tc.initial >= 2000 {
				if toG.blooms == 0 || toD.blooms == 0 {
					t.Errorf("Bloom filters not exercised: %d to graph, %d to doc", toG.blooms, toD.blooms)
				}
				// The filters keep each side from sending back what the
				// other has: about each side's own changes, not both.
				if toD.changes > 2*tc.initial || toG.changes > 2*tc.initial {
					t.Errorf("too many changes resent: %d to doc, %d to graph", toD.changes, toG.changes)
				}
			}
		})
	}
}

// TestGraphSyncRelay: Doc A ⇄ GraphSync ⇄ Graph ⇄ GraphSync ⇄ Doc B, as
// a server relays between two clients.
func TestGraphSyncRelay(t *testing.T) {
	for _, tc := range []struct {
		seed            int64
		initial, rounds int
	}{{11, 0, 10}, {12, 20, 30}, {13, 300, 30}, {14, 2000, 10}} {
		t.Run(fmt.Sprintf("seed=%d/changes=%d", tc.seed, tc.initial), func(t *testing.T) {
			if testing.Short() && tc.initial > 500 {
				t.Skip("large")
			}
			rng := rand.New(rand.NewSource(tc.seed))
			a := mustFromJSON(t, `{"list":[]}`)
			b, err := a.Fork()
			if err != nil {
				t.Fatal(err)
			}
			edit(t, rng, a, tc.initial)
			edit(t, rng, b, tc.initial)
			g := NewGraph()
			sa, ga := NewSyncState(a), NewGraphSync(g)
			sb, gb := NewSyncState(b), NewGraphSync(g)
			var aToG, gToA, bToG, gToB syncStats
			for r := 0; r < tc.rounds; r++ {
				exchange(t, docPeer{sa}, graphPeer{ga}, &aToG, &gToA, 1+rng.Intn(2), 0)
				exchange(t, docPeer{sb}, graphPeer{gb}, &bToG, &gToB, 1+rng.Intn(2), 0)
				edit(t, rng, a, rng.Intn(3))
				edit(t, rng, b, rng.Intn(3))
			}
			// Relay until all four sessions are quiet at once.
			for i := 0; ; i++ {
				if i > 10 {
					t.Fatal("relay did not settle")
				}
				n := aToG.msgs + gToA.msgs + bToG.msgs + gToB.msgs
				exchange(t, docPeer{sa}, graphPeer{ga}, &aToG, &gToA, -1, 12)
				exchange(t, docPeer{sb}, graphPeer{gb}, &bToG, &gToB, -1, 12)
				if aToG.msgs+gToA.msgs+bToG.msgs+gToB.msgs == n {
					break
				}
			}
			checkSame(t, a, g)
			checkSame(t, b, g)
			t.Logf("A→G %d msgs %d changes, G→A %d/%d, B→G %d/%d, G→B %d/%d; blooms %d %d %d %d",
				aToG.msgs, aToG.changes, gToA.msgs, gToA.changes, bToG.msgs, bToG.changes, gToB.msgs, gToB.changes,
				aToG.blooms, gToA.blooms, bToG.blooms, gToB.blooms)
			if tc.initial >= 2000 && (aToG.blooms == 0 || gToA.blooms == 0 || bToG.blooms == 0 || gToB.blooms == 0) {
				t.Error("Bloom filters not exercised in every direction")
			}
		})
	}
}

// TestGraphSyncGraphs: two GraphSyncs converge with each other too.
func TestGraphSyncGraphs(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	a := mustFromJSON(t, `{"list":[]}`)
	b, _ := a.Fork()
	ga, gb := NewGraph(), NewGraph()
	if _, err := ga.Add(edit(t, rng, a, 300)); err != nil {
		t.Fatal(err)
	}
	if _, err := gb.Add(bytes.Join(splitRaw(t, b), nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := gb.Add(edit(t, rng, b, 300)); err != nil {
		t.Fatal(err)
	}
	var ab, ba syncStats
	sa, sb := NewGraphSync(ga), NewGraphSync(gb)
	exchange(t, graphPeer{sa}, graphPeer{sb}, &ab, &ba, -1, 10)
	if !reflect.DeepEqual(ga.Heads(), gb.Heads()) || ga.Len() != gb.Len() || ga.Queued() != 0 {
		t.Fatalf("graphs differ: %d vs %d changes", ga.Len(), gb.Len())
	}
	if err := a.LoadIncremental(bytes.Join(ga.ChangesSince(nil), nil)); err != nil {
		t.Fatal(err)
	}
	checkSame(t, a, gb)
	if ab.changes > 310 || ba.changes > 310 {
		t.Errorf("changes sent %d and %d for 300 each side", ab.changes, ba.changes)
	}
}

func splitRaw(t testing.TB, d *Doc) [][]byte {
	var out [][]byte
	for _, c := range splitAll(t, d) {
		out = append(out, c.Raw)
	}
	return out
}

// TestGraphSyncSteadyState: once in sync, both sides are quiet, and one
// new change costs a short exchange that carries just that change.
func TestGraphSyncSteadyState(t *testing.T) {
	rng := rand.New(rand.NewSource(31))
	d := mustFromJSON(t, `{"list":[]}`)
	edit(t, rng, d, 50)
	g := NewGraph()
	ss, gs := NewSyncState(d), NewGraphSync(g)
	var toG, toD syncStats
	exchange(t, docPeer{ss}, graphPeer{gs}, &toG, &toD, -1, 8)
	checkSame(t, d, g)
	if _, ok := gs.Generate(); ok {
		t.Fatal("graph side speaks when in sync")
	}
	for i := 0; i < 20; i++ {
		var a, b syncStats
		edit(t, rng, d, 1)
		exchange(t, docPeer{ss}, graphPeer{gs}, &a, &b, -1, 4)
		if a.changes != 1 || b.changes != 0 || a.msgs+b.msgs > 4 {
			t.Fatalf("doc change %d: %d+%d messages carrying %d+%d changes", i, a.msgs, b.msgs, a.changes, b.changes)
		}
		// And the other way.
		other, _ := Load(d.Save())
		info := edit(t, rng, other, 1)
		added, err := g.Add(info)
		if err != nil || len(added) != 1 {
			t.Fatal(err)
		}
		a, b = syncStats{}, syncStats{}
		exchange(t, docPeer{ss}, graphPeer{gs}, &a, &b, -1, 4)
		if b.changes != 1 || a.changes != 0 || a.msgs+b.msgs > 4 {
			t.Fatalf("graph change %d: %d+%d messages carrying %d+%d changes", i, a.msgs, b.msgs, a.changes, b.changes)
		}
		checkSame(t, d, g)
	}
}

// TestGraphSyncNoStall replays the scenario in which automerge-rs sync
// falls silent (see stallScenario in sync_test.go: a Bloom filter false
// positive while a change is in flight) with a Graph in a's place, against
// a Doc whose own stall recovery is off: GraphSync alone must converge.
func TestGraphSyncNoStall(t *testing.T) {
	noStallRecovery = true
	defer func() { noStallRecovery = false }()
	if a, b := stallScenario(t, 88); reflect.DeepEqual(a.Heads(), b.Heads()) {
		t.Fatal("the Doc-only scenario no longer stalls; pick another seed")
	}

	tick := time.UnixMilli(1_700_000_000_000 + 88*1000)
	commitClock = func() time.Time { tick = tick.Add(time.Second); return tick }
	defer func() { commitClock = time.Now }()
	a, _ := NewWithActor("aa") // the writer behind the Graph
	b, _ := NewWithActor("bb")
	_ = a.Set("/x", 1)
	mustCommit(t, a, "")
	c, _ := a.Fork()
	_ = c.SetActorID("cc")
	g := NewGraph()
	addAll(t, g, splitRaw(t, a))
	gs, sb := NewGraphSync(g), NewSyncState(b)
	var toB, toG syncStats
	exchange(t, graphPeer{gs}, docPeer{sb}, &toB, &toG, -1, 10)
	_ = a.Set("/a", 1)
	x := mustCommit(t, a, "") // X
	if _, err := g.Add(x.Bytes); err != nil {
		t.Fatal(err)
	}
	if err := b.LoadIncremental(x.Bytes); err != nil {
		t.Fatal(err)
	}
	_ = b.Set("/b", 2)
	mustCommit(t, b, "") // Y, on top of X
	_ = c.Set("/c", 3)
	z := mustCommit(t, c, "") // Z, concurrent with X
	if _, err := g.Add(z.Bytes); err != nil {
		t.Fatal(err)
	}
	toB, toG = syncStats{}, syncStats{}
	exchange(t, graphPeer{gs}, docPeer{sb}, &toB, &toG, -1, 10)
	checkSame(t, b, g)
	if got := jsonOf(t, b, ""); got != `{"a":1,"b":2,"c":3,"x":1}` {
		t.Errorf("b = %s", got)
	}
	// The false positive happened: the graph had to ask for Y by hash.
	if toB.needs == 0 {
		t.Error("no false positive in this scenario: the graph never asked for a change")
	}
}

// TestGraphSyncNeedChanged: a session waiting for an acknowledgement
// still speaks, once, when what it needs changed.
func TestGraphSyncNeedChanged(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	g := NewGraph()
	ss, gs := NewSyncState(d), NewGraphSync(g)
	m, _ := ss.Generate()
	if _, err := gs.Receive(m); err != nil {
		t.Fatal(err)
	}
	first, ok := gs.Generate()
	if !ok {
		t.Fatal("no reply")
	}
	if m, _ := decodeSyncV1(first); len(m.need) == 0 {
		t.Fatal("reply does not ask for the peer's heads")
	}
	if _, ok := gs.Generate(); ok {
		t.Fatal("in flight, same need: must wait")
	}
	// Another peer delivers a change that depends on something missing
	// and that the peer's head needs: the need moves to that dependency.
	_ = d.Set("/a", 2)
	c2 := mustCommit(t, d, "")
	_ = d.Set("/a", 3)
	c3 := mustCommit(t, d, "")
	// Tell the session the peer is now at c3 (as a message would).
	gs.theirHeads = []Hash{c3.Hash}
	if _, err := g.Add(c3.Bytes); err != nil {
		t.Fatal(err)
	}
	msg, ok := gs.Generate()
	if !ok {
		t.Fatal("need changed but the session waits")
	}
	mm, _ := decodeSyncV1(msg)
	if len(mm.need) != 1 || mm.need[0] != c2.Hash {
		t.Fatalf("need = %v, want c2", mm.need)
	}
	if _, ok := gs.Generate(); ok {
		t.Fatal("same need sent twice while in flight")
	}
}

// TestGraphSyncReset: a peer resuming a session whose shared heads the
// graph lacks (the server lost data) gets one reset per message and then
// sends everything.
func TestGraphSyncReset(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	d := mustFromJSON(t, `{"list":[]}`)
	edit(t, rng, d, 30)
	g1 := NewGraph()
	ss, gs := NewSyncState(d), NewGraphSync(g1)
	var x, y syncStats
	exchange(t, docPeer{ss}, graphPeer{gs}, &x, &y, -1, 8)
	saved := ss.Save()

	edit(t, rng, d, 5)
	g2 := NewGraph() // lost everything
	resumed, err := LoadSyncState(d, saved)
	if err != nil {
		t.Fatal(err)
	}
	gs2 := NewGraphSync(g2)
	m, ok := resumed.Generate()
	if !ok {
		t.Fatal("no message")
	}
	if _, err := gs2.Receive(m); err != nil {
		t.Fatal(err)
	}
	reset, ok := gs2.Generate()
	if !ok {
		t.Fatal("no reset")
	}
	rm, _ := decodeSyncV1(reset)
	if len(rm.haves) != 1 || len(rm.haves[0].lastSync) != 0 || rm.haves[0].bloom.entries != 0 {
		t.Fatalf("not a reset: %+v", rm)
	}
	if _, ok := gs2.Generate(); ok {
		t.Fatal("reset sent twice for one message")
	}
	if _, err := resumed.Receive(reset); err != nil {
		t.Fatal(err)
	}
	exchange(t, docPeer{resumed}, graphPeer{gs2}, &x, &y, -1, 10)
	checkSame(t, d, g2)
}

// TestGraphSyncTrailer: JavaScript Automerge 3 appends a capability
// trailer to version-1 messages; it is ignored.
func TestGraphSyncTrailer(t *testing.T) {
	req, _ := hex.DecodeString("42000001000000020284")
	g := NewGraph()
	s := NewGraphSync(g)
	if _, err := s.Receive(req); err != nil {
		t.Fatal(err)
	}
	d := mustFromJSON(t, `{"a":1}`)
	ss := NewSyncState(d)
	gs := NewGraphSync(g)
	m, _ := ss.Generate()
	if _, err := gs.Receive(append(bytes.Clone(m), 0x02, 0x02, 0x84)); err != nil {
		t.Fatal(err)
	}
	var x, y syncStats
	exchange(t, graphPeer{gs}, docPeer{ss}, &x, &y, -1, 8)
	checkSame(t, d, g)
}

// sessionState is what must not change when Receive fails.
func sessionState(s *GraphSync) string {
	sent := make([]int32, 0, len(s.sent))
	for n := range s.sent {
		sent = append(sent, n)
	}
	slices.Sort(sent)
	return fmt.Sprint(graphState(s.g), s.sharedHeads, s.lastSentHeads, s.theirHeads, s.theirNeed,
		len(s.theirHave), s.heard, sent, s.inFlight, s.haveResponded, s.lastNeed, s.resetSent)
}

// withChangesMessage returns a real message from a Doc carrying changes,
// and a session that has received one message from the same Doc.
func withChangesMessage(t testing.TB) (msg []byte, gs *GraphSync) {
	t.Helper()
	d, _, _ := seedDoc(t)
	ss := NewSyncState(d)
	g := NewGraph()
	gs = NewGraphSync(g)
	for i := 0; i < 6; i++ {
		m, ok := ss.Generate()
		if !ok {
			break
		}
		if _, n, _ := InspectSyncMessage(m); n > 0 {
			// A fresh session and graph, primed with the first message.
			g2 := NewGraph()
			gs2 := NewGraphSync(g2)
			first, _ := NewSyncState(d).Generate()
			if _, err := gs2.Receive(first); err != nil {
				t.Fatal(err)
			}
			gs2.Generate()
			return m, gs2
		}
		if _, err := gs.Receive(m); err != nil {
			t.Fatal(err)
		}
		if r, ok := gs.Generate(); ok {
			if _, err := ss.Receive(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("no message with changes")
	return nil, nil
}

func TestGraphSyncRejects(t *testing.T) {
	msg, gs := withChangesMessage(t)
	before := sessionState(gs)
	expectBad := func(name string, m []byte) {
		t.Helper()
		if _, err := gs.Receive(m); !errors.Is(err, ErrInvalidSync) {
			t.Errorf("%s: err = %v", name, err)
		}
		if got := sessionState(gs); got != before {
			t.Errorf("%s: state changed:\n%s\n%s", name, before, got)
		}
	}
	for i := 0; i < len(msg); i++ {
		// Any prefix that cuts a hash, a filter or a change is refused;
		// one that ends exactly before the change list is not a message.
		if _, err := decodeSyncV1(msg[:i]); err != nil {
			expectBad(fmt.Sprintf("truncated at %d", i), msg[:i])
		}
	}
	rng := rand.New(rand.NewSource(51))
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.Intn(300))
		rng.Read(b)
		if _, err := decodeSyncV1(b); err == nil {
			continue // vanishingly unlikely
		}
		expectBad("random", b)
	}
	for _, typ := range []byte{0x00, 0x43, 0x41, 0xff} {
		m := bytes.Clone(msg)
		m[0] = typ
		expectBad(fmt.Sprintf("type 0x%02x", typ), m)
	}
	// A change with a bad checksum: flip the last byte of the message's
	// last change.
	m := bytes.Clone(msg)
	m[len(m)-1] ^= 0x01
	expectBad("bad change checksum", m)
	// A bad Bloom filter: entries but no bits.
	bad := encodeSyncV1(nil, nil, []syncHave{{}}, nil)
	bad = bytes.Replace(bad, []byte{0x01, 0x00, 0x00}, []byte{0x01, 0x00, 0x03, 0x05, 0x00, 0x07, 0x00}, 1)
	expectBad("bad Bloom filter", bad)
	bf := newBloom([]Hash{{1}, {2}})
	trunc := encodeSyncV1(nil, nil, []syncHave{{bloom: bf}}, nil)
	// The filter's length, before its bytes and the change count: one
	// short, so the filter lacks a byte of its bits.
	trunc[len(trunc)-1-len(bf.appendTo(nil))-1]--
	expectBad("short Bloom filter", trunc)
	// A document chunk where a change belongs.
	d := mustFromJSON(t, `{"a":1}`)
	expectBad("document chunk", encodeSyncV1(nil, nil, nil, [][]byte{d.Save()}))

	// Still works after all that.
	if _, err := gs.Receive(msg); err != nil {
		t.Fatal(err)
	}
	if gs.g.Len() == 0 {
		t.Fatal("good message added nothing")
	}
}

func FuzzGraphSyncReceive(f *testing.F) {
	d, _, _ := seedDoc(f)
	// Real messages both ways between a Doc and a GraphSync.
	ss, gs := NewSyncState(d), NewGraphSync(NewGraph())
	for i := 0; i < 10; i++ {
		m1, ok1 := ss.Generate()
		if ok1 {
			f.Add(m1)
			if _, err := gs.Receive(m1); err != nil {
				f.Fatal(err)
			}
		}
		m2, ok2 := gs.Generate()
		if ok2 {
			f.Add(m2)
			if _, err := ss.Receive(m2); err != nil {
				f.Fatal(err)
			}
		}
		if !ok1 && !ok2 {
			break
		}
	}
	req, _ := hex.DecodeString("42000001000000020284")
	f.Add(req)
	f.Add(encodeSyncV1(nil, nil, []syncHave{{bloom: newBloom([]Hash{{1}})}}, nil))
	f.Add([]byte{0x43, 0, 0, 0, 0})
	f.Add([]byte{0x42, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		g := NewGraph()
		if _, err := g.Add(bytes.Join(splitRaw(t, d)[:1], nil)); err != nil {
			t.Fatal(err)
		}
		s := NewGraphSync(g)
		before := sessionState(s)
		if _, err := s.Receive(msg); err != nil {
			if !errors.Is(err, ErrInvalidSync) {
				t.Fatalf("error %v does not wrap ErrInvalidSync", err)
			}
			if sessionState(s) != before {
				t.Fatal("state changed on error")
			}
		}
		// Whatever came in, the session goes quiet.
		for i := 0; ; i++ {
			if i > 3 {
				t.Fatal("Generate does not stop")
			}
			if _, ok := s.Generate(); !ok {
				break
			}
		}
		g.ChangesSince(s.TheirHeads())
	})
}
