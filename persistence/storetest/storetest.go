package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsync/tandem/persistence"
)

// Run runs the conformance suite against the stores returned by open. Each
// subtest calls open once and expects an empty store; Run closes it when
// the subtest ends.
func Run(t *testing.T, open func(t *testing.T) persistence.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, persistence.Store)
	}{
		{"AppendLoadOrder", testAppendLoadOrder},
		{"Missing", testMissing},
		{"Meta", testMeta},
		{"Compact", testCompact},
		{"CompactRules", testCompactRules},
		{"CompactCreates", testCompactCreates},
		{"Delete", testDelete},
		{"List", testList},
		{"ListEarlyStop", testListEarlyStop},
		{"ListManyPages", testListManyPages},
		{"Values", testValues},
		{"ConcurrentAppends", testConcurrentAppends},
		{"ConcurrentSameDocument", testConcurrentSameDocument},
		{"NoAliasing", testNoAliasing},
		{"SimilarIDs", testSimilarIDs},
		{"InvalidArguments", testInvalidArguments},
		{"CanceledContext", testCanceledContext},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// Content returns the set of changes a record holds: the distinct
// non-empty lines of its snapshot and chunks, sorted. Two records with the
// same Content load to the same document in the suite's model of a
// document (a snapshot holds the lines of the chunks it covers).
func Content(r persistence.Record) []string {
	set := map[string]bool{}
	add := func(b []byte) {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				set[l] = true
			}
		}
	}
	add(r.Snapshot)
	for _, c := range r.Chunks {
		add(c.Data)
	}
	out := make([]string, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

var bg = context.Background()

func change(doc string, i int) []byte { return fmt.Appendf(nil, "%s change %d\n", doc, i) }

func heads(doc string, i int) []string {
	return []string{fmt.Sprintf("%064x", i), fmt.Sprintf("%s-%d", doc, i)}
}

func mustAppend(t *testing.T, s persistence.Store, id string, data []byte, h []string) uint64 {
	t.Helper()
	seq, err := s.Append(bg, id, data, h)
	if err != nil {
		t.Fatalf("Append(%q): %v", id, err)
	}
	return seq
}

func mustLoad(t *testing.T, s persistence.Store, id string) persistence.Record {
	t.Helper()
	r, err := s.Load(bg, id)
	if err != nil {
		t.Fatalf("Load(%q): %v", id, err)
	}
	return r
}

func mustStat(t *testing.T, s persistence.Store, id string) persistence.Meta {
	t.Helper()
	m, err := s.Stat(bg, id)
	if err != nil {
		t.Fatalf("Stat(%q): %v", id, err)
	}
	return m
}

func mustCompact(t *testing.T, s persistence.Store, id string, snap []byte, upTo uint64, h []string) {
	t.Helper()
	if err := s.Compact(bg, id, snap, upTo, h); err != nil {
		t.Fatalf("Compact(%q, upTo %d): %v", id, upTo, err)
	}
}

func listIDs(t *testing.T, s persistence.Store) []string {
	t.Helper()
	var ids []string
	if err := s.List(bg, func(m persistence.Meta) error {
		ids = append(ids, m.ID)
		return nil
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	return ids
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// checkMeta checks the size fields of m against the record's contents.
func checkRecord(t *testing.T, r persistence.Record) {
	t.Helper()
	var chunkBytes int64
	for i, c := range r.Chunks {
		chunkBytes += int64(len(c.Data))
		if i > 0 && c.Seq <= r.Chunks[i-1].Seq {
			t.Fatalf("chunks out of order: seq %d after %d", c.Seq, r.Chunks[i-1].Seq)
		}
	}
	m := r.Meta
	if m.SnapshotSize != int64(len(r.Snapshot)) || m.ChunkBytes != chunkBytes || m.Chunks != len(r.Chunks) ||
		m.Size != m.SnapshotSize+m.ChunkBytes {
		t.Fatalf("meta %+v does not match record: snapshot %d bytes, %d chunks of %d bytes",
			m, len(r.Snapshot), len(r.Chunks), chunkBytes)
	}
}

func sameMeta(a, b persistence.Meta) bool {
	return a.ID == b.ID && a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated) &&
		a.Size == b.Size && a.SnapshotSize == b.SnapshotSize && a.ChunkBytes == b.ChunkBytes &&
		a.Chunks == b.Chunks && slices.Equal(a.Heads, b.Heads)
}

func seqs(r persistence.Record) []uint64 {
	out := make([]uint64, len(r.Chunks))
	for i, c := range r.Chunks {
		out[i] = c.Seq
	}
	return out
}

func testAppendLoadOrder(t *testing.T, s persistence.Store) {
	const n = 12
	for i := 1; i <= n; i++ {
		if seq := mustAppend(t, s, "doc", change("doc", i), heads("doc", i)); seq != uint64(i) {
			t.Fatalf("Append #%d returned seq %d, want %d", i, seq, i)
		}
		// Another document interleaved has its own sequence.
		if i%3 == 0 {
			if seq := mustAppend(t, s, "other", change("other", i/3), nil); seq != uint64(i/3) {
				t.Fatalf("other: seq %d, want %d", seq, i/3)
			}
		}
	}
	r := mustLoad(t, s, "doc")
	if r.Snapshot != nil {
		t.Fatalf("snapshot %q before any Compact", r.Snapshot)
	}
	if len(r.Chunks) != n {
		t.Fatalf("%d chunks, want %d", len(r.Chunks), n)
	}
	for i, c := range r.Chunks {
		if c.Seq != uint64(i+1) || !bytes.Equal(c.Data, change("doc", i+1)) {
			t.Fatalf("chunk %d = {%d %q}, want {%d %q}", i, c.Seq, c.Data, i+1, change("doc", i+1))
		}
	}
	checkRecord(t, r)
	if got := len(mustLoad(t, s, "other").Chunks); got != n/3 {
		t.Fatalf("other: %d chunks, want %d", got, n/3)
	}
}

func testMissing(t *testing.T, s persistence.Store) {
	mustAppend(t, s, "present", change("present", 1), nil)
	_, err := s.Load(bg, "absent")
	wantErr(t, "Load", err, persistence.ErrNotFound)
	_, err = s.Stat(bg, "absent")
	wantErr(t, "Stat", err, persistence.ErrNotFound)
	wantErr(t, "Delete", s.Delete(bg, "absent"), persistence.ErrNotFound)
	wantErr(t, "Compact upTo 1", s.Compact(bg, "absent", []byte("x\n"), 1, nil), persistence.ErrNotFound)
	_, err = s.GetValue(bg, "absent")
	wantErr(t, "GetValue", err, persistence.ErrNotFound)
	if ids := listIDs(t, s); !slices.Equal(ids, []string{"present"}) {
		t.Fatalf("List = %q after failed calls, want [present]", ids)
	}
}

func testMeta(t *testing.T, s persistence.Store) {
	before := time.Now()
	h1 := heads("doc", 1)
	mustAppend(t, s, "doc", change("doc", 1), h1)
	m1 := mustStat(t, s, "doc")
	after := time.Now()
	if m1.ID != "doc" {
		t.Fatalf("ID = %q", m1.ID)
	}
	if m1.Created.Before(before.Add(-time.Second)) || m1.Created.After(after.Add(time.Second)) {
		t.Fatalf("Created %v not within [%v, %v]", m1.Created, before, after)
	}
	if m1.Updated.Before(m1.Created) {
		t.Fatalf("Updated %v before Created %v", m1.Updated, m1.Created)
	}
	n1 := int64(len(change("doc", 1)))
	if m1.Size != n1 || m1.ChunkBytes != n1 || m1.SnapshotSize != 0 || m1.Chunks != 1 {
		t.Fatalf("meta after one append: %+v", m1)
	}
	if !slices.Equal(m1.Heads, h1) {
		t.Fatalf("Heads = %q, want %q", m1.Heads, h1)
	}

	prev := m1
	total := n1
	for i := 2; i <= 5; i++ {
		mustAppend(t, s, "doc", change("doc", i), heads("doc", i))
		total += int64(len(change("doc", i)))
		m := mustStat(t, s, "doc")
		if !m.Created.Equal(m1.Created) {
			t.Fatalf("Created moved: %v -> %v", m1.Created, m.Created)
		}
		if !m.Updated.After(prev.Updated) {
			t.Fatalf("Updated did not move forward: %v -> %v", prev.Updated, m.Updated)
		}
		if m.Chunks != i || m.ChunkBytes != total || m.Size != total || !slices.Equal(m.Heads, heads("doc", i)) {
			t.Fatalf("meta after %d appends: %+v", i, m)
		}
		prev = m
	}
	r := mustLoad(t, s, "doc")
	if !sameMeta(r.Meta, prev) {
		t.Fatalf("Load().Meta = %+v, Stat = %+v", r.Meta, prev)
	}
	checkRecord(t, r)

	snap := []byte("doc change 1\ndoc change 2\ndoc change 3\n")
	mustCompact(t, s, "doc", snap, 3, []string{"compacted"})
	m := mustStat(t, s, "doc")
	if !m.Created.Equal(m1.Created) || !m.Updated.After(prev.Updated) {
		t.Fatalf("Compact: Created %v -> %v, Updated %v -> %v", m1.Created, m.Created, prev.Updated, m.Updated)
	}
	if !slices.Equal(m.Heads, []string{"compacted"}) {
		t.Fatalf("Heads after Compact = %q", m.Heads)
	}
	checkRecord(t, mustLoad(t, s, "doc"))

	// Nil heads are stored as no heads.
	mustAppend(t, s, "doc", change("doc", 6), nil)
	if m := mustStat(t, s, "doc"); len(m.Heads) != 0 {
		t.Fatalf("Heads = %q after Append with nil heads", m.Heads)
	}
}

func testCompact(t *testing.T, s persistence.Store) {
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, "doc", change("doc", i), heads("doc", i))
	}
	mustAppend(t, s, "bystander", change("bystander", 1), nil)
	before := mustLoad(t, s, "doc")

	snap := slices.Concat(change("doc", 1), change("doc", 2), change("doc", 3))
	mustCompact(t, s, "doc", snap, 3, heads("doc", 5))
	r := mustLoad(t, s, "doc")
	if !bytes.Equal(r.Snapshot, snap) {
		t.Fatalf("snapshot = %q, want %q", r.Snapshot, snap)
	}
	if got := seqs(r); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("chunks after Compact(upTo 3) = %v, want [4 5]", got)
	}
	if !bytes.Equal(r.Chunks[0].Data, change("doc", 4)) || !bytes.Equal(r.Chunks[1].Data, change("doc", 5)) {
		t.Fatalf("remaining chunks changed: %q, %q", r.Chunks[0].Data, r.Chunks[1].Data)
	}
	checkRecord(t, r)
	if r.Meta.SnapshotSize != int64(len(snap)) || r.Meta.Chunks != 2 {
		t.Fatalf("meta after Compact: %+v", r.Meta)
	}
	if !slices.Equal(Content(r), Content(before)) {
		t.Fatalf("content changed by Compact:\n got %q\nwant %q", Content(r), Content(before))
	}

	// Sequence numbers continue after the covered ones.
	if seq := mustAppend(t, s, "doc", change("doc", 6), heads("doc", 6)); seq != 6 {
		t.Fatalf("Append after Compact: seq %d, want 6", seq)
	}
	// Compact everything: a new snapshot replaces the old one.
	snap2 := slices.Concat(snap, change("doc", 4), change("doc", 5), change("doc", 6))
	before = mustLoad(t, s, "doc")
	mustCompact(t, s, "doc", snap2, 6, heads("doc", 6))
	r = mustLoad(t, s, "doc")
	if !bytes.Equal(r.Snapshot, snap2) || len(r.Chunks) != 0 {
		t.Fatalf("after Compact(upTo 6): snapshot %q, chunks %v", r.Snapshot, seqs(r))
	}
	checkRecord(t, r)
	if r.Meta.ChunkBytes != 0 || r.Meta.Size != int64(len(snap2)) {
		t.Fatalf("meta after full Compact: %+v", r.Meta)
	}
	if !slices.Equal(Content(r), Content(before)) {
		t.Fatalf("content changed by Compact:\n got %q\nwant %q", Content(r), Content(before))
	}
	// Compacting again at the same point just replaces the snapshot.
	snap3 := slices.Concat(snap2, []byte("doc re-encoded\n"))
	mustCompact(t, s, "doc", snap3, 6, nil)
	if r := mustLoad(t, s, "doc"); !bytes.Equal(r.Snapshot, snap3) || len(r.Chunks) != 0 {
		t.Fatalf("after re-Compact: snapshot %q, chunks %v", r.Snapshot, seqs(r))
	}
	if seq := mustAppend(t, s, "doc", change("doc", 7), nil); seq != 7 {
		t.Fatalf("Append after second Compact: seq %d, want 7", seq)
	}
	if r := mustLoad(t, s, "doc"); !slices.Equal(seqs(r), []uint64{7}) {
		t.Fatalf("chunks = %v, want [7]", seqs(r))
	}
	// Other documents are untouched.
	if r := mustLoad(t, s, "bystander"); len(r.Chunks) != 1 || r.Snapshot != nil {
		t.Fatalf("bystander changed: %+v", r)
	}
}

