package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// A Go client and a real JavaScript automerge-repo client edit the same
// document through tandem serve, concurrently, and converge to the same
// heads and content in both directions.
func TestGoAndJavaScriptClientsConverge(t *testing.T) {
	js := nodeInterop(t)
	ctx := testCtx(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0")
	g := newGoClient(t, sp.url())
	h, err := g.r.CreateJSON(ctx, []byte(`{"go":{},"js":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the server stores it: a second Go client can find it.
	probe := newGoClient(t, sp.url())
	eventually(t, "server has the document", func() bool {
		_, err := probe.r.Find(ctx, h.ID())
		return err == nil
	})
	const rounds = 20
	node := exec.Command("node", filepath.Join(js, "go-peer.mjs"), sp.url(), h.URL(), strconv.Itoa(rounds))
	stdin, err := node.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	node.Stderr = &stderr
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- node.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = node.Process.Kill()
		}
	}()
	for i := range rounds {
		if _, err := h.Set(ctx, "/go/"+strconv.Itoa(i), i); err != nil {
			t.Fatal(err)
		}
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
		t.Fatalf("the JavaScript client did not finish: %s", stderr.String())
	}
	var got struct {
		Heads []string        `json:"heads"`
		Doc   json.RawMessage `json:"doc"`
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("JavaScript client printed %q (%v); stderr: %s", line, err, stderr.String())
	}
	slices.Sort(got.Heads)
	goHeads := func() []string {
		hs, _ := h.Heads(ctx)
		out := make([]string, len(hs))
		for i, x := range hs {
			out[i] = x.String()
		}
		slices.Sort(out)
		return out
	}
	// The JS client has every Go change; the Go client must get every JS one.
	eventually(t, "Go client reaches the JavaScript client's heads", func() bool {
		return slices.Equal(goHeads(), got.Heads)
	})
	var jsDoc, goDoc any
	_ = json.Unmarshal(got.Doc, &jsDoc)
	b, _ := h.JSON(ctx, "")
	_ = json.Unmarshal(b, &goDoc)
	if fmt.Sprint(jsDoc) != fmt.Sprint(goDoc) {
		t.Fatalf("same heads, different content:\nJS %s\nGo %s", got.Doc, b)
	}
	m := goDoc.(map[string]any)
	if len(m["go"].(map[string]any)) != rounds || len(m["js"].(map[string]any)) != rounds {
		t.Fatalf("missing edits: %s", b)
	}
}
