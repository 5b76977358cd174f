package repo

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"sync"
	"testing"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/transport"
)

var (
	fuzzOnce sync.Once
	fuzzRepo *Repo
	fuzzDoc  crdt.DocumentID
)

// fuzzSetup makes one server repo holding one document, shared by all
// inputs of a fuzz worker.
func fuzzSetup(t testing.TB) {
	fuzzOnce.Do(func() {
		r, err := New(Config{Store: memory.New()})
		if err != nil {
			t.Fatal(err)
		}
		h, err := r.CreateJSON(context.Background(), []byte(`{"widgets":{"cpu":{"value":1}}}`))
		if err != nil {
			t.Fatal(err)
		}
		fuzzRepo, fuzzDoc = r, h.ID()
	})
}

// FuzzHandleMessage feeds one decoded message to the server's handling of a
// joined peer: whatever arrives, nothing may panic and the repo keeps
// serving.
func FuzzHandleMessage(f *testing.F) {
	raw, err := os.ReadFile("../transport/testdata/test-vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var vectors []struct {
		Hex string `json:"hex"`
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		f.Fatal(err)
	}
	for _, v := range vectors {
		b, err := hex.DecodeString(v.Hex)
		if err == nil {
			f.Add(b, true)
			f.Add(b, false)
		}
	}
	id := crdt.NewDocumentID()
	for _, m := range []transport.Message{
		{Type: transport.TypeRequest, SenderID: "x", TargetID: "s", DocumentID: string(id), Data: []byte{0x42, 0, 0, 1, 0, 0, 0, 2, 2, 0x84}},
		{Type: transport.TypeSync, SenderID: "x", TargetID: "s", DocumentID: string(id), Data: []byte("garbage")},
		{Type: transport.TypeEphemeral, SenderID: "x", TargetID: "s", DocumentID: string(id), SessionID: "s1", Count: 1, Data: []byte{1}},
		{Type: transport.TypeDocUnavailable, SenderID: "x", TargetID: "s", DocumentID: string(id)},
		{Type: transport.TypeJoin, SenderID: "x"},
	} {
		b, err := transport.Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, ownSender bool) {
		fuzzSetup(t)
		m, err := transport.Decode(data)
		if err != nil {
			return
		}
		sc, cc := transport.Pipe()
		defer cc.Close(nil)
		p := newPeer(fuzzRepo.net, "fuzz-peer", sc, nil)
		p.accepted = true
		if ownSender {
			m.SenderID = p.id
		}
		// Point some inputs at the stored document.
		if len(data) > 0 && data[0]%3 == 0 && m.DocumentID != "" {
			m.DocumentID = string(fuzzDoc)
		}
		_ = p.handle(context.Background(), m)
		p.close(nil)
		p.detach()
		// The repo still serves the stored document.
		h := &DocHandle{repo: fuzzRepo, id: fuzzDoc}
		if _, err := h.Heads(context.Background()); err != nil {
			t.Fatalf("repo stopped serving after %+v: %v", m, err)
		}
	})
}
