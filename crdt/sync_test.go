package crdt

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"
)

// syncPair runs Generate/Receive between two sessions until both are quiet
// and returns the results a received, in order.
func syncPair(t testing.TB, a, b *SyncState) (toA, toB []SyncResult) {
	t.Helper()
	for round := 0; ; round++ {
		if round > 50 {
			t.Fatal("sync did not converge in 50 rounds")
		}
		m1, ok1 := a.Generate()
		if ok1 {
			r, err := b.Receive(m1)
			if err != nil {
				t.Fatalf("b.Receive: %v", err)
			}
			toB = append(toB, r)
		}
		m2, ok2 := b.Generate()
		if ok2 {
			r, err := a.Receive(m2)
			if err != nil {
				t.Fatalf("a.Receive: %v", err)
			}
			toA = append(toA, r)
		}
		if !ok1 && !ok2 {
			return toA, toB
		}
	}
}

func TestSyncConverges(t *testing.T) {
	a := mustFromJSON(t, `{"widgets":[{"id":"w1","value":1}],"title":"A"}`)
	b := New()
	sa, sb := NewSyncState(a), NewSyncState(b)
	_, toB := syncPair(t, sa, sb)
	if !reflect.DeepEqual(a.Heads(), b.Heads()) || jsonOf(t, a, "") != jsonOf(t, b, "") {
		t.Fatalf("not converged: %s vs %s", jsonOf(t, a, ""), jsonOf(t, b, ""))
	}
	changed := false
	for _, r := range toB {
		changed = changed || r.Changed
	}
	if !changed {
		t.Error("no SyncResult reported Changed")
	}

	// Concurrent edits on both sides, then sync again.
	_ = a.Set("/widgets/0/value", 2)
	mustCommit(t, a, "a")
	_ = b.Set("/title", "B")
	_ = b.Add("/widgets/-", map[string]any{"id": "w2", "value": 3})
	mustCommit(t, b, "b")
	// A third document records every change that reaches b, from the
	// SyncResult bytes alone.
	c, err := Load(b.Save())
	if err != nil {
		t.Fatal(err)
	}
	_, toB = syncPair(t, sa, sb)
	for _, r := range toB {
		if r.NChanges > 0 {
			if len(r.Changes) == 0 {
				t.Error("NChanges > 0 but no bytes")
			}
			if err := c.LoadIncremental(r.Changes); err != nil {
				t.Fatal(err)
			}
		}
		if len(r.Heads) == 0 {
			t.Error("SyncResult.Heads empty")
		}
	}
	if !reflect.DeepEqual(a.Heads(), b.Heads()) || len(a.Heads()) != 2 {
		t.Fatalf("heads %v vs %v", a.Heads(), b.Heads())
	}
	want := `{"title":"B","widgets":[{"id":"w1","value":2},{"id":"w2","value":3}]}`
	for name, d := range map[string]*Doc{"a": a, "b": b, "c": c} {
		if got := jsonOf(t, d, ""); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if !reflect.DeepEqual(c.Heads(), b.Heads()) {
		t.Error("third doc heads differ")
	}
	// Quiet now.
	if _, ok := sa.Generate(); ok {
		t.Error("a still has something to send")
	}
}

func TestSyncStateSaveLoad(t *testing.T) {
	a := mustFromJSON(t, `{"x":1}`)
	b := New()
	sa, sb := NewSyncState(a), NewSyncState(b)
	syncPair(t, sa, sb)
	saved := sa.Save()
	if len(saved) == 0 {
		t.Fatal("empty saved state")
	}
	sa2, err := LoadSyncState(a, saved)
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Set("/x", 2)
	mustCommit(t, a, "")
	syncPair(t, sa2, NewSyncState(b))
	if jsonOf(t, b, "") != `{"x":2}` {
		t.Errorf("b = %s", jsonOf(t, b, ""))
	}
	for _, bad := range [][]byte{nil, {}, {1, 2, 3}, {0x43}, {0x43, 5}} {
		if _, err := LoadSyncState(a, bad); !errors.Is(err, ErrInvalidSync) {
			t.Errorf("LoadSyncState(%x) err = %v", bad, err)
		}
	}
}

func TestSyncAfterRollback(t *testing.T) {
	a := mustFromJSON(t, `{"x":1}`)
	b := New()
	sa, sb := NewSyncState(a), NewSyncState(b)
	syncPair(t, sa, sb)
	_ = a.Set("/x", 99)
	if err := a.Rollback(); err != nil { // replaces a's inner document
		t.Fatal(err)
	}
	_ = a.Set("/y", 2)
	mustCommit(t, a, "")
	syncPair(t, sa, sb)
	if got := jsonOf(t, b, ""); got != `{"x":1,"y":2}` {
		t.Errorf("b = %s", got)
	}
}

func TestSyncImplicitCommit(t *testing.T) {
	a := mustFromJSON(t, `{"x":1}`)
	b := New()
	sa, sb := NewSyncState(a), NewSyncState(b)
	_ = a.Set("/x", 2)
	syncPair(t, sa, sb)
	if a.HasUncommitted() || jsonOf(t, b, "") != `{"x":2}` {
		t.Errorf("pending write not synced: %s", jsonOf(t, b, ""))
	}
}

func TestJavaScriptRequestMessage(t *testing.T) {
	// The data of a real automerge-repo "request" from JavaScript Automerge
	// 3.5: an empty V1 sync message followed by the capability trailer.
	msg, _ := hex.DecodeString("42000001000000020284")
	heads, n, err := InspectSyncMessage(msg)
	if err != nil || len(heads) != 0 || n != 0 {
		t.Errorf("Inspect = %v, %d, %v", heads, n, err)
	}
	// Receiving it on a document we have makes us send the document.
	d := mustFromJSON(t, `{"x":1}`)
	s := NewSyncState(d)
	res, err := s.Receive(msg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.NChanges != 0 || len(res.Heads) != 0 {
		t.Errorf("result %+v", res)
	}
	reply, ok := s.Generate()
	if !ok {
		t.Fatal("no reply to a request")
	}
	heads, n, err = InspectSyncMessage(reply)
	if err != nil || !reflect.DeepEqual(heads, d.Heads()) || n != 1 {
		t.Errorf("reply: %v %d %v", heads, n, err)
	}
	// An empty document has nothing to say to it.
	if _, err := NewSyncState(New()).Receive(msg); err != nil {
		t.Fatal(err)
	}
}

func TestInspectSyncMessage(t *testing.T) {
	// The V2 sync payload captured from the JavaScript server (PROTOCOL.md §13).
	v2, _ := hex.DecodeString("4301d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698" +
		"000101d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd386990069800000202" + "84")
	heads, n, err := InspectSyncMessage(v2)
	if err != nil || len(heads) != 1 || n != 0 ||
		heads[0].String() != "d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698" {
		t.Errorf("Inspect(v2) = %v, %d, %v", heads, n, err)
	}
	// automerge-go does not speak V2: a clean error, document unchanged.
	d := mustFromJSON(t, `{"x":1}`)
	before := d.Heads()
	if _, err := NewSyncState(d).Receive(v2); !errors.Is(err, ErrInvalidSync) {
		t.Errorf("Receive(v2) err = %v", err)
	}
	if !reflect.DeepEqual(d.Heads(), before) {
		t.Error("doc changed")
	}
	bad := [][]byte{
		nil, {}, {0x41}, {0x42}, {0x42, 0x01}, {0x42, 0x00, 0x00},
		{0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0x42, 0, 0, 0, 1, 5, 1},
		{0x42, 0, 0, 1, 0, 9},
	}
	for _, m := range bad {
		if _, _, err := InspectSyncMessage(m); !errors.Is(err, ErrInvalidSync) {
			t.Errorf("Inspect(%x) err = %v", m, err)
		}
	}
}

func TestReceiveCorrupt(t *testing.T) {
	a := mustFromJSON(t, `{"widgets":[1,2,3],"t":"text"}`)
	_ = a.Set("/t", "more text")
	mustCommit(t, a, "")
	msg, ok := NewSyncState(a).Generate()
	if !ok {
		t.Fatal("no message")
	}
	// Push a's changes so that the message carries them.
	b := New()
	sb := NewSyncState(b)
	if _, err := sb.Receive(msg); err != nil {
		t.Fatal(err)
	}
	reply, _ := sb.Generate()
	sa := NewSyncState(a)
	_, _ = sa.Generate()
	if _, err := sa.Receive(reply); err != nil {
		t.Fatal(err)
	}
	withChanges, ok := sa.Generate()
	if !ok {
		t.Fatal("no message with changes")
	}
	if _, n, _ := InspectSyncMessage(withChanges); n == 0 {
		t.Fatal("message carries no changes")
	}
	for i := 0; i < len(withChanges); i++ {
		for _, mut := range []func([]byte) []byte{
			func(m []byte) []byte { return flip(m, i) },
			func(m []byte) []byte { return m[:i] },
		} {
			m := mut(withChanges)
			c := New()
			heads := c.Heads()
			s := NewSyncState(c)
			if _, err := s.Receive(m); err != nil {
				if !errors.Is(err, ErrInvalidSync) {
					t.Errorf("byte %d: err %v", i, err)
				}
				if !reflect.DeepEqual(c.Heads(), heads) {
					t.Errorf("byte %d: doc changed on error", i)
				}
			}
			// Whatever happened, the document and session still work.
			if _, err := c.JSON(""); err != nil {
				t.Errorf("byte %d: JSON after Receive: %v", i, err)
			}
			s.Generate()
		}
	}
}

// stallScenario builds the situation in which automerge-rs sync falls
// silent before converging: a sends b two concurrent changes, one of which
// (X) b already got out of band and built its own change Y on; a Bloom
// filter false positive makes b keep Y back, so b's heads [Y ...] are
// unknown to a, a's X stays unacknowledged, and both sides wait. seed
// picks commit timestamps; 88 is one that gives the false positive.
func stallScenario(t *testing.T, seed int) (a, b *Doc) {
	tick := time.UnixMilli(1_700_000_000_000 + int64(seed)*1000)
	commitClock = func() time.Time { tick = tick.Add(time.Second); return tick }
	defer func() { commitClock = time.Now }()
	a, _ = NewWithActor("aa")
	b, _ = NewWithActor("bb")
	_ = a.Set("/x", 1)
	mustCommit(t, a, "")
	c, _ := a.Fork()
	_ = c.SetActorID("cc")
	sa, sb := NewSyncState(a), NewSyncState(b)
	syncPair(t, sa, sb)
	_ = a.Set("/a", 1)
	mustCommit(t, a, "") // X
	cs, _ := a.ChangesSince(b.Heads())
	if err := b.LoadIncremental(cs); err != nil {
		t.Fatal(err)
	}
	_ = b.Set("/b", 2)
	mustCommit(t, b, "") // Y, on top of X
	_ = c.Set("/c", 3)
	mustCommit(t, c, "") // Z, concurrent with X
	if err := a.Merge(c); err != nil {
		t.Fatal(err)
	}
	syncPair(t, sa, sb)
	return a, b
}

func TestSyncStallRecovery(t *testing.T) {
	noStallRecovery = true
	a, b := stallScenario(t, 88)
	noStallRecovery = false
	if reflect.DeepEqual(a.Heads(), b.Heads()) {
		t.Fatal("scenario no longer stalls without recovery; pick another seed (see stallScenario)")
	}
	a, b = stallScenario(t, 88)
	if !reflect.DeepEqual(a.Heads(), b.Heads()) || jsonOf(t, a, "") != jsonOf(t, b, "") {
		t.Errorf("not converged: %v vs %v", a.Heads(), b.Heads())
	}
	if got := jsonOf(t, a, ""); got != `{"a":1,"b":2,"c":3,"x":1}` {
		t.Errorf("a = %s", got)
	}
}

func TestRollbackKeepsQueuedChanges(t *testing.T) {
	a, _ := NewWithActor("aa")
	_ = a.Set("/x", 1)
	c1 := mustCommit(t, a, "")
	_ = a.Set("/y", 2)
	c2 := mustCommit(t, a, "")
	b := mustFromJSON(t, `{"own":true}`)
	// b gets the second change before the first: it waits, queued.
	if err := b.LoadIncremental(c2.Bytes); err != nil {
		t.Fatal(err)
	}
	if len(b.queued) != 1 {
		t.Fatalf("queued = %d", len(b.queued))
	}
	_ = b.Set("/tmp", 1)
	if err := b.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := b.LoadIncremental(c1.Bytes); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, b, ""); got != `{"own":true,"x":1,"y":2}` {
		t.Errorf("b = %s (queued change lost by Rollback)", got)
	}
	if len(b.queued) != 0 {
		t.Errorf("queued = %d after the dependency arrived", len(b.queued))
	}
}

// TestFromScratch: the first message of a new Automerge session says it
// knows nothing of ours; a direct message (heads as the last sync) and the
// messages of a session that heard the peer's heads do not.
func TestFromScratch(t *testing.T) {
	d := New()
	if err := d.Set("/n", 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Commit(""); err != nil {
		t.Fatal(err)
	}
	peer, err := Load(d.Save())
	if err != nil {
		t.Fatal(err)
	}
	ss, sp := NewSyncState(d), NewSyncState(peer)
	first, ok := ss.Generate()
	if !ok {
		t.Fatal("a new session says nothing")
	}
	m, err := ParseSyncMessage(first)
	if err != nil {
		t.Fatal(err)
	}
	if !m.FromScratch() {
		t.Error("a new session's first message is not from scratch")
	}
	if _, err := sp.Receive(first); err != nil {
		t.Fatal(err)
	}
	// An Automerge peer that has the same heads says nothing, so the new
	// session would go on starting from scratch; a server answers with
	// its heads (what repo does), and the session then knows them.
	if _, ok := sp.Generate(); ok {
		t.Log("the peer answered by itself")
	}
	if _, err := ss.Receive(DirectMessage(peer.Heads(), nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.Set("/n", 2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Commit(""); err != nil {
		t.Fatal(err)
	}
	later, ok := ss.Generate()
	if !ok {
		t.Fatal("no message for a new change")
	}
	lm, err := ParseSyncMessage(later)
	if err != nil {
		t.Fatal(err)
	}
	if lm.FromScratch() {
		t.Error("a session that has synced still says it starts from scratch")
	}
	dm, err := ParseSyncMessage(DirectMessage(d.Heads(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if dm.FromScratch() {
		t.Error("a direct message is from scratch")
	}
}
