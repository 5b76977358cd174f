package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
)

// peer is one connected remote repo. Its reader goroutine (run) applies what
// arrives; its writer goroutine pulls: it owns a set of dirty documents and a
// small outbox of control messages and, when woken, asks each dirty
// document's owner for the next sync message. A slow peer therefore costs a
// bounded set of flags, and later gets one larger catch-up message.
type peer struct {
	n        *network
	id       string
	conn     transport.Conn
	meta     *transport.PeerMetadata
	onReady  func(string)
	accepted bool       // we are the receiving side (a server's view of a client)
	access   PeerAccess // nil: everything the share policy allows
	deadline time.Time  // zero: none
	label    string     // extra log context (e.g. a token subject)

	signal  chan struct{} // one-slot wake-up for the writer
	stopc   chan struct{}
	once    sync.Once
	dropped atomic.Bool // reported to the Observer as cut off

	mu       sync.Mutex
	closeErr error
	dirty    map[crdt.DocumentID]bool      // value: send as "request"
	dirtyAt  map[crdt.DocumentID]time.Time // when first marked dirty; nil without an Observer
	outbox   []transport.Message
	// ready holds at most one direct-path message per document that its
	// owner built while distributing a batch (see owner.pushDirect), so
	// the writer need not ask the owner for it. One slot per document
	// keeps a slow peer's cost bounded: while it is taken, the owner marks
	// the document dirty instead and the changes wait in the peer's queue.
	ready    map[crdt.DocumentID]readyMsg
	docs     map[crdt.DocumentID]*owner // attached documents (one owner ref each)
	detached bool

	budget  *pacer // incoming messages; only the reader touches these
	slowed  bool   // reported once per connection
	refused bool   // told once that documents past MaxDocuments are refused
}

func newPeer(n *network, id string, conn transport.Conn, meta *transport.PeerMetadata) *peer {
	p := &peer{
		n: n, id: id, conn: conn, meta: meta,
		signal: make(chan struct{}, 1), stopc: make(chan struct{}),
		dirty: make(map[crdt.DocumentID]bool), docs: make(map[crdt.DocumentID]*owner),
		budget: newPacer(n.cfg.RatePerSecond, n.cfg.Burst),
	}
	if n.r.observed {
		p.dirtyAt = make(map[crdt.DocumentID]time.Time)
	}
	return p
}

func (p *peer) wake() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// markDirty asks the writer to generate a sync message for doc.
func (p *peer) markDirty(doc crdt.DocumentID) {
	p.mu.Lock()
	if _, ok := p.docs[doc]; ok {
		if _, already := p.dirty[doc]; !already {
			p.dirty[doc] = false
			if p.dirtyAt != nil {
				p.dirtyAt[doc] = time.Now()
			}
		}
	}
	p.mu.Unlock()
	p.wake()
}

// readyMsg is a sync message an owner made ready for the writer.
type readyMsg struct {
	m  transport.Message
	at time.Time // when the owner built it (fan-out latency)
}

// readyPending reports whether doc's ready slot is taken.
func (p *peer) readyPending(doc crdt.DocumentID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ready[doc]
	return ok
}

// takeReady empties doc's ready slot. The owner's generate calls it, so
// that a message pushed after the writer looked at the slot still leaves
// before the newer ones generate makes.
func (p *peer) takeReady(doc crdt.DocumentID) (readyMsg, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.ready[doc]
	if ok {
		delete(p.ready, doc)
	}
	return r, ok
}

// deliverReady puts m in doc's ready slot, which must be free (only doc's
// owner fills it), and wakes the writer. It returns false when the
// document is no longer attached.
func (p *peer) deliverReady(doc crdt.DocumentID, m transport.Message) bool {
	p.mu.Lock()
	if _, ok := p.docs[doc]; !ok || p.detached {
		p.mu.Unlock()
		return false
	}
	if p.ready == nil {
		p.ready = make(map[crdt.DocumentID]readyMsg)
	}
	p.ready[doc] = readyMsg{m: m, at: time.Now()}
	p.mu.Unlock()
	p.wake()
	return true
}

