package repo_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// loopServer is an in-process sync server on real loopback WebSockets,
// backed by Badger in dir, that can be stopped and started again.
type loopServer struct {
	t     *testing.T
	dir   string
	addr  string
	store *badgerstore.Store
	r     *repo.Repo
	srv   *http.Server
	ctx   context.Context
	stopc context.CancelFunc
	wg    sync.WaitGroup
	done  chan struct{}
}

func startLoopServer(t *testing.T, dir, addr string) *loopServer {
	t.Helper()
	s := &loopServer{t: t, dir: dir, done: make(chan struct{})}
	s.store = openBadger(t, dir)
	r, err := repo.New(repo.Config{Store: s.store, Logger: failureLog(t, "server")})
	if err != nil {
		t.Fatal(err)
	}
	s.r = r
	// A restarted server reuses its address: retry while the old
	// listener's port is being released, with a deadline.
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.ctx, s.stopc = context.WithCancel(context.Background())
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		conn, err := ws.Accept(w, req, ws.Config{})
		if err != nil {
			return
		}
		_ = s.r.Accept(s.ctx, conn)
	})}
	go func() { _ = s.srv.Serve(ln); close(s.done) }()
	t.Cleanup(s.stop)
	return s
}

func (s *loopServer) url() string { return "ws://" + s.addr + "/sync" }

func (s *loopServer) stop() {
	if s.stopc == nil {
		return
	}
	s.stopc()
	s.stopc = nil
	_ = s.srv.Close()
	<-s.done
	s.wg.Wait()
	_ = s.r.Close(context.Background())
	_ = s.store.Close()
}

// goClient is a client repo with its own store and a reconnecting
// connection to url.
type goClient struct {
	r    *repo.Repo
	conn *repo.Connection
}

func newClient(t *testing.T, store persistence.Store, url string) *goClient {
	t.Helper()
	r, err := repo.New(repo.Config{Store: store, Share: repo.ClientSharePolicy{}, Logger: failureLog(t, "client")})
	if err != nil {
		t.Fatal(err)
	}
	c := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, url, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	gc := &goClient{r: r, conn: c}
	t.Cleanup(gc.close)
	return gc
}

func (c *goClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	_ = c.r.Close(context.Background())
}

// failureLog returns a debug logger whose lines are printed only if t fails.
func failureLog(t *testing.T, who string) *slog.Logger {
	var buf lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", who, buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// freeAddr returns a loopback address nobody listens on (yet).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func historyLen(t *testing.T, ctx context.Context, h *repo.DocHandle) int {
	hist, err := h.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return len(hist)
}

