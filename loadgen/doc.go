// Package loadgen is the load generator behind `tandem bench`: it drives any
// automerge-repo compatible sync server on a loopback address with Tandem's
// own Go client (repo + transport/ws) and measures what a user of the server
// would notice: fan-out latency (a change made by one client until every other
// client of the document has it), achieved against offered changes per
// second, convergence, the server's CPU and memory, and bytes on the wire.
//
// Scenarios (see Run):
//
//   - dashboard: C clients on one document of W widgets, each changing a
//     random widget at R changes/s for D;
//   - rooms: many documents with a few clients each;
//   - many-docs: create N documents, load K of them from a fresh client, then
//     restart the server (when loadgen spawned it) and time the first
//     document served;
//   - large-doc: a document of S MB synced to fresh clients;
//   - ramp: the dashboard with the rate raised step by step until p99
//     exceeds a bound; the highest throughput within the bound is the
//     saturation point.
//
// Each change carries its own send time: the writer sets
// /widgets/wK = {v: N, t: unixNanos, by: I} and /writers/cI = N in one
// change. A receiver wakes when its client applied remote changes (the
// repo's Observer; a subscription would make the Go client diff the whole
// document around every batch, and with hundreds of clients that, not the
// server, would bound the run), reads the writers' sequence numbers, and
// since one writer's changes reach a peer in order, every change of that
// writer up to N is delivered at that moment. A change's fan-out latency is
// the time from its making until the last other client of the document has
// it. With Config.Writers only the first clients of each document write and
// the others watch (a dashboard edited by a few, watched by many).
//
// Config.Light (`tandem bench --light`) replaces the full clients of
// dashboard, rooms and ramp by light ones, which cost almost nothing per
// change received, so that on a small machine the server under test and
// not the load generator saturates (the same light client drives every
// server, so comparisons stay fair). A light client speaks the
// automerge-repo protocol itself over transport/ws (join, peer, sync) and
// never applies received changes into Automerge: it keeps the document's
// change graph as hashes. A short-lived full client uploads each
// document's initial version; every member then opens it as a returning
// user who has exactly that version (a sync message whose heads are the
// initial heads; both Tandem and the JavaScript reference server answer it
// with only the later changes, no "request" needed). For each incoming
// sync message it checks the changes' framing and checksums, adds the new
// ones to its graph (a change whose dependencies it lacks waits for them),
// reads each change's commit message, "lg W N" (writer W's change N), to
// record the delivery, and acknowledges with its heads when the message
// brought changes or advertised other heads, as an Automerge peer that
// applied them would. A light writer makes its changes on its own copy of
// the initial document (the same paths as a full writer, committed with
// the message "lg W N") and sends each in one sync message; it answers a
// server's "need" with its own changes. Since that copy never takes the
// others' changes, each writer's changes form a chain from the initial
// document, concurrent with the other writers' chains: valid Automerge
// (the server merges them), but not what full clients make (their changes
// follow what they have seen), and the document has one head per writer,
// so every sync message carries that many heads. A group has converged
// when its light clients' graphs have the same heads. many-docs and
// large-doc always use full clients.
//
// Config.Procs spreads the clients of dashboard, rooms and ramp over worker
// processes (Config.WorkerCommand running RunWorker; `tandem bench --procs
// P` starts its own binary as `tandem bench-worker`): one Go process
// cannot drive thousands of clients, nor hold 10,000 connections next to a
// server under the same open-file limit. Workers take commands on stdin and
// report on stdout in JSON lines (see worker.go); the coordinator merges
// what they report — changes made with their send times, and per change how
// many of a worker's clients have it and when the last one got it — so
// latencies are computed as in one process (one machine, one clock).
// Workers stop with the run: on a close command, at the end of their
// stdin, at the run's deadline, and on Linux when the coordinator dies.
//
// Config.History prepares each document with that many changes before the
// run (built offline with the crdt package, uploaded by the first client,
// fetched by the others, or with Config.Preload already in their stores);
// Config.Warmup runs the load for a while before measuring (the ramp: the
// first step's load). The "deliveries" figure counts every (receiver,
// change) recorded over the whole run, warm-up included.
//
// A server started by loadgen (Spawner, from a command template such as
// `tandem serve --addr 127.0.0.1:{port} --data {dir}`) is sampled from
// /proc: CPU seconds (the threads' schedstat, checked against
// /proc/PID/stat) and resident memory from /proc/PID/status (peak and over
// time). Every run is bounded by Config.Timeout; only
// loopback servers are accepted.
package loadgen
