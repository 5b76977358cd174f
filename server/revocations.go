package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/persistence"
)

// revocationsKey is where Config.Store keeps the revoked token ids: one
// JSON array of auth.Revocation. Revocations are rare and few (an entry
// goes once its token would have expired), so one value rewritten whole is
// enough.
const revocationsKey = "server/revoked-tokens"

// storeTimeout bounds loading and saving the revocation list.
const storeTimeout = 10 * time.Second

// loadRevocations gives the Authority the revocations stored by earlier
// runs, dropping those whose tokens have expired since.
func (s *Server) loadRevocations() error {
	if s.cfg.Auth == nil || s.cfg.Store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	b, err := s.cfg.Store.GetValue(ctx, revocationsKey)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: load token revocations: %w", err)
	}
	var list []auth.Revocation
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptRevocations, err)
	}
	now := time.Now()
	n := 0
	for _, r := range list {
		if r.ID == "" || (!r.Until.IsZero() && r.Until.Before(now)) {
			continue
		}
		s.cfg.Auth.Revoke(r.ID, r.Until)
		n++
	}
	if n > 0 {
		s.log.Info("token revocations loaded", "revoked", n)
	}
	return nil
}

// saveRevocations writes the Authority's current revocations, without the
// expired ones. The caller holds s.revMu.
func (s *Server) saveRevocations(ctx context.Context) error {
	if s.cfg.Store == nil {
		return nil
	}
	now := time.Now()
	list := []auth.Revocation{}
	for _, r := range s.cfg.Auth.Revocations() {
		if r.Until.IsZero() || !r.Until.Before(now) {
			list = append(list, r)
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := s.cfg.Store.PutValue(ctx, revocationsKey, b); err != nil {
		return fmt.Errorf("server: save token revocations: %w", err)
	}
	return nil
}
