// Package repo is Tandem's engine: a Repo holds Automerge documents on a
// persistence.Store and syncs them with peers over any transport.Conn.
//
// Each live document is owned by one goroutine. It drains its inbox (local
// changes, incoming sync messages, reads), applies the whole batch, persists
// the new changes once (one durable store write), and only then answers
// callers, notifies subscribers and wakes the peers' writers. So a change
// that anybody has seen is already on disk, and a burst of changes costs one
// store write and one sync message per peer, not one per change.
//
// A server is a Repo that Accepts connections with ServerSharePolicy; a Go
// client is a Repo that Connects (or keeps a Connection) with
// ClientSharePolicy. The wire protocol is automerge-repo's, so JavaScript
// automerge-repo peers interoperate unchanged.
//
// Sync has two paths. Automerge's sync session (Bloom filters, needs)
// finds out what a peer lacks, at a cost that grows with the document's
// history. Once a peer's heads are known, the direct path takes over: every
// flushed batch goes to it as one message carrying just the new changes, and
// its messages whose changes fit on our history are applied without the
// session, both at the cost of the changes. The messages are ordinary
// Automerge sync messages, so JavaScript peers need nothing special; any
// doubt sends the peer back to its session. Stats counts both paths;
// Config.SessionsOnly turns the direct path off.
//
// Documents nobody uses (no handle call in flight, no subscription, no
// connected peer syncing them) are evicted from memory after
// Config.IdleTimeout and loaded again lazily. Documents that only peers
// hold, and that every such peer has in full, hibernate after
// Config.HibernateAfter (sooner when more than Config.MaxLiveDocuments are
// in memory): the document leaves memory, the peers stay attached with the
// few hashes the direct path needs, and the next message loads it again.
package repo
