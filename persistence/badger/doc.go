// Package badger is Tandem's default on-disk persistence.Store, built on
// Badger v4 (github.com/dgraph-io/badger/v4).
//
// # Layout
//
// Each document has a meta record ("m/<id>": times, sizes, heads, the
// highest chunk sequence number and how far the snapshot covers), at most
// one snapshot ("s/<id>") and its incremental chunks
// ("c/<id>\x00<seq, 8 bytes big-endian>"). Named values live under "v/".
// The namespaces are disjoint key ranges: List walks only the meta range,
// so its cost does not depend on how much data the documents hold; Load
// walks one document's chunk range in sequence order; Stat reads one key.
//
// # Durability
//
// With Config.SyncWrites (set by DefaultConfig) a write has been fsynced
// when it returns. Append and PutValue calls that arrive while a commit is
// on disk are applied together in the next transaction and share its fsync
// (group commit), so many concurrent writers cost few fsyncs. An Append
// writes its chunk and the document's new meta record in one transaction.
// Compact writes the new snapshot, the coverage marker and the chunk
// deletions in one transaction when they fit; otherwise the snapshot and
// marker first and the deletions after, and Load ignores chunks at or below
// the marker, so a crash at any point leaves a document that loads to the
// same content.
//
// # Maintenance
//
// RunGC reclaims value-log space (snapshots and large chunks live in the
// value log), Sweep removes chunks left behind by interrupted Delete or
// Compact calls, and DiskUsage reports the size of the files on disk.
package badger