// enqueue queues a control message. Ephemeral messages are dropped when the
// outbox is full; other kinds close a peer that stopped reading.
func (p *peer) enqueue(m transport.Message) {
	p.mu.Lock()
	if len(p.outbox) >= p.n.cfg.OutboxSize {
		p.mu.Unlock()
		if m.Type == transport.TypeEphemeral {
			return
		}
		p.drop(DropOutboxFull, fmt.Errorf("%w: outbox full", ErrProtocol))
		return
	}
	p.outbox = append(p.outbox, m)
	p.mu.Unlock()
	p.wake()
}

// attach starts syncing doc with this peer. asRequest makes the first
// message a "request" (we lack the document and ask for it).
func (p *peer) attach(doc crdt.DocumentID, asRequest bool) error {
	p.mu.Lock()
	if p.detached {
		p.mu.Unlock()
		return ErrClosed
	}
	if o, ok := p.docs[doc]; ok {
		p.mu.Unlock()
		if !asRequest {
			// Attached while the document was not stored yet (a client
			// announces a new document before it is written): start
			// syncing it now if that is what happened.
			return o.send(context.Background(), func(o *owner) {
				if _, ok := o.peers[p]; !ok {
					o.startPeer(p, false)
				}
			})
		}
		// Ask again, from scratch: the earlier exchange ended with
		// doc-unavailable and automerge will not repeat itself.
		return o.send(context.Background(), func(o *owner) {
			if o.doc == nil && o.load() != nil {
				o.deleted = false
				o.doc = o.repo.newDoc()
				o.directSync()
			}
			o.peers[p] = &peerDoc{ss: crdt.NewSyncState(o.doc), request: true}
			o.dirtyPeers[p] = struct{}{}
		})
	}
	if len(p.docs) >= p.n.cfg.MaxDocuments {
		p.mu.Unlock()
		return ErrTooManyDocuments
	}
	p.mu.Unlock()
	o, err := p.n.r.acquire(doc)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if _, ok := p.docs[doc]; ok || p.detached {
		p.mu.Unlock()
		p.n.r.release(o)
		if p.detached {
			return ErrClosed
		}
		return nil
	}
	p.docs[doc] = o
	p.mu.Unlock()
	return o.send(context.Background(), func(o *owner) { o.startPeer(p, asRequest) })
}

// startPeer starts syncing the document with p, if we have it or ask for it.
func (o *owner) startPeer(p *peer, asRequest bool) {
	if err := o.load(); err != nil && !errors.Is(err, ErrNotFound) {
		o.repo.log.Warn("load for peer failed", "doc", o.id, "peer", p.id, "err", err)
	}
	if o.doc == nil {
		if !asRequest {
			return
		}
		// We ask peers for a document we lack: start it empty.
		o.deleted = false
		o.doc = o.repo.newDoc()
		o.directSync()
	}
	o.peerDoc(p).request = asRequest
	o.dirtyPeers[p] = struct{}{}
}

// forgetDoc drops doc without touching its owner (the owner is going away).
func (p *peer) forgetDoc(doc crdt.DocumentID) {
	p.mu.Lock()
	o := p.docs[doc]
	delete(p.docs, doc)
	delete(p.dirty, doc)
	delete(p.dirtyAt, doc)
	delete(p.ready, doc)
	p.mu.Unlock()
	if o != nil {
		p.n.r.release(o)
	}
}

func (p *peer) syncing(doc crdt.DocumentID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.docs[doc]
	return ok
}

// close ends the connection (idempotent).
func (p *peer) close(err error) {
	p.once.Do(func() {
		p.mu.Lock()
		p.closeErr = err
		p.mu.Unlock()
		close(p.stopc)
		_ = p.conn.Close(err)
	})
}

// drop closes a peer this repo cuts off, and tells the Observer once,
// unless the peer was already closing.
func (p *peer) drop(reason string, err error) {
	select {
	case <-p.stopc:
	default:
		if p.dropped.CompareAndSwap(false, true) {
			p.n.r.obs.PeerDropped(reason)
		}
	}
	p.close(err)
}

// admit takes one message from the per-connection budget, waiting while
// the peer is over its rate. Cutting a peer off instead would not protect
// the server: automerge-repo clients reconnect at once with a fresh burst,
// and one that resyncs more documents than the burst on every reconnect
// would never get through. It returns false if the peer closed while it
// waited.
func (p *peer) admit(log *slog.Logger) bool {
	if !p.budget.wait(p.stopc) {
		return false
	}
	if p.budget.waited && !p.slowed {
		p.slowed = true
		log.Info("slowing peer over its message rate", "limit_per_s", p.n.cfg.RatePerSecond)
		p.n.r.obs.PeerSlowed(SlowMessages)
	}
	return true
}

