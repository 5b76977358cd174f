package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tandemsync/tandem/persistence"
)

// Store is a persistence.Store over a Badger database. Create it with Open;
// all methods are safe for concurrent use.
type Store struct {
	db    *bdb.DB
	cfg   Config
	hooks testHooks
	now   func() time.Time

	// mu is held shared by every operation and exclusively by Close, so
	// Close waits for running operations and the database is never used
	// after it is closed.
	mu     sync.RWMutex
	closed bool

	// Group-commit counters: transactions committed by the committer and
	// the writes they carried (read by tests and benchmarks).
	batches, batched atomic.Int64
	// splitCompactions counts Compact calls that did not fit in one
	// transaction (for tests).
	splitCompactions atomic.Int64

	ops  chan *op      // writes waiting for the committer
	quit chan struct{} // closed by Close to stop the committer
	done chan struct{} // closed when the committer has stopped
}

var _ persistence.Store = (*Store)(nil)

// maxRetries bounds how often a transaction is retried after
// bdb.ErrConflict.
const maxRetries = 64

// errOrphans reports leftover chunks of a deleted document (a Delete was
// interrupted by a crash) found while creating a document of the same id;
// the caller removes them and tries again.
var errOrphans = errors.New("orphaned chunks")

// Open opens (creating if needed) the store described by cfg. Bad
// configuration yields an error wrapping persistence.ErrInvalid; a
// directory that cannot be used (not a directory, no permission, locked by
// another process) yields an error naming it.
func Open(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if !cfg.InMemory {
		if fi, err := os.Stat(cfg.Dir); err == nil && !fi.IsDir() {
			return nil, fmt.Errorf("badger: open %s: not a directory", cfg.Dir)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("badger: open %s: %w", cfg.Dir, err)
		}
	}
	db, err := openDB(cfg.options())
	if err != nil {
		where := cfg.Dir
		if cfg.InMemory {
			where = "in-memory database"
		}
		return nil, fmt.Errorf("badger: open %s: %w", where, err)
	}
	s := &Store{
		db:   db,
		cfg:  cfg,
		now:  time.Now,
		ops:  make(chan *op, maxBatchOps),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	if cfg.hooks != nil {
		s.hooks = *cfg.hooks
	}
	go s.commitLoop()
	return s, nil
}

// openDB calls bdb.Open, turning a panic inside Badger (it panics on some
// option combinations and unreadable files) into an error.
func openDB(opts bdb.Options) (db *bdb.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked: %v", r)
		}
	}()
	return bdb.Open(opts)
}

// enter checks ctx and takes the shared lock; on success the caller must
// call s.mu.RUnlock.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return persistence.ErrClosed
	}
	return nil
}

