package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/persistence/storetest"
)

var bg = context.Background()

// testSizes keeps the memory of the many stores the tests open small.
func testSizes(c Config) Config {
	c.MemTableSize = 8 << 20
	c.BlockCacheSize = 8 << 20
	c.ValueLogFileSize = 16 << 20
	return c
}

func openT(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		return openT(t, testSizes(Config{InMemory: true}))
	})
}

func TestConformanceDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		return openT(t, testSizes(DefaultConfig(t.TempDir())))
	})
}

func mustAppend(t testing.TB, s persistence.Store, id string, data []byte) uint64 {
	t.Helper()
	seq, err := s.Append(bg, id, data, []string{fmt.Sprintf("%s@%d", id, len(data))})
	if err != nil {
		t.Fatalf("Append(%q): %v", id, err)
	}
	return seq
}

func mustLoad(t testing.TB, s persistence.Store, id string) persistence.Record {
	t.Helper()
	r, err := s.Load(bg, id)
	if err != nil {
		t.Fatalf("Load(%q): %v", id, err)
	}
	return r
}

func sameRecord(a, b persistence.Record) bool {
	if a.Meta.ID != b.Meta.ID || !a.Meta.Created.Equal(b.Meta.Created) || !a.Meta.Updated.Equal(b.Meta.Updated) ||
		a.Meta.Size != b.Meta.Size || a.Meta.SnapshotSize != b.Meta.SnapshotSize ||
		a.Meta.ChunkBytes != b.Meta.ChunkBytes || a.Meta.Chunks != b.Meta.Chunks ||
		!slices.Equal(a.Meta.Heads, b.Meta.Heads) || !bytes.Equal(a.Snapshot, b.Snapshot) ||
		len(a.Chunks) != len(b.Chunks) {
		return false
	}
	for i := range a.Chunks {
		if a.Chunks[i].Seq != b.Chunks[i].Seq || !bytes.Equal(a.Chunks[i].Data, b.Chunks[i].Data) {
			return false
		}
	}
	return true
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := testSizes(DefaultConfig(dir))
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("big snapshot line\n"), 10000) // > valueThreshold: value log
	want := map[string]persistence.Record{}
	for d := range 20 {
		id := fmt.Sprintf("doc-%02d", d)
		for i := range 5 + d {
			mustAppend(t, s, id, fmt.Appendf(nil, "%s change %d\n", id, i))
		}
		if d%3 == 0 {
			if err := s.Compact(bg, id, big, 3, []string{"h"}); err != nil {
				t.Fatal(err)
			}
		}
		want[id] = mustLoad(t, s, id)
	}
	if err := s.Delete(bg, "doc-05"); err != nil {
		t.Fatal(err)
	}
	delete(want, "doc-05")
	if err := s.PutValue(bg, "storage-id", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, cfg)
	n := 0
	err = s.List(bg, func(m persistence.Meta) error {
		n++
		w, ok := want[m.ID]
		if !ok {
			return fmt.Errorf("unexpected document %q", m.ID)
		}
		r, err := s.Load(bg, m.ID)
		if err != nil {
			return err
		}
		if !sameRecord(r, w) {
			return fmt.Errorf("%s differs after reopen:\n got %+v\nwant %+v", m.ID, r.Meta, w.Meta)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("%d documents after reopen, want %d", n, len(want))
	}
	if v, err := s.GetValue(bg, "storage-id"); err != nil || string(v) != "abc" {
		t.Fatalf("value after reopen: %q, %v", v, err)
	}
	// Sequence numbers continue.
	if seq := mustAppend(t, s, "doc-01", []byte("more\n")); seq != 7 {
		t.Fatalf("seq after reopen = %d, want 7", seq)
	}
	if lsm, vlog := s.DiskUsage(); lsm+vlog <= 0 {
		t.Fatalf("DiskUsage = %d, %d", lsm, vlog)
	}
}

func TestOpenRegularFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub")} {
		s, err := Open(DefaultConfig(dir))
		if err == nil {
			s.Close()
			t.Fatalf("Open(%q) succeeded", dir)
		}
		if !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), file) {
			t.Errorf("error does not name the path: %v", err)
		}
		t.Logf("Open(%q): %v", dir, err)
	}
	if _, err := Open(DefaultConfig(file)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Open(file) = %v, want 'not a directory'", err)
	}
}

