package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
)

// op is one unit of work run by a document's owner goroutine. It may call
// o.afterFlush to learn the outcome of the batch's persistence.
type op func(o *owner)

// owner is the one goroutine that owns a live document: it drains its inbox
// (local changes, incoming sync messages, reads), applies a whole batch,
// persists once, then answers callers, notifies subscribers and wakes peers.
type owner struct {
	repo  *Repo
	id    crdt.DocumentID
	inbox chan op
	quit  chan struct{} // closed by stop()
	done  chan struct{} // closed when run returns

	refs int // guarded by repo.mu

	// Everything below is touched only by the owner goroutine.
	doc          *crdt.Doc
	stored       bool // the document exists in the store
	deleted      bool
	snapshotSize int64
	chunkBytes   int64
	lastSeq      uint64
	pending      [][]byte      // change bytes not yet persisted
	pendingLocal int           // how many of the pending changes were made here
	waiters      []func(error) // called after the next flush
	events       []Event       // delivered after the next flush
	before       any           // JSON view before the first remote change of this batch, when subscribed
	subs         map[*Subscription]struct{}
	peers        map[*peer]*peerDoc // sync state per connected peer
	dirtyPeers   map[*peer]struct{} // peers to answer after the next flush
	changed      bool               // heads moved since the last flush
	findWaiters  []chan error       // FindRemote calls waiting for content
	// client side: local changes the server has not confirmed (see pending.go)
	local         []localChange
	recent        []localChange // confirmed within ConflictWindow
	serverHeads   []crdt.Hash   // heads the server last advertised
	lastConfirmed time.Time
	statusDirty   bool
	confirmDirty  bool
	syncWaiters   []chan struct{}
	conflictSeen  map[string]bool // local change + path already reported
	probe         *conflictProbe  // values before this batch's remote changes
	warnedSize    bool            // the size warning was logged
	remoteArrived bool            // remote changes applied since the last flush
	coalesce      coalesceState
	direct        directState   // see direct.go
	asleep        bool          // hibernating: doc dropped, peers kept (see hibernate)
	lastLoad      time.Duration // how long the last load from the store took
	coreChecked   time.Time     // last maybeDematerialize check
	sleepReq      chan struct{} // Repo.reap asks it to hibernate
	lastActive    atomic.Int64  // unix ns of the last batch, for Repo.reap
	sleeping      atomic.Bool   // asleep, for Repo.reap
	memBytes      atomic.Int64  // stored size while in memory, for Repo.Stats
	inCore        atomic.Bool   // the document is in the Automerge core, for Repo.Stats
	// The JSON view read at the last flush with remote changes, reused as
	// the next "before" while the document is unchanged (subscribers only).
	view      any
	viewDoc   *crdt.Doc
	viewHeads []crdt.Hash

	headsCache []crdt.Hash // valid while headsValid; saves cgo calls
	headsValid bool
	stopOnce   bool // guarded by repo.mu

	// running is true while a goroutine serves the owner. A hibernating
	// owner with nothing to do parks (its goroutine ends; see park) and
	// the next send or stop starts another: a goroutine's stack was most
	// of what a hibernating document cost. parkMu orders park against
	// start, so that queued work always finds a goroutine.
	parkMu   sync.Mutex
	running  bool        // guarded by parkMu
	stopped  atomic.Bool // stop ran: it started the goroutine that ends the owner
	isParked atomic.Bool // counted in repo.parked
}

// heads returns the document's heads, cached until the next mutation.
func (o *owner) heads() []crdt.Hash {
	if !o.headsValid {
		o.headsCache = o.doc.Heads()
		o.headsValid = true
	}
	return o.headsCache
}

// mutated drops cached state derived from the document.
func (o *owner) mutated() { o.headsValid = false }

