package transport

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Message type names, the value of the "type" key.
const (
	TypeJoin                     = "join"
	TypePeer                     = "peer"
	TypeError                    = "error"
	TypeRequest                  = "request"
	TypeSync                     = "sync"
	TypeDocUnavailable           = "doc-unavailable"
	TypeEphemeral                = "ephemeral"
	TypeRemoteSubscriptionChange = "remote-subscription-change"
	TypeRemoteHeadsChanged       = "remote-heads-changed"
	// TypeLeave is described by the upstream README but never sent by
	// JavaScript automerge-repo 2.5; peers that receive it ignore it.
	TypeLeave = "leave"
)

// ProtocolV1 is the only protocol version automerge-repo 2.x speaks. It goes in
// join's supportedProtocolVersions and peer's selectedProtocolVersion.
const ProtocolV1 = "1"

// Errors returned by this package and by Conn implementations, always wrapped
// with detail; test them with errors.Is.
var (
	// ErrMalformed: the bytes are not one CBOR map with text keys, or a known
	// field has the wrong CBOR type (for example a byte-string documentId or a
	// text data), or Encode was given a value it cannot write faithfully.
	ErrMalformed = errors.New("transport: malformed message")
	// ErrMissingField: a field the message type requires is absent or empty.
	// Decode returns it only for a missing "type"; Validate and Encode return
	// it for the other fields.
	ErrMissingField = errors.New("transport: missing field")
	// ErrUnknownType: the "type" is not one of the Type* constants. Decode
	// still returns the decoded Message so the caller can log and ignore it
	// (JavaScript peers silently drop unknown types).
	ErrUnknownType = errors.New("transport: unknown message type")
	// ErrTooLarge: a frame is larger than the configured maximum.
	ErrTooLarge = errors.New("transport: message too large")
	// ErrTextFrame: a frame that cannot carry a protocol message arrived (a
	// WebSocket text frame). The connection stays usable, but JavaScript
	// servers close it; so should the caller.
	ErrTextFrame = errors.New("transport: text frame (protocol messages are binary)")
	// ErrEmptyFrame: a zero-length frame arrived. No conforming peer sends one.
	ErrEmptyFrame = errors.New("transport: empty frame")
	// ErrPeerTimeout: the peer stopped answering (no message and no keepalive
	// reply in time). It is returned wrapped together with ErrClosed.
	ErrPeerTimeout = errors.New("transport: peer not responding")
	// ErrPolicyViolation: the peer broke a rule of this end that warrants
	// closing (tandem's own limits slow or refuse instead). Closing a Conn
	// for a reason that wraps it tells the peer so (WebSocket close code
	// 1008).
	ErrPolicyViolation = errors.New("transport: policy violation")
	// ErrClosed: the connection is closed (by either side). Errors that wrap
	// ErrClosed often wrap the reason too (for example ErrTooLarge or
	// ErrPeerTimeout).
	ErrClosed = errors.New("transport: connection closed")
)

// Message is one automerge-repo protocol message. One struct serves every
// message type; each type uses a subset of the fields (PROTOCOL.md §5):
//
//	join                       SenderID, PeerMetadata, SupportedProtocolVersions
//	peer                       SenderID, TargetID, PeerMetadata, SelectedProtocolVersion
//	error                      SenderID, TargetID, Message
//	request, sync              SenderID, TargetID, DocumentID, Data
//	doc-unavailable            SenderID, TargetID, DocumentID
//	ephemeral                  SenderID, TargetID, DocumentID, SessionID, Count, Data (+ Extra)
//	remote-subscription-change SenderID, TargetID, Add, Remove
//	remote-heads-changed       SenderID, TargetID, DocumentID, NewHeads
//
// The zero value of a field means "absent": Encode omits empty strings, nil
// slices, nil maps, a nil PeerMetadata and empty Data. Slices and maps that
// are non-nil but empty are written (as an empty array or map), so that, for
// example, supportedProtocolVersions: [] (no version in common) stays
// distinguishable from a missing list (which means ["1"]).
type Message struct {
	// Type is one of the Type* constants.
	Type string
	// SenderID is the PeerId of the peer that produced the message. For a
	// relayed ephemeral message it stays the original sender.
	SenderID string
	// TargetID is the PeerId of the receiver (absent in join).
	TargetID string
	// DocumentID is the base58check document id, as text.
	DocumentID string
	// Data is an Automerge sync message (request, sync) or an opaque payload
	// (ephemeral). It is never empty on the wire for those types.
	Data []byte
	// PeerMetadata describes the sender's storage (join, peer).
	PeerMetadata *PeerMetadata
	// SupportedProtocolVersions lists the versions a joining peer speaks.
	// nil means absent, which peers treat as ["1"].
	SupportedProtocolVersions []string
	// SelectedProtocolVersion is the server's choice (peer), normally ProtocolV1.
	SelectedProtocolVersion string
	// Message is the human-readable text of an error message.
	Message string
	// SessionID identifies the sending Repo instance of an ephemeral message.
	SessionID string
	// Count is the per-sender counter of an ephemeral message. JavaScript
	// starts at 1; 0 is indistinguishable from absent.
	Count uint64
	// Add and Remove are the StorageIds a remote-subscription-change
	// subscribes to or unsubscribes from.
	Add    []string
	Remove []string
	// NewHeads maps StorageId to the heads that store has of DocumentID
	// (remote-heads-changed).
	NewHeads map[string]HeadsAt
	// Extra holds the keys Decode did not recognise in an ephemeral message,
	// each value as its raw CBOR item, so a relay forwards them unchanged (the
	// JavaScript server does). Decode fills it only for ephemeral messages and
	// leaves it nil when there are none. Encode writes it for any type; a key
	// that names a known field is an error.
	Extra map[string]cbor.RawMessage
}

