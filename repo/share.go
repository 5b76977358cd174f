package repo

import "github.com/tandemsync/tandem/crdt"

// SharePolicy decides, per peer and document, what a Repo shares. It mirrors
// automerge-repo's shareConfig: Announce pushes a document to a peer unasked;
// Access lets a peer sync a document it names. A document a peer may not
// access is answered with doc-unavailable, as if it did not exist.
type SharePolicy interface {
	Announce(peerID string, doc crdt.DocumentID) bool
	Access(peerID string, doc crdt.DocumentID) bool
}

// ServerSharePolicy is the reference sync server's behaviour: announce
// nothing, serve any document a peer names.
type ServerSharePolicy struct{}

// Announce implements SharePolicy.
func (ServerSharePolicy) Announce(string, crdt.DocumentID) bool { return false }

// Access implements SharePolicy.
func (ServerSharePolicy) Access(string, crdt.DocumentID) bool { return true }

// ClientSharePolicy is a client's behaviour: announce every open document to
// the server, serve everything.
type ClientSharePolicy struct{}

// Announce implements SharePolicy.
func (ClientSharePolicy) Announce(string, crdt.DocumentID) bool { return true }

// Access implements SharePolicy.
func (ClientSharePolicy) Access(string, crdt.DocumentID) bool { return true }
