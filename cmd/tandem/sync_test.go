package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSyncOnceUnreachableFailsClearly(t *testing.T) {
	dir := t.TempDir()
	url := mustCLI(t, "doc", "new", "--data", dir, "--json", `{"a":1}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	start := time.Now()
	_, stderr, code := cli(t, "", "sync", "--once", "--timeout", "1s", "--server", "ws://"+addr+"/sync", "--data", dir)
	if code == 0 {
		t.Fatal("sync --once succeeded against an unreachable server")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v with --timeout 1s", d)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "cannot reach") {
		t.Fatalf("stderr = %q", stderr)
	}
	sameJSON(t, mustCLI(t, "doc", "get", "--data", dir, url), `{"a":1}`)
	if _, _, code := cli(t, "", "sync", "--once", "--server", "http://x"); code != 2 {
		t.Fatalf("bad --server: exit %d", code)
	}
}

// Edit offline with tandem doc, publish with tandem sync --once, and a
// JavaScript automerge-repo client sees the edits.
func TestSyncOncePublishesOfflineEdits(t *testing.T) {
	local := t.TempDir()
	url := mustCLI(t, "doc", "new", "--data", local, "--json", `{"widgets":{"cpu":{"value":0}}}`)
	mustCLI(t, "doc", "set", "--data", local, url, "/widgets/cpu/value", "42")
	mustCLI(t, "doc", "set", "--data", local, url, "/widgets/mem", `{"value":7}`)

	sp := startServe(t, t.TempDir(), "127.0.0.1:0")
	out := mustCLI(t, "sync", "--once", "--timeout", "30s", "--server", sp.url(), "--data", local)
	if !strings.Contains(out, url) || !strings.Contains(out, "pushed") {
		t.Fatalf("sync printed %q", out)
	}
	// A second run has nothing to do.
	if out := mustCLI(t, "sync", "--once", "--server", sp.url(), "--data", local, url); !strings.Contains(out, "up to date") {
		t.Fatalf("second sync printed %q", out)
	}
	js := nodeInterop(t)
	cmd := exec.Command("node", filepath.Join(js, "read-doc.mjs"), sp.url(), url)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("JavaScript client: %v", err)
	}
	sameJSON(t, string(b), `{"widgets":{"cpu":{"value":42},"mem":{"value":7}}}`)
}
