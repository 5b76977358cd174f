package repo

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// DocHandle refers to one document of a Repo. It is cheap, safe for
// concurrent use, and stays valid while the document is evicted from memory
// and loaded again.
type DocHandle struct {
	repo     *Repo
	id       crdt.DocumentID
	coalesce time.Duration // see WithCoalesce
}

// ID is the document's id.
func (h *DocHandle) ID() crdt.DocumentID { return h.id }

// URL is the document's automerge URL.
func (h *DocHandle) URL() string { return h.id.URL() }

// ChangeOption tunes one Change.
type ChangeOption func(*changeOpts)

type changeOpts struct{ message string }

// WithMessage attaches a commit message to the change.
func WithMessage(msg string) ChangeOption { return func(c *changeOpts) { c.message = msg } }

// ChangeResult describes a committed change.
type ChangeResult struct {
	Changed bool      // false when fn wrote nothing (no change was made)
	Hash    crdt.Hash // the new change
	Heads   []crdt.Hash
	Paths   []string // JSON pointers fn wrote
}

// Change runs fn on the document in its owner goroutine and commits
// everything fn wrote as one Automerge change. When Change returns nil the
// change is durable in the store. If fn returns an error nothing it wrote is
// kept. fn must not keep the *crdt.Doc after returning.
func (h *DocHandle) Change(ctx context.Context, fn func(*crdt.Doc) error, opts ...ChangeOption) (ChangeResult, error) {
	var co changeOpts
	for _, opt := range opts {
		opt(&co)
	}
	return h.durableChange(ctx, func(o *owner) (ChangeResult, error) {
		if h.coalesce > 0 {
			return ChangeResult{}, o.changeCoalesced(fn, co.message, h.coalesce)
		}
		o.settle()
		if err := o.load(); err != nil {
			return ChangeResult{}, err
		}
		if err := o.checkSize(0); err != nil {
			o.repo.obs.ChangesRejected(1, RejectTooLarge)
			return ChangeResult{}, err
		}
		if err := fn(o.doc); err != nil {
			o.mutated()
			if o.doc.HasUncommitted() {
				if rerr := o.doc.Rollback(); rerr != nil {
					o.repo.log.Error("rollback failed", "doc", o.id, "err", rerr)
					o.doc = nil // reload from the store next time
				}
			}
			return ChangeResult{}, err
		}
		if err := o.validateLocal(); err != nil {
			o.mutated()
			if rerr := o.doc.Rollback(); rerr != nil {
				o.doc = nil
			}
			return ChangeResult{}, err
		}
		return o.commitLocal(co.message)
	})
}

// durableChange runs f on the owner goroutine and, when f made a change,
// waits until it is persisted.
func (h *DocHandle) durableChange(ctx context.Context, f func(o *owner) (ChangeResult, error)) (ChangeResult, error) {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return ChangeResult{}, err
	}
	defer h.repo.release(o)
	var res ChangeResult
	reply := make(chan error, 1)
	err = o.send(ctx, func(o *owner) {
		r, err := f(o)
		res = r
		if err != nil || !r.Changed {
			reply <- err
			return
		}
		o.afterFlush(func(err error) { reply <- err })
	})
	if err != nil {
		return ChangeResult{}, err
	}
	select {
	case err = <-reply:
	case <-o.done:
		select {
		case err = <-reply:
		default:
			err = ErrClosed
		}
	case <-ctx.Done():
		// The change may still be applied; the caller just stops waiting.
		return ChangeResult{}, ctx.Err()
	}
	if err != nil {
		return ChangeResult{}, err
	}
	return res, nil
}

// Read runs fn with the document's current, durable state. fn must not
// modify the document; anything it writes is discarded.
func (h *DocHandle) Read(ctx context.Context, fn func(*crdt.Doc) error) error {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return err
	}
	defer h.repo.release(o)
	return o.do(ctx, func(o *owner) error {
		o.settle()
		if err := o.flush(); err != nil {
			return err
		}
		if err := o.load(); err != nil {
			return err
		}
		err := fn(o.doc)
		o.mutated()
		if o.doc.HasUncommitted() {
			if rerr := o.doc.Rollback(); rerr != nil {
				o.doc = nil
				return errors.Join(err, rerr)
			}
		}
		return err
	})
}