func testCompactRules(t *testing.T, s persistence.Store) {
	for i := 1; i <= 4; i++ {
		mustAppend(t, s, "doc", change("doc", i), nil)
	}
	mustCompact(t, s, "doc", slices.Concat(change("doc", 1), change("doc", 2)), 2, nil)
	before := mustLoad(t, s, "doc")
	cases := []struct {
		name string
		snap []byte
		upTo uint64
	}{
		{"beyond last seq", []byte("x\n"), 5},
		{"below coverage", []byte("x\n"), 1},
		{"empty snapshot", []byte{}, 4},
		{"nil snapshot", nil, 4},
	}
	for _, c := range cases {
		wantErr(t, c.name, s.Compact(bg, "doc", c.snap, c.upTo, nil), persistence.ErrInvalid)
	}
	after := mustLoad(t, s, "doc")
	if !sameMeta(before.Meta, after.Meta) || !bytes.Equal(before.Snapshot, after.Snapshot) ||
		!slices.Equal(seqs(before), seqs(after)) {
		t.Fatalf("failed Compact changed the document: %+v -> %+v", before, after)
	}
}

func testCompactCreates(t *testing.T, s persistence.Store) {
	snap := []byte("imported change\n")
	mustCompact(t, s, "imported", snap, 0, []string{"h"})
	m := mustStat(t, s, "imported")
	if m.SnapshotSize != int64(len(snap)) || m.Chunks != 0 || m.Size != int64(len(snap)) ||
		m.Created.IsZero() || !slices.Equal(m.Heads, []string{"h"}) {
		t.Fatalf("meta of document created by Compact: %+v", m)
	}
	if seq := mustAppend(t, s, "imported", change("imported", 1), nil); seq != 1 {
		t.Fatalf("first Append after creating Compact: seq %d, want 1", seq)
	}
	r := mustLoad(t, s, "imported")
	if !bytes.Equal(r.Snapshot, snap) || !slices.Equal(seqs(r), []uint64{1}) {
		t.Fatalf("record: snapshot %q, chunks %v", r.Snapshot, seqs(r))
	}
	checkRecord(t, r)
}

