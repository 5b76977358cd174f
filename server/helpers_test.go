package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

var testSecret = []byte("test-secret-0123456789abcdef-0123456789")

// testServer is a real server on 127.0.0.1:0 over a memory store.
type testServer struct {
	t    *testing.T
	addr string
	base string // http://addr
	repo *repo.Repo
	srv  *server.Server
	auth *auth.Authority // nil: open
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startServer(t *testing.T, withAuth bool, tune func(*server.Config)) *testServer {
	t.Helper()
	obs := server.NewObserver()
	r, err := repo.New(repo.Config{Store: memory.New(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, repo: r}
	cfg := server.Config{Repo: r, Observer: obs}
	if withAuth {
		a, err := auth.New(auth.Config{Secret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		ts.auth, cfg.Auth = a, a
	}
	if tune != nil {
		tune(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	ts.base = "http://" + ts.addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := r.Close(context.Background()); err != nil {
			t.Errorf("repo close: %v", err)
		}
	})
	return ts
}

// token issues a token for docs (keys: "*" or document ids/URLs).
func (ts *testServer) token(sub string, ttl time.Duration, docs map[string]auth.Perm) (string, *auth.Claims) {
	ts.t.Helper()
	tok, c, err := ts.auth.Issue(auth.Grant{Subject: sub, TTL: ttl, Docs: docs})
	if err != nil {
		ts.t.Fatal(err)
	}
	return tok, c
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %q", r.code, r.body)
	}
	return m
}

// do sends one request. body may be nil; contentType "" sends none.
func (ts *testServer) do(method, path, token, contentType string, body []byte, headers ...string) response {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(ts.t), method, ts.base+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// wantProblem checks an RFC 9457 answer with status and code.
func wantProblem(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	if r.code != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.code, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
	var p struct {
		Type   string
		Title  string
		Status int
		Code   string
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != status || p.Type == "" || p.Title == "" {
		t.Fatalf("%s: not a problem document: %s", what, r.body)
	}
	if code != "" && p.Code != code {
		t.Fatalf("%s: code %q, want %q (%s)", what, p.Code, code, r.body)
	}
}

// create makes a document over the repo directly.
func (ts *testServer) create(js string) *repo.DocHandle {
	ts.t.Helper()
	h, err := ts.repo.CreateJSON(ctxT(ts.t), []byte(js))
	if err != nil {
		ts.t.Fatal(err)
	}
	return h
}

func (ts *testServer) docJSON(id crdt.DocumentID) string {
	ts.t.Helper()
	h, err := ts.repo.Find(ctxT(ts.t), id)
	if err != nil {
		ts.t.Fatal(err)
	}
	b, err := h.JSON(ctxT(ts.t), "")
	if err != nil {
		ts.t.Fatal(err)
	}
	return string(b)
}

var rawClients int // tests that make raw clients do not run in parallel

// rawClient is a hand-driven automerge-repo peer on a WebSocket: it lets a
// test see exactly what the server answers.
type rawClient struct {
	t      *testing.T
	conn   transport.Conn
	id     string
	server string
}

func (ts *testServer) dial(query string) (transport.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ws.Dial(ctx, "ws://"+ts.addr+"/sync"+query, ws.Config{})
}

func (ts *testServer) rawClient(token string) *rawClient {
	ts.t.Helper()
	q := ""
	if token != "" {
		q = "?token=" + token
	}
	c, err := ts.dial(q)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	ts.t.Cleanup(func() { _ = c.Close(nil) })
	rawClients++
	rc := &rawClient{t: ts.t, conn: c, id: fmt.Sprintf("raw-%s-%d", strings.ReplaceAll(ts.t.Name(), "/", "-"), rawClients)}
	ctx := ctxT(ts.t)
	if err := c.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: rc.id, SupportedProtocolVersions: []string{"1"}}); err != nil {
		ts.t.Fatal(err)
	}
	m, err := c.ReadMessage(ctx)
	if err != nil || m.Type != transport.TypePeer {
		ts.t.Fatalf("join answered %+v, %v", m, err)
	}
	rc.server = m.SenderID
	return rc
}

// syncDoc runs the sync protocol for doc (our replica of id) until stop
// says so after a received message, and returns every message received.
func (rc *rawClient) syncDoc(id crdt.DocumentID, doc *crdt.Doc, stop func(transport.Message) bool) {
	rc.t.Helper()
	ctx := ctxT(rc.t)
	ss := crdt.NewSyncState(doc)
	for {
		for {
			data, ok := ss.Generate()
			if !ok {
				break
			}
			if err := rc.conn.WriteMessage(ctx, transport.Message{Type: transport.TypeSync, SenderID: rc.id, TargetID: rc.server, DocumentID: string(id), Data: data}); err != nil {
				rc.t.Fatalf("write: %v", err)
			}
		}
		m, err := rc.conn.ReadMessage(ctx)
		if err != nil {
			rc.t.Fatalf("read: %v", err)
		}
		if m.Type == transport.TypeSync && m.DocumentID == string(id) {
			if _, err := ss.Receive(m.Data); err != nil {
				rc.t.Fatal(err)
			}
		}
		if stop(m) {
			return
		}
	}
}

// request asks for a document and returns the first answer about it.
func (rc *rawClient) request(id crdt.DocumentID) transport.Message {
	rc.t.Helper()
	ctx := ctxT(rc.t)
	ss := crdt.NewSyncState(crdt.New())
	data, _ := ss.Generate()
	if err := rc.conn.WriteMessage(ctx, transport.Message{Type: transport.TypeRequest, SenderID: rc.id, TargetID: rc.server, DocumentID: string(id), Data: data}); err != nil {
		rc.t.Fatal(err)
	}
	for {
		m, err := rc.conn.ReadMessage(ctx)
		if err != nil {
			rc.t.Fatalf("read: %v", err)
		}
		if m.DocumentID == string(id) {
			return m
		}
	}
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// startAdmin serves ts's admin endpoints on a free loopback port until the
// test ends and returns their base URL.
func startAdmin(t *testing.T, ts *testServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.ServeAdmin(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeAdmin: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
