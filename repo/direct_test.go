package repo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
)

// link is a client's connection to a server that the test can cut.
type link struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func dial(t *testing.T, server, client *repo.Repo) *link {
	t.Helper()
	sc, cc := transport.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{cancel: cancel, done: make(chan struct{})}
	finished := make(chan struct{}, 2)
	go func() { _ = server.Accept(ctx, sc); finished <- struct{}{} }()
	ready := make(chan struct{})
	go func() {
		_ = client.Connect(ctx, cc, func(string) { close(ready) })
		finished <- struct{}{}
	}()
	go func() { <-finished; <-finished; close(l.done) }()
	select {
	case <-ready:
	case <-ctxT(t).Done():
		t.Fatal("handshake timed out")
	}
	return l
}

func (l *link) cut() { l.cancel(); <-l.done }

// TestDirectPathConvergesUnderChurn drives several clients that write the
// same keys concurrently, go offline, write there, and come back, and checks
// that everyone ends with the same heads and values, and that the direct
// path (not only Automerge sessions) carried the traffic.
func TestDirectPathConvergesUnderChurn(t *testing.T) {
	for _, mode := range []string{"direct", "sessions", "graph"} {
		t.Run(mode, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			ctx := ctxT(t)
			only := mode == "sessions"
			srv := newRepo(t, memory.New(), func(c *repo.Config) {
				c.SessionsOnly = only
				c.GraphDocuments = mode == "graph"
			})
			const nClients = 4
			clients := make([]*repo.Repo, nClients)
			links := make([]*link, nClients)
			handles := make([]*repo.DocHandle, nClients)
			for i := range clients {
				clients[i] = newRepo(t, memory.New(), func(c *repo.Config) {
					c.Share = repo.ClientSharePolicy{}
					c.SessionsOnly = only
				})
				links[i] = dial(t, srv, clients[i])
			}
			t.Cleanup(func() {
				for _, l := range links {
					if l != nil {
						l.cut()
					}
				}
			})
			h0, err := clients[0].CreateJSON(ctx, []byte(`{"w":{"a":0,"b":0,"c":0}}`))
			if err != nil {
				t.Fatal(err)
			}
			handles[0] = h0
			waitFor(t, func() bool { _, err := srv.Find(ctx, h0.ID()); return err == nil }, "server has the document")
			for i := 1; i < nClients; i++ {
				if handles[i], err = clients[i].Find(ctx, h0.ID()); err != nil {
					t.Fatal(err)
				}
			}
			keys := []string{"a", "b", "c", "d"}
			errs := make(chan error, nClients)
			for i := range clients {
				ops := make([]int, 60)
				for j := range ops {
					ops[j] = rng.IntN(100)
				}
				go func() {
					for j, op := range ops {
						var err error
						switch {
						case op < 8 && links[i] != nil && i != 0:
							links[i].cut() // offline for a while
							links[i] = nil
						case op < 16 && links[i] == nil:
							links[i] = dial(t, srv, clients[i])
						case op < 24:
							_, err = handles[i].Change(ctx, func(d *crdt.Doc) error {
								return d.Delete("/w/" + keys[op%len(keys)])
							})
							if err != nil && strings.Contains(err.Error(), "not found") {
								err = nil
							}
						default:
							_, err = handles[i].Set(ctx, "/w/"+keys[op%len(keys)], fmt.Sprintf("%d-%d", i, j))
						}
						if err != nil {
							errs <- fmt.Errorf("client %d op %d: %w", i, j, err)
							return
						}
					}
					errs <- nil
				}()
			}
			for range clients {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			for i := range clients {
				if links[i] == nil {
					links[i] = dial(t, srv, clients[i])
				}
			}
			hs, err := srv.Find(ctx, h0.ID())
			if err != nil {
				t.Fatal(err)
			}
			same := func() bool {
				want, err := hs.Heads(ctx)
				if err != nil {
					return false
				}
				want = sortHashes(want)
				for _, h := range handles {
					got, err := h.Heads(ctx)
					if err != nil || !slices.Equal(sortHashes(got), want) {
						return false
					}
				}
				return true
			}
			waitFor(t, same, "every replica at the same heads")
			if st := srv.Stats(); mode == "graph" && st.InCore != 0 {
				t.Fatalf("graph documents: %d in the core before anything read them", st.InCore)
			}
			want, _ := hs.JSON(ctx, "")
			for i, h := range handles {
				got, _ := h.JSON(ctx, "")
				if string(got) != string(want) {
					t.Fatalf("client %d has %s, server %s", i, got, want)
				}
			}
			st := srv.Stats()
			t.Logf("server: direct in/out %d/%d, session in/out %d/%d", st.DirectIn, st.DirectOut, st.SessionIn, st.SessionOut)
			if only && (st.DirectIn > 0 || st.DirectOut > 0) {
				t.Fatalf("sessions only, yet direct messages: %+v", st)
			}
			if !only && (st.DirectIn == 0 || st.DirectOut == 0) {
				t.Fatalf("the direct path was not used: %+v", st)
			}
		})
	}
}

