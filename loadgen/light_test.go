package loadgen

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
)

// TestLightClientGraph plays the server for one light client over an
// in-memory connection: the client keeps its graph right when a change
// comes before its dependency or twice, answers only when there is news or
// the heads differ (once per such heads), and gives a writer's own changes
// when asked.
func TestLightClientGraph(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tmpl, err := buildTemplate(ctx, 3, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := crdt.NewDocumentID()
	a, srv := transport.Pipe()
	defer srv.Close(nil)
	lc := &lightClient{conn: a, peerID: "light", serverID: "server"}
	defer lc.close()

	read := func() *crdt.SyncMessage {
		t.Helper()
		m, err := srv.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != transport.TypeSync || m.DocumentID != string(id) || m.SenderID != "light" || m.TargetID != "server" {
			t.Fatalf("client sent %+v", m)
		}
		sm, err := crdt.ParseSyncMessage(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return sm
	}
	msg := func(heads []crdt.Hash, changes ...[]byte) transport.Message {
		return transport.Message{Type: transport.TypeSync, SenderID: "server", TargetID: "light", DocumentID: string(id), Data: crdt.DirectMessage(heads, changes)}
	}
	handle := func(m transport.Message) []crdt.Change {
		t.Helper()
		cs, ok, err := lc.handle(ctx, m)
		if !ok || err != nil {
			t.Fatalf("handle: %v %v", ok, err)
		}
		return cs
	}

	// Open: "I have the template"; the server answers with its heads.
	opened := make(chan error, 1)
	go func() {
		_, err := lc.open(ctx, id, tmpl, true)
		opened <- err
	}()
	if sm := read(); !slices.Equal(sm.Heads(), tmpl.heads) || sm.NChanges() != 0 {
		t.Fatalf("open sent heads %v, %d changes", sm.Heads(), sm.NChanges())
	}
	if err := srv.WriteMessage(ctx, msg(tmpl.heads)); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatal(err)
	}

	// Another writer's two changes, the second first.
	other, err := crdt.Load(tmpl.Data)
	if err != nil {
		t.Fatal(err)
	}
	var infos []crdt.CommitInfo
	for n := int64(1); n <= 2; n++ {
		if err := other.Set("/writers/c1", n); err != nil {
			t.Fatal(err)
		}
		info, _, err := other.Commit(changeMsg(1, n))
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	c1, c2 := infos[0], infos[1]
	if cs := handle(msg([]crdt.Hash{c2.Hash}, c2.Bytes)); len(cs) != 0 {
		t.Fatalf("applied %d changes without their dependency", len(cs))
	}
	if sm := read(); !slices.Equal(sm.Heads(), tmpl.heads) {
		t.Fatalf("answer to unknown heads: %v", sm.Heads())
	}
	cs := handle(msg([]crdt.Hash{c2.Hash}, c1.Bytes))
	if len(cs) != 2 || cs[0].Hash != c1.Hash || cs[1].Hash != c2.Hash {
		t.Fatalf("applied %v", cs)
	}
	if sm := read(); !slices.Equal(sm.Heads(), []crdt.Hash{c2.Hash}) {
		t.Fatalf("ack heads %v", sm.Heads())
	}
	for i, c := range cs {
		m, err := crdt.ChangeMessage(c.Raw)
		w, n, ok := parseChangeMsg(m)
		if err != nil || !ok || w != 1 || n != int64(i+1) {
			t.Fatalf("change %d: %q %v", i, m, err)
		}
	}
	// Old news and agreeing heads: no answer. Heads it lacks: one answer,
	// not two.
	if cs := handle(msg([]crdt.Hash{c2.Hash}, c1.Bytes, c2.Bytes)); len(cs) != 0 {
		t.Fatalf("applied %d changes twice", len(cs))
	}
	unknown := crdt.Hash{1, 2, 3}
	handle(msg([]crdt.Hash{unknown}))
	handle(msg([]crdt.Hash{unknown}))

	// The writer's own change: deps are the template only (a concurrent
	// chain), the heads advertised are the graph's.
	committed, err := lc.change(ctx, func(d *crdt.Doc) error { return d.Set("/writers/c0", 1) }, changeMsg(0, 1))
	if !committed || err != nil {
		t.Fatal(committed, err)
	}
	if sm := read(); !slices.Equal(sm.Heads(), []crdt.Hash{c2.Hash}) {
		t.Fatalf("answer to unknown heads: %v", sm.Heads()) // the one answer to {1,2,3}
	}
	sm := read()
	own := sm.Changes()
	if len(own) != 1 || !slices.Equal(own[0].Deps, tmpl.heads) || len(sm.Heads()) != 2 || !slices.Contains(sm.Heads(), own[0].Hash) {
		t.Fatalf("own change %+v, heads %v", own, sm.Heads())
	}
	// A need for it gets it again.
	ask := []byte{0x42}
	ask = append(ask, 1)
	ask = append(ask, c2.Hash[:]...)
	ask = append(ask, 1)
	ask = append(ask, own[0].Hash[:]...)
	ask = append(ask, 0, 0)
	handle(transport.Message{Type: transport.TypeSync, SenderID: "server", TargetID: "light", DocumentID: string(id), Data: ask})
	if sm := read(); len(sm.Changes()) != 1 || sm.Changes()[0].Hash != own[0].Hash {
		t.Fatalf("need answered with %v", sm.Changes())
	}
	if hs := lc.headsNow(); len(hs) != 2 || lc.bad.Load() != 0 {
		t.Fatalf("heads %v, bad %d", hs, lc.bad.Load())
	}
	// A message it cannot read is counted, not followed.
	handle(transport.Message{Type: transport.TypeSync, SenderID: "server", TargetID: "light", DocumentID: string(id), Data: []byte{0x42, 0xff}})
	if lc.bad.Load() != 1 || len(lc.headsNow()) != 2 {
		t.Fatalf("bad %d", lc.bad.Load())
	}
	// Messages for other documents and unavailability.
	if _, ok, err := lc.handle(ctx, transport.Message{Type: transport.TypeSync, DocumentID: "other"}); ok || err != nil {
		t.Fatalf("other document: %v %v", ok, err)
	}
	if _, _, err := lc.handle(ctx, transport.Message{Type: transport.TypeDocUnavailable, DocumentID: string(id)}); err == nil {
		t.Fatal("doc-unavailable not reported")
	}
}

func TestChangeMsg(t *testing.T) {
	if w, n, ok := parseChangeMsg(changeMsg(12, 345)); !ok || w != 12 || n != 345 {
		t.Fatal(w, n, ok)
	}
	for _, s := range []string{"", "init", "lg", "lg 1", "lg x 2", "lg 1 0", "lg -1 3", "lg 1 2 3"} {
		if _, _, ok := parseChangeMsg(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}
