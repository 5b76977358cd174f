package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tandemsync/tandem/crdt"
)

// ErrRejected wraps a validator's reason for refusing a change.
var ErrRejected = errors.New("repo: change rejected")

// Validator decides whether a document may take a new state: view is the
// JSON view (as crdt.Doc.Get returns it) the document would have after the
// change. A non-nil error rejects the change: it is not applied, not stored
// and not sent on.
type Validator func(doc crdt.DocumentID, view any) error

// validateLocal checks the uncommitted writes of a local change.
func (o *owner) validateLocal() error {
	v := o.repo.cfg.Validate
	if v == nil {
		return nil
	}
	view, err := o.doc.Get("")
	if err != nil {
		return err
	}
	if err := v(o.id, view); err != nil {
		o.repo.obs.ChangesRejected(1, RejectValidation)
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return nil
}

// validateIncoming applies the changes a sync message carries to a copy of
// the document and validates the result. It costs a copy of the document
// (history-sized) per message that carries changes, so only repos with a
// validator pay it.
func (o *owner) validateIncoming(msg []byte) (hashes []crdt.Hash, err error) {
	v := o.repo.cfg.Validate
	if o.doc == nil || (v == nil && o.repo.cfg.MaxDocumentBytes <= 0 && o.repo.cfg.WarnDocumentBytes <= 0) {
		return nil, nil
	}
	changes, hashes, err := crdt.SyncMessageChanges(msg)
	if err != nil || len(hashes) == 0 {
		return nil, nil // malformed messages are refused by Receive itself
	}
	if err := o.checkSize(int64(len(changes))); err != nil {
		o.repo.obs.ChangesRejected(len(hashes), RejectTooLarge)
		return hashes, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if v == nil {
		return nil, nil
	}
	trial, err := o.doc.Fork()
	if err != nil {
		return hashes, err
	}
	if err := trial.LoadIncremental(changes); err != nil {
		o.repo.obs.ChangesRejected(len(hashes), RejectInvalid)
		return hashes, err
	}
	view, err := trial.Get("")
	if err != nil {
		return hashes, err
	}
	if err := v(o.id, view); err != nil {
		o.repo.obs.ChangesRejected(len(hashes), RejectValidation)
		return hashes, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return nil, nil
}

// rejectionText names the rejected changes and the reason for the peer.
func rejectionText(doc crdt.DocumentID, hashes []crdt.Hash, err error) string {
	hs := make([]string, len(hashes))
	for i, h := range hashes {
		hs[i] = h.String()
	}
	return fmt.Sprintf("rejected change %s to %s: %v", strings.Join(hs, ","), doc.URL(), err)
}

// parseRejection reads the error text a server sends for rejected changes.
func parseRejection(msg string) (crdt.DocumentID, []crdt.Hash, string, bool) {
	rest, ok := strings.CutPrefix(msg, "rejected change ")
	if !ok {
		return "", nil, "", false
	}
	list, rest, ok := strings.Cut(rest, " to ")
	if !ok {
		return "", nil, "", false
	}
	url, reason, ok := strings.Cut(rest, ": ")
	if !ok {
		return "", nil, "", false
	}
	id, _, err := crdt.ParseURL(url)
	if err != nil {
		return "", nil, "", false
	}
	var hashes []crdt.Hash
	for _, s := range strings.Split(list, ",") {
		h, err := crdt.ParseHash(s)
		if err != nil {
			return "", nil, "", false
		}
		hashes = append(hashes, h)
	}
	return id, hashes, reason, true
}

// handleRejection rolls back, by itself, local changes the server rejected,
// and tells subscribers (Event.Rejected).
func (p *peer) handleRejection(msg string) {
	id, hashes, reason, ok := parseRejection(msg)
	if !ok {
		return
	}
	o := p.attached(id)
	if o == nil {
		return
	}
	_ = o.send(context.Background(), func(o *owner) {
		var mine []crdt.Hash
		for _, h := range hashes {
			for _, l := range o.local {
				if l.hash == h {
					mine = append(mine, h)
				}
			}
		}
		if len(mine) == 0 {
			return
		}
		dropped, paths, err := o.dropRejected(mine)
		if err != nil {
			o.repo.log.Warn("cannot roll back rejected changes", "doc", o.id, "err", err)
			return
		}
		o.events = append(o.events, Event{DocumentID: o.id, Local: true, Paths: paths, Rejected: reason, RolledBack: dropped})
	})
}

// dropRejected removes rejected local changes (and the pending changes
// made on top of them) from the document and from local storage. Unlike
// Rollback it rewrites history: the server refused these changes, so
// nobody else has them, and keeping them would make every later change
// depend on something the server will never accept.
func (o *owner) dropRejected(rejected []crdt.Hash) ([]crdt.Hash, []string, error) {
	o.settle()
	first := len(o.local)
	for _, h := range rejected {
		for i, l := range o.local {
			if l.hash == h && i < first {
				first = i
			}
		}
	}
	if first >= len(o.local) {
		return nil, nil, nil
	}
	if err := o.flush(); err != nil {
		return nil, nil, err
	}
	drop := map[crdt.Hash]bool{}
	var dropped []crdt.Hash
	for _, l := range o.local[first:] {
		drop[l.hash] = true
		dropped = append(dropped, l.hash)
	}
	fork, err := o.forkWithout(drop)
	if err != nil {
		return nil, nil, err
	}
	if actor, err := o.repo.actorID(context.Background()); err == nil {
		if err := fork.SetActorID(actor); err != nil {
			return nil, nil, err
		}
	}
	before, _ := o.doc.Get("")
	snap := fork.Save()
	if o.lastSeq > 0 {
		if err := o.repo.store.Compact(context.Background(), string(o.id), snap, o.lastSeq, hexHeads(fork.Heads())); err != nil {
			return nil, nil, err
		}
	} else if _, err := o.repo.store.Append(context.Background(), string(o.id), snap, hexHeads(fork.Heads())); err != nil {
		return nil, nil, err
	}
	o.snapshotSize, o.chunkBytes = int64(len(snap)), 0
	o.doc = fork
	o.mutated()
	o.local = o.local[:first]
	for _, pd := range o.peers {
		// History went back: every session starts again.
		pd.ss = crdt.NewSyncState(fork)
		pd.push = nil
	}
	for p := range o.peers {
		o.dirtyPeers[p] = struct{}{}
	}
	o.statusDirty = true
	after, _ := fork.Get("")
	return dropped, crdt.ChangedPaths(before, after), nil
}

// size is the document's stored size plus what waits to be stored.
func (o *owner) size() int64 {
	n := o.snapshotSize + o.chunkBytes
	for _, p := range o.pending {
		n += int64(len(p))
	}
	return n
}

// checkSize applies the size limits to adding extra bytes.
func (o *owner) checkSize(extra int64) error {
	cfg := o.repo.cfg
	n := o.size() + extra
	if cfg.WarnDocumentBytes > 0 && n > cfg.WarnDocumentBytes && !o.warnedSize {
		o.warnedSize = true
		o.repo.log.Warn("document is growing large", "doc", o.id, "bytes", n, "warn_at", cfg.WarnDocumentBytes)
	}
	if cfg.MaxDocumentBytes > 0 && n > cfg.MaxDocumentBytes {
		return fmt.Errorf("%w: %s would hold %d bytes, over the limit of %d", ErrTooLarge, o.id, n, cfg.MaxDocumentBytes)
	}
	return nil
}
