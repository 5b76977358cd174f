package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openBadger(t *testing.T, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.DefaultConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newRepo(t *testing.T, store persistence.Store, cfg ...func(*repo.Config)) *repo.Repo {
	t.Helper()
	c := repo.Config{Store: store}
	for _, f := range cfg {
		f(&c)
	}
	r, err := repo.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// stores runs f against every Store implementation.
func stores(t *testing.T, f func(t *testing.T, s persistence.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, memory.New()) })
	t.Run("badger", func(t *testing.T) {
		s := openBadger(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		f(t, s)
	})
}

func jsonEq(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("JSON = %s, want %s", gb, wb)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := repo.New(repo.Config{}); !errors.Is(err, repo.ErrInvalidConfig) {
		t.Fatalf("missing store: err = %v", err)
	}
	if _, err := repo.New(repo.Config{Store: memory.New(), IdleTimeout: -1}); !errors.Is(err, repo.ErrInvalidConfig) {
		t.Fatalf("negative idle: err = %v", err)
	}
}

func TestCreateChangeGet(t *testing.T) {
	stores(t, func(t *testing.T, s persistence.Store) {
		ctx := ctxT(t)
		r := newRepo(t, s)
		h, err := r.CreateJSON(ctx, []byte(`{"widgets":{"cpu":{"value":1}},"tags":["a"]}`))
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.Change(ctx, func(d *crdt.Doc) error {
			if err := d.Set("/widgets/cpu/value", 42); err != nil {
				return err
			}
			return d.Add("/tags/-", "b")
		}, repo.WithMessage("bump"))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || len(res.Paths) != 2 {
			t.Fatalf("result = %+v", res)
		}
		b, err := h.JSON(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		jsonEq(t, b, `{"widgets":{"cpu":{"value":42}},"tags":["a","b"]}`)
		hist, err := h.History(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 2 || hist[1].Message != "bump" {
			t.Fatalf("history = %+v", hist)
		}
		docs, err := r.List(ctx)
		if err != nil || len(docs) != 1 || docs[0].ID != h.ID() || docs[0].Size == 0 {
			t.Fatalf("list = %+v, %v", docs, err)
		}
	})
}

func TestChangeErrorKeepsNothing(t *testing.T) {
	stores(t, func(t *testing.T, s persistence.Store) {
		ctx := ctxT(t)
		r := newRepo(t, s)
		h, err := r.CreateJSON(ctx, []byte(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		before, _ := h.Heads(ctx)
		boom := errors.New("boom")
		_, err = h.Change(ctx, func(d *crdt.Doc) error {
			if err := d.Set("/a", 2); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		b, _ := h.JSON(ctx, "")
		jsonEq(t, b, `{"a":1}`)
		after, _ := h.Heads(ctx)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatalf("heads moved: %v -> %v", before, after)
		}
		// A failing patch changes nothing either.
		ops, err := crdt.ParsePatch([]byte(`[{"op":"replace","path":"/a","value":5},{"op":"test","path":"/a","value":7}]`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Change(ctx, func(d *crdt.Doc) error { return d.ApplyPatch(ops) }); !errors.Is(err, crdt.ErrTestFailed) {
			t.Fatalf("patch err = %v", err)
		}
		b, _ = h.JSON(ctx, "")
		jsonEq(t, b, `{"a":1}`)
	})
}

func TestFindMissingAndBadURL(t *testing.T) {
	ctx := ctxT(t)
	r := newRepo(t, memory.New())
	if _, err := r.Find(ctx, crdt.NewDocumentID()); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if _, err := r.FindURL(ctx, "automerge:nope"); !errors.Is(err, crdt.ErrInvalidURL) {
		t.Fatalf("err = %v", err)
	}
}

func TestDelete(t *testing.T) {
	stores(t, func(t *testing.T, s persistence.Store) {
		ctx := ctxT(t)
		r := newRepo(t, s)
		h, err := r.CreateJSON(ctx, []byte(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Delete(ctx, h.ID()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Find(ctx, h.ID()); !errors.Is(err, repo.ErrNotFound) {
			t.Fatalf("find after delete: %v", err)
		}
		if _, err := h.JSON(ctx, ""); !errors.Is(err, repo.ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		if err := r.Delete(ctx, h.ID()); !errors.Is(err, repo.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestReopenBadger(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	s := openBadger(t, dir)
	r, err := repo.New(repo.Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for i := range 5 {
		h, err := r.CreateJSON(ctx, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		for j := range 10 {
			if _, err := h.Set(ctx, "/n", i*100+j); err != nil {
				t.Fatal(err)
			}
		}
		urls = append(urls, h.URL())
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir)
	defer s.Close()
	r = newRepo(t, s)
	docs, err := r.List(ctx)
	if err != nil || len(docs) != 5 {
		t.Fatalf("list: %d docs, %v", len(docs), err)
	}
	if r.Live() != 0 {
		t.Fatalf("listing loaded %d documents", r.Live())
	}
	for i, u := range urls {
		h, err := r.FindURL(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		v, err := h.Get(ctx, "/n")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(v) != fmt.Sprint(i*100+9) {
			t.Fatalf("doc %d: n = %v", i, v)
		}
	}
}

func TestConcurrentChanges(t *testing.T) {
	stores(t, func(t *testing.T, s persistence.Store) {
		ctx := ctxT(t)
		r := newRepo(t, s)
		h, err := r.CreateJSON(ctx, []byte(`{"w":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16*20)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					_, err := h.Set(ctx, fmt.Sprintf("/w/k%d", g), i)
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		hist, _ := h.History(ctx)
		if len(hist) != 1+16*20 {
			t.Fatalf("history has %d changes, want %d", len(hist), 1+16*20)
		}
		for g := range 16 {
			v, err := h.Get(ctx, fmt.Sprintf("/w/k%d", g))
			if err != nil || fmt.Sprint(v) != "19" {
				t.Fatalf("k%d = %v, %v", g, v, err)
			}
		}
	})
}

func TestSubscribe(t *testing.T) {
	ctx := ctxT(t)
	r := newRepo(t, memory.New())
	h, err := r.CreateJSON(ctx, []byte(`{"a":1,"b":{"c":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := h.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 50 {
		if _, err := h.Set(ctx, "/b/c", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		select {
		case e := <-sub.Events():
			if !e.Local || len(e.Paths) != 1 || e.Paths[0] != "/b/c" || len(e.Heads) == 0 {
				t.Fatalf("event %d = %+v", i, e)
			}
		case <-ctx.Done():
			t.Fatalf("only %d events", i)
		}
	}
}

func TestEvictionAndReload(t *testing.T) {
	stores(t, func(t *testing.T, s persistence.Store) {
		ctx := ctxT(t)
		r := newRepo(t, s, func(c *repo.Config) { c.IdleTimeout = 20 * time.Millisecond })
		h, err := r.CreateJSON(ctx, []byte(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Set(ctx, "/a", 2); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return r.Live() == 0 }, "document evicted")
		v, err := h.Get(ctx, "/a")
		if err != nil || fmt.Sprint(v) != "2" {
			t.Fatalf("after reload a = %v, %v", v, err)
		}
		// A subscription keeps it live.
		sub, err := h.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Live() != 1 {
			t.Fatalf("live = %d", r.Live())
		}
		sub.Close()
		waitFor(t, func() bool { return r.Live() == 0 }, "document evicted after unsubscribe")
	})
}

func TestCompaction(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	s := openBadger(t, dir)
	r, err := repo.New(repo.Config{Store: s, CompactMinBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.CreateJSON(ctx, []byte(`{"widgets":{"cpu":{"value":0},"mem":{"value":0}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var chunkBytes int64
	for i := range 400 {
		res, err := h.Change(ctx, func(d *crdt.Doc) error { return d.Set("/widgets/cpu/value", i) })
		if err != nil {
			t.Fatal(err)
		}
		_ = res
	}
	want, _ := h.JSON(ctx, "")
	wantHeads, _ := h.Heads(ctx)
	m, err := s.Stat(ctx, string(h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if m.SnapshotSize == 0 {
		t.Fatalf("never compacted: %+v", m)
	}
	// Without compaction the chunks would hold every change's bytes.
	hist, _ := h.History(ctx)
	for range hist {
		chunkBytes += 60 // a set+commit change is well over 60 bytes
	}
	if m.Size >= chunkBytes {
		t.Fatalf("stored %d bytes for %d changes: not compacted", m.Size, len(hist))
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openBadger(t, dir)
	defer s.Close()
	r = newRepo(t, s)
	h, err = r.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := h.JSON(ctx, "")
	gotHeads, _ := h.Heads(ctx)
	if string(got) != string(want) || fmt.Sprint(gotHeads) != fmt.Sprint(wantHeads) {
		t.Fatalf("after compaction+reopen: %s %v, want %s %v", got, gotHeads, want, wantHeads)
	}
}

func TestCloseRejectsCalls(t *testing.T) {
	ctx := ctxT(t)
	r := newRepo(t, memory.New())
	h, err := r.CreateJSON(ctx, []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Set(ctx, "/a", 2); !errors.Is(err, repo.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	waitForDump(t, cond, what, nil)
}

func waitForDump(t *testing.T, cond func() bool, what string, dump func()) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			if dump != nil {
				dump()
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
