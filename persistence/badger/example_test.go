package badger_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/persistence/badger"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "tandem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := badger.Open(badger.DefaultConfig(filepath.Join(dir, "data")))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Save two batches of changes, then compact them into a snapshot.
	s.Append(ctx, "doc-1", []byte("first changes"), []string{"h1"})
	seq, _ := s.Append(ctx, "doc-1", []byte("more changes"), []string{"h2"})
	if err := s.Compact(ctx, "doc-1", []byte("full save"), seq, []string{"h2"}); err != nil {
		log.Fatal(err)
	}
	s.Append(ctx, "doc-1", []byte("later"), []string{"h3"})

	rec, _ := s.Load(ctx, "doc-1")
	fmt.Printf("snapshot %q, chunks:", rec.Snapshot)
	for _, c := range rec.Chunks {
		fmt.Printf(" %d=%q", c.Seq, c.Data)
	}
	fmt.Println()
	s.List(ctx, func(m persistence.Meta) error {
		fmt.Println(m.ID, m.Size, m.Heads)
		return nil
	})
	// Output:
	// snapshot "full save", chunks: 3="later"
	// doc-1 14 [h3]
}

func ExampleDefaultConfig() {
	cfg := badger.DefaultConfig("/var/lib/tandem")
	cfg.BlockCacheSize = 256 << 20 // more cache for a big server
	fmt.Println(cfg.Dir, cfg.SyncWrites)
	// Output: /var/lib/tandem true
}

func ExampleStore_RunGC() {
	s, err := badger.Open(badger.Config{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// On a server, call this periodically, e.g. from a time.Ticker loop.
	fmt.Println(s.RunGC(context.Background()))
	// Output: <nil>
}

func ExampleStore_Sweep() {
	s, err := badger.Open(badger.Config{InMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// After a crash: remove chunks left by interrupted Delete/Compact calls.
	removed, err := s.Sweep(context.Background())
	fmt.Println(removed, err)
	// Output: 0 <nil>
}

func ExampleStore_DiskUsage() {
	dir, err := os.MkdirTemp("", "tandem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := badger.Open(badger.DefaultConfig(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	lsm, vlog := s.DiskUsage()
	fmt.Println(lsm >= 0, vlog >= 0)
	// Output: true true
}
