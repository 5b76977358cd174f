//go:build !linux || !cgo

package main

// limitMallocArenas does nothing where the C allocator has no arena knob.
func limitMallocArenas(int) bool { return false }
