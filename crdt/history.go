package crdt

import (
	"fmt"

	"github.com/automerge/automerge-go"
)

// ForkAt returns an independent copy of the document as it was at heads (a
// historical view), writing as a new random actor. Every hash must be a
// change of d (ErrInvalidHash otherwise). Costs about the document's history.
func (d *Doc) ForkAt(heads []Hash) (*Doc, error) {
	noteForeign(64 << 10) // a whole document, freed by a finalizer
	if err := d.flush(); err != nil {
		return nil, err
	}
	for _, h := range heads {
		if !d.hasChange(automerge.ChangeHash(h)) {
			return nil, fmt.Errorf("%w: %s is not a change of this document", ErrInvalidHash, h)
		}
	}
	if len(heads) == 0 {
		return New(), nil
	}
	if err := d.materialize(); err != nil {
		return nil, err
	}
	var am *automerge.Doc
	err := guard(ErrCorrupt, "fork", func() (err error) {
		am, err = d.am.Fork(toAMHashes(heads)...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return wrapDoc(am), nil
}

// HashesSince returns the hashes of the changes that are not ancestors of
// heads (nor in heads), in causal order. Hashes d does not know are ignored,
// so the result may include changes the holder of heads has.
func (d *Doc) HashesSince(heads []Hash) ([]Hash, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	if d.g != nil {
		return d.g.HashesSince(heads), nil
	}
	var out []Hash
	err := guard(ErrCorrupt, "changes", func() error {
		known := make([]automerge.ChangeHash, 0, len(heads))
		for _, h := range heads {
			if d.hasChange(automerge.ChangeHash(h)) {
				known = append(known, automerge.ChangeHash(h))
			}
		}
		if len(known) == 0 && len(heads) > 0 {
			// Nothing in common that we can name: everything is "since".
			known = nil
		}
		cs, err := d.am.Changes(known...)
		if err != nil {
			return err
		}
		noteForeign(changeCost * len(cs))
		out = make([]Hash, len(cs))
		for i, c := range cs {
			out[i] = Hash(c.Hash())
		}
		return nil
	})
	return out, err
}

// HasChange reports whether h is a change of the document.
func (d *Doc) HasChange(h Hash) bool { return d.hasChange(automerge.ChangeHash(h)) }

// PushMessage builds a version-1 sync message for a peer known to have
// theirHeads: it carries every change of d that is not an ancestor of them
// (see DirectMessage). It does not depend on any sync session's Bloom
// filters, so it delivers changes that a stalled session keeps back.
// Hashes d does not know are ignored.
func (d *Doc) PushMessage(theirHeads []Hash) ([]byte, error) {
	changes, err := d.ChangeChunks(theirHeads)
	if err != nil {
		return nil, err
	}
	return DirectMessage(d.Heads(), changes), nil
}

// ChangeChunks returns, one chunk each and in causal order, every change
// of d that is not an ancestor of heads (all of them for no heads). Hashes
// d does not know are ignored. Pending writes are committed first.
func (d *Doc) ChangeChunks(heads []Hash) ([][]byte, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	if d.g != nil {
		return d.g.ChangesSince(heads), nil
	}
	var known []automerge.ChangeHash
	for _, h := range heads {
		if d.hasChange(automerge.ChangeHash(h)) {
			known = append(known, automerge.ChangeHash(h))
		}
	}
	var changes [][]byte
	err := guard(ErrCorrupt, "changes", func() error {
		cs, err := d.am.Changes(known...)
		if err != nil {
			return err
		}
		n := 0
		for _, c := range cs {
			b := c.Save()
			n += len(b)
			changes = append(changes, b)
		}
		// The result holds each change decoded: about ten times its bytes.
		noteForeign(changeCost*len(cs) + 8*n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return changes, nil
}

func appendHashes(b []byte, hs []Hash) []byte {
	b = appendUleb(b, uint64(len(hs)))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// SyncMessageChanges returns the changes a sync message carries: their
// concatenated bytes (LoadIncremental accepts them) and their hashes.
func SyncMessageChanges(msg []byte) ([]byte, []Hash, error) {
	h, err := parseSyncMessage(msg)
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	hashes := make([]Hash, 0, len(h.changes))
	for _, c := range h.changes {
		out = append(out, c.raw...)
		hashes = append(hashes, Hash(c.hash))
	}
	return out, hashes, nil
}
