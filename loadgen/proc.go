package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux platform Go supports.
const clockTicks = 100

// ProcSample is one reading of a process tree's counters from /proc.
type ProcSample struct {
	CPUSeconds float64 // user + system time of the process and its descendants
	RSSBytes   int64   // resident set now (summed over the tree)
	HWMBytes   int64   // peak resident set reported by the kernel (largest in the tree)
}

// readProc reads pid and its descendants. A process that vanished while it
// was being read is skipped.
func readProc(pid int) (ProcSample, error) {
	var s ProcSample
	seen := map[int]bool{}
	todo := []int{pid}
	for steps := 0; len(todo) > 0 && steps < 4096; steps++ {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		cpu, err := procCPU(p)
		if err != nil {
			if p == pid {
				return s, err
			}
			continue
		}
		s.CPUSeconds += cpu
		rss, hwm := procMem(p)
		s.RSSBytes += rss
		s.HWMBytes = max(s.HWMBytes, hwm)
		todo = append(todo, procChildren(p)...)
	}
	return s, nil
}

// procCPU returns the CPU time pid has used, in seconds. /proc/PID/stat
// counts it in 10 ms ticks, too coarse for a server at 2% of a core over
// 10 s (20 ticks: ±5%), so it is taken from the threads' schedstat (ns)
// when that agrees with stat, which it does unless threads have exited
// (their time is in stat's total, not in any live thread's schedstat).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, err
	}
	if ns, ok := procSchedCPU(pid); ok && ns >= ticks-2.0/clockTicks && ns <= ticks+2.0/clockTicks {
		return ns, nil
	}
	return ticks, nil
}

// procSchedCPU sums the on-CPU time of pid's live threads from their
// schedstat files, in seconds.
func procSchedCPU(pid int) (float64, bool) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var ns uint64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited: the caller's check sees it
		}
		n, ok := parseSchedstat(b)
		if !ok {
			return 0, false
		}
		ns += n
	}
	return float64(ns) / 1e9, true
}

// parseSchedstat reads the first field of a schedstat file: nanoseconds
// spent on a CPU.
func parseSchedstat(b []byte) (uint64, bool) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	return n, err == nil
}

// parseStatCPU parses the contents of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: malformed /proc stat times")
	}
	return float64(ut+st) / clockTicks, nil
}

// procMem returns VmRSS and VmHWM of pid in bytes (0 when unknown).
func procMem(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	return parseStatusMem(b)
}

func parseStatusMem(b []byte) (rss, hwm int64) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	return rss, hwm
}

// procChildren lists pid's children (from every thread's children file).
func procChildren(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
