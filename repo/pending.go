package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
)

// Errors of the client side.
var (
	ErrConfirmed     = errors.New("repo: change already confirmed by the server")
	ErrUnknownChange = errors.New("repo: not a pending change of this document")
)

// SyncState is a document's (or the repo's) position relative to the server.
type SyncState string

// Sync states, from worst to best.
const (
	StateOffline    SyncState = "offline"    // no server configured or connected
	StateError      SyncState = "error"      // the last connection attempt failed; retrying
	StateConnecting SyncState = "connecting" // dialling or handshaking
	StateSyncing    SyncState = "syncing"    // connected, changes still moving
	StateSynced     SyncState = "synced"     // connected, server confirmed every local change and we have all of its
)

// DocStatus is one document's sync status.
type DocStatus struct {
	State         SyncState
	Pending       int       // local changes the server has not confirmed
	LastConfirmed time.Time // when the server last confirmed a local change
	LastError     error     // why the connection is down, if it is
}

// localChange is a change made through this repo, tracked until the server
// confirms it (and for ConflictWindow after, for conflict detection).
type localChange struct {
	hash  crdt.Hash
	paths []string
	at    time.Time
	base  []crdt.Hash // heads it was made on (nil after a restart)
}

// upstream reports whether p is a server this repo dialled.
func (p *peer) upstream() bool { return !p.accepted }

// addLocal records a local change as pending.
func (o *owner) addLocal(info crdt.CommitInfo) {
	o.local = append(o.local, localChange{hash: info.Hash, paths: info.Paths, at: time.Now()})
	o.statusDirty = true
}

// confirm moves local changes that theirHeads include out of pending.
func (o *owner) confirm(theirHeads []crdt.Hash) {
	o.serverHeads = theirHeads
	o.statusDirty = true
	o.confirmDirty = true
	if len(o.local) == 0 {
		return
	}
	var notYet map[crdt.Hash]bool
	if !slices.Equal(sortedHashes(theirHeads), sortedHashes(o.heads())) {
		if !slices.ContainsFunc(theirHeads, o.doc.HasChange) {
			// The server names no change we have (a change of another
			// client's still on its way, say): it confirms nothing of
			// ours that we can tell, and asking Automerge what is not
			// below no heads would list the whole history (90 ms at
			// 100,000 changes, on every client's first exchange).
			return
		}
		since, err := o.doc.HashesSince(theirHeads)
		if err != nil {
			return
		}
		notYet = make(map[crdt.Hash]bool, len(since))
		for _, h := range since {
			notYet[h] = true
		}
	}
	var keep []localChange
	var confirmed []crdt.Hash
	now := time.Now()
	for _, l := range o.local {
		if notYet[l.hash] {
			keep = append(keep, l)
			continue
		}
		confirmed = append(confirmed, l.hash)
		l.at = now
		o.recent = append(o.recent, l)
	}
	if len(confirmed) == 0 {
		return
	}
	o.local = keep
	o.lastConfirmed = now
	o.events = append(o.events, Event{DocumentID: o.id, Confirmed: confirmed})
	o.pruneRecent(now)
}

func (o *owner) pruneRecent(now time.Time) {
	w := o.repo.cfg.ConflictWindow
	i := 0
	for i < len(o.recent) && now.Sub(o.recent[i].at) > w {
		i++
	}
	o.recent = o.recent[i:]
}

func sortedHashes(hs []crdt.Hash) []crdt.Hash {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b crdt.Hash) int {
		for i := range a {
			if a[i] != b[i] {
				return int(a[i]) - int(b[i])
			}
		}
		return 0
	})
	return out
}

// upstreamConnected reports whether a server this repo dialled syncs doc.
func (o *owner) upstreamConnected() bool {
	for p := range o.peers {
		if p.upstream() {
			return true
		}
	}
	return false
}

