package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// tandemBin builds the tandem binary once per test run.
func tandemBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tandem-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tandem")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// serverProc is a running `tandem serve`.
type serverProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	dir    string
	stderr *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe starts tandem serve on dir at addr ("127.0.0.1:0" for any port).
func startServe(t *testing.T, dir, addr string, extra ...string) *serverProc {
	t.Helper()
	args := append([]string{"serve", "--addr", addr, "--data", dir, "--log-level", "debug"}, extra...)
	cmd := exec.Command(tandemBin(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sp := &serverProc{t: t, cmd: cmd, dir: dir, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = sp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening on ") {
				lines <- strings.TrimPrefix(sc.Text(), "listening on ")
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { sp.exited <- cmd.Wait() }()
	select {
	case a := <-lines:
		sp.addr = a
	case err := <-sp.exited:
		t.Fatalf("tandem serve exited: %v\n%s", err, sp.stderr.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("tandem serve did not start:\n%s", sp.stderr.String())
	}
	t.Cleanup(func() { sp.kill() })
	return sp
}

func (sp *serverProc) url() string { return "ws://" + sp.addr + "/sync" }

func (sp *serverProc) kill() {
	_ = sp.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-sp.exited:
		sp.exited <- err // later calls return at once
	case <-time.After(30 * time.Second):
	}
}

// stop sends SIGTERM and returns the exit error.
func (sp *serverProc) stop() error {
	_ = sp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-sp.exited:
		sp.exited <- err
		return err
	case <-time.After(60 * time.Second):
		sp.t.Fatal("tandem serve did not stop on SIGTERM")
		return nil
	}
}

type goClient struct {
	r    *repo.Repo
	conn *repo.Connection
}

func newGoClient(t *testing.T, url string) *goClient {
	t.Helper()
	r, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	c := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, url, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	gc := &goClient{r: r, conn: c}
	t.Cleanup(func() {
		c.Close()
		_ = r.Close(context.Background())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("client did not connect: %v (last error %v)", err, c.LastError())
	}
	return gc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		<-tick.C
	}
}

func getJSON(ctx context.Context, h *repo.DocHandle) string {
	b, err := h.JSON(ctx, "")
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

func TestServeGoClientsSync(t *testing.T) {
	ctx := testCtx(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0")
	a := newGoClient(t, sp.url())
	b := newGoClient(t, sp.url())
	ha, err := a.r.CreateJSON(ctx, []byte(`{"widgets":{"cpu":{"value":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var hb *repo.DocHandle
	eventually(t, "b finds the document", func() bool {
		hb, err = b.r.Find(ctx, ha.ID())
		return err == nil
	})
	for i := range 10 {
		if _, err := ha.Set(ctx, "/widgets/a", i); err != nil {
			t.Fatal(err)
		}
		if _, err := hb.Set(ctx, "/widgets/b", i); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "convergence", func() bool {
		return getJSON(ctx, ha) == getJSON(ctx, hb) && strings.Contains(getJSON(ctx, ha), `"a":9`) && strings.Contains(getJSON(ctx, ha), `"b":9`)
	})

	// Health endpoint and root page.
	resp, err := http.Get("http://" + sp.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	if err := sp.stop(); err != nil {
		t.Fatalf("SIGTERM exit: %v\n%s", err, sp.stderr.String())
	}
}

func TestServeKill9KeepsSeenChanges(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	sp := startServe(t, dir, "127.0.0.1:0")
	a := newGoClient(t, sp.url())
	b := newGoClient(t, sp.url())
	ha, err := a.r.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	var hb *repo.DocHandle
	eventually(t, "b finds", func() bool { hb, err = b.r.Find(ctx, ha.ID()); return err == nil })
	for i := 1; i <= 20; i++ {
		if _, err := ha.Set(ctx, "/n", i); err != nil {
			t.Fatal(err)
		}
	}
	// Once b has seen n=20 through the server, the server must have it on disk.
	eventually(t, "b sees n=20", func() bool { v, _ := hb.Get(ctx, "/n"); return fmt.Sprint(v) == "20" })
	sp.kill()

	sp2 := startServe(t, dir, "127.0.0.1:0")
	c := newGoClient(t, sp2.url())
	hc, err := c.r.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := hc.Get(ctx, "/n"); fmt.Sprint(v) != "20" {
		t.Fatalf("after kill -9 and restart n = %v", v)
	}
}

func TestServeRestartClientsReconnect(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	sp := startServe(t, dir, "127.0.0.1:0")
	addr := sp.addr
	a := newGoClient(t, sp.url())
	b := newGoClient(t, sp.url())
	ha, err := a.r.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	var hb *repo.DocHandle
	eventually(t, "b finds", func() bool { hb, err = b.r.Find(ctx, ha.ID()); return err == nil })
	if err := sp.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	eventually(t, "clients notice", func() bool { return !a.conn.Connected() && !b.conn.Connected() })
	// Offline edit on a, then the server comes back on the same address.
	if _, err := ha.Set(ctx, "/offline", true); err != nil {
		t.Fatal(err)
	}
	startServe(t, dir, addr)
	eventually(t, "reconnect", func() bool { return a.conn.Connected() && b.conn.Connected() })
	if _, err := hb.Set(ctx, "/after", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "resync both ways", func() bool {
		ja, jb := getJSON(ctx, ha), getJSON(ctx, hb)
		return ja == jb && strings.Contains(ja, `"offline":true`) && strings.Contains(ja, `"after":1`)
	})
}

func TestServeUnavailableIsQuick(t *testing.T) {
	ctx := testCtx(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0")
	a := newGoClient(t, sp.url())
	start := time.Now()
	_, err := a.r.Find(ctx, crdt.NewDocumentID())
	if err == nil {
		t.Fatal("found a document nobody has")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("unavailable took %v", d)
	}
}

func TestServeBadFlags(t *testing.T) {
	_, stderr, code := cli(t, "", "serve", "--addr", "127.0.0.1:0", "--max-message-size", "0")
	if code != 2 || !strings.Contains(stderr, "positive") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
