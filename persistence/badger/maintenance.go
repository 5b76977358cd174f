package badger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	bdb "github.com/dgraph-io/badger/v4"
)

// gcDiscardRatio: a value-log file is rewritten when at least this share
// of it is garbage (deleted snapshots and chunks).
const gcDiscardRatio = 0.5

// RunGC reclaims value-log space left by deleted or replaced snapshots and
// large chunks. It rewrites value-log files until none is worth rewriting
// or ctx ends, and returns nil when there was nothing to do. Call it
// periodically (for example every few minutes) on a long-running server;
// it is not scheduled automatically. It is a no-op for InMemory stores.
func (s *Store) RunGC(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if s.cfg.InMemory {
		return nil
	}
	for ctx.Err() == nil {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if errors.Is(err, bdb.ErrNoRewrite) || errors.Is(err, bdb.ErrRejected) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("badger: value-log gc: %w", err)
		}
	}
	return ctx.Err()
}

// DiskUsage reports the bytes on disk of the LSM tree (table files) and of
// the value log, by listing the store's directory. It reports 0, 0 for an
// InMemory store or when the directory cannot be read.
func (s *Store) DiskUsage() (lsm, vlog int64) {
	if s.cfg.InMemory {
		return 0, 0
	}
	_ = filepath.WalkDir(s.cfg.Dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var n int64
		if fi, err := d.Info(); err == nil {
			n = fi.Size()
		}
		switch {
		case strings.HasSuffix(d.Name(), ".sst"):
			lsm += n
		case strings.HasSuffix(d.Name(), ".vlog"):
			vlog += n
		}
		return nil
	})
	return lsm, vlog
}

// Sweep removes chunks that no longer belong to a document: chunks of
// deleted documents whose Delete was interrupted, and chunks already
// covered by a snapshot whose Compact was interrupted. Such leftovers never
// change what Load returns; they only take space. Sweep reads every chunk
// key (not the values), so its cost grows with the number of chunks; run it
// after a crash or occasionally. It returns how many chunks it removed.
func (s *Store) Sweep(ctx context.Context) (removed int, err error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	var from []byte
	for {
		type group struct {
			id   string
			keys [][]byte
		}
		var garbage []group
		var next []byte
		err := s.db.View(func(txn *bdb.Txn) error {
			it := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte(nsChunk)})
			defer it.Close()
			var cur docMeta
			var curID string
			var curLive bool
			seen := 0
			for it.Seek(append([]byte(nsChunk), from...)); it.Valid(); it.Next() {
				key := it.Item().Key()
				id, seq, ok := splitChunkKey(key)
				if !ok {
					continue // not written by this package
				}
				if seen == 0 || id != curID {
					if seen >= 10000 {
						next = []byte(id)
						return nil
					}
					m, found, err := getMeta(txn, id)
					if err != nil {
						return err
					}
					cur, curID, curLive = m, id, found
				}
				seen++
				if !curLive || seq <= cur.covered {
					if len(garbage) == 0 || garbage[len(garbage)-1].id != id {
						garbage = append(garbage, group{id: id})
					}
					g := &garbage[len(garbage)-1]
					g.keys = append(g.keys, it.Item().KeyCopy(nil))
				}
			}
			return nil
		})
		if err != nil {
			return removed, fmt.Errorf("badger: sweep: %w", err)
		}
		for _, g := range garbage {
			// deleteDead checks again, in the deleting transaction.
			if err := s.deleteDead(g.id, g.keys); err != nil {
				return removed, fmt.Errorf("badger: sweep: %w", err)
			}
			removed += len(g.keys)
		}
		if next == nil {
			return removed, nil
		}
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		from = next
	}
}
