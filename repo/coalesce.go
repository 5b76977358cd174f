package repo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// ErrCoalescedDiscarded wraps the error of a coalesced change function: the
// uncommitted edits of the current window were discarded with it.
var ErrCoalescedDiscarded = errors.New("repo: coalesced edits of this window discarded")

// coalesceState is an open debounce window: edits applied but not yet
// committed. Owned by the owner goroutine.
type coalesceState struct {
	timer *time.Timer
	msg   string
}

func (c *coalesceState) active() bool { return c.timer != nil }

// timerC is nil (blocks forever in select) when no window is open.
func (c *coalesceState) timerC() <-chan time.Time {
	if c.timer == nil {
		return nil
	}
	return c.timer.C
}

// WithCoalesce returns a handle on the same document whose Change calls
// apply at once but are committed together, as one Automerge change, at the
// end of a window that the first of them opens. So a slider dragged through
// a thousand values in a second makes a few dozen changes, not a thousand.
// The window is also closed before any sync message, any read, any
// non-coalesced change and on Close. Until then the edits are applied but
// not durable, and not pending (ChangeResult.Changed is false).
func (h *DocHandle) WithCoalesce(window time.Duration) *DocHandle {
	c := *h
	c.coalesce = window
	return &c
}

// Flush closes an open coalescing window: the edits become one durable
// change.
func (h *DocHandle) Flush(ctx context.Context) error {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return err
	}
	defer h.repo.release(o)
	return o.do(ctx, func(o *owner) error {
		o.settle()
		return o.flush()
	})
}

// changeCoalesced applies fn inside the document's open window.
func (o *owner) changeCoalesced(fn func(*crdt.Doc) error, msg string, window time.Duration) error {
	if err := o.load(); err != nil {
		return err
	}
	if !o.coalesce.active() {
		if o.doc.HasUncommitted() {
			// Never happens: writes are committed or rolled back per op.
			o.doc.Rollback()
		}
		o.coalesce.timer = time.NewTimer(window)
		o.coalesce.msg = msg
	}
	if err := fn(o.doc); err != nil {
		o.endWindow()
		if rerr := o.doc.Rollback(); rerr != nil {
			o.doc = nil
		}
		o.mutated()
		return fmt.Errorf("%w: %w", ErrCoalescedDiscarded, err)
	}
	if msg != "" {
		o.coalesce.msg = msg
	}
	return nil
}

func (o *owner) endWindow() {
	if o.coalesce.timer != nil {
		o.coalesce.timer.Stop()
		o.coalesce.timer = nil
	}
}

// settle commits the edits of an open coalescing window as one change.
func (o *owner) settle() {
	if !o.coalesce.active() {
		return
	}
	msg := o.coalesce.msg
	o.endWindow()
	if o.doc == nil || !o.doc.HasUncommitted() {
		return
	}
	if err := o.validateLocal(); err != nil {
		o.repo.log.Warn("coalesced edits rejected", "doc", o.id, "err", err)
		if rerr := o.doc.Rollback(); rerr != nil {
			o.doc = nil
		}
		o.mutated()
		return
	}
	if _, err := o.commitLocal(msg); err != nil {
		o.repo.log.Error("commit of coalesced edits failed", "doc", o.id, "err", err)
	}
}

// commitLocal commits the document's uncommitted writes as one local change
// and queues it for persistence, subscribers and peers.
func (o *owner) commitLocal(msg string) (ChangeResult, error) {
	base := o.heads()
	info, ok, err := o.doc.Commit(msg)
	o.mutated()
	if err != nil {
		return ChangeResult{}, err
	}
	if !ok {
		return ChangeResult{Heads: o.heads()}, nil
	}
	o.pending = append(o.pending, info.Bytes)
	o.direct.delta = append(o.direct.delta, info.Bytes)
	o.pendingLocal++
	o.addLocal(info)
	o.local[len(o.local)-1].base = base
	o.changed = true
	o.events = append(o.events, Event{DocumentID: o.id, Paths: info.Paths, Local: true, Hash: info.Hash})
	return ChangeResult{Changed: true, Hash: info.Hash, Heads: o.heads(), Paths: info.Paths}, nil
}

// ---------------------------------------------------------------- conflicts

// Conflict describes a remote change that wrote a path concurrently with a
// local change. Winner is Automerge's deterministic choice: the value now in
// the document.
type Conflict struct {
	Path        string
	Local       any         // the value this repo had written
	Remote      any         // the value the remote side wrote
	Winner      any         // the value the document holds after the merge
	LocalChange crdt.Hash   // the local change that wrote Path
	RemoteHeads []crdt.Hash // the remote side's heads that carried its write
}

// conflictProbe holds the values of locally written paths before a remote
// message is applied.
type conflictProbe struct {
	before map[string]any
}

// probeConflicts notes the current values of paths written by pending or
// recent local changes; nil when there are none.
func (o *owner) probeConflicts() *conflictProbe {
	o.pruneRecent(time.Now())
	if len(o.local) == 0 && len(o.recent) == 0 {
		return nil
	}
	pr := &conflictProbe{before: map[string]any{}}
	for _, set := range [][]localChange{o.recent, o.local} {
		for _, l := range set {
			for _, p := range l.paths {
				if _, ok := pr.before[p]; ok {
					continue
				}
				v, err := o.doc.Get(p)
				if err != nil {
					v = nil
				}
				pr.before[p] = v
			}
		}
	}
	return pr
}

