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
// /widgets/wK = {v: N, t: unixNanos, by: I} and /writers/cI = {n: N, t:
// unixNanos} in one change. A receiver's subscription event names the
// writers whose entries changed; the receiver reads their sequence numbers,
// and since one writer's changes reach a peer in order, every change of
// that writer up to N is delivered at that moment. A change's fan-out
// latency is the time from its making until the last other client of the
// document has it.
//
// A server started by loadgen (Spawner, from a command template such as
// `tandem serve --addr 127.0.0.1:{port} --data {dir}`) is sampled from
// /proc/PID/stat and /proc/PID/status: CPU seconds and resident memory
// (peak and over time). Every run is bounded by Config.Timeout; only
// loopback servers are accepted.
package loadgen
