package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/server"
	"github.com/tandemsync/tandem/transport"
)

func TestAuthREST(t *testing.T) {
	ts := startServer(t, true, nil)
	doc := ts.create(`{"v":0}`)
	other := ts.create(`{"secret":true}`)
	path := "/api/docs/" + string(doc.ID())
	patch := []byte(`[{"op":"replace","path":"/v","value":1}]`)

	reader, _ := ts.token("reader", time.Hour, map[string]auth.Perm{doc.URL(): auth.Read})
	writer, _ := ts.token("writer", time.Hour, map[string]auth.Perm{string(doc.ID()): auth.Write})
	docAdmin, _ := ts.token("doc-admin", time.Hour, map[string]auth.Perm{string(doc.ID()): auth.Admin})
	all, _ := ts.token("all", time.Hour, map[string]auth.Perm{"*": auth.Write})
	past, err := auth.New(auth.Config{Secret: testSecret, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := past.Issue(auth.Grant{Subject: "old", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Admin}})
	if err != nil {
		t.Fatal(err)
	}
	foreignAuth, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("z", 40))})
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := foreignAuth.Issue(auth.Grant{Subject: "mallory", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Admin}})
	if err != nil {
		t.Fatal(err)
	}

	// no token, bad signature, expired: 401 with a Bearer challenge
	for name, tok := range map[string]string{"none": "", "bad signature": forged, "expired": expired, "garbage": "abc"} {
		r := ts.do("GET", path, tok, "", nil)
		wantProblem(t, name, r, 401, "unauthorized")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
		wantProblem(t, name+" list", ts.do("GET", "/api/docs", tok, "", nil), 401, "unauthorized")
	}
	if ts.srv.AuthFailures() == 0 {
		t.Fatal("auth failures not counted")
	}
	// a token in the query string is not accepted over REST
	wantProblem(t, "query token", ts.do("GET", path+"?token="+reader, "", "", nil), 401, "unauthorized")

	// a document the token does not cover does not exist for its bearer
	wantProblem(t, "other doc", ts.do("GET", "/api/docs/"+string(other.ID()), reader, "", nil), 404, "not-found")
	wantProblem(t, "other doc patch", ts.do("PATCH", "/api/docs/"+string(other.ID()), writer, ctPatch, patch), 404, "not-found")
	wantProblem(t, "other doc binary", ts.do("GET", "/api/docs/"+string(other.ID())+"/binary", writer, "", nil), 404, "not-found")
	// the list shows only what the token may read
	r := ts.do("GET", "/api/docs", reader, "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), string(doc.ID())) || strings.Contains(string(r.body), string(other.ID())) {
		t.Fatalf("reader's list: %d %s", r.code, r.body)
	}
	if r := ts.do("GET", "/api/docs", all, "", nil); r.code != 200 || !strings.Contains(string(r.body), string(other.ID())) {
		t.Fatalf("list with *: %d %s", r.code, r.body)
	}

	// read vs write vs admin
	if r := ts.do("GET", path, reader, "", nil); r.code != 200 {
		t.Fatalf("reader GET: %d %s", r.code, r.body)
	}
	if r := ts.do("GET", path+"/history", reader, "", nil); r.code != 200 {
		t.Fatalf("reader history: %d %s", r.code, r.body)
	}
	wantProblem(t, "reader PATCH", ts.do("PATCH", path, reader, ctPatch, patch), 403, "forbidden")
	wantProblem(t, "reader PUT binary", ts.do("PUT", path+"/binary", reader, ctBinary, []byte{1}), 403, "forbidden")
	if got := ts.docJSON(doc.ID()); got != `{"v":0}` {
		t.Fatalf("reader changed the document: %s", got)
	}
	if r := ts.do("PATCH", path, writer, ctPatch, patch); r.code != 200 {
		t.Fatalf("writer PATCH: %d %s", r.code, r.body)
	}
	wantProblem(t, "writer DELETE", ts.do("DELETE", path, writer, "", nil), 403, "forbidden")
	// creating needs write on "*"
	wantProblem(t, "create with a document token", ts.do("POST", "/api/docs", writer, ctJSON, []byte(`{}`)), 403, "forbidden")
	if r := ts.do("POST", "/api/docs", all, ctJSON, []byte(`{}`)); r.code != 201 {
		t.Fatalf("create with *: %d %s", r.code, r.body)
	}
	// revocation needs admin on "*"
	wantProblem(t, "doc admin revokes", ts.do("POST", "/api/revocations", docAdmin, ctJSON, []byte(`{"jti":"x"}`)), 403, "forbidden")
	if r := ts.do("DELETE", path, docAdmin, "", nil); r.code != 204 {
		t.Fatalf("admin DELETE: %d %s", r.code, r.body)
	}
}

