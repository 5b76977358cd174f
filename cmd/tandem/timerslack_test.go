//go:build linux && cgo

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// threadSlacks reads the timer slack of every thread of process pid.
func threadSlacks(t *testing.T, pid int) map[string]string {
	t.Helper()
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", task.Name(), "timerslack_ns"))
		if err != nil {
			continue // the thread exited
		}
		out[task.Name()] = strings.TrimSpace(string(b))
	}
	if len(out) == 0 {
		t.Fatal("no thread's timer slack could be read")
	}
	return out
}

// TestServeTimerSlack: every thread of tandem serve, the Go runtime's own
// among them, runs with the slack set before the runtime started;
// TANDEM_TIMER_SLACK_US changes it, and a bad value stops serve with an
// error naming it.
func TestServeTimerSlack(t *testing.T) {
	for _, c := range []struct{ env, want string }{{"", "1000000"}, {"250", "250000"}} {
		var env []string
		if c.env != "" {
			env = []string{"TANDEM_TIMER_SLACK_US=" + c.env}
		}
		sp, _ := startServeEnv(t, env, "--addr", "127.0.0.1:0", "--data", t.TempDir())
		slacks := threadSlacks(t, sp.cmd.Process.Pid)
		if len(slacks) < 3 {
			t.Errorf("only %d threads read", len(slacks))
		}
		for tid, ns := range slacks {
			if ns != c.want {
				t.Errorf("TANDEM_TIMER_SLACK_US=%q: thread %s has %s ns of slack, want %s", c.env, tid, ns, c.want)
			}
		}
		sp.kill()
	}
	for _, bad := range []string{"fast", "-5", "2000000", "10ms"} {
		// A serve that took the value would run until the deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, tandemBin(t), "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir())
		cmd.Env = append(withoutTandemEnv(os.Environ()), "TANDEM_TIMER_SLACK_US="+bad)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "TANDEM_TIMER_SLACK_US=") {
			t.Errorf("TANDEM_TIMER_SLACK_US=%s: err %v, output %q", bad, err, out)
		}
		cancel()
	}
}

// TestTimerSlackOnlyServe: other subcommands, and this test binary, keep
// whatever slack they were started with.
func TestTimerSlackOnlyServe(t *testing.T) {
	if got, err := timerSlack(); got != 0 || err != nil {
		t.Fatalf("timerSlack() = %v, %v outside serve", got, err)
	}
}