// run registers the peer, starts its writer and reads until the end.
func (p *peer) run(ctx context.Context) error {
	n := p.n
	if err := n.register(p); err != nil {
		_ = p.conn.Close(err)
		return err
	}
	log := n.r.log.With("peer", p.id)
	if p.label != "" {
		log = log.With("who", p.label)
	}
	log.Info("peer connected", "remote", p.conn.RemoteAddr())
	n.stats.peersTotal.Add(1)
	stopCtx := context.AfterFunc(ctx, func() { p.close(ctx.Err()) })
	defer stopCtx()
	if !p.deadline.IsZero() {
		t := time.AfterFunc(time.Until(p.deadline), func() {
			log.Info("closing peer at its deadline")
			p.close(ErrExpired)
		})
		defer t.Stop()
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.writeLoop()
	}()
	if p.upstream() && n.cfg.StallTimeout > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.watchStalls(n.cfg.StallTimeout)
		}()
	}

	// Announce what the share policy pushes to this peer.
	n.r.mu.Lock()
	live := make([]crdt.DocumentID, 0, len(n.r.docs)+len(n.r.open))
	for id := range n.r.docs {
		live = append(live, id)
	}
	for id := range n.r.open {
		if _, ok := n.r.docs[id]; !ok {
			live = append(live, id)
		}
	}
	n.r.mu.Unlock()
	if p.upstream() {
		// Offline edits, possibly from an earlier process.
		live = append(live, n.r.Unsynced()...)
	}
	for _, id := range live {
		if n.r.cfg.Share.Announce(p.id, id) {
			_ = p.attach(id, false)
		}
	}
	if p.onReady != nil {
		p.onReady(p.id)
	}

	var reason error
	for {
		m, err := p.conn.ReadMessage(context.Background())
		unknown := err != nil && errors.Is(err, transport.ErrUnknownType)
		if err != nil && !unknown {
			reason = err
			break
		}
		n.stats.msgsIn.Add(1)
		n.stats.bytesIn.Add(int64(len(m.Data)))
		n.r.obs.MessageIn(msgType(m.Type), len(m.Data))
		if !p.admit(log) {
			reason = ErrClosed
			break
		}
		if unknown {
			log.Debug("dropping message of unknown type", "type", m.Type)
			continue
		}
		if err := p.handle(ctx, m); err != nil {
			reason = err
			break
		}
	}
	p.close(reason)
	wg.Wait()
	n.unregister(p)
	p.detach()
	p.mu.Lock()
	if p.closeErr != nil {
		reason = p.closeErr
	}
	p.mu.Unlock()
	log.Info("peer disconnected", "reason", reason)
	return reason
}

// detach releases every attached document.
func (p *peer) detach() {
	p.mu.Lock()
	p.detached = true
	docs := p.docs
	p.docs = map[crdt.DocumentID]*owner{}
	p.dirty = map[crdt.DocumentID]bool{}
	clear(p.dirtyAt)
	p.ready = nil
	p.mu.Unlock()
	for _, o := range docs {
		_ = o.send(context.Background(), func(o *owner) {
			delete(o.peers, p)
			delete(o.dirtyPeers, p)
			o.peerGone(p)
		})
		p.n.r.release(o)
	}
}