func newOwner(r *Repo, id crdt.DocumentID) *owner {
	return &owner{
		repo:       r,
		id:         id,
		inbox:      make(chan op, 64), // small: an idle document costs its buffer
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		subs:       make(map[*Subscription]struct{}),
		peers:      make(map[*peer]*peerDoc),
		dirtyPeers: make(map[*peer]struct{}),
		sleepReq:   make(chan struct{}, 1),
	}
}

func (o *owner) stop() {
	o.repo.mu.Lock()
	if o.stopOnce {
		o.repo.mu.Unlock()
		return
	}
	o.stopOnce = true
	o.stopped.Store(true)
	close(o.quit)
	o.repo.mu.Unlock()
	o.start()
}

// start runs a goroutine for o unless one runs already. Repo.acquire and
// stop call it; senders call resume.
func (o *owner) start() {
	o.parkMu.Lock()
	defer o.parkMu.Unlock()
	if !o.running {
		o.running = true
		o.repo.wg.Add(1)
		go o.run()
	}
}

// resume starts a goroutine for a parked owner that was just given work.
// Once stop ran, stop's goroutine serves whatever is queued (and a new
// one must not start while Repo.Close waits for the old ones).
func (o *owner) resume() {
	if o.stopped.Load() {
		return
	}
	o.start()
}

// park ends the goroutine of a hibernating owner that has nothing to do
// and reports whether it should return. Under parkMu: a sender queues
// before it takes parkMu in resume, so either park sees the work or
// resume sees running false.
func (o *owner) park() bool {
	o.parkMu.Lock()
	defer o.parkMu.Unlock()
	if !o.asleep || len(o.inbox) > 0 || len(o.sleepReq) > 0 {
		return false
	}
	select {
	case <-o.quit:
		return false // stop is under way; the loop serves it
	default:
	}
	o.running = false
	o.isParked.Store(true)
	o.repo.parked.Add(1)
	return true
}

func (o *owner) unpark() {
	if o.isParked.CompareAndSwap(true, false) {
		o.repo.parked.Add(-1)
	}
}

