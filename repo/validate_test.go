package repo_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
)

// valueAtMost100 rejects documents whose /w/cpu is over 100.
func valueAtMost100(_ crdt.DocumentID, view any) error {
	m, _ := view.(map[string]any)
	w, _ := m["w"].(map[string]any)
	if v, ok := w["cpu"].(int64); ok && v > 100 {
		return fmt.Errorf("/w/cpu is %d, over 100", v)
	}
	return nil
}

func TestValidatorRejectsLocalAndRemoteChanges(t *testing.T) {
	ctx := ctxT(t)
	var logs lockedBuffer
	srv := newRepo(t, memory.New(), func(c *repo.Config) {
		c.Validate = valueAtMost100
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	a := clientRepo(t)
	b := clientRepo(t)
	la := dial(t, srv, a)
	pair(t, srv, b)

	// Local (REST-like) change on the server: rejected, nothing kept.
	h, err := srv.CreateJSON(ctx, []byte(`{"w":{"cpu":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Set(ctx, "/w/cpu", 500); !errors.Is(err, repo.ErrRejected) {
		t.Fatalf("local bad change: %v", err)
	}
	if v, _ := h.Get(ctx, "/w/cpu"); fmt.Sprint(v) != "1" {
		t.Fatalf("cpu = %v after a rejected change", v)
	}

	// A peer's bad change never reaches the server or the other peer.
	ha, err := a.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	subA, err := ha.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()
	// Offline, so that the second change is made before the server can
	// reject the first.
	la.cut()
	if _, err := ha.Set(ctx, "/w/cpu", 999); err != nil {
		t.Fatal(err) // applied locally: optimistic
	}
	if _, err := ha.Set(ctx, "/w/mem", 5); err != nil { // built on the bad one
		t.Fatal(err)
	}
	la = dial(t, srv, a)
	defer la.cut()
	// A valid change from b still flows.
	if _, err := hb.Set(ctx, "/w/disk", 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v, _ := h.Get(ctx, "/w/disk"); return fmt.Sprint(v) == "7" }, "valid change reaches the server")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "rejected changes from a peer") }, "the server rejects a's change")
	if v, _ := h.Get(ctx, "/w/cpu"); fmt.Sprint(v) != "1" {
		t.Fatalf("server took the rejected value: %v", v)
	}
	if v, _ := hb.Get(ctx, "/w/cpu"); fmt.Sprint(v) != "1" {
		t.Fatalf("other peer sees the rejected value: %v", v)
	}

	// The Go client rolls the rejected changes back by itself and says so.
	var rejected repo.Event
	for rejected.Rejected == "" {
		select {
		case e := <-subA.Events():
			rejected = e
		case <-ctx.Done():
			t.Fatal("no rejection event on the client")
		}
	}
	if len(rejected.RolledBack) != 2 || !strings.Contains(rejected.Rejected, "over 100") {
		t.Fatalf("rejection event %+v", rejected)
	}
	waitFor(t, func() bool { v, _ := ha.Get(ctx, "/w/cpu"); return fmt.Sprint(v) == "1" }, "client back to the accepted value")
	// And it keeps syncing: a new valid change reaches everyone.
	if _, err := ha.Set(ctx, "/w/cpu", 42); err != nil {
		t.Fatal(err)
	}
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v, _ := hb.Get(ctx, "/w/cpu"); return fmt.Sprint(v) == "42" }, "valid change after the rejection reaches b")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestDocumentSizeLimit(t *testing.T) {
	ctx := ctxT(t)
	var logs lockedBuffer
	srv := newRepo(t, memory.New(), func(c *repo.Config) {
		c.MaxDocumentBytes = 8 << 10
		c.WarnDocumentBytes = 2 << 10
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	a := clientRepo(t)
	pair(t, srv, a)
	h, err := srv.CreateJSON(ctx, []byte(`{"note":"small"}`))
	if err != nil {
		t.Fatal(err)
	}
	ha, err := a.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := ha.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// A peer's change that would take the document over the limit is
	// rejected, and the client takes it back.
	big := strings.Repeat("x", 16<<10)
	if _, err := ha.Set(ctx, "/note", big); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case e := <-sub.Events():
			if e.Rejected == "" {
				continue
			}
			if !strings.Contains(e.Rejected, "over the limit") {
				t.Fatalf("rejection: %q", e.Rejected)
			}
		case <-ctx.Done():
			t.Fatal("no rejection")
		}
		break
	}
	if v, _ := h.Get(ctx, "/note"); v != "small" {
		t.Fatalf("server note = %.20v", v)
	}
	// Growing past the warning threshold logs once; past the limit, local
	// changes fail.
	for i := 0; i < 100; i++ {
		_, err := h.Set(ctx, "/note", strings.Repeat("y", 1000)+fmt.Sprint(i))
		if errors.Is(err, repo.ErrTooLarge) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 99 {
			t.Fatal("local changes never hit the limit")
		}
	}
	if !strings.Contains(logs.String(), "document is growing large") {
		t.Fatal("no size warning logged")
	}
}