func testDelete(t *testing.T, s persistence.Store) {
	for i := 1; i <= 3; i++ {
		mustAppend(t, s, "doc", change("doc", i), nil)
	}
	mustCompact(t, s, "doc", slices.Concat(change("doc", 1), change("doc", 2)), 2, nil)
	mustAppend(t, s, "doc", change("doc", 4), nil)
	mustAppend(t, s, "keep", change("keep", 1), nil)
	old := mustStat(t, s, "doc")

	if err := s.Delete(bg, "doc"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Load(bg, "doc")
	wantErr(t, "Load after Delete", err, persistence.ErrNotFound)
	_, err = s.Stat(bg, "doc")
	wantErr(t, "Stat after Delete", err, persistence.ErrNotFound)
	wantErr(t, "second Delete", s.Delete(bg, "doc"), persistence.ErrNotFound)
	if ids := listIDs(t, s); !slices.Equal(ids, []string{"keep"}) {
		t.Fatalf("List after Delete = %q, want [keep]", ids)
	}

	// Appending again creates a fresh document.
	if seq := mustAppend(t, s, "doc", []byte("reborn\n"), []string{"r"}); seq != 1 {
		t.Fatalf("Append after Delete: seq %d, want 1", seq)
	}
	r := mustLoad(t, s, "doc")
	if r.Snapshot != nil || len(r.Chunks) != 1 || string(r.Chunks[0].Data) != "reborn\n" {
		t.Fatalf("recreated document holds old data: snapshot %q, chunks %v", r.Snapshot, seqs(r))
	}
	if r.Meta.Chunks != 1 || r.Meta.Size != int64(len("reborn\n")) || r.Meta.Created.Before(old.Created) {
		t.Fatalf("recreated meta: %+v (old %+v)", r.Meta, old)
	}
	checkRecord(t, r)
	if r := mustLoad(t, s, "keep"); len(r.Chunks) != 1 {
		t.Fatalf("Delete touched another document: %+v", r)
	}
}

var listIDsSet = []string{"b", "a", "ab", "a/b", "a b", "Z", "a\x01", "\xff\xfe", "ünïcode", "a.b", "0"}

func testList(t *testing.T, s persistence.Store) {
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("List of empty store = %q", ids)
	}
	shuffled := slices.Clone(listIDsSet)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i, id := range shuffled {
		for j := 0; j <= i%3; j++ {
			mustAppend(t, s, id, change(id, j), heads(id, j))
		}
	}
	mustCompact(t, s, "ab", []byte("ab snapshot\n"), 1, nil)
	if err := s.PutValue(bg, "not-a-document", []byte("v")); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(listIDsSet)
	sort.Strings(want)
	var got []string
	err := s.List(bg, func(m persistence.Meta) error {
		got = append(got, m.ID)
		// fn may use the store.
		st, err := s.Stat(bg, m.ID)
		if err != nil {
			return fmt.Errorf("Stat inside List: %w", err)
		}
		if !sameMeta(st, m) {
			return fmt.Errorf("List meta %+v != Stat %+v", m, st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List order = %q, want %q", got, want)
	}
}

func testListEarlyStop(t *testing.T, s persistence.Store) {
	for i := range 10 {
		mustAppend(t, s, fmt.Sprintf("doc-%02d", i), change("d", i), nil)
	}
	stop := errors.New("enough")
	calls := 0
	err := s.List(bg, func(m persistence.Meta) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want fn's error", err)
	}
	if calls != 3 {
		t.Fatalf("fn called %d times after failing at the 3rd", calls)
	}
}

func testListManyPages(t *testing.T, s persistence.Store) {
	const n = 2100 // crosses the page sizes of the implementations
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				id := fmt.Sprintf("doc-%05d", i)
				if _, err := s.Append(bg, id, change(id, 1), nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids := listIDs(t, s)
	if len(ids) != n {
		t.Fatalf("List returned %d ids, want %d", len(ids), n)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("doc-%05d", i); id != want {
			t.Fatalf("List[%d] = %q, want %q", i, id, want)
		}
	}
}

func testValues(t *testing.T, s persistence.Store) {
	_, err := s.GetValue(bg, "storage-id")
	wantErr(t, "GetValue missing", err, persistence.ErrNotFound)
	put := func(k, v string) {
		t.Helper()
		if err := s.PutValue(bg, k, []byte(v)); err != nil {
			t.Fatalf("PutValue(%q): %v", k, err)
		}
	}
	get := func(k string) string {
		t.Helper()
		v, err := s.GetValue(bg, k)
		if err != nil {
			t.Fatalf("GetValue(%q): %v", k, err)
		}
		return string(v)
	}
	put("storage-id", "3b1f0c6e-0000-4000-8000-000000000000")
	put("sync-state/peer-a", "\x00\x01\x02")
	if got := get("storage-id"); got != "3b1f0c6e-0000-4000-8000-000000000000" {
		t.Fatalf("GetValue = %q", got)
	}
	put("storage-id", "second")
	if got := get("storage-id"); got != "second" {
		t.Fatalf("after overwrite GetValue = %q", got)
	}
	if got := get("sync-state/peer-a"); got != "\x00\x01\x02" {
		t.Fatalf("binary value = %q", got)
	}
	put("empty", "")
	if got := get("empty"); got != "" {
		t.Fatalf("empty value = %q", got)
	}
	if err := s.PutValue(bg, "nil", nil); err != nil {
		t.Fatalf("PutValue(nil): %v", err)
	}
	if v, err := s.GetValue(bg, "nil"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("nil value read back as %#v, %v; want an empty, non-nil slice", v, err)
	}
	// Values and documents are separate namespaces.
	mustAppend(t, s, "storage-id", change("x", 1), nil)
	if got := get("storage-id"); got != "second" {
		t.Fatalf("document write changed a value: %q", got)
	}
	if err := s.Delete(bg, "storage-id"); err != nil {
		t.Fatal(err)
	}
	if got := get("storage-id"); got != "second" {
		t.Fatalf("Delete of a document removed a value: %q", got)
	}
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("values listed as documents: %q", ids)
	}
}

func testConcurrentAppends(t *testing.T, s persistence.Store) {
	const docs, per = 32, 25
	var wg sync.WaitGroup
	errs := make(chan error, docs+2)
	done := make(chan struct{})
	// Readers run alongside the writers (for the race detector).
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				id := fmt.Sprintf("doc-%02d", rand.IntN(docs))
				if r == 0 {
					if _, err := s.Load(bg, id); err != nil && !errors.Is(err, persistence.ErrNotFound) {
						errs <- err
						return
					}
				} else if err := s.List(bg, func(persistence.Meta) error { return nil }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for d := range docs {
		wg.Go(func() {
			id := fmt.Sprintf("doc-%02d", d)
			for i := 1; i <= per; i++ {
				seq, err := s.Append(bg, id, change(id, i), heads(id, i))
				if err != nil {
					errs <- err
					return
				}
				if seq != uint64(i) {
					errs <- fmt.Errorf("%s: append %d got seq %d", id, i, seq)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ids := listIDs(t, s); len(ids) != docs {
		t.Fatalf("List: %d documents, want %d", len(ids), docs)
	}
	for d := range docs {
		id := fmt.Sprintf("doc-%02d", d)
		r := mustLoad(t, s, id)
		if len(r.Chunks) != per {
			t.Fatalf("%s: %d chunks, want %d", id, len(r.Chunks), per)
		}
		for i, c := range r.Chunks {
			if c.Seq != uint64(i+1) || !bytes.Equal(c.Data, change(id, i+1)) {
				t.Fatalf("%s: chunk %d = {%d %q}", id, i, c.Seq, c.Data)
			}
		}
		if !slices.Equal(r.Meta.Heads, heads(id, per)) {
			t.Fatalf("%s: heads %q", id, r.Meta.Heads)
		}
		checkRecord(t, r)
	}
}

// testConcurrentSameDocument: the engine writes a document from one
// goroutine, but the store must stay consistent anyway.
func testConcurrentSameDocument(t *testing.T, s persistence.Store) {
	const writers, per = 8, 10
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				seq, err := s.Append(bg, "shared", change(fmt.Sprint("w", w), i), nil)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				dup := seen[seq]
				seen[seq] = true
				mu.Unlock()
				if dup {
					errs <- fmt.Errorf("seq %d handed out twice", seq)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := mustLoad(t, s, "shared")
	if len(r.Chunks) != writers*per {
		t.Fatalf("%d chunks, want %d", len(r.Chunks), writers*per)
	}
	for i, c := range r.Chunks {
		if c.Seq != uint64(i+1) {
			t.Fatalf("chunk %d has seq %d: not dense", i, c.Seq)
		}
	}
	checkRecord(t, r)
}

func testNoAliasing(t *testing.T, s persistence.Store) {
	data := []byte("original chunk\n")
	h := []string{"head-1"}
	mustAppend(t, s, "doc", data, h)
	copy(data, "XXXXXXXX")
	h[0] = "mutated"
	r := mustLoad(t, s, "doc")
	if string(r.Chunks[0].Data) != "original chunk\n" || !slices.Equal(r.Meta.Heads, []string{"head-1"}) {
		t.Fatalf("store aliases Append's arguments: %q %q", r.Chunks[0].Data, r.Meta.Heads)
	}
	// Mutating what Load and Stat return changes nothing stored.
	copy(r.Chunks[0].Data, "YYYY")
	r.Meta.Heads[0] = "changed"
	m := mustStat(t, s, "doc")
	m.Heads[0] = "changed"
	r = mustLoad(t, s, "doc")
	if string(r.Chunks[0].Data) != "original chunk\n" || !slices.Equal(r.Meta.Heads, []string{"head-1"}) {
		t.Fatalf("store aliases returned slices: %q %q", r.Chunks[0].Data, r.Meta.Heads)
	}

	snap := []byte("snapshot bytes\n")
	mustCompact(t, s, "doc", snap, 1, h)
	copy(snap, "ZZZZ")
	r = mustLoad(t, s, "doc")
	if string(r.Snapshot) != "snapshot bytes\n" {
		t.Fatalf("store aliases Compact's snapshot: %q", r.Snapshot)
	}
	copy(r.Snapshot, "WWWW")
	if r := mustLoad(t, s, "doc"); string(r.Snapshot) != "snapshot bytes\n" {
		t.Fatalf("store aliases the loaded snapshot: %q", r.Snapshot)
	}

	v := []byte("value")
	if err := s.PutValue(bg, "k", v); err != nil {
		t.Fatal(err)
	}
	copy(v, "VVVVV")
	got, err := s.GetValue(bg, "k")
	if err != nil || string(got) != "value" {
		t.Fatalf("store aliases PutValue's value: %q, %v", got, err)
	}
	copy(got, "GGGGG")
	if got, _ := s.GetValue(bg, "k"); string(got) != "value" {
		t.Fatalf("store aliases GetValue's result: %q", got)
	}
	// Reusing one buffer for several appends, as an engine might.
	buf := make([]byte, 0, 64)
	for i := range 5 {
		buf = append(buf[:0], change("reuse", i)...)
		mustAppend(t, s, "reuse", buf, nil)
	}
	for i, c := range mustLoad(t, s, "reuse").Chunks {
		if !bytes.Equal(c.Data, change("reuse", i)) {
			t.Fatalf("reused buffer: chunk %d = %q", i, c.Data)
		}
	}
}

func testSimilarIDs(t *testing.T, s persistence.Store) {
	ids := []string{"a", "ab", "a/b", "a b", "a\x01", "a\xff", "b"}
	for n, id := range ids {
		for i := 0; i <= n; i++ {
			mustAppend(t, s, id, change(id, i), nil)
		}
	}
	check := func(skip string) {
		t.Helper()
		for n, id := range ids {
			if id == skip {
				continue
			}
			r := mustLoad(t, s, id)
			if len(r.Chunks) != n+1 {
				t.Fatalf("%q: %d chunks, want %d", id, len(r.Chunks), n+1)
			}
			for i, c := range r.Chunks {
				if !bytes.Equal(c.Data, change(id, i)) {
					t.Fatalf("%q: chunk %d = %q: data of another document", id, i, c.Data)
				}
			}
		}
	}
	check("")
	mustCompact(t, s, "a/b", []byte("a/b snapshot\n"), 3, nil)
	if r := mustLoad(t, s, "a/b"); len(r.Chunks) != 0 {
		t.Fatalf("a/b: %d chunks after full Compact", len(r.Chunks))
	}
	mustCompact(t, s, "a/b", []byte("a/b snapshot\n"), 3, nil)
	if err := s.Delete(bg, "a"); err != nil {
		t.Fatal(err)
	}
	ids[2] = "" // a/b was compacted; skip it below
	for n, id := range ids {
		if id == "" || id == "a" {
			continue
		}
		if got := len(mustLoad(t, s, id).Chunks); got != n+1 {
			t.Fatalf("%q: %d chunks after Delete(a)/Compact(a/b), want %d", id, got, n+1)
		}
	}
}

func testInvalidArguments(t *testing.T, s persistence.Store) {
	badIDs := []string{"", "a\x00b", strings.Repeat("x", persistence.MaxIDLen+1)}
	for _, id := range badIDs {
		what := fmt.Sprintf("id %.20q", id)
		_, err := s.Append(bg, id, []byte("x"), nil)
		wantErr(t, "Append "+what, err, persistence.ErrInvalid)
		_, err = s.Load(bg, id)
		wantErr(t, "Load "+what, err, persistence.ErrInvalid)
		_, err = s.Stat(bg, id)
		wantErr(t, "Stat "+what, err, persistence.ErrInvalid)
		wantErr(t, "Compact "+what, s.Compact(bg, id, []byte("x"), 0, nil), persistence.ErrInvalid)
		wantErr(t, "Delete "+what, s.Delete(bg, id), persistence.ErrInvalid)
	}
	_, err := s.Append(bg, "doc", nil, nil)
	wantErr(t, "Append nil data", err, persistence.ErrInvalid)
	_, err = s.Append(bg, "doc", []byte{}, nil)
	wantErr(t, "Append empty data", err, persistence.ErrInvalid)
	for _, k := range []string{"", strings.Repeat("k", persistence.MaxKeyLen+1)} {
		_, err := s.GetValue(bg, k)
		wantErr(t, "GetValue", err, persistence.ErrInvalid)
		wantErr(t, "PutValue", s.PutValue(bg, k, []byte("v")), persistence.ErrInvalid)
	}
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("invalid calls created documents: %q", ids)
	}
	// The limits themselves are fine.
	longID := strings.Repeat("x", persistence.MaxIDLen)
	mustAppend(t, s, longID, []byte("x\n"), nil)
	if r := mustLoad(t, s, longID); len(r.Chunks) != 1 {
		t.Fatalf("max-length id: %d chunks", len(r.Chunks))
	}
	longKey := strings.Repeat("k", persistence.MaxKeyLen)
	if err := s.PutValue(bg, longKey, []byte("v")); err != nil {
		t.Fatalf("max-length key: %v", err)
	}
}

func testCanceledContext(t *testing.T, s persistence.Store) {
	mustAppend(t, s, "doc", change("doc", 1), nil)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := s.Append(ctx, "doc", change("doc", 2), nil)
	wantErr(t, "Append", err, context.Canceled)
	_, err = s.Append(ctx, "new", change("new", 1), nil)
	wantErr(t, "Append new", err, context.Canceled)
	_, err = s.Load(ctx, "doc")
	wantErr(t, "Load", err, context.Canceled)
	_, err = s.Stat(ctx, "doc")
	wantErr(t, "Stat", err, context.Canceled)
	wantErr(t, "Compact", s.Compact(ctx, "doc", []byte("s\n"), 1, nil), context.Canceled)
	wantErr(t, "Delete", s.Delete(ctx, "doc"), context.Canceled)
	wantErr(t, "List", s.List(ctx, func(persistence.Meta) error { return nil }), context.Canceled)
	_, err = s.GetValue(ctx, "k")
	wantErr(t, "GetValue", err, context.Canceled)
	wantErr(t, "PutValue", s.PutValue(ctx, "k", []byte("v")), context.Canceled)
	r := mustLoad(t, s, "doc")
	if len(r.Chunks) != 1 || r.Snapshot != nil {
		t.Fatalf("canceled calls changed the document: %+v", r)
	}
	if ids := listIDs(t, s); !slices.Equal(ids, []string{"doc"}) {
		t.Fatalf("List = %q", ids)
	}
}

func testClose(t *testing.T, s persistence.Store) {
	mustAppend(t, s, "doc", change("doc", 1), nil)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := s.Append(bg, "doc", change("doc", 2), nil)
	wantErr(t, "Append", err, persistence.ErrClosed)
	_, err = s.Load(bg, "doc")
	wantErr(t, "Load", err, persistence.ErrClosed)
	_, err = s.Stat(bg, "doc")
	wantErr(t, "Stat", err, persistence.ErrClosed)
	wantErr(t, "Compact", s.Compact(bg, "doc", []byte("s\n"), 1, nil), persistence.ErrClosed)
	wantErr(t, "Delete", s.Delete(bg, "doc"), persistence.ErrClosed)
	wantErr(t, "List", s.List(bg, func(persistence.Meta) error { return nil }), persistence.ErrClosed)
	_, err = s.GetValue(bg, "k")
	wantErr(t, "GetValue", err, persistence.ErrClosed)
	wantErr(t, "PutValue", s.PutValue(bg, "k", []byte("v")), persistence.ErrClosed)
}
