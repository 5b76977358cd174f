// Package crdt is the sans-IO core of Tandem: Automerge documents (through
// github.com/automerge/automerge-go) seen as JSON, with JSON Pointer paths,
// JSON Patch, explicit commits, sync sessions, and the ids and URLs of
// automerge-repo.
//
// # Sans-IO
//
// Nothing here starts a goroutine, opens a socket, touches the disk or
// reads the clock (except for the timestamp Automerge stores in each
// commit). Bytes come in (Load, LoadIncremental, SyncState.Receive) and go
// out (Save, SaveIncremental, CommitInfo.Bytes, SyncResult.Changes,
// SyncState.Generate); the caller moves them. Entry points that take
// outside bytes do not panic: automerge-go panics on some errors, and they
// turn that into ErrCorrupt or ErrInvalidSync (but see Untrusted input for
// what Go cannot catch).
//
// # Ownership
//
// A Doc and the SyncStates made for it are not safe for concurrent use.
// One goroutine owns each document and does everything with it (in Tandem,
// the repo's per-document owner goroutine). Keep one SyncState per peer
// per document.
//
// # Writes, commits and rollback
//
// Set, Add, Delete and ApplyPatch write at JSON Pointers (RFC 6901) and
// accumulate until Commit makes one Automerge change of them, reporting the
// change's hash, its own encoded bytes (persistable in O(change)) and the
// paths written. ApplyPatch is atomic: it runs the whole patch on the JSON
// view first. Rollback discards uncommitted writes by rebuilding the
// document at its last committed heads, which costs as much as a load:
// error paths only.
//
// # Sync
//
// SyncState wraps automerge-go's sync session (Automerge sync protocol
// version 1, which JavaScript Automerge 3 falls back to for this peer). It
// adds what automerge-go lacks: SyncResult reports the changes a message
// carried as persistable bytes; Receive checks every change's checksum
// before the Rust core sees it; and Generate recovers from a stall of the
// automerge-rs protocol implementation (a Bloom filter false positive while
// changes are in flight leaves both peers silent with different heads).
// Changes received before their dependencies wait inside Automerge; Doc
// remembers them so that Rollback, which rebuilds the inner document, does
// not lose them.
//
// # Untrusted input
//
// Framing and checksums of documents, change chunks and sync messages are
// verified in Go, so corrupted bytes give errors. But the Rust core of
// automerge-go aborts the process (a Rust panic across the C boundary,
// which Go cannot recover) on some well-formed, correctly checksummed
// changes whose operations are inconsistent, such as a map key used on a
// list. A peer that crafts such a change can therefore crash the process:
// accept sync only from authenticated peers.
//
// # Strings are Text
//
// Set stores Go strings as Automerge Text objects, not as scalar strings.
// JavaScript Automerge 3 reads Text as a plain JavaScript string and
// scalar strings as ImmutableString objects, so Text is what automerge-repo
// clients expect (their own writes of strings make Text too), and it lets
// them edit strings character by character. Get reads both kinds as Go
// strings. Replacing a string with Set makes a new Text object (last
// writer wins, as for any value); character-level merging needs splices,
// which this package does not expose yet.
//
// # Numbers
//
// Integers are stored as Automerge int (int64) and other numbers as f64;
// Get returns int64 and float64 accordingly (uint64 only for values written
// that way by another program). JSON writes numbers as JavaScript does, so
// an integral f64 prints as an integer. JavaScript Automerge itself is not
// consistent here (A.from({a: -7}) stores f64, d.a = -7 stores int), so do
// not rely on the stored number type of values written by others.
//
// Automerge map keys cannot be empty: a value with a "" key is refused
// (ErrTypeMismatch), and so is the pointer "/" for writing.
//
// # Change graphs
//
// Graph holds a document's changes without the Automerge core, and
// GraphSync speaks the sync protocol (version 1, with Automerge's Bloom
// filters) over it in Go. A graph-backed Doc (NewGraphDoc, LoadGraphDoc)
// syncs, saves and relays through its Graph and builds the document in the
// core only when its content is read or written: what a sync server needs,
// at about a tenth of the memory per change.
package crdt
