package repo

import (
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
	if v == nil || o.doc == nil {
		return nil, nil
	}
	changes, hashes, err := crdt.SyncMessageChanges(msg)
	if err != nil || len(hashes) == 0 {
		return nil, nil // malformed messages are refused by Receive itself
	}
	trial, err := o.doc.Fork()
	if err != nil {
		return hashes, err
	}
	if err := trial.LoadIncremental(changes); err != nil {
		return hashes, err
	}
	view, err := trial.Get("")
	if err != nil {
		return hashes, err
	}
	if err := v(o.id, view); err != nil {
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
