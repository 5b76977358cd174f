package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// sessionsOnly makes startServer and dialClient turn the direct sync path
// off (repo.Config.SessionsOnly), so that benchmarks compare both paths;
// graphDocs makes startServer keep documents as change graphs
// (repo.Config.GraphDocuments), as tandem serve does.
var sessionsOnly, graphDocs bool

// modes runs f once per server engine: "direct" (documents in the
// Automerge core, direct path on), "sessions" (Automerge sessions only)
// and "graph" (change graphs and Go sessions, tandem serve's default).
func modes(b *testing.B, f func(b *testing.B)) {
	for _, m := range []string{"direct", "sessions", "graph"} {
		b.Run("sync="+m, func(b *testing.B) {
			sessionsOnly, graphDocs = m == "sessions", m == "graph"
			defer func() { sessionsOnly, graphDocs = false, false }()
			f(b)
		})
	}
}

// testServer runs a Tandem sync server on 127.0.0.1:0 backed by Badger in
// dir (or memory when dir is ""); it returns the ws URL.
type testServer struct {
	url    string
	repo   *repo.Repo
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
	closeS func()
}

func startServer(b *testing.B, dir string) *testServer {
	b.Helper()
	ts := &testServer{done: make(chan error, 1)}
	if dir == "" {
		ts.closeS = func() {}
		r, err := repo.New(repo.Config{Store: memory.New(), SessionsOnly: sessionsOnly, GraphDocuments: graphDocs})
		if err != nil {
			b.Fatal(err)
		}
		ts.repo = r
	} else {
		s := openStore(b, dir)
		ts.closeS = func() { _ = s.Close() }
		r, err := repo.New(repo.Config{Store: s, SessionsOnly: sessionsOnly, GraphDocuments: graphDocs})
		if err != nil {
			b.Fatal(err)
		}
		ts.repo = r
	}
	srv, err := server.New(server.Config{Repo: ts.repo})
	if err != nil {
		b.Fatal(err)
	}
	ts.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ts.url = "ws://" + ln.Addr().String() + "/sync"
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	return ts
}

func (ts *testServer) stop() {
	ts.cancel()
	<-ts.done
	_ = ts.repo.Close(context.Background())
	ts.closeS()
}

type client struct {
	r    *repo.Repo
	conn *repo.Connection
}

func dialClient(b *testing.B, url string) *client {
	b.Helper()
	r, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}, SessionsOnly: sessionsOnly})
	if err != nil {
		b.Fatal(err)
	}
	c := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, url, ws.Config{})
	}, repo.ReconnectConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	return &client{r: r, conn: c}
}

func (c *client) close() {
	c.conn.Close()
	_ = c.r.Close(context.Background())
}

func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkFanout measures one change travelling from one client through
// the server to every other client over real loopback WebSockets: latency
// from the change until the last peer has applied it, and changes/s.
func BenchmarkFanout(b *testing.B) {
	for _, hist := range []int{0, 10000} {
		for _, peers := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("history=%d/peers=%d", hist, peers), func(b *testing.B) {
				modes(b, func(b *testing.B) { benchFanout(b, peers, hist) })
			})
		}
	}
}

func benchFanout(b *testing.B, peers, hist int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ts := startServer(b, b.TempDir())
	defer ts.stop()

	// The writer is client 0; peers other clients receive.
	writer := dialClient(b, ts.url)
	defer writer.close()
	saved := historyDoc(b, hist)
	wh, err := writer.r.Import(ctx, saved)
	if err != nil {
		b.Fatal(err)
	}
	// Wait until the server has it, then let the readers find it.
	waitB(b, ctx, func() bool {
		h, err := ts.repo.Find(ctx, wh.ID())
		if err != nil {
			return false
		}
		hs, _ := h.Heads(ctx)
		return len(hs) > 0
	})
	readers := make([]*client, peers)
	subs := make([]*repo.Subscription, peers)
	for i := range readers {
		readers[i] = dialClient(b, ts.url)
		defer readers[i].close()
		h, err := readers[i].r.Find(ctx, wh.ID())
		if err != nil {
			b.Fatal(err)
		}
		if subs[i], err = h.Subscribe(ctx); err != nil {
			b.Fatal(err)
		}
		defer subs[i].Close()
	}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := wh.Set(ctx, "/widgets/w3/value", i)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, s := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				waitHeads(ctx, s, res.Hash)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			b.Fatal("timed out waiting for fan-out")
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
}

