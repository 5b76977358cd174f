package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// BenchmarkConfirmLatency: a local edit until the server has confirmed it
// (loopback WebSocket, Badger-backed server).
func BenchmarkConfirmLatency(b *testing.B) {
	ctx := context.Background()
	ts := startServer(b, b.TempDir())
	defer ts.stop()
	c := dialClient(b, ts.url)
	defer c.close()
	h, err := c.r.CreateJSON(ctx, dashboardJSON(20))
	if err != nil {
		b.Fatal(err)
	}
	if err := h.WaitSynced(ctx); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := h.Set(ctx, "/widgets/w1/value", i); err != nil {
			b.Fatal(err)
		}
		if err := h.WaitSynced(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
}

// BenchmarkPendingTracking: the cost of one local change while 10 or
// 10,000 earlier changes are pending (no server: nothing is confirmed).
func BenchmarkPendingTracking(b *testing.B) {
	for _, pending := range []int{10, 10000} {
		b.Run(fmt.Sprintf("pending=%d", pending), func(b *testing.B) {
			ctx := context.Background()
			r, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close(ctx)
			h, err := r.CreateJSON(ctx, dashboardJSON(20))
			if err != nil {
				b.Fatal(err)
			}
			for i := range pending {
				if _, err := h.Set(ctx, "/widgets/w2/value", i); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Set(ctx, "/widgets/w2/value", i); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			p, _ := h.Pending(ctx)
			if len(p) < pending {
				b.Fatalf("only %d pending", len(p))
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/change")
		})
	}
}

// BenchmarkReconnectResync: a client holding 1,000 documents (each with an
// offline edit) reconnects; time until every document is confirmed.
func BenchmarkReconnectResync(b *testing.B) {
	ctx := context.Background()
	const docs = 1000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ts := startServer(b, b.TempDir())
		r, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
		if err != nil {
			b.Fatal(err)
		}
		hs := make([]*repo.DocHandle, docs)
		for j := range hs {
			if hs[j], err = r.CreateJSON(ctx, dashboardJSON(5)); err != nil {
				b.Fatal(err)
			}
			if _, err := hs[j].Change(ctx, func(d *crdt.Doc) error { return d.Set("/title", "offline") }); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		conn := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
			return ws.Dial(ctx, ts.url, ws.Config{})
		}, repo.ReconnectConfig{})
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		for _, h := range hs {
			if err := h.WaitSynced(wctx); err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/resync-1000-docs")
		b.StopTimer()
		conn.Close()
		_ = r.Close(ctx)
		ts.stop()
		b.StartTimer()
	}
}