// status computes the document's sync status.
func (o *owner) status() DocStatus {
	st := DocStatus{Pending: len(o.local), LastConfirmed: o.lastConfirmed}
	conn := o.repo.connState()
	st.LastError = conn.err
	switch {
	case o.upstreamConnected():
		if len(o.local) == 0 && o.doc != nil && slices.Equal(sortedHashes(o.serverHeads), sortedHashes(o.heads())) {
			st.State = StateSynced
		} else {
			st.State = StateSyncing
		}
	case conn.connected:
		// Connected, but this document is not attached yet.
		st.State = StateSyncing
	case conn.connecting:
		st.State = StateConnecting
	case conn.err != nil && conn.configured:
		st.State = StateError
	default:
		st.State = StateOffline
	}
	return st
}

// publishStatus tells waiters and the repo aggregate about a new status;
// called after each flush.
func (o *owner) publishStatus() {
	if !o.statusDirty {
		return
	}
	o.statusDirty = false
	st := o.status()
	if st.State == StateSynced {
		for _, w := range o.syncWaiters {
			close(w)
		}
		o.syncWaiters = nil
	}
	if o.confirmDirty && o.serverHeads != nil {
		o.confirmDirty = false
		o.repo.saveConfirmed(o.id, o.serverHeads)
	}
	if len(o.local) > 0 {
		o.repo.markUnsynced(o.id, true)
	} else if st.State == StateSynced {
		o.repo.markUnsynced(o.id, false)
	}
	o.repo.setDocStatus(o.id, st)
}

// ---------------------------------------------------------------- repo side

const (
	actorKey    = "actor-id"
	unsyncedKey = "unsynced-docs"
	confirmKey  = "confirmed-heads/" // + document id
)

// clientState is the repo-wide part of the client side: the actor id, the
// set of documents with unconfirmed local changes (persisted, so offline
// edits are pushed after a restart), and the aggregate status.
type clientState struct {
	mu        sync.Mutex
	actor     string
	unsynced  map[crdt.DocumentID]bool
	loaded    bool
	docStatus map[crdt.DocumentID]DocStatus
	changed   chan struct{} // closed and replaced on every status change
}

// connInfo summarises the repo's Connections.
type connInfo struct {
	configured, connecting, connected bool
	err                               error
}

func (r *Repo) connState() connInfo {
	r.connMu.Lock()
	defer r.connMu.Unlock()
	var ci connInfo
	for c := range r.conns {
		ci.configured = true
		c.mu.Lock()
		if c.connected {
			ci.connected = true
		} else if c.dialing {
			ci.connecting = true
		}
		if c.lastErr != nil && !c.connected {
			ci.err = c.lastErr
		}
		c.mu.Unlock()
	}
	return ci
}

