package main

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live, fixed uint64
		want        int
	}{
		{0, 0, 100},
		{100 << 20, 0, 100},                // nothing fixed: GOGC=100
		{50 << 20, 42 << 20, 16},           // 8 of 50 MB move
		{46 << 20, 42 << 20, 10},           // the floor: 4 MB of 46 → 8%, raised to 10
		{40 << 20, 42 << 20, 10},           // fixed above live (a memtable flushed)
		{1000 << 20, 42 << 20, 95},         // a big heap: close to 100
		{42<<20 + 4<<20 - 1, 42 << 20, 10}, // under the 4 MB minimum
	} {
		if got := gcPercent(c.live, c.fixed); got != c.want {
			t.Errorf("gcPercent(%d MB, %d MB) = %d, want %d", c.live>>20, c.fixed>>20, got, c.want)
		}
	}
}

func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestGCTuner: with 32 MB of fixed live heap, the tuner lowers GOGC after
// a collection and restores it on stop.
func TestGCTuner(t *testing.T) {
	before := gogc()
	fixed := make([]byte, 32<<20)
	var stop func()
	measured, err := measureFixed(func() error { return nil })
	if err != nil || measured > 8<<20 {
		t.Fatalf("measureFixed of nothing: %d, %v", measured, err)
	}
	stop = startGCTuner(uint64(len(fixed)))
	deadline := time.Now().Add(10 * time.Second)
	for gogc() >= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after collections", gogc())
		}
		runtime.GC()
		runtime.Gosched()
	}
	// A second tuner in the process stands aside.
	second := startGCTuner(1 << 20)
	second()
	if gogc() >= 100 {
		t.Fatal("a second tuner's stop restored GOGC")
	}
	stop()
	if got := gogc(); got != before {
		t.Fatalf("GOGC after stop: %d, want %d", got, before)
	}
	runtime.KeepAlive(fixed)
}

func TestGCTunerRespectsGOGC(t *testing.T) {
	t.Setenv("GOGC", "100")
	before := gogc()
	stop := startGCTuner(32 << 20)
	defer stop()
	runtime.GC()
	if got := gogc(); got != before {
		t.Fatalf("GOGC %d with GOGC set by the user, want %d", got, before)
	}
}

func TestLimitMallocArenas(t *testing.T) {
	t.Setenv("MALLOC_ARENA_MAX", "4")
	if limitMallocArenas(2) {
		t.Fatal("the user's MALLOC_ARENA_MAX was overridden")
	}
}