// PeerMetadata is the peerMetadata map of join and peer messages.
type PeerMetadata struct {
	// StorageID names the sender's persistent store (a UUID string); empty
	// when the sender has no storage (JavaScript then sends CBOR undefined).
	StorageID string
	// IsEphemeral is true when the sender may lose its data. Peers persist
	// sync state for a StorageID only when IsEphemeral is false.
	IsEphemeral bool
}

// HeadsAt is one entry of remote-heads-changed's newHeads.
type HeadsAt struct {
	// Heads are the change hashes, each base58check-encoded. Decode never
	// leaves it nil; Encode writes nil as an empty array.
	Heads []string
	// Timestamp is in milliseconds since the Unix epoch. JavaScript sends it
	// as float64 and Encode does the same.
	Timestamp float64
}

// KnownType reports whether t is one of the Type* constants.
func KnownType(t string) bool {
	switch t {
	case TypeJoin, TypePeer, TypeError, TypeRequest, TypeSync, TypeDocUnavailable,
		TypeEphemeral, TypeRemoteSubscriptionChange, TypeRemoteHeadsChanged, TypeLeave:
		return true
	}
	return false
}

// needsData reports whether messages of type t must carry a non-empty Data.
func needsData(t string) bool {
	return t == TypeRequest || t == TypeSync || t == TypeEphemeral
}

// Validate checks that m has the fields its type requires:
//
//	join                                  senderId
//	peer, leave                           senderId
//	error                                 (nothing beyond type; samod sends only type and message)
//	request, sync                         senderId, targetId, documentId, non-empty data
//	doc-unavailable                       senderId, targetId, documentId
//	ephemeral                             senderId, targetId, documentId, sessionId, count ≥ 1, non-empty data
//	remote-subscription-change            senderId, targetId
//	remote-heads-changed                  senderId, targetId, documentId, newHeads
//
// It returns an error wrapping ErrMissingField naming the first missing
// field, or ErrUnknownType. It does not check that ids are well formed.
func (m Message) Validate() error {
	var req []string
	switch m.Type {
	case "":
		return fmt.Errorf("%w: type", ErrMissingField)
	case TypeJoin, TypePeer, TypeLeave:
		req = []string{keySenderID}
	case TypeError:
	case TypeRequest, TypeSync:
		req = []string{keySenderID, keyTargetID, keyDocumentID, keyData}
	case TypeDocUnavailable:
		req = []string{keySenderID, keyTargetID, keyDocumentID}
	case TypeEphemeral:
		req = []string{keySenderID, keyTargetID, keyDocumentID, keySessionID, keyCount, keyData}
	case TypeRemoteSubscriptionChange:
		req = []string{keySenderID, keyTargetID}
	case TypeRemoteHeadsChanged:
		req = []string{keySenderID, keyTargetID, keyDocumentID, keyNewHeads}
	default:
		return fmt.Errorf("%w: %q", ErrUnknownType, m.Type)
	}
	for _, f := range req {
		if !m.has(f) {
			return fmt.Errorf("%w: %s message without %s", ErrMissingField, m.Type, f)
		}
	}
	return nil
}

// has reports whether the field with wire name key is present (non-zero).
func (m *Message) has(key string) bool {
	switch key {
	case keySenderID:
		return m.SenderID != ""
	case keyTargetID:
		return m.TargetID != ""
	case keyDocumentID:
		return m.DocumentID != ""
	case keyData:
		return len(m.Data) > 0
	case keySessionID:
		return m.SessionID != ""
	case keyCount:
		return m.Count > 0
	case keyNewHeads:
		return m.NewHeads != nil
	}
	return false
}

// Wire names of the message keys.
const (
	keyType                      = "type"
	keySenderID                  = "senderId"
	keyTargetID                  = "targetId"
	keyDocumentID                = "documentId"
	keyData                      = "data"
	keyPeerMetadata              = "peerMetadata"
	keySupportedProtocolVersions = "supportedProtocolVersions"
	keySelectedProtocolVersion   = "selectedProtocolVersion"
	keyMessage                   = "message"
	keySessionID                 = "sessionId"
	keyCount                     = "count"
	keyAdd                       = "add"
	keyRemove                    = "remove"
	keyNewHeads                  = "newHeads"

	keyStorageID   = "storageId"
	keyIsEphemeral = "isEphemeral"
	keyHeads       = "heads"
	keyTimestamp   = "timestamp"
)

// knownKey reports whether k is the wire name of a Message field.
func knownKey(k string) bool {
	return keyIndex([]byte(k)) >= 0
}
