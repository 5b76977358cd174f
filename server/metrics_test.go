package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, url string) scrape {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	return fams
}

// value sums the family's samples whose labels include want (name=value pairs).
func (s scrape) value(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	f, ok := s[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	var sum float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

func TestMetricsMoveWithTraffic(t *testing.T) {
	ts := startServer(t, true, nil)
	url := ts.base + "/metrics" // no token needed
	before := scrapeMetrics(t, url)
	for _, name := range []string{"tandem_connections", "tandem_documents_in_memory", "tandem_messages_received_total", "tandem_sent_bytes_total", "tandem_auth_failures_total", "go_goroutines", "process_cpu_seconds_total"} {
		before.value(t, name)
	}
	if before.value(t, "tandem_connections") != 0 {
		t.Fatal("connections before any client")
	}

	// REST traffic: a create, a read, a missing route, an auth failure.
	admin, _ := ts.token("admin", time.Hour, map[string]auth.Perm{"*": auth.Admin})
	created := ts.do(http.MethodPost, "/api/docs", admin, "application/json", []byte(`{"widgets":{"cpu":{"value":1}}}`))
	if created.code != http.StatusCreated {
		t.Fatalf("create: %d %s", created.code, created.body)
	}
	id := created.json(t)["id"].(string)
	if r := ts.do(http.MethodGet, "/api/docs/"+id, admin, "", nil); r.code != http.StatusOK {
		t.Fatalf("read: %d %s", r.code, r.body)
	}
	ts.do(http.MethodGet, "/api/nowhere", admin, "", nil)
	ts.do(http.MethodGet, "/api/docs", "", "", nil)

	// WebSocket traffic: a Go client repo syncs the document.
	ctx := ctxT(t)
	cr, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cr.Close(context.Background()) })
	conn := cr.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, "ws://"+ts.addr+"/sync?token="+admin, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	t.Cleanup(conn.Close)
	if err := conn.WaitConnected(ctx); err != nil {
		t.Fatalf("client did not connect: %v", err)
	}
	if _, err := cr.Find(ctx, ts.create(`{}`).ID()); err != nil {
		t.Fatal(err)
	}
	did, err := crdt.ParseDocumentID(id)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := cr.Find(ctx, did)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := h2.JSON(ctx, ""); err != nil || !strings.Contains(string(b), "cpu") {
		t.Fatalf("client copy: %s, %v", b, err)
	}

	after := scrapeMetrics(t, url)
	if got := after.value(t, "tandem_connections"); got != 1 {
		t.Errorf("tandem_connections = %v, want 1", got)
	}
	if got := after.value(t, "tandem_peers"); got != 1 {
		t.Errorf("tandem_peers = %v, want 1", got)
	}
	if got := after.value(t, "tandem_documents_in_memory"); got < 2 {
		t.Errorf("tandem_documents_in_memory = %v, want >= 2", got)
	}
	for _, name := range []string{"tandem_peer_handshakes_total", "tandem_messages_received_total", "tandem_messages_sent_total", "tandem_received_bytes_total", "tandem_sent_bytes_total", "tandem_sync_messages_generated_total", "tandem_auth_failures_total"} {
		if a, b := after.value(t, name), before.value(t, name); a <= b {
			t.Errorf("%s did not move: %v -> %v", name, b, a)
		}
	}
	if f := after["tandem_peer_handshakes_total"]; f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("tandem_peer_handshakes_total is a %v", f.GetType())
	}
	api := "tandem_api_requests_total"
	for _, c := range []struct{ route, method, code string }{
		{"/api/docs", "POST", "201"},
		{"/api/docs/{id}", "GET", "200"},
		{"other", "GET", "404"},
		{"/api/docs", "GET", "401"},
	} {
		if got := after.value(t, api, "route", c.route, "method", c.method, "code", c.code); got != 1 {
			t.Errorf("%s{route=%q,method=%q,code=%q} = %v, want 1", api, c.route, c.method, c.code, got)
		}
	}
	// Scrapes themselves and sync upgrades are not counted as API requests.
	if _, ok := after[api]; ok {
		for _, m := range after[api].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && !strings.HasPrefix(l.GetValue(), "/api") && l.GetValue() != "other" {
					t.Errorf("unexpected route label %q", l.GetValue())
				}
			}
		}
	}

	// Closing the client brings the connection gauge back down.
	conn.Close()
	waitUntil(t, 10*time.Second, "connection gauge back to 0", func() bool {
		return scrapeMetrics(t, url).value(t, "tandem_connections") == 0
	})
}

func TestAdminServesMetricsAndPprof(t *testing.T) {
	ts := startServer(t, false, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.ServeAdmin(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeAdmin: %v", err)
		}
	}()
	admin := "http://" + ln.Addr().String()
	scrapeMetrics(t, admin+"/metrics").value(t, "tandem_connections")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("admin %s: %d", path, resp.StatusCode)
		}
	}
	// pprof is never on the main listener.
	if r := ts.do(http.MethodGet, "/debug/pprof/", "", "", nil); r.code != http.StatusNotFound {
		t.Errorf("main listener /debug/pprof/: %d, want 404", r.code)
	}
}