// send queues f without waiting for it to run.
func (o *owner) send(ctx context.Context, f op) error {
	select {
	case o.inbox <- f:
		o.resume()
		return nil
	case <-o.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do runs f on the owner goroutine and waits for its error. If ctx ends
// first, f either never runs or do waits for it to finish, so callers may
// read variables f writes once do returns.
func (o *owner) do(ctx context.Context, f func(o *owner) error) error {
	const (
		queued int32 = iota
		running
		cancelled
	)
	var state atomic.Int32
	reply := make(chan error, 1)
	err := o.send(ctx, func(o *owner) {
		if !state.CompareAndSwap(queued, running) {
			return
		}
		reply <- f(o)
	})
	if err != nil {
		return err
	}
	select {
	case err := <-reply:
		return err
	case <-o.done:
		select {
		case err := <-reply:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		if state.CompareAndSwap(queued, cancelled) {
			return ctx.Err()
		}
		select {
		case <-reply:
		case <-o.done:
		}
		return ctx.Err()
	}
}

// doDurable runs f and waits until whatever f wrote is persisted.
func (o *owner) doDurable(ctx context.Context, f func(o *owner) error) error {
	return o.do(ctx, func(o *owner) error {
		if err := f(o); err != nil {
			return err
		}
		return o.flush()
	})
}

func (o *owner) run() {
	defer o.repo.wg.Done()
	o.unpark()
	if o.serve() {
		close(o.done)
	}
}

// serve runs the owner's loop. It returns true when the owner stopped for
// good, false when it parked.
func (o *owner) serve() bool {
	// One timer serves eviction and hibernation: it fires every period
	// and each acts once the document has been quiet long enough.
	period := o.repo.cfg.IdleTimeout
	if h := o.repo.cfg.HibernateAfter; h > 0 && h < period {
		period = h
	}
	quietSince := time.Now()
	o.lastActive.Store(quietSince.UnixNano())
	idle := time.NewTimer(period)
	defer idle.Stop()
	batch := make([]op, 0, 16)
	for {
		select {
		case f := <-o.inbox:
			batch = append(batch[:0], f)
		drain:
			for len(batch) < o.repo.cfg.MaxBatch {
				select {
				case f := <-o.inbox:
					batch = append(batch, f)
				default:
					break drain
				}
			}
			for _, f := range batch {
				o.mutated()
				f(o)
			}
			clear(batch)
			_ = o.flush()
			o.publishStatus()
			o.maybeCompact()
			o.maybeDematerialize()
			o.noteSize()
			quietSince = time.Now()
			o.lastActive.Store(quietSince.UnixNano())
			idle.Reset(period)
		case <-o.sleepReq:
			// The repo is over MaxLiveDocuments (see Repo.reap).
			if time.Since(quietSince) >= reapQuiet {
				o.hibernate()
				if o.park() {
					return false
				}
			}
		case <-o.coalesce.timerC():
			o.mutated()
			o.settle()
			_ = o.flush()
			o.publishStatus()
		case <-idle.C:
			quiet := time.Since(quietSince)
			if quiet >= o.repo.cfg.IdleTimeout && !o.coalesce.active() && o.repo.tryEvict(o) {
				if o.doc != nil {
					o.repo.released.Add(1)
				}
				o.shutdown()
				return true
			}
			stored := o.snapshotSize + o.chunkBytes
			if o.doc != nil && o.doc.IsGraph() {
				// Graph documents load in Go, about a hundred times
				// faster than loadCostPerByte: their measured load
				// time decides.
				stored = 0
			}
			if h := o.repo.cfg.HibernateAfter; h > 0 && quiet >= hibernateQuiet(h, stored, o.lastLoad) {
				o.hibernate()
				if o.park() {
					return false
				}
			}
			o.maybeDematerialize()
			o.noteSize()
			idle.Reset(period)
		case <-o.quit:
			// Serve what is already queued, then stop.
			for {
				select {
				case f := <-o.inbox:
					o.mutated()
					f(o)
					continue
				default:
				}
				break
			}
			o.settle()
			_ = o.flush()
			o.publishStatus()
			o.repo.forget(o)
			o.shutdown()
			return true
		}
	}
}

// maybeDematerialize drops a graph document's core copy once no read or
// write has needed it since the previous check, checking at most every
// DematerializeAfter: a REST read or a write on a document that peers keep
// busy would otherwise keep the core's memory (several times the changes'
// size) until the document hibernates, which a busy one never does.
func (o *owner) maybeDematerialize() {
	after := o.repo.cfg.DematerializeAfter
	if o.doc == nil || after < 0 || !o.doc.Materialized() {
		return
	}
	if now := time.Now(); now.Sub(o.coreChecked) >= after {
		o.coreChecked = now
		if o.doc.DematerializeUnused() {
			o.repo.log.Debug("dropped the core copy of an unread document", "doc", o.id)
		}
	}
}

// noteSize publishes the stored size of the document while it is in memory.
func (o *owner) noteSize() {
	var n int64
	if o.doc != nil {
		n = o.snapshotSize + o.chunkBytes
	}
	o.memBytes.Store(n)
	o.inCore.Store(o.doc != nil && o.doc.Materialized())
}

func (o *owner) shutdown() {
	o.setAsleep(false)
	o.memBytes.Store(0)
	o.inCore.Store(false)
	for s := range o.subs {
		s.closeWith(ErrClosed)
	}
	o.subs = nil
	for p := range o.peers {
		p.forgetDoc(o.id)
	}
	o.peers = nil
	o.doc = nil
}

// load makes sure the document is in memory; ErrNotFound if it is not stored.
func (o *owner) load() error {
	if o.deleted {
		return fmt.Errorf("%w: %s", ErrNotFound, o.id)
	}
	if o.doc != nil {
		return nil
	}
	t0 := time.Now()
	defer func() {
		if o.doc != nil {
			o.lastLoad = time.Since(t0)
		}
	}()
	rec, err := o.repo.store.Load(context.Background(), string(o.id))
	if err != nil {
		if errors.Is(err, persistence.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, o.id)
		}
		return fmt.Errorf("repo: load %s: %w", o.id, err)
	}
	var doc *crdt.Doc
	if rec.Snapshot != nil {
		doc, err = o.repo.loadDoc(rec.Snapshot)
		if err != nil {
			return fmt.Errorf("%w: %s snapshot: %w", ErrLoad, o.id, err)
		}
	} else {
		doc = o.repo.newDoc()
	}
	o.chunkBytes = 0
	for _, c := range rec.Chunks {
		if err := doc.LoadIncremental(c.Data); err != nil {
			return fmt.Errorf("%w: %s chunk %d: %w", ErrLoad, o.id, c.Seq, err)
		}
		o.chunkBytes += int64(len(c.Data))
		o.lastSeq = c.Seq
	}
	o.snapshotSize = int64(len(rec.Snapshot))
	o.mutated()
	o.setAsleep(false)
	o.doc = doc
	o.stored = true
	if actor, err := o.repo.actorID(context.Background()); err == nil {
		if err := doc.SetActorID(actor); err != nil {
			o.repo.log.Warn("cannot set actor", "doc", o.id, "err", err)
		}
	}
	o.restorePending()
	o.directSync()
	return nil
}

// loadCostPerByte estimates how long loading a document takes from its
// stored size: a 10,000-change dashboard (37 KB) loads in about 70 ms, a
// 100,000-change one (245 KB) in 0.5–0.6 s, 1 MB of text in 1.4 s.
const loadCostPerByte = 2 * time.Microsecond

// hibernateQuiet is how long a document must be quiet before it hibernates
// on its own: Config.HibernateAfter, or longer for a document that is slow
// to load again (the next message waits for that), so that reloading costs
// at most about 0.5% of the time it was quiet: a 100,000-change document
// waits about 100 s. Memory pressure (Repo.reap) does not wait for this.
func hibernateQuiet(after time.Duration, storedBytes int64, lastLoad time.Duration) time.Duration {
	est := max(time.Duration(storedBytes)*loadCostPerByte, lastLoad)
	return max(after, 200*est)
}

// afterFlush registers fn to learn the outcome of the next flush.
func (o *owner) afterFlush(fn func(error)) { o.waiters = append(o.waiters, fn) }

// markRemoteBefore records the JSON view before a remote change so that
// subscribers can be told which paths it touched.
func (o *owner) markRemoteBefore() {
	if len(o.subs) > 0 && o.before == nil && o.doc != nil {
		if o.view != nil && o.doc == o.viewDoc && slices.Equal(o.viewHeads, o.heads()) {
			// Unchanged since the last flush read it: reading the whole
			// document is most of a subscribed client's cost.
			o.before = o.view
			return
		}
		v, err := o.doc.Get("")
		if err == nil {
			o.before = v
		}
	}
}

// flush persists pending changes in one store write, then tells waiters,
// subscribers and peers. Nothing is shown to anyone before it is durable.
func (o *owner) flush() error {
	var err error
	if len(o.pending) > 0 && len(o.local) > 0 {
		// Durably note the document before its first offline edit.
		o.repo.markUnsynced(o.id, true)
	}
	if len(o.pending) > 0 {
		size := 0
		for _, p := range o.pending {
			size += len(p)
		}
		data := make([]byte, 0, size)
		for _, p := range o.pending {
			data = append(data, p...)
		}
		var seq uint64
		var start time.Time
		if o.repo.observed {
			start = time.Now()
		}
		seq, err = o.repo.store.Append(context.Background(), string(o.id), data, hexHeads(o.heads()))
		if err == nil && o.repo.observed {
			o.observePersisted(data, time.Since(start))
		}
		o.pending = o.pending[:0]
		o.pendingLocal = 0
		if err != nil {
			err = fmt.Errorf("repo: persist %s: %w", o.id, err)
			o.repo.log.Error("persist failed", "doc", o.id, "err", err)
			// Memory now holds changes the disk lacks: drop it and reload.
			o.doc = nil
			o.stored = false
			o.events = o.events[:0]
			o.before = nil
			o.changed = false
			clear(o.dirtyPeers)
		} else {
			o.lastSeq = seq
			o.chunkBytes += int64(size)
			o.stored = true
		}
	}
	waiters := o.waiters
	o.waiters = nil
	for _, w := range waiters {
		w(err)
	}
	if err != nil {
		return err
	}
	if o.remoteArrived && o.probe != nil {
		o.detectConflicts(o.probe)
	}
	o.probe, o.remoteArrived = nil, false
	if o.before != nil {
		after, gerr := o.doc.Get("")
		if gerr == nil {
			o.view, o.viewDoc, o.viewHeads = after, o.doc, slices.Clone(o.heads())
			paths := crdt.ChangedPaths(o.before, after)
			if len(paths) > 0 {
				o.events = append(o.events, Event{DocumentID: o.id, Paths: paths, Remote: true})
			}
		}
		o.before = nil
	}
	if len(o.events) > 0 {
		heads := o.heads()
		for i := range o.events {
			o.events[i].Heads = heads
			for s := range o.subs {
				s.push(o.events[i])
			}
		}
		o.events = o.events[:0]
	}
	o.wakePeers()
	return nil
}

// observePersisted reports a successful append of data (the batch's
// changes) to the Observer.
func (o *owner) observePersisted(data []byte, d time.Duration) {
	n := countChunks(data)
	if n < len(o.pending) {
		n = len(o.pending) // every entry holds at least one change
	}
	o.repo.obs.Persisted(n, len(data), d)
	local := min(o.pendingLocal, n)
	if local > 0 {
		o.repo.obs.ChangesApplied(local, false)
	}
	if n > local {
		o.repo.obs.ChangesApplied(n-local, true)
	}
}

// maybeCompact replaces the chunks with one snapshot once they outgrow it.
func (o *owner) maybeCompact() {
	if o.doc == nil || o.lastSeq == 0 || o.coalesce.active() || o.doc.HasQueued() {
		// Changes waiting for their dependencies are in the chunks but
		// not in a snapshot (Automerge saves applied changes only).
		return
	}
	// Compacting costs a history-sized Save on the owner goroutine (7.5 ms
	// at 10,000 changes), so let the chunks grow to 4× the snapshot first.
	if o.chunkBytes < o.repo.cfg.CompactMinBytes || o.chunkBytes <= 4*o.snapshotSize {
		return
	}
	snap := o.doc.Save()
	err := o.repo.store.Compact(context.Background(), string(o.id), snap, o.lastSeq, hexHeads(o.doc.Heads()))
	if err != nil {
		o.repo.log.Warn("compaction failed", "doc", o.id, "err", err)
		return
	}
	o.repo.log.Debug("compacted", "doc", o.id, "chunk_bytes", o.chunkBytes, "snapshot_bytes", len(snap))
	o.snapshotSize = int64(len(snap))
	o.chunkBytes = 0
}

func (o *owner) deleteDoc(ctx context.Context) error {
	o.settle()
	if err := o.flush(); err != nil {
		return err
	}
	if o.deleted {
		return fmt.Errorf("%w: %s", ErrNotFound, o.id)
	}
	if err := o.repo.store.Delete(ctx, string(o.id)); err != nil {
		if errors.Is(err, persistence.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, o.id)
		}
		return err
	}
	o.deleted = true
	o.stored = false
	o.setAsleep(false)
	o.doc = nil
	for s := range o.subs {
		s.closeWith(fmt.Errorf("%w: %s deleted", ErrNotFound, o.id))
		delete(o.subs, s)
	}
	// The owner stays registered (answering ErrNotFound) until it is idle.
	return nil
}
