//go:build !linux || !cgo

package crdt

// ReleaseMemory is a no-op where the C allocator has no trim call.
func ReleaseMemory() {}
