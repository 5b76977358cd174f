package crdt

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/automerge/automerge-go"
)

// Doc is an Automerge document with a JSON view, JSON Pointer paths and
// explicit commits. It is not safe for concurrent use: one goroutine owns
// a Doc (and the SyncStates made for it).
//
// Writes (Set, Add, Delete, ApplyPatch, ...) accumulate until Commit turns
// them into one Automerge change. Operations that read or extend the
// history (Save, SaveIncremental, ChangesSince, History, Fork, Merge,
// LoadIncremental, SetActorID and the SyncState calls) first commit pending
// writes with an empty message, as Automerge itself would; call Commit
// before them to choose the message and get the CommitInfo. Heads, Get and
// JSON never commit: while writes are pending, Heads reports the heads of
// the committed state and Get sees the pending writes.
type Doc struct {
	am *automerge.Doc // nil while a graph-backed document is not materialized

	// g holds the committed changes of a graph-backed document (see
	// graphdoc.go), and actor the actor its core copy writes as.
	g     *Graph
	actor string
	// coreUsed: a read or write needed the core copy since the last
	// DematerializeUnused.
	coreUsed bool

	dirty   bool                   // writes since the last commit
	base    []automerge.ChangeHash // heads before the first pending write (for Rollback)
	paths   []string               // pointers written since the last commit
	pathSet map[string]struct{}

	saved []automerge.ChangeHash // heads covered by the last Save/SaveIncremental/Load

	// queued holds changes that were received but wait inside Automerge
	// for missing dependencies. Automerge does not expose its queue, and
	// replacing the inner document (Rollback) would lose them, which can
	// stall sync for good: the peer remembers having sent them.
	queued map[automerge.ChangeHash][]byte

	// known caches hashes found in the document: a change never leaves
	// it, and automerge-go can only answer "is h here?" by serializing the
	// change (the commonest question: a new change's dependencies, which
	// are our latest changes). Bounded; cleared when full.
	known map[automerge.ChangeHash]struct{}

	// heads caches the committed heads (valid while headsOK): asking
	// Automerge costs a cgo call and a result of its own (several µs), and
	// the sync paths ask several times per message. Every call that can
	// add a change clears headsOK.
	heads   []automerge.ChangeHash
	headsOK bool
}

// amHeads returns the committed heads, from the cache when valid. Callers
// must not modify the result.
func (d *Doc) amHeads() []automerge.ChangeHash {
	if !d.headsOK {
		if d.g != nil {
			d.heads = toAMHashes(d.g.heads)
		} else {
			d.heads = d.am.Heads()
		}
		d.headsOK = true
	}
	return d.heads
}

// changed forgets the cached heads: a change may have been added.
func (d *Doc) changed() { d.headsOK = false }

const maxKnown = 4096

func (d *Doc) remember(h automerge.ChangeHash) {
	if d.known == nil || len(d.known) >= maxKnown {
		d.known = make(map[automerge.ChangeHash]struct{}, 64)
	}
	d.known[h] = struct{}{}
}

// guard runs f and turns a panic (automerge-go panics on some errors) into
// an error wrapping sentinel.
func guard(sentinel error, what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", sentinel, what, r)
		}
	}()
	if err := f(); err != nil {
		return fmt.Errorf("%w: %s: %v", sentinel, what, err)
	}
	return nil
}

func wrapDoc(am *automerge.Doc) *Doc { return &Doc{am: am} }

// New returns an empty document with a random actor id and no history.
func New() *Doc { return wrapDoc(automerge.New()) }

// NewWithActor returns an empty document that writes as actor (a non-empty,
// even-length hex string).
func NewWithActor(actor string) (*Doc, error) {
	d := New()
	if err := d.setActor(actor); err != nil {
		return nil, err
	}
	return d, nil
}

