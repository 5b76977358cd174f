package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
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

// The server is SIGKILLed in the middle of a client's stream of changes and
// restarted on the same address and data: the client ends synced and the
// server has every change.
func TestClientEndsSyncedAfterServerKilledMidSync(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	sp := startServe(t, dir, "127.0.0.1:0")
	addr := sp.addr
	var clog syncBuffer
	cr, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}, Logger: slog.New(slog.NewTextHandler(&clog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	c := &goClient{r: cr, conn: connect(cr, sp.url())}
	defer func() { c.conn.Close(); _ = cr.Close(context.Background()) }()
	h, err := c.r.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 300; i++ {
		if _, err := h.Set(ctx, "/n", i); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			sp.kill()
			sp = startServe(t, dir, addr)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := h.WaitSynced(wctx); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, serr := h.SyncStatus(sctx)
		t.Logf("server log:\n%s", sp.stderr.String())
		t.Logf("client log:\n%s", clog.String())
		t.Fatalf("%v (status %+v %v; repo %+v; connected %v)", err, st, serr, c.r.Status(), c.conn.Connected())
	}
	probe := newGoClient(t, sp.url())
	ph, err := probe.r.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := ph.Get(ctx, "/n"); fmt.Sprint(v) != "300" {
		t.Fatalf("after kill -9 mid-sync the server has n = %v", v)
	}
	if p, _ := h.Pending(ctx); len(p) != 0 {
		t.Fatalf("still pending: %d", len(p))
	}
}