// update runs fn in a read-write transaction and commits it, retrying on
// conflicts. The caller holds s.mu shared.
func (s *Store) update(fn func(txn *bdb.Txn) error) error {
	for range maxRetries {
		txn := s.db.NewTransaction(true)
		err := fn(txn)
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		if !errors.Is(err, bdb.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("badger: transaction kept conflicting: %w", bdb.ErrConflict)
}

// getMeta reads the meta record of id; ok is false if there is none.
func getMeta(txn *bdb.Txn, id string) (m docMeta, ok bool, err error) {
	item, err := txn.Get(metaKey(id))
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return docMeta{}, false, nil
	}
	if err != nil {
		return docMeta{}, false, err
	}
	err = item.Value(func(v []byte) error {
		m, err = decodeMeta(v)
		return err
	})
	if err != nil {
		return docMeta{}, false, fmt.Errorf("document %q: %w", id, err)
	}
	return m, true, nil
}

// hasChunks reports whether any chunk key of id exists.
func hasChunks(txn *bdb.Txn, id string) bool {
	it := txn.NewIterator(bdb.IteratorOptions{Prefix: chunkPrefix(id)})
	defer it.Close()
	it.Rewind()
	return it.Valid()
}

// Append implements persistence.Store. Appends from concurrent callers are
// committed together in one Badger transaction (and one fsync).
func (s *Store) Append(ctx context.Context, id string, data []byte, heads []string) (uint64, error) {
	if err := persistence.CheckID(id); err != nil {
		return 0, err
	}
	if len(data) == 0 {
		return 0, fmt.Errorf("%w: empty chunk for %q", persistence.ErrInvalid, id)
	}
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	for range 3 {
		var seq uint64
		err := s.submit(ctx, func(txn *bdb.Txn) error {
			m, ok, err := getMeta(txn, id)
			if err != nil {
				return err
			}
			if !ok && hasChunks(txn, id) {
				return errOrphans
			}
			if m.lastSeq == math.MaxUint64 {
				return fmt.Errorf("%w: document %q: sequence numbers exhausted", persistence.ErrInvalid, id)
			}
			m.lastSeq++
			m.chunks++
			m.chunkBytes += uint64(len(data))
			m.heads = heads
			m.touch(s.now())
			if err := txn.Set(chunkKey(id, m.lastSeq), data); err != nil {
				return err
			}
			if err := txn.Set(metaKey(id), m.encode()); err != nil {
				return err
			}
			seq = m.lastSeq
			return nil
		})
		if errors.Is(err, errOrphans) {
			if err := s.deleteChunks(id, math.MaxUint64); err != nil {
				return 0, fmt.Errorf("append %q: removing orphaned chunks: %w", id, err)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("append %q: %w", id, err)
		}
		return seq, nil
	}
	return 0, fmt.Errorf("append %q: orphaned chunks keep reappearing", id)
}

// Load implements persistence.Store. It reads the meta record, the
// snapshot and the live chunks in one read-only transaction (a consistent
// view), skipping chunks covered by the snapshot.
func (s *Store) Load(ctx context.Context, id string) (persistence.Record, error) {
	if err := persistence.CheckID(id); err != nil {
		return persistence.Record{}, err
	}
	if err := s.enter(ctx); err != nil {
		return persistence.Record{}, err
	}
	defer s.mu.RUnlock()
	var rec persistence.Record
	err := s.db.View(func(txn *bdb.Txn) error {
		m, ok, err := getMeta(txn, id)
		if err != nil {
			return err
		}
		if !ok {
			return persistence.ErrNotFound
		}
		rec.Meta = m.toMeta(id)
		if m.snapshotSize > 0 {
			item, err := txn.Get(snapKey(id))
			if errors.Is(err, bdb.ErrKeyNotFound) {
				return fmt.Errorf("%w: snapshot missing", persistence.ErrCorrupt)
			}
			if err != nil {
				return err
			}
			if rec.Snapshot, err = item.ValueCopy(nil); err != nil {
				return err
			}
			if uint64(len(rec.Snapshot)) != m.snapshotSize {
				return fmt.Errorf("%w: snapshot has %d bytes, meta says %d",
					persistence.ErrCorrupt, len(rec.Snapshot), m.snapshotSize)
			}
		}
		if m.chunks == 0 {
			return nil
		}
		prefix := chunkPrefix(id)
		opts := bdb.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = int(min(m.chunks, 100))
		it := txn.NewIterator(opts)
		defer it.Close()
		rec.Chunks = make([]persistence.Chunk, 0, m.chunks)
		var size uint64
		// Chunks with seq <= covered may survive an interrupted Compact;
		// they are part of the snapshot, so start after them.
		for it.Seek(chunkKey(id, m.covered+1)); it.Valid(); it.Next() {
			item := it.Item()
			seq, ok := chunkSeq(item.Key(), prefix)
			if !ok || seq > m.lastSeq {
				return fmt.Errorf("%w: unexpected chunk key %q", persistence.ErrCorrupt, item.Key())
			}
			data, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			size += uint64(len(data))
			rec.Chunks = append(rec.Chunks, persistence.Chunk{Seq: seq, Data: data})
		}
		if uint64(len(rec.Chunks)) != m.chunks || size != m.chunkBytes {
			return fmt.Errorf("%w: %d chunks of %d bytes stored, meta says %d of %d",
				persistence.ErrCorrupt, len(rec.Chunks), size, m.chunks, m.chunkBytes)
		}
		return nil
	})
	if err != nil {
		return persistence.Record{}, fmt.Errorf("load %q: %w", id, err)
	}
	return rec, nil
}

// Compact implements persistence.Store.
//
// It first tries one transaction that writes the snapshot and the new meta
// record (which stores how far the snapshot covers) and deletes the covered
// chunks. If that is too big for one Badger transaction it commits the
// snapshot and meta record first and then deletes the covered chunks in
// further transactions; Load skips covered chunks, so a crash in between
// leaves a document that loads the same (Sweep removes the leftovers).
func (s *Store) Compact(ctx context.Context, id string, snapshot []byte, upTo uint64, heads []string) error {
	if err := persistence.CheckID(id); err != nil {
		return err
	}
	if len(snapshot) == 0 {
		return fmt.Errorf("%w: empty snapshot for %q", persistence.ErrInvalid, id)
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.compact(id, snapshot, upTo, heads); err != nil {
		return fmt.Errorf("compact %q: %w", id, err)
	}
	return nil
}

func (s *Store) compact(id string, snapshot []byte, upTo uint64, heads []string) error {
	for range 3 {
		split := s.hooks.forceSplit
		if !split {
			err := s.update(func(txn *bdb.Txn) error {
				return s.compactTxn(txn, id, snapshot, upTo, heads, true)
			})
			switch {
			case errors.Is(err, bdb.ErrTxnTooBig):
				split = true
				s.splitCompactions.Add(1)
			case errors.Is(err, errOrphans):
				if err := s.deleteChunks(id, math.MaxUint64); err != nil {
					return err
				}
				continue
			default:
				return err
			}
		}
		err := s.update(func(txn *bdb.Txn) error {
			return s.compactTxn(txn, id, snapshot, upTo, heads, false)
		})
		if errors.Is(err, errOrphans) {
			if err := s.deleteChunks(id, math.MaxUint64); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := s.hook("snapshot-written"); err != nil {
			return err
		}
		return s.deleteChunks(id, upTo)
	}
	return errors.New("orphaned chunks keep reappearing")
}

func (s *Store) hook(stage string) error {
	if s.hooks.compact == nil {
		return nil
	}
	return s.hooks.compact(stage)
}

// compactTxn writes snapshot and the updated meta record of id into txn,
// and, if deleteCovered, deletes the chunks with seq <= upTo.
func (s *Store) compactTxn(txn *bdb.Txn, id string, snapshot []byte, upTo uint64, heads []string, deleteCovered bool) error {
	m, ok, err := getMeta(txn, id)
	if err != nil {
		return err
	}
	if !ok {
		if upTo > 0 {
			return persistence.ErrNotFound
		}
		if hasChunks(txn, id) {
			return errOrphans
		}
	}
	if upTo < m.covered || upTo > m.lastSeq {
		return fmt.Errorf("%w: up to %d: must be in [%d, %d]", persistence.ErrInvalid, upTo, m.covered, m.lastSeq)
	}
	// Count what stays live (usually nothing or a few chunks written
	// since the snapshot was taken) and collect what goes.
	prefix := chunkPrefix(id)
	var gone [][]byte
	var keepN, keepBytes uint64
	err = func() error {
		opts := bdb.IteratorOptions{Prefix: prefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		start := chunkKey(id, upTo+1)
		if deleteCovered {
			start = prefix
		}
		for it.Seek(start); it.Valid(); it.Next() {
			item := it.Item()
			seq, ok := chunkSeq(item.Key(), prefix)
			if !ok {
				return fmt.Errorf("%w: unexpected chunk key %q", persistence.ErrCorrupt, item.Key())
			}
			if seq <= upTo {
				gone = append(gone, item.KeyCopy(nil))
				continue
			}
			if err := item.Value(func(v []byte) error {
				keepBytes += uint64(len(v))
				return nil
			}); err != nil {
				return err
			}
			keepN++
		}
		return nil
	}()
	if err != nil {
		return err
	}
	m.covered = upTo
	m.snapshotSize = uint64(len(snapshot))
	m.chunks = keepN
	m.chunkBytes = keepBytes
	m.heads = heads
	m.touch(s.now())
	if err := txn.Set(snapKey(id), snapshot); err != nil {
		return err
	}
	if err := txn.Set(metaKey(id), m.encode()); err != nil {
		return err
	}
	for _, k := range gone {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteChunks deletes the chunk keys of id with seq <= upTo that are
// dead, in as many transactions as needed. The caller holds s.mu shared.
func (s *Store) deleteChunks(id string, upTo uint64) error {
	prefix := chunkPrefix(id)
	last := chunkKey(id, upTo)
	for {
		var keys [][]byte
		err := s.db.View(func(txn *bdb.Txn) error {
			it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < 10000; it.Next() {
				k := it.Item().KeyCopy(nil)
				if bytes.Compare(k, last) > 0 {
					break
				}
				keys = append(keys, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := s.deleteDead(id, keys); err != nil {
			return err
		}
	}
}

// deleteDead deletes those of the chunk keys of id that are dead: all of
// them if the document has no meta record (deleted), else those covered by
// its snapshot. It decides inside each deleting transaction, so a
// concurrent write that revives a key makes the transaction conflict and
// be redone rather than delete live data. After every transaction it calls
// the "chunks-deleted" test hook.
func (s *Store) deleteDead(id string, keys [][]byte) error {
	batch := s.hooks.deleteBatch
	if batch <= 0 {
		batch = 1000
	}
	prefix := chunkPrefix(id)
	for len(keys) > 0 {
		n := 0
		err := s.update(func(txn *bdb.Txn) error {
			n = 0
			m, found, err := getMeta(txn, id)
			if err != nil {
				return err
			}
			for _, k := range keys[:min(batch, len(keys))] {
				seq, ok := chunkSeq(k, prefix)
				if ok && (!found || seq <= m.covered) {
					if err := txn.Delete(k); errors.Is(err, bdb.ErrTxnTooBig) && n > 0 {
						return nil
					} else if err != nil {
						return err
					}
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[n:]
		if err := s.hook("chunks-deleted"); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements persistence.Store. The meta record and the snapshot go
// in one transaction (the document disappears for readers at once), then
// the chunks in batches. Chunks left behind by a crash are removed when a
// document of the same id is created again, or by Sweep.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := persistence.CheckID(id); err != nil {
		return err
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.update(func(txn *bdb.Txn) error {
		_, ok, err := getMeta(txn, id)
		if err != nil && !errors.Is(err, persistence.ErrCorrupt) {
			return err
		}
		if !ok && err == nil {
			return persistence.ErrNotFound
		}
		if err := txn.Delete(metaKey(id)); err != nil {
			return err
		}
		return txn.Delete(snapKey(id))
	})
	if err == nil {
		err = s.deleteChunks(id, math.MaxUint64)
	}
	if err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	return nil
}

// Stat implements persistence.Store; it reads only the meta record.
func (s *Store) Stat(ctx context.Context, id string) (persistence.Meta, error) {
	if err := persistence.CheckID(id); err != nil {
		return persistence.Meta{}, err
	}
	if err := s.enter(ctx); err != nil {
		return persistence.Meta{}, err
	}
	defer s.mu.RUnlock()
	var meta persistence.Meta
	err := s.db.View(func(txn *bdb.Txn) error {
		m, ok, err := getMeta(txn, id)
		if err != nil {
			return err
		}
		if !ok {
			return persistence.ErrNotFound
		}
		meta = m.toMeta(id)
		return nil
	})
	if err != nil {
		return persistence.Meta{}, fmt.Errorf("stat %q: %w", id, err)
	}
	return meta, nil
}

// listPage is how many meta records List reads per transaction.
const listPage = 1024

// List implements persistence.Store. It iterates over the meta records
// only (one key range, values of a few dozen bytes), a page at a time, and
// calls fn outside any transaction and lock, so fn may use the store.
// Documents created or deleted during the walk may or may not be reported.
func (s *Store) List(ctx context.Context, fn func(persistence.Meta) error) error {
	var after []byte
	for {
		page, err := s.listPage(ctx, after)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		for _, m := range page {
			if err := fn(m); err != nil {
				return err
			}
		}
		if len(page) < listPage {
			return nil
		}
		// The smallest key after the last one seen.
		after = append(metaKey(page[len(page)-1].ID), 0)
	}
}

func (s *Store) listPage(ctx context.Context, from []byte) ([]persistence.Meta, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	page := make([]persistence.Meta, 0, 64)
	err := s.db.View(func(txn *bdb.Txn) error {
		opts := bdb.DefaultIteratorOptions
		opts.Prefix = []byte(nsMeta)
		opts.PrefetchSize = 256
		it := txn.NewIterator(opts)
		defer it.Close()
		if from == nil {
			from = opts.Prefix
		}
		for it.Seek(from); it.Valid() && len(page) < listPage; it.Next() {
			item := it.Item()
			id := string(item.Key()[len(nsMeta):])
			err := item.Value(func(v []byte) error {
				m, err := decodeMeta(v)
				if err != nil {
					return fmt.Errorf("document %q: %w", id, err)
				}
				page = append(page, m.toMeta(id))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return page, err
}

// GetValue implements persistence.Store.
func (s *Store) GetValue(ctx context.Context, key string) ([]byte, error) {
	if err := persistence.CheckKey(key); err != nil {
		return nil, err
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var v []byte
	err := s.db.View(func(txn *bdb.Txn) error {
		item, err := txn.Get(valueKey(key))
		if errors.Is(err, bdb.ErrKeyNotFound) {
			return persistence.ErrNotFound
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("value %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutValue implements persistence.Store. Like Append, concurrent PutValue
// calls share transactions and fsyncs.
func (s *Store) PutValue(ctx context.Context, key string, value []byte) error {
	if err := persistence.CheckKey(key); err != nil {
		return err
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.submit(ctx, func(txn *bdb.Txn) error {
		return txn.Set(valueKey(key), value)
	})
	if err != nil {
		return fmt.Errorf("put value %q: %w", key, err)
	}
	return nil
}

// Close implements persistence.Store: it waits for running operations,
// stops the committer and closes the database. Closing again returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.quit)
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badger: close: %w", err)
	}
	return nil
}
