package server_test

import (
	"strings"
	"testing"

	"github.com/tandemsync/tandem/server"
)

// With a metrics token, /metrics on the public listener needs it; the
// admin listener's /metrics stays open.
func TestMetricsToken(t *testing.T) {
	const token = "scrape-0123456789"
	ts := startServer(t, false, func(c *server.Config) { c.MetricsToken = token })
	for name, tok := range map[string]string{"no token": "", "wrong token": "scrape-012345678", "longer token": token + "x"} {
		r := ts.do("GET", "/metrics", tok, "", nil)
		wantProblem(t, name, r, 401, "unauthorized")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
	}
	if r := ts.do("GET", "/metrics", token, "", nil); r.code != 200 || !strings.Contains(string(r.body), "tandem_connections") {
		t.Fatalf("with the token: %d %.200s", r.code, r.body)
	}
	// Other endpoints do not take the metrics token into account.
	if r := ts.do("GET", "/healthz", "", "", nil); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}

	admin := &testServer{t: t, base: startAdmin(t, ts)}
	if r := admin.do("GET", "/metrics", "", "", nil); r.code != 200 || !strings.Contains(string(r.body), "tandem_connections") {
		t.Fatalf("admin /metrics without a token: %d %.200s", r.code, r.body)
	}
}

// Without a metrics token /metrics is open, as before.
func TestMetricsOpenByDefault(t *testing.T) {
	ts := startServer(t, true, nil)
	if r := ts.do("GET", "/metrics", "", "", nil); r.code != 200 {
		t.Fatalf("/metrics: %d %.200s", r.code, r.body)
	}
}
