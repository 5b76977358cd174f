//go:build !linux

package loadgen

import "syscall"

// workerProcAttr: without Linux's parent-death signal, a worker still ends
// when its stdin closes or at the run's deadline.
func workerProcAttr() *syscall.SysProcAttr { return nil }
