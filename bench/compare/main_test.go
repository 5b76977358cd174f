package main

import (
	"testing"

	"github.com/tandemsync/tandem/loadgen"
)

func TestSameLoadRSS(t *testing.T) {
	step := func(delivered float64, mb int64) *loadgen.Result {
		return &loadgen.Result{Delivered: delivered, PeakRSSBytes: mb << 20}
	}
	tandem := &loadgen.Result{Saturation: 400, Steps: []*loadgen.Result{step(100, 30), step(200, 40), step(400, 90)}}
	ref := &loadgen.Result{Saturation: 200, Steps: []*loadgen.Result{step(100, 100), step(200, 150), step(150, 160)}}
	tm, fm, k, ok := sameLoadRSS(tandem, ref)
	if !ok || k != 2 || tm != 40 || fm != 150 {
		t.Fatalf("got %v %v step %d %v; want 40 150 step 2", tm, fm, k, ok)
	}
	// The other server did not reach that step: no row.
	if _, _, _, ok := sameLoadRSS(&loadgen.Result{Steps: tandem.Steps[:1]}, ref); ok {
		t.Fatal("a row for a step Tandem did not run")
	}
	if _, _, _, ok := sameLoadRSS(nil, ref); ok {
		t.Fatal("a row without a result")
	}
}