// handle applies one message from the peer. A returned error closes the
// connection.
func (p *peer) handle(ctx context.Context, m transport.Message) error {
	n := p.n
	log := n.r.log
	if err := m.Validate(); err != nil {
		log.Info("invalid message", "peer", p.id, "type", m.Type, "err", err)
		if m.Type == transport.TypeSync || m.Type == transport.TypeRequest {
			n.r.obs.ChangesRejected(1, RejectInvalid)
		}
		p.sendError(fmt.Sprintf("invalid %s message: %v", m.Type, err))
		return nil
	}
	if m.Type == transport.TypeJoin {
		p.sendError("already joined")
		return fmt.Errorf("%w: second join", ErrProtocol)
	}
	// On an accepted connection every message must come from the joined
	// peer. A server we dialled relays other peers' ephemeral messages
	// with their original senderId.
	if m.SenderID != p.id && (p.accepted || m.Type != transport.TypeEphemeral) {
		// The reference server drops these silently; relayed ephemeral
		// echoes look like this.
		log.Debug("dropping message with foreign senderId", "peer", p.id, "sender", m.SenderID, "type", m.Type)
		return nil
	}
	switch m.Type {
	case transport.TypeSync, transport.TypeRequest:
		id, err := crdt.ParseDocumentID(m.DocumentID)
		if err != nil {
			log.Info("bad documentId", "peer", p.id, "doc", m.DocumentID, "err", err)
			n.r.obs.ChangesRejected(1, RejectInvalid)
			p.sendError(fmt.Sprintf("invalid documentId %q", m.DocumentID))
			return nil
		}
		if len(m.Data) == 0 {
			p.sendError(fmt.Sprintf("%s for %s without data", m.Type, id))
			return nil
		}
		if !p.canRead(id) {
			p.enqueue(p.unavailable(id))
			return nil
		}
		if p.rejectWrites(id, m.Data) {
			return nil
		}
		return p.receive(id, m.Data, m.Type == transport.TypeRequest)
	case transport.TypeDocUnavailable:
		id, err := crdt.ParseDocumentID(m.DocumentID)
		if err != nil {
			return nil
		}
		if o := p.attached(id); o != nil {
			_ = o.send(ctx, func(o *owner) { o.peerUnavailable(p) })
		}
		return nil
	case transport.TypeEphemeral:
		return p.ephemeral(m)
	case transport.TypePeer, transport.TypeLeave, transport.TypeRemoteSubscriptionChange, transport.TypeRemoteHeadsChanged:
		return nil
	case transport.TypeError:
		log.Info("peer reported an error", "peer", p.id, "message", m.Message)
		if p.upstream() {
			p.handleRejection(m.Message)
		}
		return nil
	default:
		log.Debug("dropping message of unknown type", "peer", p.id, "type", m.Type)
		return nil
	}
}

func (p *peer) attached(id crdt.DocumentID) *owner {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.docs[id]
}

func (p *peer) sendError(msg string) {
	p.enqueue(transport.Message{Type: transport.TypeError, SenderID: p.n.peerID, TargetID: p.id, Message: msg})
}

// refuseDocument answers a message for a document beyond the connection's
// MaxDocuments, keeping the connection for the documents it has: a request
// gets doc-unavailable, so that the peer's find fails at once instead of
// waiting, and the peer hears why once. Closing instead made an
// automerge-repo client reconnect and announce every document again, for
// ever. Only the reader calls it.
func (p *peer) refuseDocument(id crdt.DocumentID, isRequest bool) {
	if isRequest {
		p.enqueue(p.unavailable(id))
	}
	if !p.refused {
		p.refused = true
		p.n.r.log.Warn("refusing documents over the connection's limit", "peer", p.id, "limit", p.n.cfg.MaxDocuments, "doc", id)
		p.sendError(fmt.Sprintf("too many documents on this connection (limit %d): %s and any others past the limit are not synced", p.n.cfg.MaxDocuments, id))
	}
}

func (p *peer) unavailable(id crdt.DocumentID) transport.Message {
	return transport.Message{Type: transport.TypeDocUnavailable, SenderID: p.n.peerID, TargetID: p.id, DocumentID: string(id)}
}

// receive feeds a sync or request message into the document's owner.
func (p *peer) receive(id crdt.DocumentID, data []byte, isRequest bool) error {
	o := p.attached(id)
	if o == nil {
		if err := p.attach(id, false); err != nil {
			if errors.Is(err, ErrTooManyDocuments) {
				p.refuseDocument(id, isRequest)
				return nil
			}
			return err
		}
		o = p.attached(id)
		if o == nil {
			return ErrClosed
		}
	}
	// The owner applies it; the reader does not wait, so many documents
	// progress at once and a busy document does not stall the connection.
	buf := append([]byte(nil), data...)
	return o.send(context.Background(), func(o *owner) { o.receiveSync(p, buf, isRequest) })
}

// watchStalls restarts the sync session of any document that has changes
// the server has not acknowledged and has heard nothing from it for a
// while. The Automerge sync protocol of this core can fall silent with
// different heads on both sides (for example after a Bloom filter false
// positive); a fresh session exchanges heads from scratch and heals it.
func (p *peer) watchStalls(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopc:
			return
		case <-t.C:
		}
		p.mu.Lock()
		owners := make([]*owner, 0, len(p.docs))
		for _, o := range p.docs {
			owners = append(owners, o)
		}
		p.mu.Unlock()
		for _, o := range owners {
			if o.sleeping.Load() {
				continue // hibernating: nothing unconfirmed (see hibernate)
			}
			select {
			case o.inbox <- func(o *owner) { o.checkStall(p, every) }:
				o.resume()
			default: // busy: it is making progress
			}
		}
	}
}

