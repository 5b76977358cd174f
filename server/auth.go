package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/repo"
)

// AllowOrigins returns a WebSocket Origin check (for ws.Config.CheckOrigin)
// that lets in requests without an Origin header (non-browser clients),
// requests from the server's own origin, and browsers whose Origin
// (scheme://host[:port]) is in origins; "*" allows every origin. An empty
// list allows every origin.
func AllowOrigins(origins []string) func(*http.Request) bool {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		o = strings.TrimRight(strings.ToLower(strings.TrimSpace(o)), "/")
		if o != "" {
			allowed[o] = true
		}
	}
	if len(allowed) == 0 || allowed["*"] {
		return func(*http.Request) bool { return true }
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" {
			return true
		}
		if allowed[strings.ToLower(origin)] {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// authenticate verifies the request's token. It returns nil claims and nil
// error when the server runs without auth. WebSocket upgrades may carry the
// token in ?token= (browsers cannot set headers on a WebSocket); REST
// requests only in the Authorization header, so that tokens stay out of
// access logs and browser histories.
func (s *Server) authenticate(r *http.Request, allowQuery bool) (*auth.Claims, error) {
	if s.cfg.Auth == nil {
		return nil, nil
	}
	tok := bearer(r)
	if tok == "" && allowQuery {
		tok = r.URL.Query().Get("token")
	}
	c, err := s.cfg.Auth.Verify(tok)
	if err != nil {
		s.authFailures.Add(1)
		return nil, err
	}
	return c, nil
}

// authProblem writes the 401 for a failed authentication.
func (s *Server) authProblem(w http.ResponseWriter, r *http.Request, err error) {
	challenge := `Bearer realm="tandem"`
	detail := "a valid token is required"
	switch {
	case errors.Is(err, auth.ErrNoToken):
		detail = "no token: send Authorization: Bearer <token> (WebSocket: ?token=<token>)"
	case errors.Is(err, auth.ErrExpired):
		challenge += `, error="invalid_token", error_description="token expired"`
		detail = "the token has expired"
	case errors.Is(err, auth.ErrRevoked):
		challenge += `, error="invalid_token", error_description="token revoked"`
		detail = "the token was revoked"
	default:
		challenge += `, error="invalid_token"`
		detail = "the token is invalid"
	}
	s.log.Info("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, http.StatusUnauthorized, "unauthorized", detail)
}

// requireMetricsToken guards the public /metrics with Config.MetricsToken.
func (s *Server) requireMetricsToken(next http.Handler) http.Handler {
	if s.cfg.MetricsToken == "" {
		return next
	}
	want := []byte(s.cfg.MetricsToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(bearer(r)), want) != 1 {
			s.log.Info("metrics request refused", "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem-metrics"`)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "/metrics needs Authorization: Bearer <the metrics token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// access is what one request may do to one document: ok false means the
// response (401, 404 or 403) was written.
func (s *Server) authorizeDoc(w http.ResponseWriter, r *http.Request, id crdt.DocumentID, need auth.Perm) (*auth.Claims, bool) {
	c, err := s.authenticate(r, false)
	if err != nil {
		s.authProblem(w, r, err)
		return nil, false
	}
	if c == nil {
		return nil, true
	}
	switch p := c.Perm(id); {
	case p == auth.None:
		// The bearer must not learn whether the document exists.
		writeProblem(w, http.StatusNotFound, "not-found", "no such document: "+id.URL())
		return nil, false
	case p < need:
		writeProblem(w, http.StatusForbidden, "forbidden", "this token has "+p.String()+" access to "+id.URL()+"; "+need.String()+" is required")
		return nil, false
	}
	return c, true
}

// authorizeAll is authorizeDoc for an operation on the whole collection:
// need is required on "*" (need None: any valid token).
func (s *Server) authorizeAll(w http.ResponseWriter, r *http.Request, need auth.Perm) (*auth.Claims, bool) {
	c, err := s.authenticate(r, false)
	if err != nil {
		s.authProblem(w, r, err)
		return nil, false
	}
	if c == nil || need == auth.None {
		return c, true
	}
	if p := c.AllDocs(); p < need {
		writeProblem(w, http.StatusForbidden, "forbidden", need.String()+` access to every document ("*") is required`)
		return nil, false
	}
	return c, true
}

// acceptOptions are the repo options for a connection authenticated with c.
func acceptOptions(c *auth.Claims, label string) []repo.AcceptOption {
	if c == nil {
		if label == "" {
			return nil
		}
		return []repo.AcceptOption{repo.WithLabel(label)}
	}
	if label == "" {
		label = c.Subject
	}
	return []repo.AcceptOption{repo.WithAccess(c), repo.WithDeadline(c.Expires), repo.WithLabel(label)}
}

// track registers cs under its token id; it reports false when the token
// was revoked meanwhile (the caller must then refuse the connection).
// Registration happens before the revocation check, and Revoke records the
// revocation before it sweeps, so a connection is never missed by both.
func (s *Server) track(cs *connState) bool {
	if cs.jti == "" {
		return true
	}
	s.mu.Lock()
	set := s.byJTI[cs.jti]
	if set == nil {
		set = make(map[*connState]struct{})
		s.byJTI[cs.jti] = set
	}
	set[cs] = struct{}{}
	s.mu.Unlock()
	return !s.cfg.Auth.IsRevoked(cs.jti)
}

func (s *Server) untrack(cs *connState) {
	if cs.jti == "" {
		return
	}
	s.mu.Lock()
	if set := s.byJTI[cs.jti]; set != nil {
		delete(set, cs)
		if len(set) == 0 {
			delete(s.byJTI, cs.jti)
		}
	}
	s.mu.Unlock()
}

// Revoke revokes a token id and closes every connection that uses it. until
// is when the revocation may be forgotten (zero: the latest expiry of the
// connections using it, or never if there are none). With Config.Store the
// revocation is saved there and survives a restart. It reports how many
// connections it closed; an error means the revocation holds (and the
// connections are closed) but could not be saved. Without auth it does
// nothing.
func (s *Server) Revoke(ctx context.Context, jti string, until time.Time) (int, error) {
	if s.cfg.Auth == nil || jti == "" {
		return 0, nil
	}
	s.mu.Lock()
	if until.IsZero() {
		for cs := range s.byJTI[jti] {
			if cs.expires.After(until) {
				until = cs.expires
			}
		}
	}
	s.mu.Unlock()
	s.cfg.Auth.Revoke(jti, until)
	s.mu.Lock()
	n := 0
	for cs := range s.byJTI[jti] {
		cs.cancel()
		n++
	}
	s.mu.Unlock()
	s.log.Info("token revoked", "jti", jti, "connections_closed", n)
	// Saved after the connections are closed, so a slow store does not
	// delay that. Each save writes the whole list as it is when the save
	// starts, one save at a time, so the last one holds every revocation.
	s.revMu.Lock()
	err := s.saveRevocations(ctx)
	s.revMu.Unlock()
	if err != nil {
		s.log.Error("token revocation not saved: a restart would forget it", "jti", jti, "err", err)
	}
	return n, err
}

type revokeRequest struct {
	JTI   string    `json:"jti"`
	Until time.Time `json:"until,omitzero"`
}

// handleRevocations: GET lists revoked token ids, POST {"jti": ...} revokes
// one. Both need admin on "*".
func (s *Server) handleRevocations(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Auth == nil {
		writeProblem(w, http.StatusNotFound, "auth-disabled", "this server runs without authentication (no --auth-secret-file); there are no tokens to revoke")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, ok := s.authorizeAll(w, r, auth.Admin); !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"revoked": s.cfg.Auth.Revocations()})
	case http.MethodPost:
		if _, ok := s.authorizeAll(w, r, auth.Admin); !ok {
			return
		}
		body, ok := s.readBody(w, r, s.cfg.MaxBodyBytes, "application/json")
		if !ok {
			return
		}
		var req revokeRequest
		if !decodeJSONBody(w, body, &req) {
			return
		}
		if req.JTI == "" {
			writeProblem(w, http.StatusUnprocessableEntity, "invalid-request", `"jti" is required`)
			return
		}
		n, err := s.Revoke(context.WithoutCancel(r.Context()), req.JTI, req.Until) // saved even if the caller hangs up
		if err != nil {
			writeProblem(w, http.StatusInternalServerError, "not-saved", fmt.Sprintf("the token is revoked and its %d connections closed, but the revocation could not be saved: a restart would forget it", n))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"jti": req.JTI, "connections_closed": n})
	default:
		methodNotAllowed(w, "GET, HEAD, POST")
	}
}

func decodeJSONBody(w http.ResponseWriter, body []byte, v any) bool {
	if !json.Valid(body) {
		writeProblem(w, http.StatusBadRequest, "malformed-json", "the body is not valid JSON")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-request", err.Error())
		return false
	}
	return true
}
