package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport/ws"
)

// Errors of New.
var (
	// ErrInvalidConfig reports a bad Config.
	ErrInvalidConfig = errors.New("server: invalid config")
	// ErrCorruptRevocations reports a stored revocation list (Config.Store)
	// that cannot be read: the server refuses to start rather than let
	// revoked tokens back in.
	ErrCorruptRevocations = errors.New("server: stored token revocations are corrupt")
)

// Config configures a Server.
type Config struct {
	// Repo serves the documents. Required. The Server does not close it.
	Repo *repo.Repo
	// WS configures WebSocket connections (limits, pings, origins).
	WS ws.Config
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Auth, when set, requires a token on every sync connection and REST
	// request (not on /healthz, /readyz and /) and limits each bearer to the
	// documents its token covers. nil: open server.
	Auth *auth.Authority
	// MaxBodyBytes bounds a REST JSON body (default 8 MiB).
	MaxBodyBytes int64
	// MaxBinaryBytes bounds an uploaded Automerge binary (default: WS.MaxMessageSize,
	// or 64 MiB).
	MaxBinaryBytes int64
	// RequestTimeout bounds one REST request's work (default 30s).
	RequestTimeout time.Duration
	// TLS, when set, makes Serve speak HTTPS (and so WSS) on its listener.
	TLS *tls.Config
	// Observer, when set, adds its metrics to /metrics. Give the same one
	// to the Repo (repo.Config.Observer), which feeds it; see NewObserver.
	// nil: /metrics has only the totals the Repo always counts.
	Observer *Observer
	// BytesPerSecond bounds the sync and ephemeral payload bytes one
	// connection may send per second (burst: one second's worth). A faster
	// peer is slowed down, not cut off: the server reads its next message
	// only once it is back under the rate. 0: DefaultBytesPerSecond;
	// negative: no limit. (Messages per second and documents per
	// connection are repo.PeerConfig's.)
	BytesPerSecond int64
	// MetricsToken, when set, is a bearer token that /metrics on the
	// public listener requires (Authorization: Bearer MetricsToken); other
	// requests get 401. AdminHandler's /metrics stays open: the admin
	// address is private. Empty: /metrics is open.
	MetricsToken string
	// Store, when set (usually the Repo's store), keeps what the server
	// must not forget in a restart: revoked token ids, until the tokens
	// would have expired anyway. nil: revocations live in memory only.
	Store persistence.Store
}

func (c *Config) validate() error {
	if c.Repo == nil {
		return fmt.Errorf("%w: Repo is required", ErrInvalidConfig)
	}
	if c.MaxBodyBytes < 0 || c.MaxBinaryBytes < 0 || c.RequestTimeout < 0 {
		return fmt.Errorf("%w: MaxBodyBytes, MaxBinaryBytes and RequestTimeout must not be negative", ErrInvalidConfig)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxBinaryBytes == 0 {
		c.MaxBinaryBytes = c.WS.MaxMessageSize
		if c.MaxBinaryBytes <= 0 {
			c.MaxBinaryBytes = ws.DefaultMaxMessageSize
		}
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.BytesPerSecond == 0 {
		c.BytesPerSecond = DefaultBytesPerSecond
	}
}

// Server is Tandem's HTTP front: WebSocket sync at /sync (and on / for URLs
// written for the Node sync server), the REST API under /api, /healthz and
// /readyz.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	// handler is mux behind the REST request counter.
	handler http.Handler
	metrics *metrics

	mu      sync.Mutex
	conns   map[*connState]struct{}
	byJTI   map[string]map[*connState]struct{} // sync connections per token id
	closing bool
	serving bool
	wg      sync.WaitGroup
	srv     *http.Server
	ln      net.Listener

	authFailures atomic.Int64
	revMu        sync.Mutex // one save of the revocation list at a time
}

type connState struct {
	cancel  context.CancelFunc
	jti     string    // token id ("" without auth)
	expires time.Time // token expiry
}

// New makes a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), conns: make(map[*connState]struct{}), byJTI: make(map[string]map[*connState]struct{})}
	s.mux.HandleFunc("/sync", s.handleSync)
	s.mux.HandleFunc("/healthz", s.handleHealth)
	s.mux.HandleFunc("/readyz", s.handleReady)
	s.routeAPI()
	s.mux.HandleFunc("/", s.handleRoot)
	s.metrics = newMetrics(s)
	s.mux.Handle("/metrics", s.requireMetricsToken(s.MetricsHandler()))
	s.handler = s.instrument(s.mux)
	if err := s.loadRevocations(); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Connections reports how many sync connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// AuthFailures reports how many requests and connections were refused for
// a missing, invalid, expired or revoked token.
func (s *Server) AuthFailures() int64 { return s.authFailures.Load() }

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if isUpgrade(r) {
		s.handleSync(w, r)
		return
	}
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Tandem sync server. Point an automerge-repo WebSocket client at ws://%s/sync\n", r.Host)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status":      "ok",
		"connections": s.Connections(),
		"live_docs":   s.cfg.Repo.Live(),
	})
}

func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r) {
		http.Error(w, "this endpoint speaks the automerge-repo WebSocket protocol", http.StatusUpgradeRequired)
		return
	}
	claims, err := s.authenticate(r, true)
	if err != nil {
		s.authProblem(w, r, err)
		return
	}
	cs := &connState{}
	if claims != nil {
		cs.jti, cs.expires = claims.ID, claims.Expires
	}
	ctx, cancel := context.WithCancel(context.Background())
	cs.cancel = cancel
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		cancel()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.conns[cs] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		cancel()
		s.mu.Lock()
		delete(s.conns, cs)
		s.mu.Unlock()
		s.wg.Done()
	}()
	if !s.track(cs) {
		s.authFailures.Add(1)
		s.authProblem(w, r, auth.ErrRevoked)
		return
	}
	defer s.untrack(cs)
	conn, err := ws.Accept(w, r, s.cfg.WS)
	if err != nil {
		s.log.Info("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	var obs repo.Observer // a nil *Observer must not become a non-nil interface
	if s.cfg.Observer != nil {
		obs = s.cfg.Observer
	}
	err = s.cfg.Repo.Accept(ctx, newLimitedConn(conn, s.cfg.BytesPerSecond, s.log, obs), acceptOptions(claims, "")...)
	s.log.Debug("connection ended", "remote", r.RemoteAddr, "who", subject(claims), "reason", err)
}

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully: stop accepting, close every sync connection, wait for their
// handlers. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.serving = true
	s.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return s.shutdown(errc)
}

func (s *Server) shutdown(errc chan error) error {
	s.mu.Lock()
	s.closing = true
	for cs := range s.conns {
		cs.cancel()
	}
	srv := s.srv
	s.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	s.wg.Wait()
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