// waitHeads reads events until one carries heads containing h.
func waitHeads(ctx context.Context, s *repo.Subscription, h crdt.Hash) {
	for {
		select {
		case e, ok := <-s.Events():
			if !ok {
				return
			}
			for _, x := range e.Heads {
				if bytes.Equal(x[:], h[:]) {
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// historyDoc returns a saved 20-widget dashboard with hist changes after
// its creation.
func historyDoc(b *testing.B, hist int) []byte {
	b.Helper()
	doc, err := crdt.FromJSON(dashboardJSON(20))
	if err != nil {
		b.Fatal(err)
	}
	for i := range hist {
		_ = doc.Set(fmt.Sprintf("/widgets/w%d/value", i%20), i)
		if _, _, err := doc.Commit(""); err != nil {
			b.Fatal(err)
		}
	}
	return doc.Save()
}

func waitB(b *testing.B, ctx context.Context, cond func() bool) {
	b.Helper()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			b.Fatal("timed out")
		case <-t.C:
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rss is the process's resident set in bytes: unlike the Go heap it includes
// the Automerge core's (Rust) allocations.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res uint64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return 0
	}
	return res * uint64(os.Getpagesize())
}

// BenchmarkServerMemory reports the server's heap per open document (a
// 20-widget dashboard held live because a peer syncs it) and per idle
// connection (joined, no documents).
func BenchmarkServerMemory(b *testing.B) {
	b.Run("per-idle-connection", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ts := startServer(b, "")
			const conns = 200
			before := heapInUse()
			cs := make([]transport.Conn, conns)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			for j := range cs {
				c, err := ws.Dial(ctx, ts.url, ws.Config{})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: fmt.Sprintf("idle-%d", j), SupportedProtocolVersions: []string{"1"}}); err != nil {
					b.Fatal(err)
				}
				if _, err := c.ReadMessage(ctx); err != nil {
					b.Fatal(err)
				}
				cs[j] = c
			}
			waitB(b, ctx, func() bool { return ts.srv.Connections() == conns })
			after := heapInUse()
			// Client-side conns live in this process too: count both
			// sides, an upper bound for the server alone.
			b.ReportMetric(float64(after-before)/conns, "bytes/conn(both-ends)")
			for _, c := range cs {
				_ = c.Close(nil)
			}
			cancel()
			ts.stop()
		}
	})
	b.Run("per-open-document", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ts := startServer(b, b.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			const docs = 500
			ids := make([]crdt.DocumentID, docs)
			for j := range ids {
				h, err := ts.repo.CreateJSON(ctx, dashboardJSON(20))
				if err != nil {
					b.Fatal(err)
				}
				ids[j] = h.ID()
			}
			before := heapInUse()
			beforeRSS := rss()
			subs := make([]*repo.Subscription, docs)
			for j, id := range ids {
				h, err := ts.repo.Find(ctx, id)
				if err != nil {
					b.Fatal(err)
				}
				if subs[j], err = h.Subscribe(ctx); err != nil {
					b.Fatal(err)
				}
			}
			after := heapInUse()
			afterRSS := rss()
			b.ReportMetric(float64(after-before)/docs, "go-heap-bytes/doc")
			b.ReportMetric(float64(afterRSS-beforeRSS)/docs, "rss-bytes/doc")
			for _, s := range subs {
				s.Close()
			}
			cancel()
			ts.stop()
		}
	})
}

// BenchmarkFanoutLoad: 4 writers change one document as fast as they can
// while peers read it; b.N changes in all. It reports the rate at which
// changes reach every peer and how many sync messages the server sent per
// change and peer: under load the server batches, so that stays well below
// one and its cost does not grow as peers × history × changes.
func BenchmarkFanoutLoad(b *testing.B) {
	for _, peers := range []int{10, 100} {
		b.Run(fmt.Sprintf("history=10000/peers=%d", peers), func(b *testing.B) {
			modes(b, func(b *testing.B) { benchFanoutLoad(b, peers, 10000, 4) })
		})
	}
}

func benchFanoutLoad(b *testing.B, peers, hist, writers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ts := startServer(b, b.TempDir())
	defer ts.stop()
	saved := historyDoc(b, hist)
	first := dialClient(b, ts.url)
	defer first.close()
	h0, err := first.r.Import(ctx, saved)
	if err != nil {
		b.Fatal(err)
	}
	waitB(b, ctx, func() bool {
		h, err := ts.repo.Find(ctx, h0.ID())
		if err != nil {
			return false
		}
		hs, _ := h.Heads(ctx)
		return len(hs) > 0
	})
	ws := make([]*repo.DocHandle, writers)
	ws[0] = h0
	for i := 1; i < writers; i++ {
		c := dialClient(b, ts.url)
		defer c.close()
		if ws[i], err = c.r.Find(ctx, h0.ID()); err != nil {
			b.Fatal(err)
		}
	}
	readers := make([]*repo.DocHandle, peers)
	for i := range readers {
		c := dialClient(b, ts.url)
		defer c.close()
		if readers[i], err = c.r.Find(ctx, h0.ID()); err != nil {
			b.Fatal(err)
		}
	}
	before := ts.repo.Stats().SyncOut
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += writers {
				if _, err := ws[w].Set(ctx, fmt.Sprintf("/widgets/w%d/value", w), i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Done when every reader holds every writer's last value.
	want := make(map[int]int)
	for w := range writers {
		last := -1
		for i := w; i < b.N; i += writers {
			last = i
		}
		want[w] = last
	}
	for _, r := range readers {
		waitB(b, ctx, func() bool {
			for w, v := range want {
				if v < 0 {
					continue
				}
				got, err := r.Get(ctx, fmt.Sprintf("/widgets/w%d/value", w))
				if err != nil || fmt.Sprint(got) != fmt.Sprint(v) {
					return false
				}
			}
			return true
		})
	}
	elapsed := time.Since(start)
	sent := ts.repo.Stats().SyncOut - before
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(float64(sent)/float64(b.N)/float64(peers+writers), "sync-msgs/change/peer")
}
