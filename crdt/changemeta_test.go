package crdt

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestChangeMessage(t *testing.T) {
	d := mustFromJSON(t, `{"w":{"v":0}}`)
	for i, msg := range []string{"", "lg 3 17", "ünïcødé ✓", strings.Repeat("long message ", 40)} {
		if err := d.Set("/w/v", i+1); err != nil {
			t.Fatal(err)
		}
		info := mustCommit(t, d, msg)
		got, err := ChangeMessage(info.Bytes)
		if err != nil || got != msg {
			t.Fatalf("ChangeMessage = %q, %v; want %q", got, err, msg)
		}
		// The same change, DEFLATE-compressed as Automerge stores large ones.
		got, err = ChangeMessage(compressChange(t, info.Bytes))
		if err != nil || got != msg {
			t.Fatalf("compressed: ChangeMessage = %q, %v; want %q", got, err, msg)
		}
	}
	// What Automerge itself reads back.
	hist, err := d.History()
	if err != nil {
		t.Fatal(err)
	}
	all, err := d.ChangesSince(nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := SplitChanges(all)
	if err != nil || len(cs) != len(hist) {
		t.Fatalf("split: %d changes, %v; history %d", len(cs), err, len(hist))
	}
	byHash := map[Hash]string{}
	for _, h := range hist {
		byHash[h.Hash] = h.Message
	}
	for _, c := range cs {
		got, err := ChangeMessage(c.Raw)
		if err != nil || got != byHash[c.Hash] {
			t.Errorf("change %v: %q, %v; Automerge says %q", c.Hash, got, err, byHash[c.Hash])
		}
	}

	info := mustCommitSet(t, d, "x")
	for name, b := range map[string][]byte{
		"empty":          nil,
		"document chunk": d.Save(),
		"bad magic":      append([]byte{1, 2, 3, 4}, info.Bytes[4:]...),
		"truncated":      info.Bytes[:len(info.Bytes)/2],
		"header only":    info.Bytes[:9],
		"bad deflate":    append(append([]byte{}, info.Bytes[:8]...), 2, 3, 0xff, 0xff, 0xff),
	} {
		if _, err := ChangeMessage(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustCommitSet(t *testing.T, d *Doc, msg string) CommitInfo {
	t.Helper()
	if err := d.Set("/w/v", -1); err != nil {
		t.Fatal(err)
	}
	return mustCommit(t, d, msg)
}

func TestSyncMessageChanges(t *testing.T) {
	d := mustFromJSON(t, `{"w":{"v":0}}`)
	base := mustCommitSet(t, d, "init")
	if err := d.Set("/w/v", 1); err != nil {
		t.Fatal(err)
	}
	a := mustCommit(t, d, "a")
	if err := d.Set("/w/v", 2); err != nil {
		t.Fatal(err)
	}
	b := mustCommit(t, d, "b")
	raw := DirectMessage(d.Heads(), [][]byte{a.Bytes, b.Bytes})
	m, err := ParseSyncMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	cs := m.Changes()
	if len(cs) != 2 || m.Version() != 0x42 {
		t.Fatalf("%d changes, version %x", len(cs), m.Version())
	}
	want := []Change{
		{Hash: a.Hash, Deps: []Hash{base.Hash}, Raw: a.Bytes},
		{Hash: b.Hash, Deps: []Hash{a.Hash}, Raw: b.Bytes},
	}
	if !reflect.DeepEqual(cs, want) {
		t.Fatalf("Changes() = %+v\nwant %+v", cs, want)
	}
	for i, c := range cs {
		if msg, err := ChangeMessage(c.Raw); err != nil || msg != []string{"a", "b"}[i] {
			t.Errorf("change %d: message %q, %v", i, msg, err)
		}
	}
	if m.NeedHashes() != nil {
		t.Errorf("need %v", m.NeedHashes())
	}
	// A message that asks for two changes.
	asking := []byte{0x42}
	asking = appendHashes(asking, []Hash{b.Hash})
	asking = appendHashes(asking, []Hash{a.Hash, base.Hash})
	asking = appendUleb(asking, 0) // no have
	asking = appendUleb(asking, 0) // no changes
	m, err = ParseSyncMessage(asking)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.NeedHashes(); !reflect.DeepEqual(got, []Hash{a.Hash, base.Hash}) || m.Need() != 2 || len(m.Changes()) != 0 {
		t.Fatalf("need %v (%d), changes %d", got, m.Need(), len(m.Changes()))
	}
}