func sortHashes(hs []crdt.Hash) []crdt.Hash {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b crdt.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// TestHibernateWithPeersAttached: a document two clients sync, untouched for
// a while, leaves the server's memory while the clients stay connected, and
// comes back on the next change without a new Automerge session.
func TestHibernateWithPeersAttached(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New(), func(c *repo.Config) { c.HibernateAfter = 20 * time.Millisecond })
	a, b := clientRepo(t), clientRepo(t)
	pair(t, srv, a)
	pair(t, srv, b)
	ha, err := a.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	hb, err := b.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		waitFor(t, func() bool { return srv.Live() == 0 }, "the server document hibernates")
		waitFor(t, func() bool { return srv.Stats().Parked == 1 }, "its goroutine parks")
		if st := srv.Stats(); st.Peers != 2 {
			t.Fatalf("peers %d, want 2 still connected", st.Peers)
		}
		before := srv.Stats()
		if _, err := ha.Set(ctx, "/n", round); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { v, _ := hb.Get(ctx, "/n"); return fmt.Sprint(v) == fmt.Sprint(round) }, "b gets the change")
		after := srv.Stats()
		if after.SessionIn != before.SessionIn || after.SessionOut != before.SessionOut {
			t.Fatalf("round %d: Automerge sessions were needed after waking: %+v then %+v", round, before, after)
		}
	}
}

// TestMaxLiveDocuments: a client that syncs many documents leaves at most
// about MaxLiveDocuments of them in the server's memory, all still synced.
func TestMaxLiveDocuments(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New(), func(c *repo.Config) { c.MaxLiveDocuments = 5 })
	a := clientRepo(t)
	pair(t, srv, a)
	var hs []*repo.DocHandle
	for i := range 30 {
		h, err := a.CreateJSON(ctx, []byte(fmt.Sprintf(`{"i":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if err := h.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return srv.Live() <= 5 }, "live documents down to the bound")
	// Every one still syncs: change each and see it on the server.
	for i, h := range hs {
		if _, err := h.Set(ctx, "/i", i+100); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hs {
		sh, err := srv.Find(ctx, h.ID())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { v, _ := sh.Get(ctx, "/i"); return fmt.Sprint(v) == fmt.Sprint(i+100) }, "server has the change")
	}
}

// TestFreshPeersShareOneFullMessage: clients that join with nothing get the
// whole document from the server's cached change list, which follows every
// change made meanwhile (local, and concurrent ones from two writers), so
// each newcomer ends with exactly the writers' heads.
func TestFreshPeersShareOneFullMessage(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New())
	a, b := clientRepo(t), clientRepo(t)
	pair(t, srv, a)
	pair(t, srv, b)
	ha, err := a.CreateJSON(ctx, []byte(`{"n":0,"m":0}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := ha.Set(ctx, "/n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	hb, err := b.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	join := func(step string) {
		t.Helper()
		want, err := ha.Heads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			hs, err := srv.Find(ctx, ha.ID())
			if err != nil {
				return false
			}
			got, _ := hs.Heads(ctx)
			return slices.Equal(sortHashes(got), sortHashes(want))
		}, step+": the server has a's heads")
		c := clientRepo(t)
		pair(t, srv, c)
		hc, err := c.Find(ctx, ha.ID())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			got, _ := hc.Heads(ctx)
			return slices.Equal(sortHashes(got), sortHashes(want))
		}, step+": a newcomer has every change")
	}
	join("first")
	// Concurrent writes of a and b: the document then has two heads.
	for i := range 5 {
		if _, err := ha.Set(ctx, "/n", 100+i); err != nil {
			t.Fatal(err)
		}
		if _, err := hb.Set(ctx, "/m", 100+i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		x, _ := ha.Heads(ctx)
		y, _ := hb.Heads(ctx)
		return slices.Equal(sortHashes(x), sortHashes(y))
	}, "a and b converge")
	join("after concurrent writes")
	join("again, unchanged")
	st := srv.Stats()
	if st.FullCached == 0 {
		t.Fatalf("no newcomer was served from the cached change list: %+v", st)
	}
	t.Logf("full messages: %d built, %d from the cache", st.FullBuilt, st.FullCached)
}