// FromJSON returns a new document whose root holds the JSON object data,
// committed as one change with message "create" (an empty object also gets
// its change, so that the document has heads).
func FromJSON(data []byte) (*Doc, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	n, err := normalize(v)
	if err != nil {
		return nil, err
	}
	obj, ok := n.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: the root of a document must be a JSON object", ErrTypeMismatch)
	}
	d := New()
	if err := d.setRoot(obj); err != nil {
		return nil, err
	}
	if _, _, err := d.commit("create", true); err != nil {
		return nil, err
	}
	return d, nil
}

// Load reads a document saved by Save (of this package, of automerge-go or
// of JavaScript Automerge), or any concatenation of such a document and
// change chunks (SaveIncremental, CommitInfo.Bytes, SyncResult.Changes).
// Empty input gives an empty document, as in Automerge. Bad bytes give
// ErrCorrupt, and so does a change whose dependencies are not in data
// (Automerge's load is strict there; New followed by LoadIncremental
// accepts such changes and waits for the missing ones).
func Load(data []byte) (*Doc, error) {
	if _, err := checkChunks(data); err != nil {
		return nil, err
	}
	var am *automerge.Doc
	err := guard(ErrCorrupt, "load", func() (err error) {
		am, err = automerge.Load(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	d := wrapDoc(am)
	d.saved = am.Heads()
	return d, nil
}

// LoadIncremental applies a document or change chunks (as accepted by
// Load) to d. Changes d already has are ignored; changes whose
// dependencies are missing wait inside Automerge until those arrive.
// automerge-go's LoadIncremental silently ignores everything from the first
// chunk it cannot parse; here the framing and checksums of every chunk are
// checked first, and bad bytes give ErrCorrupt with d unchanged.
func (d *Doc) LoadIncremental(data []byte) error {
	noteForeign(len(data))
	if len(data) == 0 {
		return nil
	}
	changes, err := checkChunks(data)
	if err != nil {
		return err
	}
	if err := d.flush(); err != nil {
		return err
	}
	defer d.changed()
	if d.g != nil {
		return d.loadIncrementalGraph(data, changes)
	}
	if len(d.amHeads()) == 0 {
		// Nothing to merge with: loading as a document is much faster than
		// applying a snapshot change by change. (Load refuses changes whose
		// dependencies are missing; the general path below queues them.)
		actor := d.am.ActorID()
		var am *automerge.Doc
		err := guard(ErrCorrupt, "load incremental", func() (err error) {
			if am, err = automerge.Load(data); err != nil {
				return err
			}
			return am.SetActorID(actor)
		})
		if err == nil {
			return d.replaceInner(am)
		}
	}
	err = guard(ErrCorrupt, "load incremental", func() error { return d.am.LoadIncremental(data) })
	if err != nil {
		return err
	}
	d.trackQueued(changes)
	return nil
}

// hasChange reports whether the change is applied (not merely queued).
func (d *Doc) hasChange(h automerge.ChangeHash) bool {
	if d.g != nil {
		return d.g.Has(Hash(h))
	}
	if _, ok := d.known[h]; ok {
		return true
	}
	noteForeign(changeCost)
	if _, err := d.am.Change(h); err != nil {
		return false
	}
	d.remember(h)
	return true
}

// trackQueued forgets queued changes that got applied and remembers those
// among candidates (just given to Automerge) that were not applied. Only
// the candidates that no other candidate depends on are looked up, and
// below them only those that turn out to be unapplied: an applied change's
// dependencies are applied.
func (d *Doc) trackQueued(candidates []changeChunk) {
	for h := range d.queued {
		if d.hasChange(h) {
			delete(d.queued, h)
		}
	}
	if len(candidates) == 0 {
		return
	}
	byHash := make(map[automerge.ChangeHash]*changeChunk, len(candidates))
	for i := range candidates {
		byHash[candidates[i].hash] = &candidates[i]
	}
	dependedOn := make(map[automerge.ChangeHash]bool)
	for _, c := range candidates {
		for _, dep := range c.deps {
			dependedOn[dep] = true
		}
	}
	var stack []*changeChunk
	for i := range candidates {
		if !dependedOn[candidates[i].hash] {
			stack = append(stack, &candidates[i])
		}
	}
	seen := make(map[automerge.ChangeHash]bool)
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[c.hash] {
			continue
		}
		seen[c.hash] = true
		if d.hasChange(c.hash) {
			continue
		}
		if d.queued == nil {
			d.queued = make(map[automerge.ChangeHash][]byte)
		}
		if _, ok := d.queued[c.hash]; !ok {
			d.queued[c.hash] = append([]byte(nil), c.raw...)
		}
		for _, dep := range c.deps {
			if dc, ok := byHash[dep]; ok {
				stack = append(stack, dc)
			}
		}
	}
}

// replaceInner makes am the inner document and gives it the queued
// changes of the old one.
func (d *Doc) replaceInner(am *automerge.Doc) error {
	d.am = am
	d.changed()
	if len(d.queued) == 0 {
		return nil
	}
	var all []byte
	for _, raw := range d.queued {
		all = append(all, raw...)
	}
	err := guard(ErrCorrupt, "requeue", func() error { return d.am.LoadIncremental(all) })
	d.trackQueued(nil)
	return err
}

// Save returns the whole document, compressed. It also marks everything as
// saved for SaveIncremental.
func (d *Doc) Save() []byte {
	_ = d.flush()
	if d.g != nil {
		d.saved = d.amHeads()
		return concatChunks(d.g.ChangesSince(nil))
	}
	var out []byte
	_ = guard(ErrCorrupt, "save", func() error {
		out = d.am.Save()
		d.saved = d.amHeads()
		return nil
	})
	noteForeign(len(out))
	return out
}

// Export returns the whole document in Automerge's compressed document
// format, for other programs (Automerge.load in JavaScript, say). For a
// plain document that is what Save returns; a graph-backed document saves
// its change chunks (cheap to write, far bigger: 1.1 MB against 21 KB for
// 10,000 small changes), so Export builds its core copy for the compact
// form, leaving out changes that still wait for their dependencies. Unlike
// Save it does not change what SaveIncremental returns next.
func (d *Doc) Export() ([]byte, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	if err := d.materialize(); err != nil {
		return nil, err
	}
	var out []byte
	err := guard(ErrCorrupt, "export", func() error {
		out = d.am.Save()
		return nil
	})
	noteForeign(len(out))
	return out, err
}

// SaveIncremental returns the changes added since the last Save,
// SaveIncremental or Load (all changes for a new document), concatenated;
// empty when there are none. Append the result to what was saved before
// and Load restores the document. A Fork starts with nothing saved.
func (d *Doc) SaveIncremental() []byte {
	_ = d.flush()
	if d.g != nil {
		out := concatChunks(d.g.ChangesSince(fromAMHashes(d.saved)))
		d.saved = d.amHeads()
		return out
	}
	var out []byte
	_ = guard(ErrCorrupt, "save incremental", func() error {
		heads := d.amHeads()
		cs, err := d.am.Changes(d.saved...)
		if err != nil {
			return err
		}
		out = automerge.SaveChanges(cs)
		d.saved = heads
		noteForeign(changeCost*len(cs) + len(out))
		return nil
	})
	return out
}

// Heads returns the hashes of the document's current heads, sorted as
// Automerge returns them; empty for a document without changes. While
// writes are pending it returns the heads of the committed state.
func (d *Doc) Heads() []Hash {
	noteForeign(resultCost)
	if d.dirty {
		return fromAMHashes(d.base)
	}
	var hs []automerge.ChangeHash
	_ = guard(ErrCorrupt, "heads", func() error { hs = d.amHeads(); return nil })
	return fromAMHashes(hs)
}

// ActorID returns the hex actor id that the document's writes are made as.
func (d *Doc) ActorID() string {
	if d.am == nil {
		return d.actorForCore()
	}
	return d.am.ActorID()
}

// SetActorID changes the actor id used for subsequent changes (a
// non-empty, even-length hex string). Pending writes are committed first.
func (d *Doc) SetActorID(actor string) error {
	if err := validateActor(actor); err != nil {
		return err
	}
	if err := d.flush(); err != nil {
		return err
	}
	return d.setActor(actor)
}

func validateActor(actor string) error {
	if actor == "" {
		return fmt.Errorf("%w: empty", ErrInvalidActor)
	}
	if _, err := hex.DecodeString(actor); err != nil {
		return fmt.Errorf("%w: %q is not an even-length hex string", ErrInvalidActor, actor)
	}
	return nil
}

func (d *Doc) setActor(actor string) error {
	if err := validateActor(actor); err != nil {
		return err
	}
	actor = strings.ToLower(actor)
	if d.g != nil {
		d.actor = actor
		if d.am == nil {
			return nil
		}
	}
	return guard(ErrInvalidActor, actor, func() error { return d.am.SetActorID(actor) })
}

// HasUncommitted reports whether Set, Add, Delete or ApplyPatch wrote since
// the last Commit (or Rollback).
func (d *Doc) HasUncommitted() bool { return d.dirty }

// Commit turns the pending writes into one change with message msg (may be
// empty) and the current time. It returns false when nothing was written
// since the last commit.
func (d *Doc) Commit(msg string) (CommitInfo, bool, error) {
	return d.commit(msg, false)
}

func (d *Doc) commit(msg string, allowEmpty bool) (CommitInfo, bool, error) {
	noteForeign(2 * changeCost)
	if !d.dirty && !allowEmpty {
		return CommitInfo{}, false, nil
	}
	if err := d.materialize(); err != nil {
		return CommitInfo{}, false, err
	}
	var (
		info  CommitInfo
		empty bool
	)
	defer d.changed()
	err := guard(ErrCorrupt, "commit", func() error {
		now := commitClock()
		h, err := d.am.Commit(msg, automerge.CommitOptions{Time: &now, AllowEmpty: allowEmpty})
		if err != nil {
			if err.Error() == "Commit is empty" { // automerge-go's only way to say so
				empty = true
				return nil
			}
			return err
		}
		ch, err := d.am.Change(h)
		if err != nil {
			return err
		}
		info = CommitInfo{Hash: Hash(h), Paths: d.paths, Bytes: ch.Save()}
		d.remember(h)
		return nil
	})
	if err != nil {
		return CommitInfo{}, false, err
	}
	d.clearPending()
	if empty {
		return CommitInfo{}, false, nil
	}
	if err := d.graphAdd(info.Bytes); err != nil {
		return CommitInfo{}, false, err
	}
	return info, true, nil
}

// commitClock gives commit timestamps; tests replace it to make change
// hashes reproducible.
var commitClock = time.Now

// flush commits pending writes with an empty message, before operations
// that would make Automerge do so anonymously.
func (d *Doc) flush() error {
	if !d.dirty {
		return nil
	}
	_, _, err := d.commit("", false)
	return err
}

func (d *Doc) clearPending() {
	d.dirty = false
	d.base = nil
	d.paths = nil
	d.pathSet = nil
}

// beginWrite records that ptr is about to be written.
func (d *Doc) beginWrite(ptr string) {
	if !d.dirty {
		d.base = d.amHeads() // no open transaction, so this commits nothing
		d.dirty = true
	}
	if d.pathSet == nil {
		d.pathSet = make(map[string]struct{})
	}
	if _, ok := d.pathSet[ptr]; !ok {
		d.pathSet[ptr] = struct{}{}
		d.paths = append(d.paths, ptr)
	}
}

// Rollback discards the writes made since the last commit. automerge-go
// has no rollback, so this rebuilds the document from its history up to
// the committed heads (Fork at those heads, same actor): it costs as much
// as loading the document and is meant for error paths only. Changes that
// were received with missing dependencies (queued inside Automerge) are
// kept.
func (d *Doc) Rollback() error {
	if !d.dirty {
		return nil
	}
	actor := d.am.ActorID()
	var am *automerge.Doc
	err := guard(ErrCorrupt, "rollback", func() (err error) {
		if len(d.base) == 0 {
			am = automerge.New()
		} else if am, err = d.am.Fork(d.base...); err != nil {
			return err
		}
		return am.SetActorID(actor)
	})
	if err != nil {
		return err
	}
	d.clearPending()
	return d.replaceInner(am)
}

// History returns every change of the document in causal order (each
// change after its dependencies).
func (d *Doc) History() ([]ChangeInfo, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	if err := d.materialize(); err != nil {
		return nil, err
	}
	var out []ChangeInfo
	defer func() { noteForeign(changeCost * len(out)) }()
	err := guard(ErrCorrupt, "history", func() error {
		cs, err := d.am.Changes()
		if err != nil {
			return err
		}
		out = make([]ChangeInfo, 0, len(cs))
		for _, c := range cs {
			var t time.Time
			if ts := c.Timestamp(); ts.UnixMilli() != 0 {
				t = ts.UTC()
			}
			out = append(out, ChangeInfo{
				Hash:    Hash(c.Hash()),
				Actor:   c.ActorID(),
				Seq:     c.ActorSeq(),
				Time:    t,
				Message: c.Message(),
				Deps:    fromAMHashes(c.Dependencies()),
			})
		}
		return nil
	})
	return out, err
}

// Fork returns an independent copy of the document (pending writes are
// committed first) that writes as a new random actor. The copy starts with
// nothing saved, so its first SaveIncremental returns its whole history.
func (d *Doc) Fork() (*Doc, error) {
	noteForeign(64 << 10) // a whole document, freed by a finalizer
	if err := d.flush(); err != nil {
		return nil, err
	}
	if err := d.materialize(); err != nil {
		return nil, err
	}
	var am *automerge.Doc
	err := guard(ErrCorrupt, "fork", func() (err error) {
		am, err = d.am.Fork()
		return err
	})
	if err != nil {
		return nil, err
	}
	return wrapDoc(am), nil
}

// Merge applies to d the changes of other that d lacks. Pending writes of
// both documents are committed first.
func (d *Doc) Merge(other *Doc) error {
	if other == nil || other == d {
		return nil
	}
	if err := d.flush(); err != nil {
		return err
	}
	if err := other.flush(); err != nil {
		return err
	}
	if err := d.materialize(); err != nil {
		return err
	}
	if err := other.materialize(); err != nil {
		return err
	}
	defer d.changed()
	err := guard(ErrCorrupt, "merge", func() error {
		_, err := d.am.Merge(other.am)
		return err
	})
	if err != nil || d.g == nil {
		return err
	}
	// The graph takes what the merge brought.
	var news []byte
	err = guard(ErrCorrupt, "merge", func() error {
		cs, err := d.am.Changes(toAMHashes(d.g.heads)...)
		news = automerge.SaveChanges(cs)
		return err
	})
	if err != nil {
		return err
	}
	return d.graphAdd(news)
}

// ChangesSince returns the encoded changes that are not ancestors of heads,
// concatenated (LoadIncremental accepts them). Hashes d does not know are
// ignored, so the result is then a superset of what the holder of heads
// lacks. No heads means the whole history.
func (d *Doc) ChangesSince(heads []Hash) ([]byte, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	if d.g != nil {
		return concatChunks(d.g.ChangesSince(heads)), nil
	}
	var out []byte
	err := guard(ErrCorrupt, "changes", func() error {
		cs, err := d.am.Changes(toAMHashes(heads)...)
		if err != nil {
			return err
		}
		out = automerge.SaveChanges(cs)
		noteForeign(changeCost*len(cs) + len(out))
		return nil
	})
	return out, err
}

func fromAMHashes(hs []automerge.ChangeHash) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}

func toAMHashes(hs []Hash) []automerge.ChangeHash {
	out := make([]automerge.ChangeHash, len(hs))
	for i, h := range hs {
		out[i] = automerge.ChangeHash(h)
	}
	return out
}

func sameHeads(a, b []automerge.ChangeHash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
