package crdt

import (
	"encoding/hex"
	"errors"
	"os"
	"testing"
)

func FuzzParsePointer(f *testing.F) {
	for _, s := range []string{"", "/", "/a", "/a/0", "/a~0b~1c", "/~", "/~2", "a", "//", "/-", "/é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tokens, err := ParsePointer(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPointer) {
				t.Fatalf("error %v does not wrap ErrInvalidPointer", err)
			}
			return
		}
		if back := FormatPointer(tokens); back != s {
			t.Fatalf("FormatPointer(ParsePointer(%q)) = %q", s, back)
		}
		again, err := ParsePointer(FormatPointer(tokens))
		if err != nil || len(again) != len(tokens) {
			t.Fatalf("round trip of %q: %v", tokens, err)
		}
	})
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB",
		"3ybZCR5J6TswAfXnMg85CH9kGuZB",
		"automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB#2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS",
		"automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB#2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS|2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS",
		"automerge:", "", "automerge:111111", "automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB#", "automerge:x#y|z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, heads, err := ParseURL(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("error %v does not wrap ErrInvalidURL", err)
			}
			return
		}
		if len(id.Bytes()) != 16 {
			t.Fatalf("accepted id %q of %d bytes", id, len(id.Bytes()))
		}
		id2, heads2, err := ParseURL(FormatURL(id, heads))
		if err != nil || id2 != id || len(heads2) != len(heads) {
			t.Fatalf("round trip of %q: %v", s, err)
		}
		for i := range heads {
			if heads[i] != heads2[i] {
				t.Fatalf("head %d changed in round trip", i)
			}
		}
	})
}

// seedDoc returns a document with some history, its saved form and its
// changes as incremental chunks.
func seedDoc(t testing.TB) (*Doc, []byte, []byte) {
	d, err := FromJSON([]byte(`{"title":"t","widgets":[{"id":"w1","value":1}],"f":1.5,"ok":true,"n":null}`))
	if err != nil {
		t.Fatal(err)
	}
	saved := d.Save()
	_ = d.Set("/widgets/0/value", 2)
	_ = d.Add("/widgets/-", map[string]any{"id": "w2"})
	d.Commit("two")
	_ = d.Delete("/n")
	d.Commit("three")
	return d, saved, d.SaveIncremental()
}

func FuzzLoad(f *testing.F) {
	_, saved, inc := seedDoc(f)
	js, _ := os.ReadFile("testdata/js-automerge3.bin")
	f.Add(saved)
	f.Add(inc)
	f.Add(append(append([]byte{}, saved...), inc...))
	f.Add(js)
	f.Add([]byte{})
	f.Add([]byte{0x85, 0x6f, 0x4a, 0x83})
	f.Add(saved[:len(saved)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		if d, err := Load(data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load error %v does not wrap ErrCorrupt", err)
			}
		} else if _, err := d.JSON(""); err != nil {
			t.Fatalf("loaded document unreadable: %v", err)
		}
		d := New()
		if err := d.LoadIncremental(data); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("LoadIncremental error %v does not wrap ErrCorrupt", err)
		}
		if _, err := d.JSON(""); err != nil {
			t.Fatalf("document unreadable after LoadIncremental: %v", err)
		}
		e, _ := Load(saved)
		if err := e.LoadIncremental(data); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("LoadIncremental error %v does not wrap ErrCorrupt", err)
		}
		if _, err := e.JSON(""); err != nil {
			t.Fatalf("document unreadable after LoadIncremental: %v", err)
		}
	})
}

func FuzzReceiveSync(f *testing.F) {
	d, _, _ := seedDoc(f)
	// Real messages: a first message, and one carrying all changes.
	first, _ := NewSyncState(d).Generate()
	f.Add(first)
	peer := New()
	sd, sp := NewSyncState(d), NewSyncState(peer)
	for i := 0; i < 10; i++ {
		m, ok := sd.Generate()
		if ok {
			f.Add(m)
			if _, err := sp.Receive(m); err != nil {
				f.Fatal(err)
			}
		}
		m2, ok2 := sp.Generate()
		if ok2 {
			f.Add(m2)
			if _, err := sd.Receive(m2); err != nil {
				f.Fatal(err)
			}
		}
		if !ok && !ok2 {
			break
		}
	}
	req, _ := hex.DecodeString("42000001000000020284")
	f.Add(req)
	f.Add([]byte{0x43, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if _, _, err := InspectSyncMessage(msg); err != nil && !errors.Is(err, ErrInvalidSync) {
			t.Fatalf("Inspect error %v does not wrap ErrInvalidSync", err)
		}
		doc := New()
		s := NewSyncState(doc)
		if _, err := s.Receive(msg); err != nil && !errors.Is(err, ErrInvalidSync) {
			t.Fatalf("Receive error %v does not wrap ErrInvalidSync", err)
		}
		if _, err := doc.JSON(""); err != nil {
			t.Fatalf("document unreadable after Receive: %v", err)
		}
		s.Generate()
		if _, err := LoadSyncState(doc, msg); err != nil && !errors.Is(err, ErrInvalidSync) {
			t.Fatalf("LoadSyncState error %v does not wrap ErrInvalidSync", err)
		}
	})
}
