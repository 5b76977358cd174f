package crdt

import (
	"runtime"
	"runtime/metrics"
	"sync/atomic"
)

// automerge-go frees every result of the Automerge core (a C allocation)
// only in a Go finalizer. The Go objects are tiny, so the Go collector,
// which paces itself by the Go heap alone, runs rarely while the core's
// memory piles up: 200 load-generator clients reading a dashboard after
// every change grew by 300 MB/s. So the package estimates what its calls
// leave for finalizers and, past a threshold that follows the Go heap
// (as GOGC=100 would if it saw that memory), runs the collector in the
// background, one collection at a time.

var (
	foreign     atomic.Int64 // estimated bytes left for finalizers since the last collection
	foreignMax  atomic.Int64 // threshold; see collectForeign
	collecting  atomic.Bool
	heapSamples = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
)

const minForeignThreshold = 32 << 20

func init() { foreignMax.Store(minForeignThreshold) }

// noteForeign records n bytes of core results that only a finalizer frees.
func noteForeign(n int) {
	if foreign.Add(int64(n)) < foreignMax.Load() {
		return
	}
	if !collecting.CompareAndSwap(false, true) {
		return
	}
	foreign.Store(0)
	go collectForeign()
}

func collectForeign() {
	defer collecting.Store(false)
	runtime.GC()
	metrics.Read(heapSamples)
	next := int64(minForeignThreshold)
	if s := heapSamples[0].Value; s.Kind() == metrics.KindUint64 {
		next = max(next, int64(s.Uint64()))
	}
	foreignMax.Store(next)
}

// Rough sizes of what one core result holds, for noteForeign.
const (
	resultCost = 128 // one item: a value, a hash, a key
	changeCost = 512 // a change object
)