// write sends one message, closing the peer on failure.
func (p *peer) write(ctx context.Context, m transport.Message) error {
	if err := p.conn.WriteMessage(ctx, m); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.drop(DropWriteTimeout, err)
		}
		p.close(err)
		return err
	}
	p.n.stats.msgsOut.Add(1)
	p.n.stats.bytesOut.Add(int64(len(m.Data)))
	p.n.r.obs.MessageOut(msgType(m.Type), len(m.Data))
	return nil
}

// writeLoop is the only writer of p.conn.
func (p *peer) writeLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	interval := p.n.cfg.SyncInterval
	var last time.Time
	var pace *pacer
	if !p.accepted && p.n.cfg.SendRatePerSecond > 0 {
		pace = newPacer(p.n.cfg.SendRatePerSecond, max(1, p.n.cfg.SendRatePerSecond/2))
	}
	write := func(m transport.Message) error {
		if !pace.wait(p.stopc) {
			return ErrClosed
		}
		return p.write(ctx, m)
	}
	for {
		select {
		case <-p.stopc:
			return
		case <-p.signal:
		}
		// Leading-edge throttle: an isolated change goes out at once; under
		// load, changes arriving within SyncInterval of the last round
		// wait for its end and leave together, in one message per document.
		if wait := interval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-p.stopc:
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		for {
			p.mu.Lock()
			out := p.outbox
			p.outbox = nil
			ready := p.ready
			p.ready = nil
			dirty := p.dirty
			p.dirty = make(map[crdt.DocumentID]bool)
			var dirtyAt map[crdt.DocumentID]time.Time
			if len(p.dirtyAt) > 0 {
				dirtyAt = p.dirtyAt
				p.dirtyAt = make(map[crdt.DocumentID]time.Time)
			}
			owners := make(map[crdt.DocumentID]*owner, len(dirty))
			for id := range dirty {
				if o := p.docs[id]; o != nil {
					owners[id] = o
				}
			}
			p.mu.Unlock()
			if len(out) == 0 && len(dirty) == 0 && len(ready) == 0 {
				break
			}
			for _, m := range out {
				if err := write(m); err != nil {
					return
				}
			}
			// Ready messages were built before anything generated below,
			// so they go first: a document's messages stay in order.
			for _, r := range ready {
				p.n.stats.syncOut.Add(1)
				if err := write(r.m); err != nil {
					return
				}
				if p.dirtyAt != nil {
					p.n.r.obs.FanoutLatency(time.Since(r.at))
				}
			}
			for id, o := range owners {
				msgs, err := o.generate(ctx, p)
				if err != nil {
					continue
				}
				for _, m := range msgs {
					p.n.stats.syncOut.Add(1)
					if err := write(m); err != nil {
						return
					}
				}
				if since, ok := dirtyAt[id]; ok && len(msgs) > 0 {
					p.n.r.obs.FanoutLatency(time.Since(since))
				}
			}
		}
	}
}

// pacer is a token bucket of messages: a client's outgoing ones (with half
// a second's worth of burst; a server's burst is usually larger than its
// rate) and a server's incoming ones per connection. A nil pacer never
// waits.
type pacer struct {
	rate, burst float64
	tokens      float64
	last        time.Time
	waited      bool // wait has had to wait at least once
}

func newPacer(rate, burst float64) *pacer {
	return &pacer{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (pc *pacer) refill() {
	now := time.Now()
	pc.tokens = min(pc.burst, pc.tokens+now.Sub(pc.last).Seconds()*pc.rate)
	pc.last = now
}

// wait takes one token, waiting for it if needed; false if stop closed first.
func (pc *pacer) wait(stop <-chan struct{}) bool {
	if pc == nil {
		return true
	}
	pc.refill()
	if pc.tokens < 1 {
		pc.waited = true
		t := time.NewTimer(time.Duration((1 - pc.tokens) / pc.rate * float64(time.Second)))
		select {
		case <-stop:
			t.Stop()
			return false
		case <-t.C:
		}
		pc.refill()
	}
	pc.tokens--
	return true
}