// Get returns the JSON value at pointer ptr ("" for the whole document).
func (h *DocHandle) Get(ctx context.Context, ptr string) (v any, err error) {
	err = h.Read(ctx, func(d *crdt.Doc) error {
		v, err = d.Get(ptr)
		return err
	})
	return v, err
}

// JSON returns the JSON encoding of the value at ptr.
func (h *DocHandle) JSON(ctx context.Context, ptr string) (b []byte, err error) {
	err = h.Read(ctx, func(d *crdt.Doc) error {
		b, err = d.JSON(ptr)
		return err
	})
	return b, err
}

// Heads returns the document's current heads.
func (h *DocHandle) Heads(ctx context.Context) (hs []crdt.Hash, err error) {
	err = h.Read(ctx, func(d *crdt.Doc) error {
		hs = d.Heads()
		return nil
	})
	return hs, err
}

// History lists every change of the document in causal order.
func (h *DocHandle) History(ctx context.Context) (cs []crdt.ChangeInfo, err error) {
	err = h.Read(ctx, func(d *crdt.Doc) error {
		cs, err = d.History()
		return err
	})
	return cs, err
}

// Export returns the whole document in Automerge's compressed document
// format (crdt.Doc.Export).
func (h *DocHandle) Export(ctx context.Context) (b []byte, err error) {
	err = h.Read(ctx, func(d *crdt.Doc) (err error) {
		b, err = d.Export()
		return err
	})
	return b, err
}

// Set writes the JSON value v at ptr as one change.
func (h *DocHandle) Set(ctx context.Context, ptr string, v any) (ChangeResult, error) {
	return h.Change(ctx, func(d *crdt.Doc) error { return d.Set(ptr, v) })
}

// Event tells a subscriber that a document changed.
type Event struct {
	DocumentID crdt.DocumentID
	Heads      []crdt.Hash // heads after the change
	Paths      []string    // JSON pointers the change touched
	Local      bool        // made through this repo's DocHandle.Change
	Remote     bool        // arrived from a sync peer
	Hash       crdt.Hash   // the change, for local changes
	Confirmed  []crdt.Hash // local changes the server just confirmed
	Conflict   *Conflict   // a concurrent remote write to a path a local change wrote
	RolledBack []crdt.Hash // pending changes discarded by Rollback (or after a rejection)
	Rejected   string      // the server rejected local changes (RolledBack) for this reason
}

// maxQueuedEvents bounds a subscription's backlog; a subscriber that falls
// this far behind is closed with ErrSlowSubscriber rather than growing memory.
const maxQueuedEvents = 1 << 16

// ErrSlowSubscriber closes a subscription whose reader fell too far behind.
var ErrSlowSubscriber = errors.New("repo: subscriber too slow, events dropped")

// Subscription delivers every change of one document, in order, on Events.
// It keeps the document live in memory until Close.
type Subscription struct {
	h      *DocHandle
	o      *owner
	events chan Event

	mu     sync.Mutex
	queue  []Event
	wake   chan struct{}
	closed bool
	err    error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// Subscribe starts delivering this document's changes. The document must
// exist. Close the subscription when done.
func (h *DocHandle) Subscribe(ctx context.Context) (*Subscription, error) {
	o, err := h.repo.acquire(h.id)
	if err != nil {
		return nil, err
	}
	s := &Subscription{
		h: h, o: o, events: make(chan Event, 64),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	err = o.do(ctx, func(o *owner) error {
		if err := o.load(); err != nil {
			return err
		}
		o.subs[s] = struct{}{}
		return nil
	})
	if err != nil {
		h.repo.release(o)
		return nil, err
	}
	go s.pump()
	return s, nil
}

// Events is the channel of changes; it is closed when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.events }

// Err tells why the subscription ended (nil after Close).
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription and releases the document.
func (s *Subscription) Close() {
	s.once.Do(func() {
		_ = s.o.send(context.Background(), func(o *owner) { delete(o.subs, s) })
		s.closeWith(nil)
		<-s.done
		s.h.repo.release(s.o)
	})
}

// push queues e; called by the owner goroutine only.
func (s *Subscription) push(e Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= maxQueuedEvents {
		s.mu.Unlock()
		s.closeWith(ErrSlowSubscriber)
		return
	}
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) closeWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.err = err
	close(s.stop)
}

func (s *Subscription) pump() {
	defer close(s.done)
	defer close(s.events)
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, e := range q {
			select {
			case s.events <- e:
			case <-s.stop:
				return
			}
		}
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
	}
}
