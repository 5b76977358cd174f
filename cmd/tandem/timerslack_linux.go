//go:build linux && cgo

package main

/*
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/prctl.h>

// The slack applied at start-up, in nanoseconds: 0 when the kernel's
// default was kept on purpose, -1 when TANDEM_TIMER_SLACK_US was not a
// number, -2 when prctl refused.
static long long tandem_timer_slack_ns = 0;

// tandem_is_serve reports whether the first argument is "serve", from
// /proc/self/cmdline: not every C library hands constructors argc and argv.
static int tandem_is_serve(void) {
	char buf[256];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return 0;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) {
		return 0;
	}
	buf[n] = '\0';
	size_t first = strlen(buf) + 1; // the program's name, then its first argument
	return first < (size_t)n && strcmp(buf + first, "serve") == 0;
}

// A constructor runs on the main thread before the Go runtime starts, so
// every thread the runtime creates afterwards, sysmon among them, inherits
// the slack; prctl can only change the calling thread's. Only `tandem
// serve` is changed, so that the processes other subcommands start (the
// load generator's servers and workers) inherit the kernel's default.
__attribute__((constructor)) static void tandem_set_timer_slack(void) {
	if (!tandem_is_serve()) {
		return;
	}
	long long us = 1000;
	const char *v = getenv("TANDEM_TIMER_SLACK_US");
	if (v != NULL && *v != '\0') {
		char *end = NULL;
		errno = 0;
		us = strtoll(v, &end, 10);
		if (errno != 0 || *end != '\0' || us < 0 || us > 1000000) {
			tandem_timer_slack_ns = -1;
			return;
		}
	}
	if (us == 0) {
		return;
	}
	if (prctl(PR_SET_TIMERSLACK, (unsigned long)(us * 1000), 0, 0, 0) != 0) {
		tandem_timer_slack_ns = -2;
		return;
	}
	tandem_timer_slack_ns = us * 1000;
}

static long long tandem_timer_slack(void) { return tandem_timer_slack_ns; }
*/
import "C"

import (
	"fmt"
	"os"
	"time"
)

// timerSlack reports the timer slack `tandem serve`'s threads were given at
// start-up (see the constructor above): 0 if the kernel's default was kept,
// and always 0 in other subcommands.
//
// Why: the Go runtime's monitor thread (sysmon) sleeps 20 µs at a time
// while any goroutine runs or sits in a system call, and starts over at
// 20 µs after every idle spell. A server handling 20 changes a second is
// idle between changes, so each change paid for dozens of monitor wake-ups
// (each a timer interrupt and a context switch; in a virtual machine, exits
// to the hypervisor too). With the kernel's default 50 µs of slack that was
// about a quarter of the server's CPU at the dashboard load; 1 ms of slack
// lets the kernel fold those wake-ups together: 1.02–1.13 ms → 0.73–0.89
// ms of server CPU per change, context switches per change 39 → 22, the
// same fan-out latency. Timers fire up to 1 ms late, which nothing in the
// server depends on. TANDEM_TIMER_SLACK_US (0 to 1,000,000; 0 keeps the
// kernel's default) overrides it.
func timerSlack() (time.Duration, error) {
	switch ns := int64(C.tandem_timer_slack()); ns {
	case -1:
		return 0, fmt.Errorf("TANDEM_TIMER_SLACK_US=%q: want whole microseconds from 0 to 1000000", os.Getenv("TANDEM_TIMER_SLACK_US"))
	case -2:
		return 0, fmt.Errorf("timer slack: the kernel refused prctl(PR_SET_TIMERSLACK)")
	default:
		return time.Duration(ns), nil
	}
}
