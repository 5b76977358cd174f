package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

const (
	ctJSON   = "application/json"
	ctPatch  = "application/json-patch+json"
	ctBinary = "application/octet-stream"
)

func TestAPICreateReadPatchHistoryDelete(t *testing.T) {
	ts := startServer(t, false, nil)

	// create
	r := ts.do("POST", "/api/docs", "", ctJSON, []byte(`{"widgets":{"cpu":{"value":0}},"tags":[]}`))
	if r.code != http.StatusCreated {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	created := r.json(t)
	url, _ := created["url"].(string)
	id, _, err := crdt.ParseURL(url)
	if err != nil {
		t.Fatalf("create answered %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/api/docs/"+string(id) {
		t.Fatalf("Location %q", loc)
	}
	path := "/api/docs/" + string(id)

	// list
	r = ts.do("GET", "/api/docs", "", "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), url) {
		t.Fatalf("list: %d %s", r.code, r.body)
	}

	// read (by id and by URL), a sub-value, conditional GET
	r = ts.do("GET", path, "", "", nil)
	if r.code != 200 || string(bytes.TrimSpace(r.body)) != `{"tags":[],"widgets":{"cpu":{"value":0}}}` || r.header.Get("Content-Type") != ctJSON {
		t.Fatalf("get: %d %s", r.code, r.body)
	}
	tag := r.header.Get("ETag")
	if r2 := ts.do("GET", "/api/docs/"+url, "", "", nil); r2.code != 200 || !bytes.Equal(r2.body, r.body) {
		t.Fatalf("get by URL: %d %s", r2.code, r2.body)
	}
	if r2 := ts.do("GET", path+"?path=/widgets/cpu", "", "", nil); r2.code != 200 || string(bytes.TrimSpace(r2.body)) != `{"value":0}` {
		t.Fatalf("get path: %d %s", r2.code, r2.body)
	}
	if r2 := ts.do("GET", path, "", "", nil, "If-None-Match", tag); r2.code != http.StatusNotModified {
		t.Fatalf("conditional get: %d", r2.code)
	}
	wantProblem(t, "missing path", ts.do("GET", path+"?path=/nope", "", "", nil), 404, "path-not-found")
	wantProblem(t, "bad pointer", ts.do("GET", path+"?path=nope", "", "", nil), 400, "invalid-pointer")
	wantProblem(t, "heads", ts.do("GET", path+"?heads=abc", "", "", nil), 400, "invalid-heads")

	// patch
	r = ts.do("PATCH", path+"?message=from+a+script", "", ctPatch, []byte(`[
		{"op":"test","path":"/widgets/cpu/value","value":0},
		{"op":"replace","path":"/widgets/cpu/value","value":42},
		{"op":"add","path":"/tags/-","value":"prod"}]`))
	if r.code != 200 {
		t.Fatalf("patch: %d %s", r.code, r.body)
	}
	if m := r.json(t); m["changed"] != true || m["hash"] == nil {
		t.Fatalf("patch answered %s", r.body)
	}
	if got := ts.docJSON(id); got != `{"tags":["prod"],"widgets":{"cpu":{"value":42}}}` {
		t.Fatalf("after patch: %s", got)
	}
	// a failed test: 409 and nothing changed
	before := ts.docJSON(id)
	wantProblem(t, "failed test", ts.do("PATCH", path, "", ctPatch, []byte(`[
		{"op":"replace","path":"/widgets/cpu/value","value":7},
		{"op":"test","path":"/widgets/cpu/value","value":0}]`)), 409, "test-failed")
	// invalid patches: 422 and nothing changed
	wantProblem(t, "unknown op", ts.do("PATCH", path, "", ctPatch, []byte(`[{"op":"frob","path":"/x"}]`)), 422, "invalid-patch")
	wantProblem(t, "not an array", ts.do("PATCH", path, "", ctPatch, []byte(`{"op":"add"}`)), 422, "invalid-patch")
	wantProblem(t, "missing parent", ts.do("PATCH", path, "", ctPatch, []byte(`[{"op":"add","path":"/a/b/c","value":1}]`)), 422, "invalid-patch")
	wantProblem(t, "malformed json", ts.do("PATCH", path, "", ctPatch, []byte(`[{"op":`)), 400, "malformed-json")
	r = ts.do("PATCH", path, "", ctJSON, []byte(`[]`))
	wantProblem(t, "wrong content type", r, 415, "unsupported-media-type")
	if r.header.Get("Accept-Patch") != ctPatch {
		t.Fatalf("Accept-Patch %q", r.header.Get("Accept-Patch"))
	}
	wantProblem(t, "stale If-Match", ts.do("PATCH", path, "", ctPatch, []byte(`[{"op":"replace","path":"/widgets/cpu/value","value":1}]`), "If-Match", tag), 412, "heads-changed")
	if got := ts.docJSON(id); got != before {
		t.Fatalf("a refused patch changed the document: %s → %s", before, got)
	}
	// an empty patch changes nothing and says so
	if r := ts.do("PATCH", path, "", ctPatch, []byte(`[]`)); r.code != 200 || r.json(t)["changed"] != false {
		t.Fatalf("empty patch: %d %s", r.code, r.body)
	}

	// history
	r = ts.do("GET", path+"/history", "", "", nil)
	var hist struct {
		Changes []struct {
			Hash, Actor, Message string
			Seq                  int
			Deps                 []string
		}
	}
	if err := json.Unmarshal(r.body, &hist); r.code != 200 || err != nil || len(hist.Changes) != 2 || hist.Changes[1].Message != "from a script" || len(hist.Changes[1].Deps) != 1 {
		t.Fatalf("history: %d %s", r.code, r.body)
	}

	// delete
	if r := ts.do("DELETE", path, "", "", nil); r.code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	wantProblem(t, "deleted", ts.do("GET", path, "", "", nil), 404, "not-found")
	wantProblem(t, "delete again", ts.do("DELETE", path, "", "", nil), 404, "not-found")
	wantProblem(t, "patch deleted", ts.do("PATCH", path, "", ctPatch, []byte(`[]`)), 404, "not-found")
	wantProblem(t, "history deleted", ts.do("GET", path+"/history", "", "", nil), 404, "not-found")
}

func TestAPIBinaryRoundTrip(t *testing.T) {
	ts := startServer(t, false, nil)
	h := ts.create(`{"widgets":{"cpu":{"value":1}}}`)
	path := "/api/docs/" + string(h.ID())

	r := ts.do("GET", path+"/binary", "", "", nil)
	if r.code != 200 || r.header.Get("Content-Type") != ctBinary {
		t.Fatalf("download: %d %s", r.code, r.header)
	}
	bin := r.body
	// upload as a new document: same content, same history
	r = ts.do("POST", "/api/docs", "", ctBinary, bin)
	if r.code != 201 {
		t.Fatalf("import: %d %s", r.code, r.body)
	}
	copyID, _, err := crdt.ParseURL(r.json(t)["url"].(string))
	if err != nil || copyID == h.ID() {
		t.Fatalf("import answered %s", r.body)
	}
	if a, b := ts.docJSON(h.ID()), ts.docJSON(copyID); a != b {
		t.Fatalf("imported %s, original %s", b, a)
	}

	// PUT merges an edited copy into the document (and its subscribers see it)
	sub, err := h.Subscribe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	local, err := crdt.Load(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Set("/widgets/mem", map[string]any{"value": 2}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := local.Commit("offline edit"); err != nil {
		t.Fatal(err)
	}
	r = ts.do("PUT", path+"/binary", "", ctBinary, local.Save())
	if r.code != 200 {
		t.Fatalf("upload: %d %s", r.code, r.body)
	}
	if got := ts.docJSON(h.ID()); got != `{"widgets":{"cpu":{"value":1},"mem":{"value":2}}}` {
		t.Fatalf("after upload: %s", got)
	}
	select {
	case e := <-sub.Events():
		if !e.Remote {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the uploaded change")
	}
	// uploading the same again changes nothing
	if r := ts.do("PUT", path+"/binary", "", ctBinary, local.Save()); r.code != 200 {
		t.Fatalf("second upload: %d %s", r.code, r.body)
	}
	// PUT to an id that does not exist creates it under that id
	newID := crdt.NewDocumentID()
	r = ts.do("PUT", "/api/docs/"+string(newID)+"/binary", "", ctBinary, bin)
	if r.code != 201 {
		t.Fatalf("upload new: %d %s", r.code, r.body)
	}
	if got := ts.docJSON(newID); got != `{"widgets":{"cpu":{"value":1}}}` {
		t.Fatalf("uploaded new: %s", got)
	}

	wantProblem(t, "corrupt upload", ts.do("PUT", path+"/binary", "", ctBinary, []byte("not automerge")), 422, "invalid-document")
	wantProblem(t, "empty upload", ts.do("PUT", path+"/binary", "", ctBinary, []byte{}), 422, "invalid-document")
	wantProblem(t, "corrupt import", ts.do("POST", "/api/docs", "", ctBinary, []byte("xx")), 422, "invalid-document")
	wantProblem(t, "json upload", ts.do("PUT", path+"/binary", "", ctJSON, []byte(`{}`)), 415, "unsupported-media-type")
	wantProblem(t, "binary of missing", ts.do("GET", "/api/docs/"+string(crdt.NewDocumentID())+"/binary", "", "", nil), 404, "not-found")
}

func TestAPIBadRequests(t *testing.T) {
	ts := startServer(t, false, func(c *server.Config) { c.MaxBodyBytes = 1 << 10; c.MaxBinaryBytes = 2 << 10 })
	h := ts.create(`{"a":1}`)
	path := "/api/docs/" + string(h.ID())
	big := []byte(`{"x":"` + strings.Repeat("y", 2000) + `"}`)

	wantProblem(t, "malformed create", ts.do("POST", "/api/docs", "", ctJSON, []byte(`{"a":`)), 400, "malformed-json")
	wantProblem(t, "array create", ts.do("POST", "/api/docs", "", ctJSON, []byte(`[1]`)), 422, "invalid-document")
	wantProblem(t, "no content type", ts.do("POST", "/api/docs", "", "", []byte(`{}`)), 415, "unsupported-media-type")
	wantProblem(t, "text create", ts.do("POST", "/api/docs", "", "text/plain", []byte(`{}`)), 415, "unsupported-media-type")
	wantProblem(t, "oversized create", ts.do("POST", "/api/docs", "", ctJSON, big), 413, "too-large")
	wantProblem(t, "oversized patch", ts.do("PATCH", path, "", ctPatch, []byte(`[{"op":"add","path":"/x","value":"`+strings.Repeat("y", 2000)+`"}]`)), 413, "too-large")
	wantProblem(t, "oversized upload", ts.do("PUT", path+"/binary", "", ctBinary, bytes.Repeat([]byte{1}, 3000)), 413, "too-large")
	wantProblem(t, "bad id", ts.do("GET", "/api/docs/not-an-id", "", "", nil), 400, "invalid-document-id")
	wantProblem(t, "missing doc", ts.do("GET", "/api/docs/"+string(crdt.NewDocumentID()), "", "", nil), 404, "not-found")
	wantProblem(t, "unknown endpoint", ts.do("GET", "/api/nope", "", "", nil), 404, "not-found")
	wantProblem(t, "method", ts.do("PUT", path, "", ctJSON, []byte(`{}`)), 405, "method-not-allowed")
	wantProblem(t, "method on list", ts.do("DELETE", "/api/docs", "", "", nil), 405, "method-not-allowed")
	wantProblem(t, "method on history", ts.do("POST", path+"/history", "", ctJSON, []byte(`{}`)), 405, "method-not-allowed")
	wantProblem(t, "revocations without auth", ts.do("GET", "/api/revocations", "", "", nil), 404, "auth-disabled")
	if got := ts.docJSON(h.ID()); got != `{"a":1}` {
		t.Fatalf("document changed: %s", got)
	}
	// a JSON charset parameter is fine
	if r := ts.do("POST", "/api/docs", "", "application/json; charset=utf-8", []byte(`{}`)); r.code != 201 {
		t.Fatalf("create with charset: %d %s", r.code, r.body)
	}
}

func TestReadyz(t *testing.T) {
	r, err := repo.New(repo.Config{Store: memory.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	srv, err := server.New(server.Config{Repo: r})
	if err != nil {
		t.Fatal(err)
	}
	// Not serving yet: not ready.
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before Serve: %d", rec.Code)
	}
	ts := startServer(t, false, nil)
	if r := ts.do("GET", "/readyz", "", "", nil); r.code != 200 || !strings.Contains(string(r.body), "ready") {
		t.Fatalf("readyz: %d %s", r.code, r.body)
	}
	if _, err := server.New(server.Config{Repo: r, MaxBodyBytes: -1}); err == nil {
		t.Fatal("negative MaxBodyBytes accepted")
	}
}

// A change made over REST reaches a connected WebSocket client at once.
func TestAPIPatchReachesWebSocketClient(t *testing.T) {
	ts := startServer(t, false, nil)
	h := ts.create(`{"widgets":{"cpu":{"value":0}}}`)
	ctx := ctxT(t)

	client, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	conn := client.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, "ws://"+ts.addr+"/sync", ws.Config{})
	}, repo.ReconnectConfig{})
	defer conn.Close()
	if err := conn.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := client.Find(ctx, h.ID())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := ch.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	start := time.Now()
	r := ts.do("PATCH", "/api/docs/"+string(h.ID()), "", ctPatch, []byte(`[{"op":"replace","path":"/widgets/cpu/value","value":99}]`))
	if r.code != 200 {
		t.Fatalf("patch: %d %s", r.code, r.body)
	}
	deadline := time.After(time.Second)
	for {
		select {
		case <-sub.Events():
			v, err := ch.Get(ctx, "/widgets/cpu/value")
			if err == nil && fmt.Sprint(v) == "99" {
				t.Logf("REST patch reached the client in %v", time.Since(start))
				return
			}
		case <-deadline:
			v, _ := ch.Get(ctx, "/widgets/cpu/value")
			t.Fatalf("client did not see the REST patch within a second (value %v)", v)
		}
	}
}

func TestAPIHistoricalView(t *testing.T) {
	ts := startServer(t, false, nil)
	ctx := ctxT(t)
	h := ts.create(`{"n":1}`)
	first, err := h.Heads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Set(ctx, "/n", 2); err != nil {
		t.Fatal(err)
	}
	path := "/api/docs/" + string(h.ID())
	if r := ts.do("GET", path+"?heads="+first[0].String(), "", "", nil); r.code != 200 || !strings.Contains(string(r.body), `"n":1`) {
		t.Fatalf("hex heads: %d %s", r.code, r.body)
	}
	if r := ts.do("GET", path+"?heads="+first[0].Base58(), "", "", nil); r.code != 200 || !strings.Contains(string(r.body), `"n":1`) {
		t.Fatalf("base58 heads: %d %s", r.code, r.body)
	}
	if r := ts.do("GET", path, "", "", nil); !strings.Contains(string(r.body), `"n":2`) {
		t.Fatalf("current: %s", r.body)
	}
	wantProblem(t, "bad heads", ts.do("GET", path+"?heads=zz", "", "", nil), 400, "invalid-heads")
	var unknown crdt.Hash
	wantProblem(t, "unknown heads", ts.do("GET", path+"?heads="+unknown.String(), "", "", nil), 404, "unknown-heads")
}
