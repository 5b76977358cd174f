package repo

import (
	"encoding/binary"
	"time"

	"github.com/tandemsync/tandem/transport"
)

// Observer receives the engine's events, for metrics. Set it in
// Config.Observer; nil means NopObserver. The repo calls it synchronously
// from its connection and document goroutines, many at once, so every
// method must be safe for concurrent use, fast and non-blocking (increment
// a counter, observe a histogram). Implementations should embed
// NopObserver, so that they keep compiling when methods are added.
//
// The server package implements it with Prometheus metrics
// (server.NewObserver).
type Observer interface {
	// MessageIn reports a protocol message received from a peer: typ is
	// one of the transport.Type* constants (join, peer, sync, ...) or
	// MessageTypeUnknown, and bytes the length of its payload (the
	// sync or ephemeral data; 0 for control messages).
	MessageIn(typ string, bytes int)
	// MessageOut reports a protocol message written to a peer's
	// connection, as MessageIn.
	MessageOut(typ string, bytes int)
	// ChangesApplied reports n changes applied to a document and made
	// durable: remote, they came from a peer; otherwise they were made
	// here (DocHandle.Change and everything built on it, such as the
	// REST API).
	ChangesApplied(n int, remote bool)
	// ChangesRejected reports n changes refused for reason, one of the
	// Reject* constants. For an invalid message the number of changes it
	// carries is unknown and n is 1.
	ChangesRejected(n int, reason string)
	// Persisted reports one durable append of a document's batch of
	// changes: how many changes, how many bytes, and how long the store
	// took.
	Persisted(changes, bytes int, d time.Duration)
	// FanoutLatency reports the time from a peer being marked as needing
	// a sync message for a document (after the change that caused it was
	// persisted) until that message was written to the peer's connection.
	FanoutLatency(d time.Duration)
	// PeerDropped reports a peer disconnected by this repo for reason, one
	// of the Drop* constants.
	PeerDropped(reason string)
	// PeerSlowed reports a peer that went over a rate limit and is being
	// slowed (its next message is read only once it is back under the
	// rate), once per connection: limit is SlowMessages here, and the
	// server reports its byte limit as "bytes".
	PeerSlowed(limit string)
}

// Reasons given to Observer.ChangesRejected.
const (
	// RejectValidation: Config.Validate refused the new state.
	RejectValidation = "validation"
	// RejectTooLarge: the document would exceed Config.MaxDocumentBytes.
	RejectTooLarge = "too_large"
	// RejectReadOnly: the peer may read the document but not change it.
	RejectReadOnly = "read_only"
	// RejectInvalid: the message carrying the changes was malformed.
	RejectInvalid = "invalid_message"
)

// Reasons given to Observer.PeerDropped.
const (
	// DropOutboxFull: the peer stopped reading and its queue of control
	// messages reached PeerConfig.OutboxSize.
	DropOutboxFull = "outbox_full"
	// DropWriteTimeout: a write to the peer did not finish within the
	// transport's write timeout.
	DropWriteTimeout = "write_timeout"
)

// SlowMessages is the limit Observer.PeerSlowed reports for a peer sending
// more messages than PeerConfig.RatePerSecond (and Burst) allow.
const SlowMessages = "messages"

// MessageTypeUnknown is the type Observer.MessageIn reports for a message of
// a type the protocol does not define.
const MessageTypeUnknown = "unknown"

// NopObserver ignores every event. Embed it in an Observer that implements
// only some methods.
type NopObserver struct{}

func (NopObserver) MessageIn(string, int)             {}
func (NopObserver) MessageOut(string, int)            {}
func (NopObserver) ChangesApplied(int, bool)          {}
func (NopObserver) ChangesRejected(int, string)       {}
func (NopObserver) Persisted(int, int, time.Duration) {}
func (NopObserver) FanoutLatency(time.Duration)       {}
func (NopObserver) PeerDropped(string)                {}
func (NopObserver) PeerSlowed(string)                 {}

var _ Observer = NopObserver{}

// msgType bounds the message types reported to the Observer (a peer may
// send any string as a type).
func msgType(t string) string {
	if transport.KnownType(t) {
		return t
	}
	return MessageTypeUnknown
}

// countChunks counts the Automerge storage chunks in data (magic (4) |
// checksum (4) | type (1) | uleb128 length | body): for the pending bytes
// of a document, the number of changes. It stops at anything malformed.
func countChunks(data []byte) int {
	n := 0
	for len(data) >= 10 {
		l, k := binary.Uvarint(data[9:])
		if k <= 0 || l > uint64(len(data)-9-k) {
			break
		}
		data = data[9+k+int(l):]
		n++
	}
	return n
}
