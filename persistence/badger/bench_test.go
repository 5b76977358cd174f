package badger

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tandemsync/tandem/persistence"
)

// chunk100 is a chunk of about the size of one small Automerge change.
var chunk100 = make([]byte, 100)

var benchHeads = []string{"5f3c2a7b9d1e4f6a8b0c2d4e6f8a0b1c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f1a"}

func openBench(b *testing.B) *Store {
	b.Helper()
	s, err := Open(DefaultConfig(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkAppendDurable: one writer, one document, fsync per append.
func BenchmarkAppendDurable(b *testing.B) {
	s := openBench(b)
	for b.Loop() {
		if _, err := s.Append(bg, "doc", chunk100, benchHeads); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// runParallel64 runs b.N calls of fn spread over 64 goroutines, goroutine
// g passing its index.
func runParallel64(b *testing.B, fn func(g int) error) {
	const writers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	for g := range writers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := fn(g); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkAppendDurableParallel64: 64 writers on 64 documents, each
// append durable when it returns; concurrent appends share commits.
func BenchmarkAppendDurableParallel64(b *testing.B) {
	s := openBench(b)
	ids := make([]string, 64)
	for i := range ids {
		ids[i] = fmt.Sprintf("doc-%02d", i)
	}
	b0, o0 := s.batches.Load(), s.batched.Load()
	runParallel64(b, func(g int) error {
		_, err := s.Append(bg, ids[g], chunk100, benchHeads)
		return err
	})
	if n := s.batches.Load() - b0; n > 0 {
		b.ReportMetric(float64(s.batched.Load()-o0)/float64(n), "appends/commit")
	}
}

// BenchmarkRawBadgerTxnParallel64 is the baseline for the group commit:
// 64 writers each committing their own Badger transaction (chunk + meta,
// as a plain Append would) with SyncWrites. Badger syncs its memtable WAL
// once per transaction, so this scales poorly.
func BenchmarkRawBadgerTxnParallel64(b *testing.B) {
	s := openBench(b)
	var seqs [64]uint64
	runParallel64(b, func(g int) error {
		seqs[g]++
		id := fmt.Sprintf("doc-%02d", g)
		m := docMeta{lastSeq: seqs[g], chunks: seqs[g], chunkBytes: seqs[g] * 100, heads: benchHeads}
		return s.db.Update(func(txn *bdb.Txn) error {
			if err := txn.Set(chunkKey(id, seqs[g]), chunk100); err != nil {
				return err
			}
			return txn.Set(metaKey(id), m.encode())
		})
	})
}

// BenchmarkList10k: open a store holding 10,000 documents and list them.
func BenchmarkList10k(b *testing.B) {
	const docs = 10000
	dir := b.TempDir()
	cfg := DefaultConfig(dir)
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Incompressible document data that List must not read.
	data := make([]byte, 2048)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < docs; i += 64 {
				id := fmt.Sprintf("3yGVF1Kc2fPZ8W2pQB8n%08d", i)
				if _, err := s.Append(bg, id, data, benchHeads); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := s.List(bg, func(persistence.Meta) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != docs {
			b.Fatalf("listed %d documents, want %d", n, docs)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(docs*b.N)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}
