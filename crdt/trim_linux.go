//go:build linux && cgo

package crdt

// #include <malloc.h>
import "C"

// ReleaseMemory asks the C allocator, which the Automerge core uses, to
// return freed memory to the operating system. glibc keeps freed blocks
// of many small documents in its arenas; after many documents leave
// memory (eviction, hibernation) the process's resident size only falls
// with this. It takes a few milliseconds; call it rarely.
func ReleaseMemory() { C.malloc_trim(0) }
