package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// floodKinds are the flooders BenchmarkFloodNeighbourLatency runs beside
// the normal client.
var floodKinds = []string{
	"none",
	// sync messages carrying real changes, as fast as possible: slowed to
	// the message rate (a server that cut it off would see it back at once:
	// automerge-repo clients reconnect by themselves, a hostile one does
	// not wait, and the flooder below reconnects whenever cut off). The changes
	// come from a pool of floodPool made before the run: new to the server
	// on the first pass, known to it afterwards, so that the document's
	// history, and with it the cost of every sync, stays the same size
	// (BenchmarkFanout measures history; a flood of ever new changes
	// measures both at once and never settles).
	"changes",
	// 256 KiB ephemeral messages, as fast as possible: slowed to the
	// byte rate, and relayed to the other peers of the document
	"ephemeral",
}

// BenchmarkFloodNeighbourLatency measures a normal client's fan-out
// latency (one change, from the moment it is made until an observer on
// the same document has applied it) while a third client floods that
// document, under the server's default limits. Everything runs in the
// benchmark process, so the flooder also competes with the clients for
// CPU.
func BenchmarkFloodNeighbourLatency(b *testing.B) {
	for _, kind := range floodKinds {
		b.Run("flooder="+kind, func(b *testing.B) { benchFloodNeighbour(b, kind) })
	}
}

func benchFloodNeighbour(b *testing.B, kind string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ts := startServer(b, b.TempDir())
	defer ts.stop()
	writer := dialClient(b, ts.url)
	defer writer.close()
	observer := dialClient(b, ts.url)
	defer observer.close()
	wh, err := writer.r.CreateJSON(ctx, dashboardJSON(20))
	if err != nil {
		b.Fatal(err)
	}
	var oh *repo.DocHandle
	waitB(b, ctx, func() bool {
		oh, err = observer.r.Find(ctx, wh.ID())
		return err == nil
	})
	sub, err := oh.Subscribe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	snapshot, err := wh.Export(ctx)
	if err != nil {
		b.Fatal(err)
	}

	var f *benchFlooder
	fctx, stopFlood := context.WithCancel(ctx)
	var fwg sync.WaitGroup
	if kind != "none" {
		if f, err = newBenchFlooder(ts.url, wh.ID(), snapshot, kind); err != nil {
			b.Fatal(err)
		}
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			f.run(fctx)
		}()
		// Measure once the flood is under way (and the pool is in).
		waitB(b, ctx, func() bool { return f.sent.Load() >= 2*floodPool })
	}
	defer func() {
		stopFlood()
		fwg.Wait()
	}()

	lat := make([]time.Duration, 0, b.N)
	in0 := ts.repo.Stats().MessagesIn
	var conns0 int64
	if f != nil {
		conns0 = f.conns.Load()
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := wh.Set(ctx, "/widgets/w3/value", i)
		if err != nil {
			b.Fatal(err)
		}
		waitHeads(ctx, sub, res.Hash)
		if ctx.Err() != nil {
			b.Fatal("timed out waiting for fan-out")
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(float64(ts.repo.Stats().MessagesIn-in0)/elapsed.Seconds(), "server-msgs-in/s")
	if f != nil {
		b.ReportMetric(float64(f.conns.Load()-conns0)/elapsed.Seconds(), "flood-conns/s")
	}
}

// benchFlooder floods one document over real WebSockets (Tandem's
// transport, not its client engine) until its context ends, reconnecting
// whenever the server closes its connection.
type benchFlooder struct {
	url     string
	id      crdt.DocumentID
	kind    string
	payload []byte

	mu sync.Mutex // guards doc: the reader applies what the server sends
	d  *crdt.Doc

	pool [][]byte // change chunks, for "changes"

	sent, conns atomic.Int64
	count       uint64 // ephemeral message counter, one session
}

// floodPool is how many distinct changes the "changes" flooder cycles
// through.
const floodPool = 200

func newBenchFlooder(url string, id crdt.DocumentID, snapshot []byte, kind string) (*benchFlooder, error) {
	d, err := crdt.Load(snapshot)
	if err != nil {
		return nil, err
	}
	f := &benchFlooder{url: url, id: id, kind: kind, d: d}
	switch kind {
	case "ephemeral":
		f.payload = make([]byte, 256<<10)
		_, _ = rand.Read(f.payload)
	case "changes":
		for i := range floodPool {
			if err := d.Set("/flood", i); err != nil {
				return nil, err
			}
			ci, _, err := d.Commit("")
			if err != nil {
				return nil, err
			}
			f.pool = append(f.pool, ci.Bytes)
		}
	}
	return f, nil
}

func (f *benchFlooder) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := f.once(ctx); err != nil && ctx.Err() == nil {
			// Dial or handshake failed: do not spin.
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// once runs one connection: join, then flood until the server closes it.
func (f *benchFlooder) once(ctx context.Context) error {
	c, err := ws.Dial(ctx, f.url, ws.Config{})
	if err != nil {
		return err
	}
	defer c.Close(nil)
	const self = "flooder"
	if err := c.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: self, SupportedProtocolVersions: []string{transport.ProtocolV1}}); err != nil {
		return err
	}
	peer, err := c.ReadMessage(ctx)
	if err != nil {
		return err
	}
	if peer.Type != transport.TypePeer {
		return fmt.Errorf("join answered with %q", peer.Type)
	}
	f.conns.Add(1)
	// Read (and apply) everything the server sends: a flooder that stopped
	// reading would be dropped for that instead.
	ss := crdt.NewSyncState(f.d)
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			m, err := c.ReadMessage(ctx)
			if err != nil {
				if errors.Is(err, transport.ErrClosed) || ctx.Err() != nil {
					return
				}
				continue
			}
			if m.Type == transport.TypeSync && m.DocumentID == string(f.id) {
				f.mu.Lock()
				_, _ = ss.Receive(m.Data)
				f.mu.Unlock()
			}
		}
	}()
	defer rwg.Wait()
	defer c.Close(nil) // ends the reader, before rwg.Wait
	for i := 0; ctx.Err() == nil; i++ {
		m := transport.Message{SenderID: self, TargetID: peer.SenderID, DocumentID: string(f.id)}
		if f.kind == "ephemeral" {
			f.count++
			m.Type, m.SessionID, m.Count, m.Data = transport.TypeEphemeral, "flood", f.count, f.payload
		} else {
			// One change per message, as a client in sync sends it,
			// announcing our true heads so the server sends nothing back
			// but what we lack.
			f.mu.Lock()
			heads := f.d.Heads()
			f.mu.Unlock()
			m.Type, m.Data = transport.TypeSync, crdt.DirectMessage(heads, [][]byte{f.pool[i%len(f.pool)]})
		}
		if err := c.WriteMessage(ctx, m); err != nil {
			return nil // closed: come back
		}
		f.sent.Add(1)
	}
	return nil
}