func TestAuthRevokeREST(t *testing.T) {
	ts := startServer(t, true, nil)
	doc := ts.create(`{"v":0}`)
	admin, _ := ts.token("root", time.Hour, map[string]auth.Perm{"*": auth.Admin})
	user, uc := ts.token("user", time.Hour, map[string]auth.Perm{"*": auth.Read})
	path := "/api/docs/" + string(doc.ID())
	if r := ts.do("GET", path, user, "", nil); r.code != 200 {
		t.Fatalf("before revocation: %d", r.code)
	}
	wantProblem(t, "malformed revoke", ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{`)), 400, "malformed-json")
	wantProblem(t, "revoke without jti", ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{}`)), 422, "invalid-request")
	wantProblem(t, "revoke as text", ts.do("POST", "/api/revocations", admin, "text/plain", []byte(`{}`)), 415, "unsupported-media-type")
	if r := ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{"jti":"`+uc.ID+`"}`)); r.code != 200 {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	r := ts.do("GET", path, user, "", nil)
	wantProblem(t, "revoked", r, 401, "unauthorized")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), "revoked") {
		t.Fatalf("challenge %q", r.header.Get("WWW-Authenticate"))
	}
	if r := ts.do("GET", "/api/revocations", admin, "", nil); r.code != 200 || !strings.Contains(string(r.body), uc.ID) {
		t.Fatalf("list revocations: %d %s", r.code, r.body)
	}
	wantProblem(t, "user lists revocations", ts.do("GET", "/api/revocations", user, "", nil), 401, "unauthorized")
}

func TestAuthWebSocketRefusals(t *testing.T) {
	ts := startServer(t, true, nil)
	doc := ts.create(`{"v":0}`)
	past, err := auth.New(auth.Config{Secret: testSecret, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := past.Issue(auth.Grant{Subject: "old", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Write}})
	if err != nil {
		t.Fatal(err)
	}
	foreignAuth, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("z", 40))})
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := foreignAuth.Issue(auth.Grant{Subject: "mallory", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Write}})
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]string{"none": "", "empty": "?token=", "bad signature": "?token=" + forged, "expired": "?token=" + expired} {
		if c, err := ts.dial(q); err == nil {
			_ = c.Close(nil)
			t.Fatalf("%s: connection accepted", name)
		}
	}
	// The upgrade is refused with a 401 before any WebSocket exists.
	req, _ := http.NewRequest("GET", ts.base+"/sync", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("upgrade without token: %d", resp.StatusCode)
	}

	// A token for another document: this one is doc-unavailable, exactly as
	// if it did not exist.
	tok, _ := ts.token("elsewhere", time.Hour, map[string]auth.Perm{string(crdt.NewDocumentID()): auth.Write})
	rc := ts.rawClient(tok)
	if m := rc.request(doc.ID()); m.Type != transport.TypeDocUnavailable {
		t.Fatalf("uncovered document answered with %+v", m)
	}
	missing := rc.request(crdt.NewDocumentID())
	if missing.Type != transport.TypeDocUnavailable {
		t.Fatalf("missing document answered with %+v", missing)
	}
	// The Authorization header works on the upgrade too.
	good, _ := ts.token("hdr", time.Hour, map[string]auth.Perm{"*": auth.Read})
	req, _ = http.NewRequest("GET", ts.base+"/sync", nil)
	req.Header.Set("Authorization", "Bearer "+good)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("authorised non-upgrade: %d", resp.StatusCode)
	}
}

// A read peer's changes are rejected with an error naming the document, the
// connection stays open; a write peer's changes are applied.
func TestAuthWebSocketReadVersusWrite(t *testing.T) {
	ts := startServer(t, true, nil)
	doc := ts.create(`{"v":0}`)
	bin, err := doc.Export(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	edited := func(v int) *crdt.Doc {
		d, err := crdt.Load(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Set("/v", v); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Commit(""); err != nil {
			t.Fatal(err)
		}
		return d
	}

	readTok, _ := ts.token("reader", time.Hour, map[string]auth.Perm{string(doc.ID()): auth.Read})
	rc := ts.rawClient(readTok)
	var errMsg transport.Message
	rc.syncDoc(doc.ID(), edited(1), func(m transport.Message) bool {
		if m.Type == transport.TypeError {
			errMsg = m
			return true
		}
		return false
	})
	if !strings.Contains(errMsg.Message, doc.URL()) {
		t.Fatalf("error message %q does not name the document", errMsg.Message)
	}
	if got := ts.docJSON(doc.ID()); got != `{"v":0}` {
		t.Fatalf("a reader's change was applied: %s", got)
	}
	// still connected and served
	if m := rc.request(doc.ID()); m.Type != transport.TypeSync {
		t.Fatalf("after the rejection the reader got %+v", m)
	}

	writeTok, _ := ts.token("writer", time.Hour, map[string]auth.Perm{string(doc.ID()): auth.Write})
	wc := ts.rawClient(writeTok)
	d := edited(2)
	want := d.Heads()
	wc.syncDoc(doc.ID(), d, func(m transport.Message) bool {
		if m.Type == transport.TypeError {
			t.Fatalf("writer got error %q", m.Message)
		}
		heads, _, err := crdt.InspectSyncMessage(m.Data)
		return err == nil && len(heads) == 1 && heads[0] == want[0]
	})
	if got := ts.docJSON(doc.ID()); got != `{"v":2}` {
		t.Fatalf("a writer's change was not applied: %s", got)
	}
}

// A revoked token's connections close within a second; an expired token's
// connection closes at expiry.
func TestAuthWebSocketRevokeAndExpiry(t *testing.T) {
	ts := startServer(t, true, nil)
	admin, _ := ts.token("root", time.Hour, map[string]auth.Perm{"*": auth.Admin})
	tok, c := ts.token("victim", time.Hour, map[string]auth.Perm{"*": auth.Write})
	keep, _ := ts.token("bystander", time.Hour, map[string]auth.Perm{"*": auth.Write})
	a, b := ts.rawClient(tok), ts.rawClient(tok)
	other := ts.rawClient(keep)
	waitUntil(t, 5*time.Second, "three connections", func() bool { return ts.srv.Connections() == 3 })

	start := time.Now()
	r := ts.do("POST", "/api/revocations", admin, ctJSON, []byte(`{"jti":"`+c.ID+`"}`))
	if r.code != 200 || r.json(t)["connections_closed"] != float64(2) {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	for _, rc := range []*rawClient{a, b} {
		select {
		case <-rc.conn.Done():
		case <-time.After(time.Second - time.Since(start)):
			t.Fatal("a revoked connection is still open after a second")
		}
	}
	t.Logf("revoked connections closed after %v", time.Since(start))
	select {
	case <-other.conn.Done():
		t.Fatal("revocation closed another token's connection")
	default:
	}
	if m := other.request(crdt.NewDocumentID()); m.Type != transport.TypeDocUnavailable {
		t.Fatalf("bystander got %+v", m)
	}
	// A revoked token cannot reconnect.
	if conn, err := ts.dial("?token=" + tok); err == nil {
		_ = conn.Close(nil)
		t.Fatal("revoked token reconnected")
	}

	// Expiry: a token valid for about two seconds.
	short, sc := ts.token("short", 2*time.Second, map[string]auth.Perm{"*": auth.Read})
	ec := ts.rawClient(short)
	select {
	case <-ec.conn.Done():
		if late := time.Since(sc.Expires); late > time.Second {
			t.Fatalf("closed %v after expiry", late)
		}
	case <-time.After(time.Until(sc.Expires) + 2*time.Second):
		t.Fatal("connection still open after its token expired")
	}
}

func TestAllowOrigins(t *testing.T) {
	check := server.AllowOrigins([]string{"https://dash.example.com", " http://localhost:3000/ "})
	for origin, want := range map[string]bool{
		"":                         true, // not a browser
		"https://dash.example.com": true,
		"HTTPS://DASH.EXAMPLE.COM": true,
		"http://localhost:3000":    true,
		"https://evil.example.com": false,
		"http://dash.example.com":  false,
		"http://127.0.0.1:7070":    true, // the server's own origin
	} {
		r := httptest.NewRequest("GET", "http://127.0.0.1:7070/sync", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if got := check(r); got != want {
			t.Errorf("origin %q: %v, want %v", origin, got, want)
		}
	}
	for _, list := range [][]string{nil, {"*"}, {" "}} {
		r := httptest.NewRequest("GET", "/sync", nil)
		r.Header.Set("Origin", "https://anything.example")
		if !server.AllowOrigins(list)(r) {
			t.Errorf("%q refused an origin", list)
		}
	}
}
