package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport/ws"
)

// ErrInvalidConfig reports a bad Config.
var ErrInvalidConfig = errors.New("server: invalid config")

// Config configures a Server.
type Config struct {
	// Repo serves the documents. Required. The Server does not close it.
	Repo *repo.Repo
	// WS configures WebSocket connections (limits, pings, origins).
	WS ws.Config
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Repo == nil {
		return fmt.Errorf("%w: Repo is required", ErrInvalidConfig)
	}
	return nil
}

// Server is Tandem's HTTP front: WebSocket sync at /sync (and on / for URLs
// written for the Node sync server) and /healthz.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	mu      sync.Mutex
	conns   map[*connState]struct{}
	closing bool
	wg      sync.WaitGroup
	srv     *http.Server
	ln      net.Listener
}

type connState struct {
	cancel context.CancelFunc
}

// New makes a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), conns: make(map[*connState]struct{})}
	s.mux.HandleFunc("/sync", s.handleSync)
	s.mux.HandleFunc("/healthz", s.handleHealth)
	s.mux.HandleFunc("/", s.handleRoot)
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Connections reports how many sync connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

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
	cs := &connState{}
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
	conn, err := ws.Accept(w, r, s.cfg.WS)
	if err != nil {
		s.log.Info("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	err = s.cfg.Repo.Accept(ctx, conn)
	s.log.Debug("connection ended", "remote", r.RemoteAddr, "reason", err)
}

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully: stop accepting, close every sync connection, wait for their
// handlers. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
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
