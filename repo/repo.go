package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
)

// Config configures a Repo. The zero value of every field but Store is a
// documented default.
type Config struct {
	// Store keeps the documents. Required. The Repo does not close it.
	Store persistence.Store
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// IdleTimeout is how long a document with no users, subscribers or
	// peers stays in memory after its last operation. Default 30s.
	IdleTimeout time.Duration
	// HibernateAfter: a document that peers still sync but nobody has
	// touched for this long, and that every peer has in full (see
	// direct.go), is dropped from memory while its peers stay attached; the
	// next message or operation loads it again. This bounds the memory of
	// a server whose clients hold many documents open. A document that is
	// slow to load waits longer: 200 times its estimated load time when
	// that is more (about 100 s at 100,000 changes). Default 10s;
	// negative turns it off.
	HibernateAfter time.Duration
	// MaxLiveDocuments is a soft bound on documents in memory: above it,
	// documents that could hibernate and have been quiet for a second do
	// so at once, least recently active first. It keeps a server's memory
	// bounded while a client pushes thousands of documents. Default 1000;
	// negative: no bound.
	MaxLiveDocuments int
	// MaxBatch bounds how many queued operations a document applies before
	// it persists once. Default 256.
	MaxBatch int
	// CompactMinBytes: a document is compacted into one snapshot once its
	// incremental chunks hold at least this many bytes and more than four
	// times its snapshot's. Default 16 KiB.
	CompactMinBytes int64
	// PeerID names this repo to sync peers. Default "tandem-" + random.
	PeerID string
	// Share decides what this repo announces and serves to peers. Default:
	// ServerSharePolicy (announce nothing, serve any document a peer names).
	Share SharePolicy
	// StorageID is advertised to peers. Default: the store's persistent
	// storage id, created on first use.
	StorageID string
	// Ephemeral advertises this repo as one whose storage may lose data.
	Ephemeral bool
	// Peers bounds what each connection may do (defaults documented on
	// PeerConfig).
	Peers PeerConfig
	// ActorID is the Automerge actor every local change is made as.
	// Default: one generated once per store and kept in it.
	ActorID string
	// ConflictWindow: a remote change that concurrently wrote a path a
	// local change wrote raises a conflict event (for subscribers) if the
	// local change is pending or was confirmed at most this long ago.
	// Default 30s; negative turns conflict detection off. Detection costs
	// about one history-sized fork per batch of remote changes that meets a
	// local change in the window (automerge-go exposes no cheaper way).
	ConflictWindow time.Duration
	// Validate, if set, must accept every new state of a document: local
	// changes it rejects fail with ErrRejected, and a peer's changes it
	// rejects are not applied, stored or sent on; the peer gets an error
	// message naming the changes. It costs a history-sized copy of the
	// document per incoming message that carries changes.
	Validate Validator
	// MaxDocumentBytes, if positive, is a hard limit on a document's stored
	// size: a peer's changes that would take it over are rejected like
	// invalid ones, and a document over it takes no local change
	// (ErrTooLarge). WarnDocumentBytes, if positive, logs a warning when a
	// document grows past it.
	MaxDocumentBytes  int64
	WarnDocumentBytes int64
	// Observer, if set, is told about traffic, changes, persistence and
	// dropped peers, for metrics (see Observer). Default: nil, nothing is
	// measured.
	Observer Observer
	// SessionsOnly turns the direct sync path off: every sync message is
	// made and taken by an Automerge sync session, whose cost grows with the
	// document's history. For comparison, and as a fallback.
	SessionsOnly bool
	// GraphDocuments keeps documents as change graphs (crdt.NewGraphDoc):
	// syncing, storing and relaying them never builds the document in the
	// Automerge core, which costs several times the changes' size (about
	// 9x for a dashboard's history, 440x for text); reading, writing or
	// validating the content builds it, until the document hibernates or
	// DematerializeAfter passes without another read or write.
	// Snapshots are then the changes themselves rather than Automerge's
	// compressed document format, so the store grows (10,000 small
	// changes: 1.1 MB against 21 KB). For servers; a client reads its
	// documents anyway.
	GraphDocuments bool
	// DematerializeAfter: with GraphDocuments, a document's core copy
	// that no read or write has needed for this long (up to twice it) is
	// dropped, even while peers keep the document busy; the next read
	// builds it again. Default 1 minute; negative: kept until the
	// document hibernates.
	DematerializeAfter time.Duration
}

// newDoc returns an empty document of the kind the repo keeps.
func (r *Repo) newDoc() *crdt.Doc {
	if r.cfg.GraphDocuments {
		return crdt.NewGraphDoc()
	}
	return crdt.New()
}

