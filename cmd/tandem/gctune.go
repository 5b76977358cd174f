package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// The Go collector starts its next cycle when the heap reaches twice the
// live heap (GOGC=100). Badger allocates each memtable's arena up front as
// one []byte (about 42 MB with our 32 MiB memtable) that counts as live
// but is touched only as it fills, so the goal sits that much above the
// heap that actually turns over, and as much garbage piles up between
// collections: 45 of the 116 MB peak with a 10,000-change history. The
// tuner sets GOGC after every collection so that the goal is the live heap
// plus what GOGC=100 allows for the heap without those fixed buffers.
// It stands aside when the user set GOGC.

const (
	minGCPercent = 10
	baseGCHeap   = 4 << 20 // the smallest heap the goal is computed for, as the runtime's own minimum
)

// gcPercent is the GOGC that gives live + (live-fixed) as the goal.
func gcPercent(live, fixed uint64) int {
	if live == 0 {
		return 100
	}
	moving := max(baseGCHeap, int64(live)-int64(fixed))
	p := int(moving * 100 / int64(live))
	return min(100, max(minGCPercent, p))
}

var (
	tunerMu     sync.Mutex
	tunerActive bool // one tuner per process: GOGC is process-wide
	liveSample  = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
)

// liveHeap is the live heap the last collection marked.
func liveHeap() uint64 {
	metrics.Read(liveSample)
	if liveSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return liveSample[0].Value.Uint64()
}

// measureFixed runs open and returns how much live heap it left behind
// (two forced collections; call once at start-up).
func measureFixed(open func() error) (uint64, error) {
	runtime.GC()
	before := liveHeap()
	if err := open(); err != nil {
		return 0, err
	}
	runtime.GC()
	after := liveHeap()
	if after < before {
		return 0, nil
	}
	return after - before, nil
}

// startGCTuner keeps GOGC at gcPercent(live, fixed) after every collection
// until stop, which restores the previous setting. A second tuner in the
// same process (tests run several servers) does nothing.
func startGCTuner(fixed uint64) (stop func()) {
	tunerMu.Lock()
	defer tunerMu.Unlock()
	if tunerActive || fixed == 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	tunerActive = true
	var stopped atomic.Bool
	prev := debug.SetGCPercent(gcPercent(liveHeap(), fixed))
	// A finalizer runs once after each collection that found its object
	// unreachable; re-arming it there makes a per-cycle hook without a
	// goroutine of our own.
	type sentinel struct{ _ [64]byte } // not a tiny allocation: those share finalizers
	var arm func()
	last := -1
	arm = func() {
		s := &sentinel{}
		runtime.SetFinalizer(s, func(*sentinel) {
			if stopped.Load() {
				return
			}
			if p := gcPercent(liveHeap(), fixed); p != last {
				debug.SetGCPercent(p)
				last = p
			}
			arm()
		})
	}
	arm()
	return func() {
		tunerMu.Lock()
		defer tunerMu.Unlock()
		if stopped.Swap(true) {
			return
		}
		debug.SetGCPercent(prev)
		tunerActive = false
	}
}
