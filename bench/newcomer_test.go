package bench

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// BenchmarkNewcomers: nine fresh clients open a document with a 10,000-change
// history at once, the way a team opens a shared dashboard; b.N rounds of
// nine. It reports the time until the last of them has the document and
// how the server built the nine full-document messages: from the change
// list it keeps for newcomers, or by asking Automerge for every change
// (whose result holds C memory until a Go finalizer runs).
func BenchmarkNewcomers(b *testing.B) {
	const newcomers, history = 9, 10000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ts := startServer(b, b.TempDir())
	defer ts.stop()
	h, err := ts.repo.Import(ctx, historyDoc(b, history))
	if err != nil {
		b.Fatal(err)
	}
	want, err := h.Heads(ctx)
	if err != nil {
		b.Fatal(err)
	}
	before := ts.repo.Stats()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cs := make([]*client, newcomers)
		for j := range cs {
			cs[j] = dialClient(b, ts.url)
		}
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, newcomers)
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, err := c.r.Find(ctx, h.ID())
				if err != nil {
					errs <- err
					return
				}
				for {
					got, err := ch.Heads(ctx)
					if err == nil && slices.Equal(sortedHashes(got), sortedHashes(want)) {
						return
					}
					select {
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
		}
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for _, c := range cs {
			c.close()
		}
		b.StartTimer()
	}
	after := ts.repo.Stats()
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/9-newcomers")
	b.ReportMetric(float64(after.FullCached-before.FullCached)/float64(b.N), "cached/round")
	b.ReportMetric(float64(after.FullBuilt-before.FullBuilt)/float64(b.N), "built/round")
}

func sortedHashes(hs []crdt.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	slices.Sort(out)
	return out
}