// loadDoc reads a stored snapshot into a document of the kind the repo
// keeps.
func (r *Repo) loadDoc(data []byte) (*crdt.Doc, error) {
	if r.cfg.GraphDocuments {
		return crdt.LoadGraphDoc(data)
	}
	return crdt.Load(data)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.HibernateAfter == 0 {
		c.HibernateAfter = 10 * time.Second
	}
	if c.DematerializeAfter == 0 {
		c.DematerializeAfter = time.Minute
	}
	if c.MaxLiveDocuments == 0 {
		c.MaxLiveDocuments = 1000
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.CompactMinBytes == 0 {
		c.CompactMinBytes = 16 << 10
	}
	if c.Share == nil {
		c.Share = ServerSharePolicy{}
	}
	c.Peers.setDefaults()
	if c.ConflictWindow == 0 {
		c.ConflictWindow = 30 * time.Second
	}
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	case c.IdleTimeout < 0:
		return fmt.Errorf("%w: IdleTimeout %v is negative", ErrInvalidConfig, c.IdleTimeout)
	case c.MaxBatch < 0:
		return fmt.Errorf("%w: MaxBatch %d is negative", ErrInvalidConfig, c.MaxBatch)
	case c.CompactMinBytes < 0:
		return fmt.Errorf("%w: CompactMinBytes %d is negative", ErrInvalidConfig, c.CompactMinBytes)
	}
	return nil
}

// Repo is the engine: a set of Automerge documents on a Store, each owned by
// one goroutine while it is live, synced with any connected peers.
type Repo struct {
	cfg   Config
	log   *slog.Logger
	store persistence.Store
	obs   Observer // never nil
	// observed: cfg.Observer was set, so timings are worth taking.
	observed bool

	mu     sync.Mutex
	docs   map[crdt.DocumentID]*owner
	open   map[crdt.DocumentID]struct{} // documents handed out: synced again on reconnect
	closed bool
	wg     sync.WaitGroup // owner goroutines

	net *network

	hibernated atomic.Int64 // owners whose document is out of memory
	parked     atomic.Int64 // hibernating owners without a goroutine (see owner.park)
	released   atomic.Int64 // documents dropped from memory so far (see reap)

	reaperStop, reaperDone chan struct{} // see reap

	client clientState
	connMu sync.Mutex
	conns  map[*Connection]struct{}
}

// DocInfo describes a stored document without loading it.
type DocInfo struct {
	ID      crdt.DocumentID
	URL     string
	Size    int64
	Created time.Time
	Updated time.Time
	Heads   []string
}

// New opens a Repo over cfg.Store.
func New(cfg Config) (*Repo, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &Repo{
		cfg:   cfg,
		log:   cfg.Logger,
		store: cfg.Store,
		docs:  make(map[crdt.DocumentID]*owner),
		open:  make(map[crdt.DocumentID]struct{}),
		conns: make(map[*Connection]struct{}),
		obs:   cfg.Observer,
	}
	r.observed = r.obs != nil
	if r.obs == nil {
		r.obs = NopObserver{}
	}
	r.net = newNetwork(r)
	r.reaperStop = make(chan struct{})
	r.reaperDone = make(chan struct{})
	if cfg.MaxLiveDocuments > 0 && cfg.HibernateAfter > 0 {
		go r.reap()
	} else {
		close(r.reaperDone)
	}
	return r, nil
}

// PeerID is the id this repo uses towards sync peers.
func (r *Repo) PeerID() string { return r.net.peerID }

// Create makes a new empty document and stores it.
func (r *Repo) Create(ctx context.Context) (*DocHandle, error) {
	return r.createDoc(ctx, crdt.New())
}

// CreateJSON makes a new document whose root is the JSON object data.
func (r *Repo) CreateJSON(ctx context.Context, data []byte) (*DocHandle, error) {
	doc, err := crdt.FromJSON(data)
	if err != nil {
		return nil, err
	}
	return r.createDoc(ctx, doc)
}

// Import stores an Automerge document (as saved by any Automerge
// implementation) under a new id.
func (r *Repo) Import(ctx context.Context, data []byte) (*DocHandle, error) {
	doc, err := crdt.Load(data)
	if err != nil {
		return nil, err
	}
	return r.createDoc(ctx, doc)
}