// detectConflicts emits one Conflict event per (local change, path) that a
// just-applied remote change wrote concurrently. The remote side is each
// head of the merged document that is not a local change and does not
// descend from the local change: the state at that head is what the remote
// writer saw and wrote.
func (o *owner) detectConflicts(pr *conflictProbe) {
	if pr == nil {
		return
	}
	mine := map[crdt.Hash]bool{}
	for _, set := range [][]localChange{o.recent, o.local} {
		for _, l := range set {
			mine[l.hash] = true
		}
	}
	reported := map[string]bool{}
	for _, head := range o.heads() {
		if mine[head] {
			continue
		}
		since, err := o.doc.HashesSince([]crdt.Hash{head})
		if err != nil {
			return
		}
		unseen := make(map[crdt.Hash]bool, len(since))
		for _, h := range since {
			unseen[h] = true
		}
		var remote *crdt.Doc
		for _, set := range [][]localChange{o.recent, o.local} {
			for _, l := range set {
				if !unseen[l.hash] || len(l.paths) == 0 || l.base == nil {
					continue // the remote writer had seen it: not concurrent
				}
				if remote == nil {
					if remote, err = o.doc.ForkAt([]crdt.Hash{head}); err != nil {
						return
					}
				}
				base, err := o.doc.ForkAt(l.base)
				if err != nil {
					continue
				}
				for _, p := range l.paths {
					key := l.hash.String() + p
					if reported[p] || o.conflictSeen[key] {
						continue
					}
					rv, rerr := remote.Get(p)
					bv, berr := base.Get(p)
					if (rerr != nil) == (berr != nil) && reflect.DeepEqual(rv, bv) {
						continue // the remote side did not write p
					}
					winner, _ := o.doc.Get(p)
					reported[p] = true
					if o.conflictSeen == nil {
						o.conflictSeen = map[string]bool{}
					}
					o.conflictSeen[key] = true
					o.events = append(o.events, Event{DocumentID: o.id, Remote: true, Conflict: &Conflict{
						Path: p, Local: pr.before[p], Remote: rv, Winner: winner,
						LocalChange: l.hash, RemoteHeads: []crdt.Hash{head},
					}})
				}
			}
		}
	}
}

// ---------------------------------------------------------------- rollback

// Rollback discards pending local changes: the ones given (and every
// pending change made after the earliest of them, since each was made on
// top of it), or all pending changes when none are given. The document
// returns to its confirmed state plus every remote change received since;
// Automerge history is append-only, so this is done by one new local change
// that restores those values, which subscribers see like any change.
// Rolling back a confirmed change fails with ErrConfirmed.
func (h *DocHandle) Rollback(ctx context.Context, changes ...crdt.Hash) (ChangeResult, error) {
	return h.durableChange(ctx, func(o *owner) (ChangeResult, error) { return o.rollback(changes) })
}

func (o *owner) rollback(changes []crdt.Hash) (ChangeResult, error) {
	if err := o.load(); err != nil {
		return ChangeResult{}, err
	}
	o.settle()
	first := len(o.local)
	if len(changes) == 0 {
		first = 0
	}
	for _, c := range changes {
		i := slices.IndexFunc(o.local, func(l localChange) bool { return l.hash == c })
		if i < 0 {
			if o.doc.HasChange(c) {
				return ChangeResult{}, fmt.Errorf("%w: %s", ErrConfirmed, c)
			}
			return ChangeResult{}, fmt.Errorf("%w: %s", ErrUnknownChange, c)
		}
		first = min(first, i)
	}
	if first >= len(o.local) {
		return ChangeResult{Heads: o.heads()}, nil
	}
	drop := o.local[first:]
	dropped := make(map[crdt.Hash]bool, len(drop))
	var hashes []crdt.Hash
	for _, l := range drop {
		dropped[l.hash] = true
		hashes = append(hashes, l.hash)
	}
	target, err := o.forkWithout(dropped)
	if err != nil {
		return ChangeResult{}, err
	}
	want, err := target.Get("")
	if err != nil {
		want = map[string]any{}
	}
	have, err := o.doc.Get("")
	if err != nil {
		return ChangeResult{}, err
	}
	paths := crdt.ChangedPaths(want, have)
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	// Deletions deepest first, then sets shallowest first.
	for _, p := range paths {
		if _, err := target.Get(p); err != nil {
			if _, err := o.doc.Get(p); err == nil {
				if err := o.doc.Delete(p); err != nil {
					o.doc.Rollback()
					return ChangeResult{}, err
				}
			}
		}
	}
	slices.Reverse(paths)
	for _, p := range paths {
		if v, err := target.Get(p); err == nil {
			if err := o.doc.Set(p, v); err != nil {
				o.doc.Rollback()
				return ChangeResult{}, err
			}
		}
	}
	o.local = o.local[:first]
	res, err := o.commitLocal("rollback")
	if err != nil {
		return ChangeResult{}, err
	}
	o.events = append(o.events, Event{DocumentID: o.id, Local: true, RolledBack: hashes})
	o.statusDirty = true
	return res, nil
}

// forkWithout returns a copy of the document without the given changes
// (which must have no kept descendants, as is true of a suffix of local
// changes): a fork at the heads of the remaining history.
func (o *owner) forkWithout(drop map[crdt.Hash]bool) (*crdt.Doc, error) {
	hist, err := o.doc.History()
	if err != nil {
		return nil, err
	}
	isDep := map[crdt.Hash]bool{}
	for _, c := range hist {
		if !drop[c.Hash] {
			for _, d := range c.Deps {
				isDep[d] = true
			}
		}
	}
	var keep []crdt.Hash
	for _, c := range hist {
		if !drop[c.Hash] && !isDep[c.Hash] {
			keep = append(keep, c.Hash)
		}
	}
	return o.doc.ForkAt(keep)
}
