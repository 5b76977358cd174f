package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// jsSet runs set-value.mjs: a JavaScript client sets w[key] = value. It
// returns a function that lets the client exit.
func jsSet(t *testing.T, js, url, doc, key string, value int) func() {
	t.Helper()
	cmd := exec.Command("node", filepath.Join(js, "set-value.mjs"), url, doc, key, fmt.Sprint(value))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "changed" {
		_ = cmd.Process.Kill()
		t.Fatalf("JavaScript client failed: %s", stderr.String())
	}
	return func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
}

func connect(r *repo.Repo, url string) *repo.Connection {
	return r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, url, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
}

// collectConflicts reads events for a short while and returns the conflicts.
func collectConflicts(sub *repo.Subscription, d time.Duration) []*repo.Conflict {
	var out []*repo.Conflict
	deadline := time.After(d)
	for {
		select {
		case e := <-sub.Events():
			if e.Conflict != nil {
				out = append(out, e.Conflict)
			}
		case <-deadline:
			return out
		}
	}
}

// A Go client and a JavaScript client write the same widget value
// concurrently: exactly one conflict event on the Go side, naming the
// winner both sides converge to. Writes to different keys raise none.
func TestConflictGoVersusJavaScript(t *testing.T) {
	js := nodeInterop(t)
	ctx := testCtx(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0")
	r, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	conn := connect(r, sp.url())
	h, err := r.CreateJSON(ctx, []byte(`{"w":{"cpu":0,"mem":0,"disk":0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	probe := newGoClient(t, sp.url())
	ph, err := probe.r.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := h.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	round := func(goKey string, goVal int, jsKey string, jsVal int) {
		t.Helper()
		conn.Close() // the Go client is offline for its write
		if _, err := h.Set(ctx, "/w/"+goKey, goVal); err != nil {
			t.Fatal(err)
		}
		done := jsSet(t, js, sp.url(), h.URL(), jsKey, jsVal)
		defer done()
		eventually(t, "the server has the JavaScript write", func() bool {
			v, _ := ph.Get(ctx, "/w/"+jsKey)
			return fmt.Sprint(v) == fmt.Sprint(jsVal)
		})
		conn = connect(r, sp.url())
		if err := h.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "convergence", func() bool {
			return getJSON(ctx, h) == getJSON(ctx, ph)
		})
	}

	round("mem", 1, "disk", 2)
	if cs := collectConflicts(sub, 300*time.Millisecond); len(cs) != 0 {
		t.Fatalf("writes to different keys raised conflicts: %+v", cs)
	}
	round("cpu", 100, "cpu", 200)
	cs := collectConflicts(sub, 500*time.Millisecond)
	if len(cs) != 1 {
		t.Fatalf("%d conflict events, want exactly 1: %+v", len(cs), cs)
	}
	winner, _ := h.Get(ctx, "/w/cpu")
	jsWinner, _ := ph.Get(ctx, "/w/cpu")
	c := cs[0]
	if c.Path != "/w/cpu" || fmt.Sprint(c.Local) != "100" || fmt.Sprint(c.Remote) != "200" ||
		fmt.Sprint(c.Winner) != fmt.Sprint(winner) || fmt.Sprint(winner) != fmt.Sprint(jsWinner) {
		t.Fatalf("conflict %+v; winner here %v, elsewhere %v", c, winner, jsWinner)
	}
	conn.Close()
}
