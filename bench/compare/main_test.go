package main

import (
	"testing"

	"github.com/tandemsync/tandem/loadgen"
)

func TestSameLoadStep(t *testing.T) {
	step := func(delivered float64, mb int64, p99 float64) *loadgen.Result {
		return &loadgen.Result{Delivered: delivered, PeakRSSBytes: mb << 20, Latency: loadgen.Latency{Count: 10, P99: p99}}
	}
	tandem := &loadgen.Result{Saturation: 400, Steps: []*loadgen.Result{step(100, 30, 2), step(200, 40, 3), step(400, 90, 200)}}
	ref := &loadgen.Result{Saturation: 200, Steps: []*loadgen.Result{step(100, 100, 50), step(200, 150, 80), step(150, 160, 900)}}
	ts, fs, k, ok := sameLoadStep(tandem, ref)
	if !ok || k != 2 || ts.PeakRSSBytes != 40<<20 || fs.PeakRSSBytes != 150<<20 || ts.Latency.P99 != 3 || fs.Latency.P99 != 80 {
		t.Fatalf("got %+v %+v step %d %v; want step 2 (40 MB, 3 ms; 150 MB, 80 ms)", ts, fs, k, ok)
	}
	// The other server did not reach that step: no row.
	if _, _, _, ok := sameLoadStep(&loadgen.Result{Steps: tandem.Steps[:1]}, ref); ok {
		t.Fatal("a row for a step Tandem did not run")
	}
	if _, _, _, ok := sameLoadStep(nil, ref); ok {
		t.Fatal("a row without a result")
	}
}