func (r *Repo) createDoc(ctx context.Context, doc *crdt.Doc) (*DocHandle, error) {
	id := crdt.NewDocumentID()
	if v := r.cfg.Validate; v != nil {
		view, err := doc.Get("")
		if err != nil {
			return nil, err
		}
		if err := v(id, view); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	if r.cfg.Share.Announce("", id) {
		// A client: the new document must reach the server even if
		// this process stops before it connects.
		r.markUnsynced(id, true)
	}
	if _, err := r.store.Append(ctx, string(id), doc.Save(), hexHeads(doc.Heads())); err != nil {
		return nil, fmt.Errorf("repo: store new document: %w", err)
	}
	r.markOpen(id)
	r.net.announce(id)
	return &DocHandle{repo: r, id: id}, nil
}

// Find returns a handle on a stored document, or ErrNotFound. When the
// document is not stored locally and peers are connected, Find asks them
// (see FindRemote).
func (r *Repo) Find(ctx context.Context, id crdt.DocumentID) (*DocHandle, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if r.isLive(id) {
		o, err := r.acquire(id)
		if err != nil {
			return nil, err
		}
		err = o.do(ctx, func(o *owner) error {
			if err := o.load(); err != nil {
				return err
			}
			if !o.stored && len(o.doc.Heads()) == 0 {
				// An empty placeholder from an earlier remote find.
				return fmt.Errorf("%w: %s", ErrNotFound, o.id)
			}
			return nil
		})
		r.release(o)
		if err == nil {
			r.markOpen(id)
			return &DocHandle{repo: r, id: id}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if r.net.hasPeersFor(id) {
			return r.net.findRemote(ctx, id)
		}
		return nil, err
	}
	// (a document in memory but deleted falls through to the store check)
	if _, err := r.store.Stat(ctx, string(id)); err != nil {
		if errors.Is(err, persistence.ErrNotFound) {
			if r.net.hasPeersFor(id) {
				return r.net.findRemote(ctx, id)
			}
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, err
	}
	r.markOpen(id)
	r.net.announce(id)
	return &DocHandle{repo: r, id: id}, nil
}

func (r *Repo) markOpen(id crdt.DocumentID) {
	r.mu.Lock()
	r.open[id] = struct{}{}
	r.mu.Unlock()
}

// FindURL is Find for an automerge URL (or bare document id).
func (r *Repo) FindURL(ctx context.Context, url string) (*DocHandle, error) {
	id, _, err := crdt.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return r.Find(ctx, id)
}

// Delete removes a document from memory and storage.
func (r *Repo) Delete(ctx context.Context, id crdt.DocumentID) error {
	o, err := r.acquire(id)
	if err != nil {
		return err
	}
	defer r.release(o)
	r.mu.Lock()
	delete(r.open, id)
	r.mu.Unlock()
	return o.do(ctx, func(o *owner) error { return o.deleteDoc(ctx) })
}

// List describes every stored document, reading only metadata.
func (r *Repo) List(ctx context.Context) ([]DocInfo, error) {
	var out []DocInfo
	err := r.store.List(ctx, func(m persistence.Meta) error {
		out = append(out, DocInfo{
			ID: crdt.DocumentID(m.ID), URL: crdt.DocumentID(m.ID).URL(), Size: m.Size,
			Created: m.Created, Updated: m.Updated, Heads: m.Heads,
		})
		return nil
	})
	return out, err
}

// liveBytes sums the stored size of the documents in memory.
func (r *Repo) liveBytes() (bytes int64, inCore int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.docs {
		bytes += o.memBytes.Load()
		if o.inCore.Load() {
			inCore++
		}
	}
	return bytes, inCore
}

// Live reports how many documents are currently held in memory.
func (r *Repo) Live() int {
	r.mu.Lock()
	n := len(r.docs)
	r.mu.Unlock()
	return n - int(r.hibernated.Load())
}

// Close disconnects every peer, flushes every live document and stops all
// goroutines. It does not close the Store.
func (r *Repo) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	owners := make([]*owner, 0, len(r.docs))
	for _, o := range r.docs {
		owners = append(owners, o)
	}
	r.mu.Unlock()

	close(r.reaperStop)
	<-r.reaperDone
	r.net.close()
	for _, o := range owners {
		o.stop()
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("repo: close: %w", ctx.Err())
	}
}

func (r *Repo) checkOpen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return nil
}

func (r *Repo) isLive(id crdt.DocumentID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.docs[id]
	return ok
}

// acquire returns the live owner of id, starting one if needed, with one
// reference taken; the caller must release it. An owner with references is
// never evicted.
func (r *Repo) acquire(id crdt.DocumentID) (*owner, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	o := r.docs[id]
	if o == nil {
		o = newOwner(r, id)
		r.docs[id] = o
		o.start()
	}
	o.refs++
	return o, nil
}

func (r *Repo) release(o *owner) {
	r.mu.Lock()
	o.refs--
	r.mu.Unlock()
}

// tryEvict removes o from the live set if nobody holds it. Called by the
// owner goroutine itself.
func (r *Repo) tryEvict(o *owner) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.refs > 0 || len(o.inbox) > 0 {
		return false
	}
	if r.docs[o.id] == o {
		delete(r.docs, o.id)
	}
	return true
}

// forget removes o from the live set unconditionally (after Close or a
// deletion); later acquires start a fresh owner.
func (r *Repo) forget(o *owner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.docs[o.id] == o {
		delete(r.docs, o.id)
	}
}

func hexHeads(hs []crdt.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}