// TestNewSessionHearsBack: a peer that starts a new Automerge session for a
// document it has in full gets an answer, even after the server told it its
// heads: Automerge itself stays silent to a session in sync, which would
// then never learn that it is (its client counted that as a stall and
// pushed its whole history).
func TestNewSessionHearsBack(t *testing.T) {
	ctx := ctxT(t)
	srv := newRepo(t, memory.New())
	h, err := srv.CreateJSON(ctx, []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	data, err := h.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := transport.Pipe()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = srv.Accept(cctx, sc); close(done) }()
	defer func() { cancel(); <-done }()
	if err := cc.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: "c", SupportedProtocolVersions: []string{transport.ProtocolV1}}); err != nil {
		t.Fatal(err)
	}
	peerMsg, err := cc.ReadMessage(ctx)
	if err != nil || peerMsg.Type != transport.TypePeer {
		t.Fatalf("handshake: %+v, %v", peerMsg, err)
	}
	for round := 1; round <= 2; round++ {
		doc, err := crdt.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		first, ok := crdt.NewSyncState(doc).Generate()
		if !ok {
			t.Fatal("a new session says nothing")
		}
		err = cc.WriteMessage(ctx, transport.Message{
			Type: transport.TypeSync, SenderID: "c", TargetID: peerMsg.SenderID,
			DocumentID: string(h.ID()), Data: first,
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := cc.ReadMessage(rctx)
		rcancel()
		if err != nil {
			t.Fatalf("round %d: no answer to a new session: %v", round, err)
		}
		if m.Type != transport.TypeSync || m.DocumentID != string(h.ID()) {
			t.Fatalf("round %d: got %+v", round, m)
		}
	}
}

// TestGraphDocumentsRestart: a server keeping documents as change graphs
// stores them (chunks, then compacted snapshots of changes), reloads them
// after a restart, also from a snapshot an ordinary server wrote (Automerge's
// document format), and serves them to fresh clients without building them
// in the core.
func TestGraphDocumentsRestart(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	open := func(graph bool) (*repo.Repo, func()) {
		st := openBadger(t, dir)
		r, err := repo.New(repo.Config{Store: st, GraphDocuments: graph, CompactMinBytes: 1})
		if err != nil {
			t.Fatal(err)
		}
		return r, func() {
			if err := r.Close(context.Background()); err != nil {
				t.Error(err)
			}
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	// An ordinary server first: its snapshot is in Automerge's format.
	srv, closeSrv := open(false)
	c := clientRepo(t)
	l := dial(t, srv, c)
	h, err := c.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	id := h.ID()
	converged := func(srv *repo.Repo, h *repo.DocHandle) func() bool {
		return func() bool {
			sh, err := srv.Find(ctx, id)
			if err != nil {
				return false
			}
			a, _ := sh.Heads(ctx)
			b, _ := h.Heads(ctx)
			return len(a) > 0 && slices.Equal(sortHashes(a), sortHashes(b))
		}
	}
	waitFor(t, converged(srv, h), "the ordinary server has the document")
	l.cut()
	closeSrv()

	for round := 1; round <= 3; round++ {
		srv, closeSrv = open(true)
		l = dial(t, srv, c)
		for i := range 20 {
			if _, err := h.Set(ctx, "/n", round*100+i); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, converged(srv, h), "the graph server has every change")
		fresh := clientRepo(t)
		lf := dial(t, srv, fresh)
		fh, err := fresh.Find(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, converged(srv, fh), "a fresh client has every change")
		if got, _ := fh.Get(ctx, "/n"); fmt.Sprint(got) != fmt.Sprint(round*100+19) {
			t.Fatalf("round %d: fresh client reads %v", round, got)
		}
		if st := srv.Stats(); st.InCore != 0 {
			t.Fatalf("round %d: %d documents built in the core", round, st.InCore)
		}
		lf.cut()
		l.cut()
		closeSrv()
	}
	// The graph server compacted: its snapshot is the changes themselves.
	st := openBadger(t, dir)
	defer st.Close()
	rec, err := st.Load(ctx, string(id))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crdt.SplitChanges(rec.Snapshot); err != nil || len(rec.Snapshot) == 0 {
		t.Fatalf("snapshot of %d bytes is not change chunks: %v", len(rec.Snapshot), err)
	}
}

// TestGraphDocumentsDematerialize: a server's read builds the core copy of
// a graph document; while a client keeps the document busy (so it never
// hibernates), the copy goes once nothing has read it for
// DematerializeAfter, and a later read sees every change. Negative
// DematerializeAfter keeps it.
func TestGraphDocumentsDematerialize(t *testing.T) {
	for _, after := range []time.Duration{20 * time.Millisecond, -1} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			ctx := ctxT(t)
			srv := newRepo(t, memory.New(), func(c *repo.Config) {
				c.GraphDocuments = true
				c.DematerializeAfter = after
				c.HibernateAfter = time.Hour
			})
			client := newRepo(t, memory.New(), func(c *repo.Config) { c.Share = repo.ClientSharePolicy{} })
			l := dial(t, srv, client)
			t.Cleanup(l.cut)
			hc, err := client.CreateJSON(ctx, []byte(`{"n":0}`))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { _, err := srv.Find(ctx, hc.ID()); return err == nil }, "server has the document")
			hs, err := srv.Find(ctx, hc.ID())
			if err != nil {
				t.Fatal(err)
			}
			// A read builds the core copy. (Reading in the condition: with
			// a short DematerializeAfter the copy may go before a second
			// look at the stats.)
			waitFor(t, func() bool {
				_, err := hs.JSON(ctx, "")
				return err == nil && srv.Stats().InCore == 1
			}, "a read builds the core copy")
			// The client changes the document every 5 ms, 200 times at
			// most: at least 50 times (ten times DematerializeAfter), and
			// until the copy is gone if it is to go.
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			n := 0
			for n < 200 && (n < 50 || (after > 0 && srv.Stats().InCore != 0)) {
				<-tick.C
				n++
				if _, err := hc.Set(ctx, "/n", n); err != nil {
					t.Fatal(err)
				}
			}
			if want := map[bool]int{true: 0, false: 1}[after > 0]; srv.Stats().InCore != want {
				t.Fatalf("InCore = %d after %d changes, want %d", srv.Stats().InCore, n, want)
			}
			waitFor(t, func() bool {
				v, err := hs.Get(ctx, "/n")
				return err == nil && v == int64(n) && srv.Stats().InCore == 1
			}, "a read builds the core copy again and sees the last change")
		})
	}
}
