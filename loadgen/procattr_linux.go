package loadgen

import "syscall"

// workerProcAttr makes the kernel kill a worker when the process that
// started it dies, even by SIGKILL, so that no worker outlives its run.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
