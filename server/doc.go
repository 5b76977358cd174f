// Package server is Tandem's network front: an HTTP server whose /sync
// endpoint (and /, for URLs written for the Node automerge-repo sync server)
// upgrades to WebSocket and hands each connection to a repo.Repo, which
// speaks the automerge-repo sync protocol; /healthz reports liveness.
//
// Shutdown is graceful: cancel the context given to Serve and the server
// stops accepting, closes every sync connection and waits for its handlers;
// the caller then closes the Repo, which flushes every document.
package server
