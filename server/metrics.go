package server

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics holds a Server's private Prometheus registry (never the global
// one, so that several Servers in one process do not collide).
type metrics struct {
	reg         *prometheus.Registry
	apiRequests *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tandem",
			Name:      "api_requests_total",
			Help:      "REST requests under /api by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
	}
	m.reg.MustRegister(
		m.apiRequests,
		&serverCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if s.cfg.Observer != nil {
		m.reg.MustRegister(s.cfg.Observer)
	}
	return m
}

// serverCollector reads the Server's and the Repo's counters at scrape time.
type serverCollector struct{ s *Server }

var (
	descConnections  = prometheus.NewDesc("tandem_connections", "Open WebSocket sync connections.", nil, nil)
	descPeers        = prometheus.NewDesc("tandem_peers", "Peers that completed the join handshake and are connected now.", nil, nil)
	descPeersTotal   = prometheus.NewDesc("tandem_peer_handshakes_total", "Join handshakes completed.", nil, nil)
	descLiveDocs     = prometheus.NewDesc("tandem_documents_in_memory", "Documents held in memory.", nil, nil)
	descMessagesIn   = prometheus.NewDesc("tandem_messages_received_total", "Protocol messages received from peers.", nil, nil)
	descMessagesOut  = prometheus.NewDesc("tandem_messages_sent_total", "Protocol messages sent to peers.", nil, nil)
	descBytesIn      = prometheus.NewDesc("tandem_received_bytes_total", "Sync and ephemeral payload bytes received from peers.", nil, nil)
	descBytesOut     = prometheus.NewDesc("tandem_sent_bytes_total", "Sync and ephemeral payload bytes sent to peers.", nil, nil)
	descSyncOut      = prometheus.NewDesc("tandem_sync_messages_generated_total", "Sync messages generated for peers.", nil, nil)
	descSyncPath     = prometheus.NewDesc("tandem_sync_path_messages_total", "Sync messages by how they were made or taken: on the direct path (cost: the changes) or by an Automerge session (cost: the history).", []string{"path", "direction"}, nil)
	descLiveBytes    = prometheus.NewDesc("tandem_documents_in_memory_bytes", "Stored (compressed) size of the documents in memory; their in-memory form is several times larger.", nil, nil)
	descInCore       = prometheus.NewDesc("tandem_documents_in_core", "Documents in memory that are built in the Automerge core (the others are change graphs until their content is read or written).", nil, nil)
	descHibernating  = prometheus.NewDesc("tandem_documents_hibernating", "Documents peers still sync that are out of memory until used again.", nil, nil)
	descParked       = prometheus.NewDesc("tandem_documents_parked", "Hibernating documents whose goroutine has stopped until their next message.", nil, nil)
	descAuthFailures = prometheus.NewDesc("tandem_auth_failures_total", "Requests and connections refused for a missing, invalid, expired or revoked token.", nil, nil)
)

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descPeers, descPeersTotal, descLiveDocs, descMessagesIn, descMessagesOut, descBytesIn, descBytesOut, descSyncOut, descAuthFailures, descSyncPath, descHibernating, descParked, descLiveBytes, descInCore} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.cfg.Repo.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descConnections, float64(c.s.Connections()))
	gauge(descPeers, float64(st.Peers))
	counter(descPeersTotal, float64(st.PeersTotal))
	gauge(descLiveDocs, float64(st.LiveDocuments))
	counter(descMessagesIn, float64(st.MessagesIn))
	counter(descMessagesOut, float64(st.MessagesOut))
	counter(descBytesIn, float64(st.BytesIn))
	counter(descBytesOut, float64(st.BytesOut))
	counter(descSyncOut, float64(st.SyncOut))
	for _, x := range []struct {
		v               int64
		path, direction string
	}{{st.DirectIn, "direct", "in"}, {st.DirectOut, "direct", "out"}, {st.SessionIn, "session", "in"}, {st.SessionOut, "session", "out"}} {
		ch <- prometheus.MustNewConstMetric(descSyncPath, prometheus.CounterValue, float64(x.v), x.path, x.direction)
	}
	gauge(descHibernating, float64(st.Hibernating))
	gauge(descParked, float64(st.Parked))
	gauge(descLiveBytes, float64(st.LiveBytes))
	gauge(descInCore, float64(st.InCore))
	counter(descAuthFailures, float64(c.s.AuthFailures()))
}

// Gatherer returns the Server's private metrics registry, for embedders
// that expose metrics their own way.
func (s *Server) Gatherer() prometheus.Gatherer { return s.metrics.reg }

// MetricsHandler serves the Server's metrics in the Prometheus text format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}})
}

// AdminHandler serves /metrics and the net/http/pprof profiles under
// /debug/pprof/. Serve it only on a private address: profiles reveal
// memory contents and cost CPU.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.MetricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", s.handleHealth)
	return mux
}

type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics", "err", v) }

// instrument counts REST requests by route pattern and status code; other
// paths (WebSocket upgrades among them) pass through untouched.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api" && !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern // set by the ServeMux on this request
		if route == "" || route == "/api/" {
			route = "other"
		}
		s.metrics.apiRequests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(sw.code)).Inc()
	})
}

// methodLabel bounds the method label's values.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
