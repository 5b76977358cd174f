package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/tandemsync/tandem/persistence"
)

// Store is an in-memory persistence.Store. The zero value is not usable;
// call New. All methods are safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	closed bool
	docs   map[string]*doc
	values map[string][]byte
}

type doc struct {
	meta     persistence.Meta
	lastSeq  uint64 // highest sequence number handed out
	covered  uint64 // chunks with Seq <= covered are part of the snapshot
	snapshot []byte
	chunks   []persistence.Chunk // live chunks, ascending Seq
}

var _ persistence.Store = (*Store)(nil)

// New returns an empty, open Store.
func New() *Store {
	return &Store{docs: make(map[string]*doc), values: make(map[string][]byte)}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func cloneMeta(m persistence.Meta) persistence.Meta {
	m.Heads = slices.Clone(m.Heads)
	return m
}

// touch moves Updated forward, strictly, even if the clock did not.
func touch(m *persistence.Meta) {
	now := time.Now().UTC().Round(0)
	if !now.After(m.Updated) {
		now = m.Updated.Add(time.Nanosecond)
	}
	m.Updated = now
	if m.Created.IsZero() {
		m.Created = now
	}
}

// check checks ctx and the closed flag; it must be called with s.mu held.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return persistence.ErrClosed
	}
	return nil
}

// Append implements persistence.Store.
func (s *Store) Append(ctx context.Context, id string, data []byte, heads []string) (uint64, error) {
	if err := persistence.CheckID(id); err != nil {
		return 0, err
	}
	if len(data) == 0 {
		return 0, fmt.Errorf("%w: empty chunk for %q", persistence.ErrInvalid, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	d := s.docs[id]
	if d == nil {
		d = &doc{meta: persistence.Meta{ID: id}}
		s.docs[id] = d
	}
	d.lastSeq++
	d.chunks = append(d.chunks, persistence.Chunk{Seq: d.lastSeq, Data: clone(data)})
	d.meta.Chunks++
	d.meta.ChunkBytes += int64(len(data))
	d.meta.Size = d.meta.SnapshotSize + d.meta.ChunkBytes
	d.meta.Heads = slices.Clone(heads)
	touch(&d.meta)
	return d.lastSeq, nil
}

// Load implements persistence.Store.
func (s *Store) Load(ctx context.Context, id string) (persistence.Record, error) {
	if err := persistence.CheckID(id); err != nil {
		return persistence.Record{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return persistence.Record{}, err
	}
	d := s.docs[id]
	if d == nil {
		return persistence.Record{}, fmt.Errorf("load %q: %w", id, persistence.ErrNotFound)
	}
	rec := persistence.Record{Meta: cloneMeta(d.meta), Snapshot: clone(d.snapshot)}
	if len(d.chunks) > 0 {
		rec.Chunks = make([]persistence.Chunk, len(d.chunks))
		for i, c := range d.chunks {
			rec.Chunks[i] = persistence.Chunk{Seq: c.Seq, Data: clone(c.Data)}
		}
	}
	return rec, nil
}

// Compact implements persistence.Store.
func (s *Store) Compact(ctx context.Context, id string, snapshot []byte, upTo uint64, heads []string) error {
	if err := persistence.CheckID(id); err != nil {
		return err
	}
	if len(snapshot) == 0 {
		return fmt.Errorf("%w: empty snapshot for %q", persistence.ErrInvalid, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	d := s.docs[id]
	if d == nil {
		if upTo > 0 {
			return fmt.Errorf("compact %q: %w", id, persistence.ErrNotFound)
		}
		d = &doc{meta: persistence.Meta{ID: id}}
		s.docs[id] = d
	}
	if upTo < d.covered || upTo > d.lastSeq {
		return fmt.Errorf("%w: compact %q up to %d: must be in [%d, %d]",
			persistence.ErrInvalid, id, upTo, d.covered, d.lastSeq)
	}
	keep := d.chunks[:0:0]
	var keepBytes int64
	for _, c := range d.chunks {
		if c.Seq > upTo {
			keep = append(keep, c)
			keepBytes += int64(len(c.Data))
		}
	}
	d.chunks = keep
	d.covered = upTo
	d.snapshot = clone(snapshot)
	d.meta.SnapshotSize = int64(len(snapshot))
	d.meta.Chunks = len(keep)
	d.meta.ChunkBytes = keepBytes
	d.meta.Size = d.meta.SnapshotSize + keepBytes
	d.meta.Heads = slices.Clone(heads)
	touch(&d.meta)
	return nil
}

// Delete implements persistence.Store.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := persistence.CheckID(id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, ok := s.docs[id]; !ok {
		return fmt.Errorf("delete %q: %w", id, persistence.ErrNotFound)
	}
	delete(s.docs, id)
	return nil
}

// Stat implements persistence.Store.
func (s *Store) Stat(ctx context.Context, id string) (persistence.Meta, error) {
	if err := persistence.CheckID(id); err != nil {
		return persistence.Meta{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return persistence.Meta{}, err
	}
	d := s.docs[id]
	if d == nil {
		return persistence.Meta{}, fmt.Errorf("stat %q: %w", id, persistence.ErrNotFound)
	}
	return cloneMeta(d.meta), nil
}

// listPage is how many metas List copies per lock acquisition.
const listPage = 256

// List implements persistence.Store. It does not hold the store's lock
// while fn runs, so fn may call other methods of the store; documents
// created or deleted during the walk may or may not be reported.
func (s *Store) List(ctx context.Context, fn func(persistence.Meta) error) error {
	after, first := "", true
	for {
		page, err := s.listPage(ctx, after, first)
		if err != nil {
			return err
		}
		for _, m := range page {
			if err := fn(m); err != nil {
				return err
			}
		}
		if len(page) < listPage {
			return nil
		}
		after, first = page[len(page)-1].ID, false
	}
}

func (s *Store) listPage(ctx context.Context, after string, first bool) ([]persistence.Meta, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(s.docs))
	for id := range s.docs {
		if first || id > after {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) > listPage {
		ids = ids[:listPage]
	}
	page := make([]persistence.Meta, len(ids))
	for i, id := range ids {
		page[i] = cloneMeta(s.docs[id].meta)
	}
	return page, nil
}

// GetValue implements persistence.Store.
func (s *Store) GetValue(ctx context.Context, key string) ([]byte, error) {
	if err := persistence.CheckKey(key); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	v, ok := s.values[key]
	if !ok {
		return nil, fmt.Errorf("value %q: %w", key, persistence.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// PutValue implements persistence.Store. A nil value is stored as an empty
// one.
func (s *Store) PutValue(ctx context.Context, key string, value []byte) error {
	if err := persistence.CheckKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	s.values[key] = append([]byte{}, value...)
	return nil
}

// Close implements persistence.Store. It drops all data; closing twice is
// not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.docs, s.values = nil, nil
	return nil
}
