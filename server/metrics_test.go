package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	for _, name := range []string{"tandem_connections", "tandem_documents_in_memory", "tandem_documents_hibernating", "tandem_documents_parked", "tandem_messages_received_total", "tandem_sent_bytes_total", "tandem_auth_failures_total", "go_goroutines", "process_cpu_seconds_total"} {
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
	if got := after.value(t, "tandem_documents_in_memory_bytes"); got <= 0 {
		t.Errorf("tandem_documents_in_memory_bytes = %v, want > 0", got)
	}
	if got := after.value(t, "tandem_documents_in_memory"); got < 2 {
		t.Errorf("tandem_documents_in_memory = %v, want >= 2", got)
	}
	for _, name := range []string{"tandem_peer_handshakes_total", "tandem_messages_received_total", "tandem_messages_sent_total", "tandem_received_bytes_total", "tandem_sent_bytes_total", "tandem_sync_messages_generated_total", "tandem_auth_failures_total"} {
		if a, b := after.value(t, name), before.value(t, name); a <= b {
			t.Errorf("%s did not move: %v -> %v", name, b, a)
		}
	}
	pathSum := func(m scrape, dir string) float64 {
		var n float64
		for _, path := range []string{"direct", "session"} {
			n += m.value(t, "tandem_sync_path_messages_total", "path", path, "direction", dir)
		}
		return n
	}
	for _, dir := range []string{"in", "out"} {
		if a, b := pathSum(after, dir), pathSum(before, dir); a <= b {
			t.Errorf("tandem_sync_path_messages_total{direction=%q} did not move: %v -> %v", dir, b, a)
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
	admin := startAdmin(t, ts)
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

// histogramCount is the sample count of a histogram without labels.
func (s scrape) histogramCount(t *testing.T, name string) uint64 {
	t.Helper()
	f, ok := s[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	if f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("%s is a %v with %d series", name, f.GetType(), len(f.GetMetric()))
	}
	return f.GetMetric()[0].GetHistogram().GetSampleCount()
}

func TestEngineMetricsMoveWithTraffic(t *testing.T) {
	ts := startServer(t, true, nil)
	url := ts.base + "/metrics"
	before := scrapeMetrics(t, url)
	for _, c := range []struct{ name, label, value string }{
		{"tandem_messages_received_by_type_total", "type", "sync"},
		{"tandem_sent_bytes_by_type_total", "type", "doc-unavailable"},
		{"tandem_changes_applied_total", "origin", "remote"},
		{"tandem_changes_rejected_total", "reason", repo.RejectValidation},
		{"tandem_peers_dropped_total", "reason", repo.DropOutboxFull},
		{"tandem_changes_persisted_total", "", ""},
	} {
		if got := before.value(t, c.name, c.label, c.value); got != 0 {
			t.Errorf("%s{%s=%q} = %v before any traffic", c.name, c.label, c.value, got)
		}
	}
	for _, h := range []string{"tandem_persist_duration_seconds", "tandem_persist_batch_changes", "tandem_fanout_latency_seconds"} {
		if n := before.histogramCount(t, h); n != 0 {
			t.Errorf("%s count = %d before any traffic", h, n)
		}
	}

	// A local change over REST.
	admin, _ := ts.token("admin", time.Hour, map[string]auth.Perm{"*": auth.Admin})
	created := ts.do(http.MethodPost, "/api/docs", admin, "application/json", []byte(`{"n":0}`))
	if created.code != http.StatusCreated {
		t.Fatalf("create: %d %s", created.code, created.body)
	}
	id := created.json(t)["id"].(string)
	did, err := crdt.ParseDocumentID(id)
	if err != nil {
		t.Fatal(err)
	}
	if r := ts.do(http.MethodPatch, "/api/docs/"+id, admin, ctPatch, []byte(`[{"op":"replace","path":"/n","value":1}]`)); r.code != http.StatusOK {
		t.Fatalf("patch: %d %s", r.code, r.body)
	}

	// A writer and a reader over real WebSockets; both change the document.
	ctx := ctxT(t)
	client := func(token string) *repo.DocHandle {
		cr, err := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cr.Close(context.Background()) })
		conn := cr.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
			return ws.Dial(ctx, "ws://"+ts.addr+"/sync?token="+token, ws.Config{})
		}, repo.ReconnectConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		t.Cleanup(conn.Close)
		if err := conn.WaitConnected(ctx); err != nil {
			t.Fatalf("client did not connect: %v", err)
		}
		h, err := cr.Find(ctx, did)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	writer := client(admin)
	reader, _ := ts.token("reader", time.Hour, map[string]auth.Perm{id: auth.Read})
	readOnly := client(reader)
	if _, err := writer.Set(ctx, "/n", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := readOnly.Set(ctx, "/n", 3); err != nil { // local only: the server refuses it
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the writer's change on the server", func() bool {
		return strings.Contains(ts.docJSON(did), `"n":2`)
	})

	// Everything below happens soon after the changes, in no fixed order.
	unmet := func(s scrape) []string {
		var out []string
		for _, c := range []struct {
			name, label, value string
			atLeast            float64
		}{
			{"tandem_messages_received_by_type_total", "type", "join", 2},
			{"tandem_messages_received_by_type_total", "type", "sync", 2}, // the writer's and the reader's changes
			{"tandem_messages_sent_by_type_total", "type", "peer", 2},
			{"tandem_messages_sent_by_type_total", "type", "sync", 2},
			{"tandem_messages_sent_by_type_total", "type", "error", 1}, // to the reader
			{"tandem_received_bytes_by_type_total", "type", "sync", 1},
			{"tandem_sent_bytes_by_type_total", "type", "sync", 1},
			{"tandem_changes_applied_total", "origin", "local", 1},
			{"tandem_changes_applied_total", "origin", "remote", 1},
			{"tandem_changes_persisted_total", "", "", 2},
			{"tandem_persisted_bytes_total", "", "", 1},
			{"tandem_changes_rejected_total", "reason", repo.RejectReadOnly, 1},
		} {
			if got := s.value(t, c.name, c.label, c.value); got < c.atLeast {
				out = append(out, fmt.Sprintf("%s{%s=%q} = %v, want >= %v", c.name, c.label, c.value, got, c.atLeast))
			}
		}
		if n := s.histogramCount(t, "tandem_fanout_latency_seconds"); n < 1 {
			out = append(out, "tandem_fanout_latency_seconds has no observations")
		}
		return out
	}
	var after scrape
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		after = scrapeMetrics(t, url)
		missing := unmet(after)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics did not move:\n%s", strings.Join(missing, "\n"))
		}
		<-tick.C
	}
	// Every durable append is one observation of both persistence histograms.
	persists := after.histogramCount(t, "tandem_persist_duration_seconds")
	if persists < 2 || after.histogramCount(t, "tandem_persist_batch_changes") != persists {
		t.Errorf("persist histograms: %d durations, %d batch sizes", persists, after.histogramCount(t, "tandem_persist_batch_changes"))
	}
	if got := after.value(t, "tandem_changes_persisted_total"); got != after.value(t, "tandem_changes_applied_total") {
		t.Errorf("persisted %v changes, applied %v", got, after.value(t, "tandem_changes_applied_total"))
	}
	if got := after.value(t, "tandem_peers_dropped_total"); got != 0 {
		t.Errorf("tandem_peers_dropped_total = %v", got)
	}
}
