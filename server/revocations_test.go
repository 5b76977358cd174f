package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/persistence"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
)

// startOnStore runs a server with auth (a fresh Authority: nothing in
// memory from an earlier run) over a Badger store in dir; stop closes
// server, repo and store, as a process exit would.
func startOnStore(t *testing.T, dir string) (ts *testServer, stop func()) {
	t.Helper()
	store, err := badgerstore.Open(badgerstore.DefaultConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.New(repo.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Repo: r, Auth: a, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts = &testServer{t: t, addr: ln.Addr().String(), base: "http://" + ln.Addr().String(), repo: r, srv: srv, auth: a}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := r.Close(context.Background()); err != nil {
			t.Errorf("repo close: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	}
	t.Cleanup(stop)
	return ts, stop
}

func TestRevocationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ts, stop := startOnStore(t, dir)
	admin, _ := ts.token("root", time.Hour, map[string]auth.Perm{"*": auth.Admin})
	user, uc := ts.token("user", time.Hour, map[string]auth.Perm{"*": auth.Read})
	other, _ := ts.token("other", time.Hour, map[string]auth.Perm{"*": auth.Read})
	if r := ts.do("GET", "/api/docs", user, "", nil); r.code != 200 {
		t.Fatalf("before revocation: %d %s", r.code, r.body)
	}
	until := uc.Expires.UTC().Format(time.RFC3339)
	if r := ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{"jti":"`+uc.ID+`","until":"`+until+`"}`)); r.code != 200 {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	// A revocation whose token has expired by now is not worth keeping.
	if r := ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{"jti":"long-gone","until":"2001-01-01T00:00:00Z"}`)); r.code != 200 {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	wantProblem(t, "revoked before the restart", ts.do("GET", "/api/docs", user, "", nil), 401, "unauthorized")
	stop()

	ts, _ = startOnStore(t, dir)
	r := ts.do("GET", "/api/docs", user, "", nil)
	wantProblem(t, "revoked after the restart", r, 401, "unauthorized")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), "revoked") {
		t.Fatalf("challenge %q, want a revoked token", r.header.Get("WWW-Authenticate"))
	}
	if _, err := ts.dial("?token=" + user); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("WebSocket with the revoked token after the restart: %v, want 401", err)
	}
	if r := ts.do("GET", "/api/docs", other, "", nil); r.code != 200 {
		t.Fatalf("a token that was not revoked, after the restart: %d %s", r.code, r.body)
	}
	r = ts.do("GET", "/api/revocations", admin, "", nil)
	var list struct {
		Revoked []auth.Revocation `json:"revoked"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &list) != nil {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
	if len(list.Revoked) != 1 || list.Revoked[0].ID != uc.ID || !list.Revoked[0].Until.Equal(uc.Expires) {
		t.Fatalf("revocations after the restart: %+v, want only %s until %v", list.Revoked, uc.ID, uc.Expires)
	}
}

// A stored revocation list that cannot be read stops the server from
// starting: running on would let revoked tokens back in.
func TestCorruptRevocationsRefuseToStart(t *testing.T) {
	store := memory.New()
	if err := store.PutValue(context.Background(), "server/revoked-tokens", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	r, err := repo.New(repo.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	a, err := auth.New(auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.New(server.Config{Repo: r, Auth: a, Store: store}); !errors.Is(err, server.ErrCorruptRevocations) {
		t.Fatalf("New over a corrupt revocation list: %v", err)
	}
	// Without auth there is nothing to revoke, and nothing to read.
	if _, err := server.New(server.Config{Repo: r, Store: store}); err != nil {
		t.Fatalf("New without auth: %v", err)
	}
}

// A revocation that cannot be saved still holds in memory; the API says
// it was not saved.
func TestRevocationNotSaved(t *testing.T) {
	store := &failingStore{Store: memory.New()}
	ts := startServer(t, true, func(c *server.Config) { c.Store = store })
	admin, _ := ts.token("root", time.Hour, map[string]auth.Perm{"*": auth.Admin})
	user, uc := ts.token("user", time.Hour, map[string]auth.Perm{"*": auth.Read})
	store.fail.Store(true)
	r := ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{"jti":"`+uc.ID+`"}`))
	wantProblem(t, "unsaved revocation", r, http.StatusInternalServerError, "not-saved")
	wantProblem(t, "revoked anyway", ts.do("GET", "/api/docs", user, "", nil), 401, "unauthorized")
}

type failingStore struct {
	persistence.Store
	fail atomic.Bool
}

func (s *failingStore) PutValue(ctx context.Context, key string, v []byte) error {
	if s.fail.Load() {
		return errors.New("disk on fire")
	}
	return s.Store.PutValue(ctx, key, v)
}
