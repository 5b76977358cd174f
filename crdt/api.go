package crdt

import (
	"errors"
	"time"
)

// Sentinel errors. Every error returned by this package wraps one of these
// (fmt.Errorf("...: %w", ErrX)) so callers can test with errors.Is.
var (
	ErrInvalidURL        = errors.New("crdt: invalid automerge URL")
	ErrInvalidDocumentID = errors.New("crdt: invalid document id")
	ErrInvalidPointer    = errors.New("crdt: invalid JSON pointer")
	ErrPathNotFound      = errors.New("crdt: path not found")
	ErrTypeMismatch      = errors.New("crdt: type mismatch")
	ErrInvalidJSON       = errors.New("crdt: invalid JSON")
	ErrInvalidPatch      = errors.New("crdt: invalid JSON patch")
	ErrTestFailed        = errors.New("crdt: JSON patch test failed")
	ErrCorrupt           = errors.New("crdt: corrupt automerge data")
	ErrInvalidSync       = errors.New("crdt: invalid sync message")
	ErrInvalidHash       = errors.New("crdt: invalid change hash")
	ErrInvalidActor      = errors.New("crdt: invalid actor id")
)

// Hash is an Automerge change hash (SHA-256 of the encoded change).
// Its text form (String, MarshalText) is lower-case hex; URLs and the
// automerge-repo wire protocol use Base58 (base58check) instead.
type Hash [32]byte

// ChangeInfo describes one change in a document's history.
type ChangeInfo struct {
	Hash    Hash
	Actor   string // hex actor id
	Seq     uint64
	Time    time.Time // UTC, millisecond precision; zero if the change carries no time
	Message string
	Deps    []Hash
}

// CommitInfo is what Commit reports about the change it made.
type CommitInfo struct {
	Hash  Hash
	Paths []string // JSON pointers written since the previous commit, deduplicated, in order of first write
	Bytes []byte   // the encoded change itself (Doc.Change(hash).Save()): O(change), for incremental persistence
}

// SyncResult is what SyncState.Receive reports.
type SyncResult struct {
	Heads    []Hash // the heads the remote peer advertised in this message
	Changes  []byte // the changes the message carried that the document lacked, concatenated; persistable chunks
	NChanges int
	Changed  bool // the local document's heads changed
}

// PatchOp is one RFC 6902 operation.
//
// When a PatchOp is built in Go rather than parsed, a nil Value means JSON
// null for "add", "replace" and "test"; HasValue only matters to ParsePatch
// (which rejects a missing "value") and to MarshalJSON (which then writes
// "value": null).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	From  string `json:"from,omitempty"`
	Value any    `json:"value,omitempty"` // decoded with UseNumber semantics by ParsePatch
	// HasValue records whether "value" was present (null is a valid value).
	HasValue bool `json:"-"`
}