func TestOpenLocked(t *testing.T) {
	cfg := testSizes(DefaultConfig(t.TempDir()))
	openT(t, cfg)
	s, err := Open(cfg)
	if err == nil {
		s.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	t.Logf("second Open: %v", err)
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	bad := map[string]Config{
		"no dir":            {},
		"blank dir":         {Dir: "  "},
		"dir and in-memory": {Dir: dir, InMemory: true},
		"memtable small":    {Dir: dir, MemTableSize: 1000},
		"memtable negative": {Dir: dir, MemTableSize: -1},
		"memtable huge":     {Dir: dir, MemTableSize: 4 << 30},
		"vlog small":        {Dir: dir, ValueLogFileSize: 1},
		"vlog 2GiB":         {Dir: dir, ValueLogFileSize: 2 << 30},
		"cache negative":    {Dir: dir, BlockCacheSize: -5},
		"cache small":       {Dir: dir, BlockCacheSize: 100},
	}
	for name, cfg := range bad {
		if err := cfg.validate(); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%s: validate() = %v, want ErrInvalid", name, err)
		}
		if s, err := Open(cfg); !errors.Is(err, persistence.ErrInvalid) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: Open = %v, want ErrInvalid", name, err)
		}
	}
	good := []Config{DefaultConfig(dir), {InMemory: true}, {Dir: dir, MemTableSize: 1 << 20, ValueLogFileSize: 1 << 20, BlockCacheSize: 1 << 20}}
	for _, cfg := range good {
		if err := cfg.validate(); err != nil {
			t.Errorf("validate(%+v) = %v", cfg, err)
		}
	}
	if d := DefaultConfig("x"); !d.SyncWrites || d.Dir != "x" {
		t.Errorf("DefaultConfig = %+v", d)
	}
}

