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
// Documents nobody uses (no handle call in flight, no subscription, no
// connected peer syncing them) are evicted from memory after
// Config.IdleTimeout and loaded again lazily.
package repo
