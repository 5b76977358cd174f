package persistence

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors returned (wrapped) by every Store implementation.
var (
	ErrNotFound = errors.New("persistence: not found")
	ErrClosed   = errors.New("persistence: store closed")
	ErrCorrupt  = errors.New("persistence: corrupt record")
	ErrInvalid  = errors.New("persistence: invalid argument")
)

// Meta is the small per-document record kept beside the document's data.
// Listing reads only these, never the document bytes.
type Meta struct {
	ID           string    // document id (bs58check text, opaque to the store)
	Created      time.Time // first Append
	Updated      time.Time // last Append or Compact
	Size         int64     // bytes stored: snapshot + every live chunk
	SnapshotSize int64     // bytes of the current snapshot (0 if none)
	ChunkBytes   int64     // bytes of live incremental chunks
	Chunks       int       // number of live incremental chunks
	Heads        []string  // hex change hashes after the last write
}

// Chunk is one incremental chunk: the bytes of one persisted batch of changes.
type Chunk struct {
	Seq  uint64
	Data []byte
}

// Record is everything stored for one document. Loading it means:
// load Snapshot (if any), then LoadIncremental every chunk in Seq order.
type Record struct {
	Meta     Meta
	Snapshot []byte  // nil if the document was never compacted
	Chunks   []Chunk // only chunks not covered by Snapshot, ascending Seq
}

// Store keeps Automerge documents as a snapshot plus incremental chunks.
//
// Every method is safe for concurrent use. Writes are durable when they
// return nil (an implementation backed by disk fsyncs before returning;
// concurrent writers may share one fsync: group commit). The engine
// guarantees a single writer per document at a time.
type Store interface {
	// Append stores one incremental chunk for id, creating the document if
	// needed, and updates its Meta (heads given by the caller). It returns
	// the chunk's sequence number (strictly increasing per document).
	Append(ctx context.Context, id string, data []byte, heads []string) (seq uint64, err error)
	// Load returns the document's record, or ErrNotFound.
	Load(ctx context.Context, id string) (Record, error)
	// Compact replaces the document's snapshot with snapshot, which must
	// contain every change of the chunks with Seq <= upTo, and deletes those
	// chunks. A crash at any point leaves a record that loads to the same
	// document (old snapshot + chunks, or new snapshot + remaining chunks).
	Compact(ctx context.Context, id string, snapshot []byte, upTo uint64, heads []string) error
	// Delete removes the document and everything stored with it. Deleting a
	// missing document returns ErrNotFound.
	Delete(ctx context.Context, id string) error
	// Stat returns the document's Meta without reading its data, or ErrNotFound.
	Stat(ctx context.Context, id string) (Meta, error)
	// List calls fn for every document's Meta in id order, reading no
	// document data; it stops early, returning fn's error, if fn fails.
	List(ctx context.Context, fn func(Meta) error) error
	// GetValue and PutValue keep small named values (the store's storage id,
	// per-peer sync states). GetValue returns ErrNotFound for a missing key.
	GetValue(ctx context.Context, key string) ([]byte, error)
	PutValue(ctx context.Context, key string, value []byte) error
	// Close flushes and releases the store. Calls after Close return ErrClosed.
	Close() error
}
