package repo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
)

// pair connects a client repo to a server repo over an in-memory pipe and
// returns once the handshake is done.
func pair(t *testing.T, server, client *repo.Repo) {
	t.Helper()
	sc, cc := transport.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = server.Accept(ctx, sc); done <- struct{}{} }()
	ready := make(chan struct{})
	go func() {
		_ = client.Connect(ctx, cc, func(string) { close(ready) })
		done <- struct{}{}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	select {
	case <-ready:
	case <-ctxT(t).Done():
		t.Fatal("handshake timed out")
	}
}

func clientRepo(t *testing.T) *repo.Repo {
	return newRepo(t, memory.New(), func(c *repo.Config) { c.Share = repo.ClientSharePolicy{} })
}

func TestSyncCreateFindEdit(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New())
	a := clientRepo(t)
	b := clientRepo(t)
	pair(t, srv, a)
	pair(t, srv, b)

	ha, err := a.CreateJSON(ctx, []byte(`{"widgets":{"cpu":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	// The server stores what the client announced.
	waitFor(t, func() bool {
		h, err := srv.Find(ctx, ha.ID())
		if err != nil {
			return false
		}
		v, err := h.Get(ctx, "/widgets/cpu")
		return err == nil && fmt.Sprint(v) == "1"
	}, "server has the document")

	hb, err := b.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	v, err := hb.Get(ctx, "/widgets/cpu")
	if err != nil || fmt.Sprint(v) != "1" {
		t.Fatalf("b sees %v, %v", v, err)
	}
	for i := range 20 {
		if _, err := ha.Set(ctx, "/widgets/a", i); err != nil {
			t.Fatal(err)
		}
		if _, err := hb.Set(ctx, "/widgets/b", i); err != nil {
			t.Fatal(err)
		}
		if _, err := hb.Set(ctx, "/widgets/cpu", i); err != nil {
			t.Fatal(err)
		}
	}
	converged := func() bool {
		x, _ := ha.Heads(ctx)
		y, _ := hb.Heads(ctx)
		return fmt.Sprint(x) == fmt.Sprint(y)
	}
	waitForDump(t, converged, "clients converge", func() {
		hs, _ := srv.Find(ctx, ha.ID())
		for name, h := range map[string]*repo.DocHandle{"a": ha, "b": hb, "srv": hs} {
			j, _ := h.JSON(ctx, "")
			x, _ := h.Heads(ctx)
			t.Logf("%s: %s %v", name, j, x)
		}
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
	})
	ja, _ := ha.JSON(ctx, "")
	jb, _ := hb.JSON(ctx, "")
	if string(ja) != string(jb) {
		t.Fatalf("same heads, different JSON: %s vs %s", ja, jb)
	}
	jsonEq(t, ja, `{"widgets":{"a":19,"b":19,"cpu":19}}`)
}

func TestSyncFindUnavailable(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New())
	a := clientRepo(t)
	pair(t, srv, a)
	_, err := a.Find(ctx, crdt.NewDocumentID())
	if !errors.Is(err, repo.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestSyncRemoteEventsAndEphemeral(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New())
	a := clientRepo(t)
	b := clientRepo(t)
	pair(t, srv, a)
	pair(t, srv, b)
	ha, err := a.CreateJSON(ctx, []byte(`{"x":0}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := srv.Find(ctx, ha.ID()); return err == nil }, "server has doc")
	hb, err := b.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := hb.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	eph := hb.SubscribeEphemeral()
	defer eph.Close()
	if _, err := ha.Set(ctx, "/x", 5); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-sub.Events():
		if !e.Remote || len(e.Paths) != 1 || e.Paths[0] != "/x" {
			t.Fatalf("event = %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("no remote event")
	}
	if err := ha.Broadcast(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-eph.Messages():
		if string(m.Data) != "hello" || m.SenderID != a.PeerID() {
			t.Fatalf("ephemeral = %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("no ephemeral")
	}
}

// TestClientPacesUnderServerRate: a client that connects with many
// documents paces its messages under the server's incoming limit; without
// pacing the same client goes over it and is slowed, not cut off, so its
// documents get through all the same (cut off, it would reconnect into the
// same burst for ever).
func TestClientPacesUnderServerRate(t *testing.T) {
	for _, paced := range []bool{true, false} {
		t.Run(fmt.Sprintf("paced=%v", paced), func(t *testing.T) {
			ctx := ctxT(t)
			obs := newCountingObserver()
			srv := newRepo(t, memory.New(), func(c *repo.Config) {
				c.Observer = obs
				c.Peers = repo.PeerConfig{RatePerSecond: 400, Burst: 200}
			})
			c := newRepo(t, memory.New(), func(c *repo.Config) {
				c.Share = repo.ClientSharePolicy{}
				c.Peers = repo.PeerConfig{SendRatePerSecond: 300}
				if !paced {
					c.Peers.SendRatePerSecond = -1
				}
			})
			const n = 300
			ids := make([]crdt.DocumentID, n)
			for i := range ids {
				h, err := c.CreateJSON(ctx, []byte(fmt.Sprintf(`{"i":%d}`, i)))
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = h.ID()
			}
			sc, cc := transport.Pipe()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			srvDone := make(chan error, 1)
			go func() { srvDone <- srv.Accept(cctx, sc) }()
			go func() { _ = c.Connect(cctx, cc, nil) }()
			allThere := func() bool {
				docs, err := srv.List(ctx)
				return err == nil && len(docs) == n
			}
			waitForDump(t, allThere, "the server stores every document of the client", func() {
				select {
				case err := <-srvDone:
					t.Logf("the connection ended: %v", err)
				default:
				}
			})
			select {
			case err := <-srvDone:
				t.Fatalf("the client's connection ended: %v", err)
			default:
			}
			obs.mu.Lock()
			slowed := obs.slowed[repo.SlowMessages]
			obs.mu.Unlock()
			if want := map[bool]int{true: 0, false: 1}[paced]; slowed != want {
				t.Fatalf("server slowed the client %d times, want %d", slowed, want)
			}
		})
	}
}
