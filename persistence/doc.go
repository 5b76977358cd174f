// Package persistence defines how Tandem stores Automerge documents: the
// [Store] interface, its record types and sentinel errors, and the argument
// rules every implementation enforces.
//
// A document is stored as at most one snapshot (the bytes of a full
// Automerge save) plus incremental chunks (the bytes of one persisted batch
// of changes each), and a small [Meta] record. Loading a document means
// loading the snapshot and then applying every chunk in sequence order.
// Compaction replaces the snapshot and drops the chunks it covers.
//
// Implementations:
//
//   - persistence/badger: the default, durable on-disk store (Badger v4).
//   - persistence/memory: an in-memory store for tests of other layers.
//
// Both pass the conformance suite in persistence/storetest, which also
// documents the contract in executable form. Rules every implementation
// follows beyond the interface comments:
//
//   - Document ids must satisfy [CheckID] and value keys [CheckKey];
//     otherwise methods return an error wrapping [ErrInvalid].
//   - Append rejects empty data and Compact rejects an empty snapshot
//     ([ErrInvalid]): an Automerge save is never empty.
//   - Chunk sequence numbers start at 1 and are dense: each Append returns
//     the previous highest sequence number of the document plus one, also
//     after Compact removed chunks. After Delete the document starts again
//     at 1.
//   - Meta.Updated strictly increases with every write to a document, even
//     if the clock does not move; Meta.Created is kept until Delete.
//   - Compact(id, snap, upTo, heads) requires covered <= upTo <= last,
//     where covered is the upTo of the previous Compact (0 if none) and last
//     the highest sequence number handed out; otherwise [ErrInvalid]. On a
//     missing document Compact with upTo == 0 creates the document from the
//     snapshot (for imports and first saves); with upTo > 0 it returns
//     [ErrNotFound].
//   - PutValue accepts an empty or nil value; GetValue then returns an
//     empty, non-nil slice.
//   - Byte slices are copied on the way in and out: callers may reuse the
//     buffers they pass and may modify the slices they get.
//   - A canceled context makes a method return the context's error before
//     it changes anything.
package persistence