// actorID returns the repo's actor id: every local change is made as it, so
// that after a restart the repo still knows which changes are its own.
func (r *Repo) actorID(ctx context.Context) (string, error) {
	cs := &r.client
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.actor != "" {
		return cs.actor, nil
	}
	if r.cfg.ActorID != "" {
		cs.actor = r.cfg.ActorID
		return cs.actor, nil
	}
	v, err := r.store.GetValue(ctx, actorKey)
	if err == nil && len(v) > 0 {
		cs.actor = string(v)
		return cs.actor, nil
	}
	if err != nil && !errors.Is(err, persistence.ErrNotFound) {
		return "", err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	a := hex.EncodeToString(b)
	if err := r.store.PutValue(ctx, actorKey, []byte(a)); err != nil {
		return "", err
	}
	cs.actor = a
	return a, nil
}

func (r *Repo) loadUnsynced() map[crdt.DocumentID]bool {
	cs := &r.client
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.loaded {
		cs.loaded = true
		cs.unsynced = make(map[crdt.DocumentID]bool)
		if v, err := r.store.GetValue(context.Background(), unsyncedKey); err == nil {
			var ids []string
			if json.Unmarshal(v, &ids) == nil {
				for _, id := range ids {
					cs.unsynced[crdt.DocumentID(id)] = true
				}
			}
		}
	}
	return cs.unsynced
}

// Unsynced lists documents with local changes the server has not confirmed,
// including those left by an earlier process.
func (r *Repo) Unsynced() []crdt.DocumentID {
	m := r.loadUnsynced()
	r.client.mu.Lock()
	defer r.client.mu.Unlock()
	out := make([]crdt.DocumentID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// markUnsynced records (durably) whether id has unconfirmed local changes.
// It is called before the first such change is persisted, so that a crash
// never leaves an offline edit that nobody will push.
func (r *Repo) markUnsynced(id crdt.DocumentID, on bool) {
	m := r.loadUnsynced()
	cs := &r.client
	cs.mu.Lock()
	if m[id] == on {
		cs.mu.Unlock()
		return
	}
	if on {
		m[id] = true
	} else {
		delete(m, id)
	}
	ids := make([]string, 0, len(m))
	for k := range m {
		ids = append(ids, string(k))
	}
	cs.mu.Unlock()
	slices.Sort(ids)
	b, _ := json.Marshal(ids)
	if err := r.store.PutValue(context.Background(), unsyncedKey, b); err != nil {
		r.log.Warn("cannot record unsynced documents", "err", err)
	}
	r.statusChanged()
}

func (r *Repo) saveConfirmed(id crdt.DocumentID, heads []crdt.Hash) {
	if err := r.store.PutValue(context.Background(), confirmKey+string(id), []byte(hexJoin(heads))); err != nil {
		r.log.Warn("cannot record confirmed heads", "doc", id, "err", err)
	}
}

func hexJoin(hs []crdt.Hash) string {
	s := ""
	for i, h := range hs {
		if i > 0 {
			s += ","
		}
		s += h.String()
	}
	return s
}

func (r *Repo) loadConfirmed(id crdt.DocumentID) ([]crdt.Hash, bool) {
	v, err := r.store.GetValue(context.Background(), confirmKey+string(id))
	if err != nil {
		return nil, false
	}
	var out []crdt.Hash
	for _, s := range splitComma(string(v)) {
		h, err := crdt.ParseHash(s)
		if err != nil {
			return nil, false
		}
		out = append(out, h)
	}
	return out, true
}

func splitComma(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// restorePending rebuilds, after a load, the pending list of changes made by
// this repo's actor that the server had not confirmed when last seen.
func (o *owner) restorePending() {
	actor, err := o.repo.actorID(context.Background())
	if err != nil || !o.repo.isUnsynced(o.id) {
		return
	}
	hist, err := o.doc.History()
	if err != nil {
		return
	}
	notYet := map[crdt.Hash]bool{}
	if heads, ok := o.repo.loadConfirmed(o.id); ok {
		since, err := o.doc.HashesSince(heads)
		if err != nil {
			return
		}
		for _, h := range since {
			notYet[h] = true
		}
	} else {
		for _, c := range hist {
			notYet[c.Hash] = true
		}
	}
	o.local = o.local[:0]
	for _, c := range hist {
		if c.Actor == actor && notYet[c.Hash] {
			o.local = append(o.local, localChange{hash: c.Hash, at: c.Time})
		}
	}
	o.statusDirty = true
}

func (r *Repo) isUnsynced(id crdt.DocumentID) bool {
	m := r.loadUnsynced()
	r.client.mu.Lock()
	defer r.client.mu.Unlock()
	return m[id]
}

// setDocStatus updates the aggregate and wakes status watchers.
func (r *Repo) setDocStatus(id crdt.DocumentID, st DocStatus) {
	cs := &r.client
	cs.mu.Lock()
	if cs.docStatus == nil {
		cs.docStatus = make(map[crdt.DocumentID]DocStatus)
	}
	old, had := cs.docStatus[id]
	if had && old.State == st.State && old.Pending == st.Pending && old.LastConfirmed.Equal(st.LastConfirmed) {
		cs.mu.Unlock()
		return
	}
	cs.docStatus[id] = st
	cs.mu.Unlock()
	r.statusChanged()
}

func (r *Repo) statusChanged() {
	cs := &r.client
	cs.mu.Lock()
	if cs.changed != nil {
		close(cs.changed)
	}
	cs.changed = make(chan struct{})
	cs.mu.Unlock()
}

// RepoStatus is the whole repo's sync status.
type RepoStatus struct {
	State         SyncState
	Pending       int // unconfirmed local changes, over all live documents
	Unsynced      int // documents with unconfirmed local changes
	LastConfirmed time.Time
	LastError     error
}

// Status returns the repo's aggregate sync status.
func (r *Repo) Status() RepoStatus {
	ci := r.connState()
	unsynced := len(r.Unsynced())
	cs := &r.client
	cs.mu.Lock()
	st := RepoStatus{Unsynced: unsynced, LastError: ci.err}
	syncing := false
	for _, d := range cs.docStatus {
		st.Pending += d.Pending
		if d.LastConfirmed.After(st.LastConfirmed) {
			st.LastConfirmed = d.LastConfirmed
		}
		if d.State != StateSynced {
			syncing = true
		}
	}
	cs.mu.Unlock()
	switch {
	case ci.connected:
		if syncing || st.Pending > 0 || unsynced > 0 {
			st.State = StateSyncing
		} else {
			st.State = StateSynced
		}
	case ci.connecting:
		st.State = StateConnecting
	case ci.configured && ci.err != nil:
		st.State = StateError
	default:
		st.State = StateOffline
	}
	return st
}

// WatchStatus calls fn with the repo's status now and after every change,
// until ctx ends. Updates are coalesced: a slow fn sees the latest status.
func (r *Repo) WatchStatus(ctx context.Context, fn func(RepoStatus)) {
	var last RepoStatus
	first := true
	for {
		cs := &r.client
		cs.mu.Lock()
		if cs.changed == nil {
			cs.changed = make(chan struct{})
		}
		ch := cs.changed
		cs.mu.Unlock()
		st := r.Status()
		if first || st.State != last.State || st.Pending != last.Pending || st.Unsynced != last.Unsynced || !st.LastConfirmed.Equal(last.LastConfirmed) {
			fn(st)
			last, first = st, false
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// ---------------------------------------------------------------- handle API

// SyncStatus returns the document's sync status.
func (h *DocHandle) SyncStatus(ctx context.Context) (st DocStatus, err error) {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return DocStatus{}, err
	}
	defer h.repo.release(o)
	err = o.do(ctx, func(o *owner) error {
		if err := o.load(); err != nil {
			return err
		}
		st = o.status()
		return nil
	})
	return st, err
}

// Pending lists the local changes the server has not confirmed yet, oldest
// first.
func (h *DocHandle) Pending(ctx context.Context) (hs []crdt.Hash, err error) {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return nil, err
	}
	defer h.repo.release(o)
	err = o.do(ctx, func(o *owner) error {
		if err := o.load(); err != nil {
			return err
		}
		for _, l := range o.local {
			hs = append(hs, l.hash)
		}
		return nil
	})
	return hs, err
}

// WaitSynced blocks until the server has confirmed every local change made
// so far and this repo has every change the server has, or ctx ends.
func (h *DocHandle) WaitSynced(ctx context.Context) error {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return err
	}
	defer h.repo.release(o)
	var wait chan struct{}
	err = o.do(ctx, func(o *owner) error {
		if err := o.load(); err != nil {
			return err
		}
		o.settle()
		if err := o.flush(); err != nil {
			return err
		}
		if o.status().State == StateSynced {
			return nil
		}
		wait = make(chan struct{})
		o.syncWaiters = append(o.syncWaiters, wait)
		return nil
	})
	if err != nil || wait == nil {
		return err
	}
	select {
	case <-wait:
		return nil
	case <-o.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("repo: wait synced %s: %w", h.id, ctx.Err())
	}
}
