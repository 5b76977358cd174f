//go:build linux && cgo

package main

/*
#include <malloc.h>

// limit_arenas caps glibc's malloc arenas where the C library has the knob.
static int limit_arenas(int n) {
#ifdef M_ARENA_MAX
	return mallopt(M_ARENA_MAX, n);
#else
	(void)n;
	return 0;
#endif
}
*/
import "C"

import "os"

// limitMallocArenas caps the C allocator's arenas, which the Automerge core
// allocates from. glibc gives each thread that contends an arena of its
// own, up to 8 per core, and each keeps its freed memory: cgo calls run on
// many Go threads, so a busy server held 6 or more. Two cut peak RSS on
// the light ramp from 218–222 to 200–208 MB at the same CPU. A user's
// MALLOC_ARENA_MAX wins.
func limitMallocArenas(n int) bool {
	if os.Getenv("MALLOC_ARENA_MAX") != "" {
		return false
	}
	return C.limit_arenas(C.int(n)) == 1
}