func TestOfflineEditsConfirmedWhenServerComesUp(t *testing.T) {
	ctx := ctxT(t)
	addr := freeAddr(t)
	cs := openBadger(t, t.TempDir())
	defer cs.Close()
	c := newClient(t, cs, "ws://"+addr+"/sync")
	h, err := c.r.CreateJSON(ctx, []byte(`{"w":{"v":0}}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := h.Set(ctx, "/w/v", i); err != nil {
			t.Fatal(err)
		}
	}
	st, err := h.SyncStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 5 || st.State == repo.StateSynced {
		t.Fatalf("offline status = %+v", st)
	}
	waitFor(t, func() bool { s, _ := h.SyncStatus(ctx); return s.State == repo.StateError }, "error state while the server is down")

	srv := startLoopServer(t, t.TempDir(), addr)
	if err := h.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.Pending(ctx); len(p) != 0 {
		t.Fatalf("pending after sync: %v", p)
	}
	st, _ = h.SyncStatus(ctx)
	if st.State != repo.StateSynced || st.LastConfirmed.IsZero() {
		t.Fatalf("status after sync = %+v", st)
	}
	sh, err := srv.r.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := sh.Get(ctx, "/w/v"); fmt.Sprint(v) != "5" {
		t.Fatalf("server has v = %v", v)
	}
	if rs := c.r.Status(); rs.State != repo.StateSynced || rs.Unsynced != 0 {
		t.Fatalf("repo status = %+v", rs)
	}
}

func TestServerRestartMidSyncClientEndsSynced(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	srv := startLoopServer(t, dir, "127.0.0.1:0")
	addr := srv.addr
	c := newClient(t, memory.New(), srv.url())
	h, err := c.r.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 200; i++ {
		if _, err := h.Set(ctx, "/n", i); err != nil {
			t.Fatal(err)
		}
		if i == 100 {
			srv.stop()
			srv = startLoopServer(t, dir, addr)
		}
	}
	if err := h.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	sh, err := srv.r.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := sh.Get(ctx, "/n"); fmt.Sprint(v) != "200" {
		t.Fatalf("server n = %v", v)
	}
}

// connectPair makes two synced clients A and B on one document.
func connectPair(t *testing.T, srv *loopServer, content string) (*goClient, *repo.DocHandle, *goClient, *repo.DocHandle) {
	t.Helper()
	ctx := ctxT(t)
	a := newClient(t, memory.New(), srv.url())
	b := newClient(t, memory.New(), srv.url())
	if err := b.conn.WaitConnected(ctx); err != nil {
		t.Fatal(err) // Find asks connected peers only
	}
	ha, err := a.r.CreateJSON(ctx, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	hb, err := b.r.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	return a, ha, b, hb
}

func TestConflictEvents(t *testing.T) {
	ctx := ctxT(t)
	srv := startLoopServer(t, t.TempDir(), "127.0.0.1:0")
	a, ha, _, hb := connectPair(t, srv, `{"w":{"cpu":0,"mem":0}}`)
	sub, err := ha.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	// Different keys: no conflict.
	if _, err := ha.Set(ctx, "/w/cpu", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := hb.Set(ctx, "/w/mem", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v, _ := ha.Get(ctx, "/w/mem"); return fmt.Sprint(v) == "1" }, "a sees b's write")
	// b must have seen a's first write, or b's next write is concurrent
	// with it too.
	waitFor(t, func() bool { v, _ := hb.Get(ctx, "/w/cpu"); return fmt.Sprint(v) == "1" }, "b sees a's write")
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}

	// Same key, concurrently: a writes while cut off from the server.
	a.conn.Close()
	a.conn = nil
	local, err := ha.Set(ctx, "/w/cpu", 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hb.Set(ctx, "/w/cpu", 200); err != nil {
		t.Fatal(err)
	}
	if err := hb.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	a.conn = a.r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, srv.url(), ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 10 * time.Millisecond})
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if err := hb.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		x, _ := ha.Heads(ctx)
		y, _ := hb.Heads(ctx)
		return fmt.Sprint(x) == fmt.Sprint(y)
	}, "convergence")
	winner, _ := ha.Get(ctx, "/w/cpu")

	var conflicts []*repo.Conflict
	drain := time.After(300 * time.Millisecond) // collect what arrived; the count must be exactly one
	for done := false; !done; {
		select {
		case e := <-sub.Events():
			if e.Conflict != nil {
				conflicts = append(conflicts, e.Conflict)
			}
		case <-drain:
			done = true
		}
	}
	if len(conflicts) != 1 {
		t.Fatalf("%d conflict events, want 1: %+v", len(conflicts), conflicts)
	}
	c := conflicts[0]
	if c.Path != "/w/cpu" || fmt.Sprint(c.Local) != "100" || fmt.Sprint(c.Remote) != "200" ||
		fmt.Sprint(c.Winner) != fmt.Sprint(winner) || c.LocalChange != local.Hash || len(c.RemoteHeads) == 0 {
		t.Fatalf("conflict = %+v (winner in doc %v)", c, winner)
	}
}

func TestRollbackPending(t *testing.T) {
	ctx := ctxT(t)
	srv := startLoopServer(t, t.TempDir(), "127.0.0.1:0")
	a, ha, _, hb := connectPair(t, srv, `{"w":{"cpu":0,"mem":0},"title":"ops"}`)
	if _, err := ha.Set(ctx, "/w/cpu", 1); err != nil { // confirmed
		t.Fatal(err)
	}
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	confirmed, _ := ha.Heads(ctx)
	a.conn.Close()
	a.conn = nil
	if _, err := ha.Set(ctx, "/w/cpu", 50); err != nil {
		t.Fatal(err)
	}
	if _, err := ha.Change(ctx, func(d *crdt.Doc) error { return d.Set("/w/extra", true) }); err != nil {
		t.Fatal(err)
	}
	if pend, _ := ha.Pending(ctx); len(pend) != 2 {
		t.Fatalf("pending = %v", pend)
	}
	// Confirmed changes cannot be rolled back.
	if _, err := ha.Rollback(ctx, confirmed[0]); err == nil {
		t.Fatal("rolled back a confirmed change")
	}
	// A remote change arrives meanwhile (through a reconnect later).
	if _, err := hb.Set(ctx, "/title", "ops, eu"); err != nil {
		t.Fatal(err)
	}
	if err := hb.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	sub, _ := ha.Subscribe(ctx)
	defer sub.Close()
	res, err := ha.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Fatal("rollback made no change")
	}
	b, _ := ha.JSON(ctx, "")
	jsonEq(t, b, `{"w":{"cpu":1,"mem":0},"title":"ops"}`)
	select {
	case e := <-sub.Events():
		if !e.Local {
			t.Fatalf("event %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("no event for the rollback")
	}
	a.conn = a.r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, srv.url(), ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 10 * time.Millisecond})
	if err := ha.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ = ha.JSON(ctx, "")
	jsonEq(t, b, `{"w":{"cpu":1,"mem":0},"title":"ops, eu"}`)
	waitFor(t, func() bool { x, _ := hb.JSON(ctx, ""); return string(x) == string(b) }, "b sees the rolled-back state")
}

func TestCoalesce(t *testing.T) {
	ctx := ctxT(t)
	r := newRepo(t, memory.New())
	h, err := r.CreateJSON(ctx, []byte(`{"slider":0}`))
	if err != nil {
		t.Fatal(err)
	}
	before := historyLen(t, ctx, h)
	ch := h.WithCoalesce(50 * time.Millisecond)
	tick := time.NewTicker(time.Millisecond) // pace: 1,000 updates over about a second
	defer tick.Stop()
	for i := 1; i <= 1000; i++ {
		<-tick.C
		if _, err := ch.Set(ctx, "/slider", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	made := historyLen(t, ctx, h) - before
	if made < 1 || made > 60 {
		t.Fatalf("%d changes for 1000 coalesced updates", made)
	}
	if v, _ := h.Get(ctx, "/slider"); fmt.Sprint(v) != "1000" {
		t.Fatalf("slider = %v", v)
	}
	t.Logf("1000 updates made %d changes", made)
}

func TestSecondProcessSeesSynced(t *testing.T) {
	ctx := ctxT(t)
	srv := startLoopServer(t, t.TempDir(), "127.0.0.1:0")
	dir := t.TempDir()
	cs := openBadger(t, dir)
	c := newClient(t, cs, srv.url())
	h, err := c.r.CreateJSON(ctx, []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Set(ctx, "/a", 2); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	c.close()
	cs.Close()

	cs = openBadger(t, dir)
	defer cs.Close()
	c = newClient(t, cs, srv.url())
	h, err = c.r.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.WaitSynced(wctx); err != nil {
		st, _ := h.SyncStatus(ctx)
		t.Fatalf("second process: %v; status %+v", err, st)
	}
}
