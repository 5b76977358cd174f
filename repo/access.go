package repo

import (
	"fmt"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// PeerAccess limits what one connection's peer may do, on top of the repo's
// SharePolicy. A server that authenticates connections (tokens) passes one
// per connection to Accept with WithAccess.
type PeerAccess interface {
	// CanRead: the peer may sync the document. A document it may not read
	// is answered with doc-unavailable, exactly as if it did not exist.
	CanRead(doc crdt.DocumentID) bool
	// CanWrite: changes the peer sends are applied. A reader's changes are
	// never applied, stored or sent on; it is told with an error message
	// naming the document, and stays connected.
	CanWrite(doc crdt.DocumentID) bool
}

// AcceptOption configures one accepted connection.
type AcceptOption func(*acceptOpts)

type acceptOpts struct {
	access   PeerAccess
	deadline time.Time
	label    string
}

// WithAccess restricts the connection to what a allows.
func WithAccess(a PeerAccess) AcceptOption { return func(o *acceptOpts) { o.access = a } }

// WithDeadline closes the connection at t (for example when its token
// expires).
func WithDeadline(t time.Time) AcceptOption { return func(o *acceptOpts) { o.deadline = t } }

// WithLabel names the connection in logs (for example the token subject).
func WithLabel(s string) AcceptOption { return func(o *acceptOpts) { o.label = s } }

// ErrExpired closes a connection whose deadline passed.
var ErrExpired = fmt.Errorf("repo: connection deadline passed")

func (p *peer) canRead(id crdt.DocumentID) bool {
	if !p.n.r.cfg.Share.Access(p.id, id) {
		return false
	}
	return p.access == nil || p.access.CanRead(id)
}

func (p *peer) canWrite(id crdt.DocumentID) bool {
	return p.access == nil || p.access.CanWrite(id)
}

// rejectWrites drops a sync message that carries changes from a peer that
// may not write doc. It reports whether the message was dropped.
func (p *peer) rejectWrites(id crdt.DocumentID, data []byte) bool {
	if p.canWrite(id) {
		return false
	}
	_, n, err := crdt.InspectSyncMessage(data)
	if err == nil && n == 0 {
		return false // a read-only peer's acknowledgements are fine
	}
	p.n.r.obs.ChangesRejected(max(n, 1), RejectReadOnly)
	p.n.r.log.Info("rejected changes from a read-only peer", "peer", p.id, "doc", id)
	p.sendError(fmt.Sprintf("read-only access to %s: changes rejected", id.URL()))
	return true
}
