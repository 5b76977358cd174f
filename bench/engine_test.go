package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
)

// dashboardJSON is a dashboard document of n widgets.
func dashboardJSON(n int) []byte {
	s := `{"title":"ops","widgets":{`
	for i := range n {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(`"w%d":{"kind":"gauge","value":%d}`, i, i)
	}
	return []byte(s + "}}")
}

func openStore(b *testing.B, dir string) *badgerstore.Store {
	b.Helper()
	s, err := badgerstore.Open(badgerstore.DefaultConfig(dir))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkLocalChange: one widget value set and committed, in memory.
func BenchmarkLocalChange(b *testing.B) {
	for _, hist := range []int{100, 10000} {
		b.Run(fmt.Sprintf("history=%d", hist), func(b *testing.B) {
			d, err := crdt.FromJSON(dashboardJSON(20))
			if err != nil {
				b.Fatal(err)
			}
			for i := range hist {
				if err := d.Set(fmt.Sprintf("/widgets/w%d/value", i%20), i); err != nil {
					b.Fatal(err)
				}
				if _, _, err := d.Commit(""); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Set("/widgets/w3/value", i); err != nil {
					b.Fatal(err)
				}
				if _, _, err := d.Commit(""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkDurableChange: a widget change through the Repo, fsynced to
// Badger before Change returns. One writer.
func BenchmarkDurableChange(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir())
	defer s.Close()
	r, err := repo.New(repo.Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(ctx)
	h, err := r.CreateJSON(ctx, dashboardJSON(20))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Set(ctx, "/widgets/w3/value", i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkDurableChangeParallel64: 64 writers on 64 documents; each change
// is durable when Change returns. Group commit shares fsyncs between them.
func BenchmarkDurableChangeParallel64(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir())
	defer s.Close()
	r, err := repo.New(repo.Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(ctx)
	const writers = 64
	hs := make([]*repo.DocHandle, writers)
	for i := range hs {
		if hs[i], err = r.CreateJSON(ctx, dashboardJSON(20)); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := hs[w].Set(ctx, "/widgets/w3/value", i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkLoad10kChanges: load a document with 10,000 changes from Badger
// (a fresh Repo each time, so nothing is cached in the engine).
func BenchmarkLoad10kChanges(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	s := openStore(b, dir)
	defer s.Close()
	r, err := repo.New(repo.Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	h, err := r.CreateJSON(ctx, dashboardJSON(20))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		if _, err := h.Set(ctx, fmt.Sprintf("/widgets/w%d/value", i%20), i); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Close(ctx); err != nil {
		b.Fatal(err)
	}
	m, _ := s.Stat(ctx, string(h.ID()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := repo.New(repo.Config{Store: s})
		if err != nil {
			b.Fatal(err)
		}
		h2, err := r.Find(ctx, h.ID())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h2.Heads(ctx); err != nil {
			b.Fatal(err)
		}
		_ = r.Close(ctx)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
	b.ReportMetric(float64(m.Size), "stored-bytes")
}

// BenchmarkOpenList10kDocs: open a store holding 10,000 documents and list
// them. Nothing is loaded into memory.
func BenchmarkOpenList10kDocs(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	s := openStore(b, dir)
	r, err := repo.New(repo.Config{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= n {
				if _, err := r.CreateJSON(ctx, dashboardJSON(5)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	_ = r.Close(ctx)
	_ = s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		s := openStore(b, dir)
		r, err := repo.New(repo.Config{Store: s})
		if err != nil {
			b.Fatal(err)
		}
		docs, err := r.List(ctx)
		if err != nil || len(docs) != n {
			b.Fatalf("listed %d docs, %v", len(docs), err)
		}
		if r.Live() != 0 {
			b.Fatalf("listing loaded %d documents", r.Live())
		}
		_ = r.Close(ctx)
		_ = s.Close()
		_ = start
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open+list")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}
