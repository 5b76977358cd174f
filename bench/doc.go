// Package bench holds Tandem's benchmark suites (go test -bench ./bench/...).
// Every benchmark reports domain metrics with b.ReportMetric: changes/s,
// latency percentiles in ms, bytes per document. Sizes are chosen so the
// whole suite runs in a few minutes on a 2-core machine.
//
// Beside the suites: bench/compare (make bench-compare) runs the loadgen
// scenarios of `tandem bench` against `tandem serve` and the reference
// automerge-repo sync server in bench/reference, in alternation, and writes
// bench/RESULTS.md. Nothing imports this package.
package bench
