// Package server is Tandem's network front: an HTTP server whose /sync
// endpoint (and /, for URLs written for the Node automerge-repo sync server)
// upgrades to WebSocket and hands each connection to a repo.Repo, which
// speaks the automerge-repo sync protocol; a REST JSON API under /api
// (create, list, read, JSON Patch, history, Automerge binary download and
// upload, delete; errors as RFC 9457 problem+json); /healthz reports
// liveness and /readyz readiness; /metrics serves Prometheus metrics from a
// registry private to each Server. ServeAdmin serves /metrics and pprof on a
// separate (private) listener; Config.TLS makes Serve speak HTTPS and WSS.
//
// With Config.Auth set, every sync connection (?token= or Authorization:
// Bearer) and REST request (Authorization: Bearer) needs a token from
// package auth. The token's claims are the connection's repo.PeerAccess: a
// document it does not cover is doc-unavailable (404 over REST), a read
// peer's changes are rejected. A connection closes when its token expires,
// and at once when its token id is revoked (Server.Revoke, or POST
// /api/revocations with admin on "*"); with Config.Store the revocation
// survives a restart. Config.MetricsToken puts /metrics (not the admin
// listener's) behind a bearer token of its own.
//
// Between each WebSocket and the Repo the server slows a peer that sends
// more payload bytes per second than Config.BytesPerSecond (the Repo slows
// one over its message rate, repo.PeerConfig.RatePerSecond, the same way),
// and the Repo refuses a peer documents past repo.PeerConfig.MaxDocuments
// without closing its connection.
//
// Shutdown is graceful: cancel the context given to Serve and the server
// stops accepting, closes every sync connection and waits for its handlers;
// the caller then closes the Repo, which flushes every document.
package server
