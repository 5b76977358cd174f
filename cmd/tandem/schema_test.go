package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A JSON Schema on the server rejects a bad widget value sent by a
// JavaScript client and by REST; valid changes pass; other clients never
// see the bad value.
func TestServeSchemaRejectsBadValues(t *testing.T) {
	js := nodeInterop(t)
	ctx := testCtx(t)
	schema := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(schema, []byte(`{
		"type": "object",
		"properties": {"w": {"type": "object", "additionalProperties": {"type": "number", "maximum": 100}}}
	}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sp := startServe(t, t.TempDir(), "127.0.0.1:0", "--schema", schema)
	g := newGoClient(t, sp.url())
	h, err := g.r.CreateJSON(ctx, []byte(`{"w":{"cpu":1,"mem":2}}`))
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

	// A JavaScript client writes an out-of-range value: rejected.
	done := jsSet(t, js, sp.url(), h.URL(), "cpu", 500)
	eventually(t, "the server rejects it", func() bool {
		return strings.Contains(sp.stderr.String(), "rejected changes from a peer")
	})
	done()
	// A valid JavaScript change passes.
	done = jsSet(t, js, sp.url(), h.URL(), "disk", 50)
	defer done()
	eventually(t, "a valid change arrives", func() bool { v, _ := ph.Get(ctx, "/w/disk"); return fmt.Sprint(v) == "50" })
	if v, _ := ph.Get(ctx, "/w/cpu"); fmt.Sprint(v) != "1" {
		t.Fatalf("another client sees the rejected value: %v", v)
	}

	// REST: a bad patch is 422 and changes nothing; a good one passes.
	patch := func(body string) int {
		req, _ := http.NewRequest("PATCH", "http://"+sp.addr+"/api/docs/"+string(h.ID()), bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json-patch+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := patch(`[{"op":"replace","path":"/w/mem","value":1000}]`); code != 422 {
		t.Fatalf("bad REST patch: %d", code)
	}
	if code := patch(`[{"op":"replace","path":"/w/mem","value":3}]`); code != 200 {
		t.Fatalf("good REST patch: %d", code)
	}
	eventually(t, "the good patch reaches clients", func() bool { v, _ := ph.Get(ctx, "/w/mem"); return fmt.Sprint(v) == "3" })
}
