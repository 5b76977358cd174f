package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchCLI(t *testing.T) {
	bin := tandemBin(t)
	dir := t.TempDir()
	jsonPath, plotPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"bench",
		"--spawn", bin + " serve --addr 127.0.0.1:{port} --data {dir} --log-level warn",
		"--clients", "3", "--rate", "10", "--duration", "1s", "--drain", "10s",
		"--json", jsonPath, "--plot", plotPath, "dashboard"}, nil, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"fan-out latency", "converged", "server peak RSS", "offered changes/s"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "dashboard 1s") {
		t.Errorf("no progress bar on stderr:\n%s", stderr.String())
	}
	var res struct {
		Scenario  string `json:"scenario"`
		Converged bool   `json:"converged"`
		Changes   int    `json:"changes"`
		Latency   struct {
			P99 float64 `json:"p99_ms"`
		} `json:"fanout_latency"`
		RSS int64 `json:"server_peak_rss_bytes"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "dashboard" || !res.Converged || res.Changes == 0 || res.Latency.P99 <= 0 || res.RSS <= 0 {
		t.Errorf("json: %s", b)
	}
	png, err := os.ReadFile(plotPath)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("plot: %v", err)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nosuch", "--server", "ws://127.0.0.1:1/sync"},
		{"bench", "dashboard"},
		{"bench", "dashboard", "--server", "ws://127.0.0.1:1/sync", "--spawn", "x {port}"},
		{"bench", "dashboard", "--server", "ws://example.com/sync"},
		{"bench", "dashboard", "--server", "ws://10.1.2.3:7070/sync"},
		{"bench", "dashboard", "--server", "ws://127.0.0.1:1/sync", "--plot", "out.svg"},
		{"bench", "dashboard", "--server", "ws://127.0.0.1:1/sync", "--clients", "1"},
		{"bench", "dashboard", "--server", "ws://127.0.0.1:1/sync", "--rate", "-3"},
		{"bench", "dashboard", "--spawn", "no-port-here"},
		{"bench", "dashboard", "--server", "ws://127.0.0.1:1/sync", "--procs", "100"},
		{"bench", "many-docs", "--server", "ws://127.0.0.1:1/sync", "--procs", "2"},
		{"bench-worker", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, stderr %s", args, code, stderr.String())
		}
	}
}

// TestBenchProcs runs the built binary, so that its workers are the
// binary's hidden bench-worker command, as in real use.
func TestBenchProcs(t *testing.T) {
	bin := tandemBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	cmd := exec.CommandContext(ctx, bin, "bench", "--quiet",
		"--spawn", bin+" serve --addr 127.0.0.1:{port} --data {dir} --log-level warn",
		"--procs", "2", "--clients", "4", "--rate", "10", "--duration", "1s", "--drain", "10s",
		"--json", jsonPath, "dashboard")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		Params    map[string]any `json:"params"`
		Converged bool           `json:"converged"`
		Changes   int            `json:"changes"`
		Complete  int            `json:"complete"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Params["procs"] != 2.0 || !res.Converged || res.Changes == 0 || res.Complete != res.Changes {
		t.Errorf("json: %s", b)
	}
	// The workers are gone with the run.
	if o, err := exec.Command("pgrep", "-f", bin+" bench-worker").Output(); err == nil && len(o) > 0 {
		t.Errorf("workers still running: %s", o)
	}
}