func TestLogger(t *testing.T) {
	var buf syncBuffer
	cfg := testSizes(DefaultConfig(t.TempDir()))
	cfg.Logger = newTestLogger(&buf)
	s := openT(t, cfg)
	mustAppend(t, s, "doc", []byte("x\n"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Badger logs at info level on open/close; we forward that at debug.
	if !strings.Contains(buf.String(), "component=badger") {
		t.Fatalf("no badger log lines reached the slog logger:\n%s", buf.String())
	}
}

func TestCorruptMeta(t *testing.T) {
	s := openT(t, testSizes(Config{InMemory: true}))
	mustAppend(t, s, "good", []byte("x\n"))
	mustAppend(t, s, "bad", []byte("x\n"))
	if err := s.db.Update(func(txn *bdb.Txn) error {
		return txn.Set(metaKey("bad"), []byte{1, 0xff, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Stat(bg, "bad")
	if !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("Stat = %v, want ErrCorrupt", err)
	}
	if _, err := s.Load(bg, "bad"); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
	}
	if _, err := s.Append(bg, "bad", []byte("y\n"), nil); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("Append = %v, want ErrCorrupt", err)
	}
	if err := s.List(bg, func(persistence.Meta) error { return nil }); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("List = %v, want ErrCorrupt", err)
	}
	// A corrupt document can still be deleted, which heals the store.
	if err := s.Delete(bg, "bad"); err != nil {
		t.Fatalf("Delete corrupt: %v", err)
	}
	if err := s.List(bg, func(persistence.Meta) error { return nil }); err != nil {
		t.Fatalf("List after Delete: %v", err)
	}
	if r := mustLoad(t, s, "good"); len(r.Chunks) != 1 {
		t.Fatalf("good: %+v", r)
	}
}

// countKeys counts the keys of any namespace that belong to id.
func countKeys(t *testing.T, s *Store, id string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *bdb.Txn) error {
		for _, p := range [][]byte{metaKey(id), snapKey(id), chunkPrefix(id)} {
			it := txn.NewIterator(bdb.IteratorOptions{Prefix: p})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				if bytes.Equal(k, p) || bytes.HasPrefix(k, chunkPrefix(id)) {
					n++
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLargeCompactAndDelete: with a 1 MiB memtable a transaction holds a
// few thousand entries, so compacting and deleting 6000 chunks must take
// the multi-transaction paths without being forced to.
func TestLargeCompactAndDelete(t *testing.T) {
	s := openT(t, Config{InMemory: true, MemTableSize: 1 << 20, BlockCacheSize: 1 << 20})
	const n = 6000
	var snap []byte
	var wg sync.WaitGroup
	for w := range 4 { // concurrent: other documents, to fill batches
		wg.Go(func() {
			for i := range n / 4 {
				mustAppend(t, s, fmt.Sprintf("other-%d", w), fmt.Appendf(nil, "o %d\n", i))
			}
		})
	}
	for i := range n {
		line := fmt.Appendf(nil, "c %d\n", i)
		mustAppend(t, s, "big", line)
		if i < n-10 {
			snap = append(snap, line...)
		}
	}
	wg.Wait()
	before := mustLoad(t, s, "big")
	if err := s.Compact(bg, "big", snap, n-10, nil); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if s.splitCompactions.Load() != 1 {
		t.Fatalf("Compact of %d chunks fit in one transaction; the test needs a smaller memtable", n)
	}
	after := mustLoad(t, s, "big")
	if len(after.Chunks) != 10 || !slices.Equal(storetest.Content(after), storetest.Content(before)) {
		t.Fatalf("after large Compact: %d chunks, content equal %v", len(after.Chunks),
			slices.Equal(storetest.Content(after), storetest.Content(before)))
	}
	if got := countKeys(t, s, "big"); got != 12 {
		t.Fatalf("%d keys of big after Compact, want 12 (meta, snapshot, 10 chunks)", got)
	}
	if removed, err := s.Sweep(bg); err != nil || removed != 0 {
		t.Fatalf("Sweep after complete Compact = %d, %v", removed, err)
	}
	if err := s.Delete(bg, "big"); err != nil {
		t.Fatal(err)
	}
	if got := countKeys(t, s, "big"); got != 0 {
		t.Fatalf("%d keys of big left after Delete", got)
	}
	for w := range 4 {
		if r := mustLoad(t, s, fmt.Sprintf("other-%d", w)); len(r.Chunks) != n/4 {
			t.Fatalf("other-%d: %d chunks", w, len(r.Chunks))
		}
	}
}

var errCrash = errors.New("simulated crash")

// crashAt returns hooks that fail Compact (and deletions) at the k-th
// stage reached (0 = "snapshot-written").
func crashAt(k int) *testHooks {
	n := 0
	return &testHooks{
		forceSplit:  true,
		deleteBatch: 2,
		compact: func(stage string) error {
			defer func() { n++ }()
			if n == k {
				return fmt.Errorf("%w at %s #%d", errCrash, stage, k)
			}
			return nil
		},
	}
}

// TestCompactCrash interrupts a split Compact at every stage, "restarts"
// the store and checks that the document loads to the same content, that
// writing continues correctly and that Sweep removes the leftovers.
func TestCompactCrash(t *testing.T) {
	const chunks, upTo = 9, 7
	for k := 0; ; k++ {
		dir := t.TempDir()
		cfg := testSizes(DefaultConfig(dir))
		cfg.hooks = crashAt(k)
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var snap []byte
		for i := 1; i <= chunks; i++ {
			line := fmt.Appendf(nil, "change %d\n", i)
			mustAppend(t, s, "doc", line)
			if i <= upTo {
				snap = append(snap, line...)
			}
		}
		before := mustLoad(t, s, "doc")
		err = s.Compact(bg, "doc", snap, upTo, []string{"after"})
		if err != nil && !errors.Is(err, errCrash) {
			t.Fatalf("k=%d: Compact: %v", k, err)
		}
		crashed := err != nil
		s.Close()

		cfg.hooks = nil
		s = openT(t, cfg)
		r := mustLoad(t, s, "doc")
		if !slices.Equal(storetest.Content(r), storetest.Content(before)) {
			t.Fatalf("k=%d: content after interrupted Compact:\n got %q\nwant %q", k,
				storetest.Content(r), storetest.Content(before))
		}
		if !bytes.Equal(r.Snapshot, snap) || len(r.Chunks) != chunks-upTo || r.Meta.Chunks != chunks-upTo {
			t.Fatalf("k=%d: snapshot %d bytes, %d chunks, meta %+v", k, len(r.Snapshot), len(r.Chunks), r.Meta)
		}
		leftovers := countKeys(t, s, "doc") - 2 - (chunks - upTo)
		removed, err := s.Sweep(bg)
		if err != nil || removed != leftovers {
			t.Fatalf("k=%d: Sweep = %d, %v; want %d", k, removed, err, leftovers)
		}
		if r2 := mustLoad(t, s, "doc"); !sameRecord(r, r2) {
			t.Fatalf("k=%d: Sweep changed the record", k)
		}
		if seq := mustAppend(t, s, "doc", []byte("change 10\n")); seq != chunks+1 {
			t.Fatalf("k=%d: seq after crash = %d", k, seq)
		}
		s.Close()
		t.Logf("k=%d: crashed=%v leftovers=%d", k, crashed, leftovers)
		if !crashed {
			if k < 2 {
				t.Fatalf("only %d stages", k)
			}
			return
		}
	}
}

// TestDeleteCrash interrupts Delete after the meta record is gone: the
// document is gone for readers, and re-creating it starts clean.
func TestDeleteCrash(t *testing.T) {
	cfg := testSizes(DefaultConfig(t.TempDir()))
	cfg.hooks = &testHooks{deleteBatch: 2, compact: func(stage string) error {
		return errCrash
	}}
	s := openT(t, cfg)
	for i := range 7 {
		mustAppend(t, s, "doc", fmt.Appendf(nil, "old %d\n", i))
	}
	if err := s.Delete(bg, "doc"); !errors.Is(err, errCrash) {
		t.Fatalf("Delete = %v, want simulated crash", err)
	}
	if _, err := s.Stat(bg, "doc"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("Stat after interrupted Delete = %v", err)
	}
	if got := countKeys(t, s, "doc"); got != 5 {
		t.Fatalf("%d orphaned chunks, want 5", got)
	}
	s.hooks = testHooks{}
	if seq := mustAppend(t, s, "doc", []byte("new\n")); seq != 1 {
		t.Fatalf("seq after re-create = %d", seq)
	}
	r := mustLoad(t, s, "doc")
	if len(r.Chunks) != 1 || string(r.Chunks[0].Data) != "new\n" {
		t.Fatalf("re-created document: %v chunks", len(r.Chunks))
	}
	// Orphans of another interrupted Delete are found by Sweep.
	s.hooks = *cfg.hooks
	mustAppend(t, s, "doc2", []byte("a\n"))
	mustAppend(t, s, "doc2", []byte("b\n"))
	mustAppend(t, s, "doc2", []byte("c\n"))
	if err := s.Delete(bg, "doc2"); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	s.hooks = testHooks{}
	if n, err := s.Sweep(bg); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if got := countKeys(t, s, "doc2"); got != 0 {
		t.Fatalf("%d keys of doc2 after Sweep", got)
	}
}

// TestGroupCommit checks that concurrent durable appends share commits.
func TestGroupCommit(t *testing.T) {
	s := openT(t, testSizes(DefaultConfig(t.TempDir())))
	const writers, per = 64, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				mustAppend(t, s, fmt.Sprintf("doc-%d", w), fmt.Appendf(nil, "c %d\n", i))
			}
		})
	}
	wg.Wait()
	batches, ops := s.batches.Load(), s.batched.Load()
	t.Logf("%d appends in %d commits (%.1f per commit)", ops, batches, float64(ops)/float64(batches))
	if ops != writers*per {
		t.Fatalf("counted %d appends, want %d", ops, writers*per)
	}
	if batches > ops/2 {
		t.Fatalf("%d commits for %d concurrent appends: no group commit", batches, ops)
	}
}

func TestRunGC(t *testing.T) {
	cfg := testSizes(DefaultConfig(t.TempDir()))
	cfg.ValueLogFileSize = 1 << 20
	s := openT(t, cfg)
	big := bytes.Repeat([]byte("x"), 100<<10) // value-log sized
	for i := range 30 {
		mustAppend(t, s, "doc", []byte("c\n"))
		if err := s.Compact(bg, "doc", append(big, byte(i)), uint64(i+1), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RunGC(bg); err != nil {
		t.Fatalf("RunGC: %v", err)
	}
	if r := mustLoad(t, s, "doc"); len(r.Snapshot) != len(big)+1 || r.Snapshot[len(big)] != 29 {
		t.Fatalf("snapshot after GC: %d bytes", len(r.Snapshot))
	}
	mem := openT(t, Config{InMemory: true})
	if err := mem.RunGC(bg); err != nil {
		t.Fatalf("RunGC in memory: %v", err)
	}
	if l, v := mem.DiskUsage(); l != 0 || v != 0 {
		t.Fatalf("DiskUsage in memory = %d, %d", l, v)
	}
}

func TestKeys(t *testing.T) {
	for _, id := range []string{"a", "a/b", "\xff", strings.Repeat("z", 1024)} {
		for _, seq := range []uint64{0, 1, 1 << 40, ^uint64(0)} {
			k := chunkKey(id, seq)
			gotID, gotSeq, ok := splitChunkKey(k)
			if !ok || gotID != id || gotSeq != seq {
				t.Fatalf("splitChunkKey(chunkKey(%q, %d)) = %q, %d, %v", id, seq, gotID, gotSeq, ok)
			}
			if s, ok := chunkSeq(k, chunkPrefix(id)); !ok || s != seq {
				t.Fatalf("chunkSeq = %d, %v", s, ok)
			}
		}
	}
	for _, k := range [][]byte{nil, []byte("c/"), []byte("m/abc"), []byte("c/\x00\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("c/abc0123456789")} {
		if _, _, ok := splitChunkKey(k); ok {
			t.Fatalf("splitChunkKey(%q) accepted", k)
		}
	}
	// Byte order of chunk keys is numeric order.
	if bytes.Compare(chunkKey("a", 255), chunkKey("a", 256)) >= 0 {
		t.Fatal("chunk keys not in numeric order")
	}
}
