// Package bench holds Tandem's benchmark suites (go test -bench ./bench/...).
// Every benchmark reports domain metrics with b.ReportMetric: changes/s,
// latency percentiles in ms, bytes per document. Sizes are chosen so the
// whole suite runs in a few minutes on a 2-core machine.
package bench
