package crdt

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// widgetChanges returns the change chunks of a widget document (see
// widgetDoc) with history changes after its creation, built once per size.
var widgetChangeCache = map[int][]Change{}

func widgetChanges(b *testing.B, history int) []Change {
	if cs, ok := widgetChangeCache[history]; ok {
		return cs
	}
	d := widgetDoc(b, history)
	all, err := d.ChangesSince(nil)
	if err != nil {
		b.Fatal(err)
	}
	cs, err := SplitChanges(all)
	if err != nil {
		b.Fatal(err)
	}
	widgetChangeCache[history] = cs
	return cs
}

func graphOf(b *testing.B, cs []Change) *Graph {
	g := NewGraph()
	for _, c := range cs {
		if _, err := g.Add(c.Raw); err != nil {
			b.Fatal(err)
		}
	}
	return g
}

func joinRaw(cs []Change) []byte {
	var out []byte
	for _, c := range cs {
		out = append(out, c.Raw...)
	}
	return out
}

// liveHeap returns the Go heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rss returns the process's resident size (Linux; 0 elsewhere). The
// Automerge core allocates with C malloc, which the Go heap does not see.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// BenchmarkGraphAdd: a Graph built from 10,000 changes added one by one.
func BenchmarkGraphAdd(b *testing.B) {
	cs := widgetChanges(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	var g *Graph
	for i := 0; i < b.N; i++ {
		g = graphOf(b, cs)
	}
	b.StopTimer()
	n := float64(b.N * len(cs))
	b.ReportMetric(n/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/n, "µs/change")
	g = nil
	before := liveHeap()
	g = graphOf(b, cs)
	after := liveHeap()
	b.ReportMetric(float64(after-before)/float64(len(cs)), "heap-B/change")
	b.ReportMetric(float64(g.Bytes())/float64(len(cs)), "raw-B/change")
	runtime.KeepAlive(g)
}

// BenchmarkGraphMemory compares the memory that holds 10,000 changes: a
// Graph (Go heap) and a Doc (the Automerge core's C heap, seen as resident
// size, plus its Go heap).
func BenchmarkGraphMemory(b *testing.B) {
	for _, history := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			cs := widgetChanges(b, history)
			data := joinRaw(cs)
			var graphBytes, docBytes, docHeap float64
			for i := 0; i < b.N; i++ {
				h0 := liveHeap()
				g := graphOf(b, cs)
				graphBytes += float64(liveHeap() - h0)
				runtime.KeepAlive(g)
				g = nil

				ReleaseMemory()
				h0, r0 := liveHeap(), rss()
				d := New()
				if err := d.LoadIncremental(data); err != nil {
					b.Fatal(err)
				}
				if len(d.Heads()) == 0 {
					b.Fatal("empty doc")
				}
				docHeap += float64(liveHeap()) - float64(h0)
				docBytes += float64(rss()) - float64(r0)
				runtime.KeepAlive(d)
			}
			per := float64(b.N * len(cs))
			b.ReportMetric(graphBytes/per, "graph-B/change")
			b.ReportMetric((docBytes+docHeap)/per, "doc-B/change")
			b.ReportMetric(float64(len(data))/float64(len(cs)), "raw-B/change")
		})
	}
}

// BenchmarkGraphSyncNewcomer: a peer with nothing syncs a 10,000-change
// Graph fully. peer=doc is an automerge client (its own cost included);
// peer=graph is another GraphSync, which shows this package's cost alone.
func BenchmarkGraphSyncNewcomer(b *testing.B) {
	cs := widgetChanges(b, 10000)
	g := graphOf(b, cs)
	for _, kind := range []string{"doc", "graph"} {
		b.Run("peer="+kind, func(b *testing.B) {
			var msgs int
			var ours time.Duration
			for i := 0; i < b.N; i++ {
				srv := NewGraphSync(g)
				var cli peer
				var check func()
				if kind == "doc" {
					d := New()
					cli = docPeer{NewSyncState(d)}
					check = func() {
						if len(d.Heads()) != len(g.Heads()) {
							b.Fatal("not synced")
						}
					}
				} else {
					g2 := NewGraph()
					cli = graphPeer{NewGraphSync(g2)}
					check = func() {
						if g2.Len() != g.Len() {
							b.Fatal("not synced")
						}
					}
				}
				n, d := timedExchange(b, cli, srv)
				msgs += n
				ours += d
				check()
			}
			b.ReportMetric(float64(msgs)/float64(b.N), "msgs/sync")
			b.ReportMetric(float64(ours.Milliseconds())/float64(b.N), "server-ms/sync")
			b.ReportMetric(float64(b.N*len(cs))/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// timedExchange runs cli ⇄ srv until both are quiet and returns the
// number of messages and the time spent in srv.
func timedExchange(b *testing.B, cli peer, srv *GraphSync) (int, time.Duration) {
	var in time.Duration
	msgs := 0
	for round := 0; ; round++ {
		if round > 20 {
			b.Fatal("no quiet after 20 rounds")
		}
		m1, ok1 := cli.gen()
		if ok1 {
			msgs++
			t0 := time.Now()
			if _, err := srv.Receive(m1); err != nil {
				b.Fatal(err)
			}
			in += time.Since(t0)
		}
		t0 := time.Now()
		m2, ok2 := srv.Generate()
		in += time.Since(t0)
		if ok2 {
			msgs++
			cli.recv(b, m2)
		}
		if !ok1 && !ok2 {
			return msgs, in
		}
	}
}

// BenchmarkGraphSyncOneChange: the steady state. A client makes one
// change and syncs it to the server's Graph, which was in sync before;
// server-µs/change is the GraphSync side alone (Receive and Generate),
// against the Doc figures of DESIGN.md (about 600 + 330 µs at 10,000).
func BenchmarkGraphSyncOneChange(b *testing.B) {
	for _, history := range []int{100, 10000} {
		for _, kind := range []string{"doc", "graph"} {
			b.Run(fmt.Sprintf("history=%d/peer=%s", history, kind), func(b *testing.B) {
				cs := widgetChanges(b, history)
				g := graphOf(b, cs)
				srv := NewGraphSync(g)
				var cli peer
				var commit func(i int)
				if kind == "doc" {
					d := New()
					if err := d.LoadIncremental(joinRaw(cs)); err != nil {
						b.Fatal(err)
					}
					cli = docPeer{NewSyncState(d)}
					commit = func(i int) {
						_ = d.Set(fmt.Sprintf("/widgets/%d/value", i%20), -i-1)
						if _, _, err := d.Commit(""); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					// The writer's changes reach its graph directly.
					writer := New()
					if err := writer.LoadIncremental(joinRaw(cs)); err != nil {
						b.Fatal(err)
					}
					g2 := graphOf(b, cs)
					cli = graphPeer{NewGraphSync(g2)}
					commit = func(i int) {
						_ = writer.Set(fmt.Sprintf("/widgets/%d/value", i%20), -i-1)
						info, _, err := writer.Commit("")
						if err != nil {
							b.Fatal(err)
						}
						if _, err := g2.Add(info.Bytes); err != nil {
							b.Fatal(err)
						}
					}
				}
				timedExchange(b, cli, srv)
				b.ResetTimer()
				var ours time.Duration
				msgs := 0
				for i := 0; i < b.N; i++ {
					commit(i)
					n, d := timedExchange(b, cli, srv)
					msgs += n
					ours += d
				}
				b.StopTimer()
				if g.Len() != len(cs)+b.N {
					b.Fatalf("graph has %d changes, want %d", g.Len(), len(cs)+b.N)
				}
				b.ReportMetric(float64(ours.Microseconds())/float64(b.N), "server-µs/change")
				b.ReportMetric(float64(msgs)/float64(b.N), "msgs/change")
			})
		}
	}
}
