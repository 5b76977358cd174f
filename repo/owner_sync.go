package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
)

// peerDoc is the sync bookkeeping of one (peer, document) pair, owned by the
// document's owner goroutine.
type peerDoc struct {
	ss          *crdt.SyncState
	request     bool // our next message is a "request": we lack the document
	unavailable bool // the peer said doc-unavailable
	theirHeads  []crdt.Hash
	sent        bool      // a message went to this peer
	lastRecv    time.Time // last message from the peer
	lastReset   time.Time // last stall recovery
	push        []byte    // a message to send before the session's next one
	unanswered  bool      // a message arrived since we last generated for the peer
	lastEmpty   bool      // the last message from the peer carried no new changes and did not start a session

	// The direct path (see direct.go).
	has       []crdt.Hash // sorted; the peer has (or will have) their ancestry
	hasOK     bool        // has is known: the direct path serves this peer
	behind    bool        // it lacks changes older than the current delta
	out       [][]byte    // change chunks queued for it
	sentHeads []crdt.Hash // sorted heads of our last message to it
}

// checkStall restarts the session with p when the document is not in
// sync with the server (local changes unconfirmed, or different heads) and
// nothing has come from it for longer than after.
func (o *owner) checkStall(p *peer, after time.Duration) {
	pd := o.peers[p]
	if pd == nil || o.doc == nil {
		return
	}
	if len(o.local) == 0 && slices.Equal(sortedHashes(o.serverHeads), sortedHashes(o.heads())) {
		return // in sync
	}
	now := time.Now()
	if now.Sub(pd.lastRecv) < after || now.Sub(pd.lastReset) < after {
		return
	}
	if len(o.local) > 0 && now.Sub(o.local[0].at) < after {
		// The oldest unconfirmed change is younger than after: its answer
		// is not overdue, however long the document was quiet before it.
		// (Taking it for a stall pushed the whole history since the
		// server's heads: 260 ms at 100,000 changes.)
		return
	}
	// A fresh session alone can hit the same Bloom filter false positive
	// again (the filters are deterministic), so unconfirmed changes go in
	// one message that bypasses the filters: every change since the
	// server's last known heads. Without any, nothing needs pushing (and
	// that message is history-sized when the server named no heads: 11 MB
	// at 100,000 changes); the fresh session asks the server what it has.
	var push []byte
	if len(o.local) > 0 {
		o.repo.log.Info("sync stalled; pushing the unconfirmed changes directly", "doc", o.id, "peer", p.id, "pending", len(o.local))
		msg, err := o.doc.PushMessage(o.serverHeads)
		if err != nil {
			o.repo.log.Warn("cannot build push message", "doc", o.id, "err", err)
			return
		}
		push = msg
	} else {
		o.repo.log.Info("sync stalled; starting a fresh session", "doc", o.id, "peer", p.id)
	}
	pd.ss = crdt.NewSyncState(o.doc)
	pd.push = push
	pd.lastReset = now
	pd.hasOK, pd.behind, pd.out = false, false, nil
	o.dirtyPeers[p] = struct{}{}
}

func (o *owner) peerDoc(p *peer) *peerDoc {
	pd := o.peers[p]
	if pd == nil {
		pd = &peerDoc{ss: crdt.NewSyncState(o.doc)}
		o.peers[p] = pd
	}
	return pd
}

// receiveSync applies a sync or request message from p.
func (o *owner) receiveSync(p *peer, data []byte, isRequest bool) {
	log := o.repo.log
	o.settle()
	if o.deleted && !isRequest {
		// A peer pushes a document deleted here: it comes back, as with
		// the reference server.
		o.deleted = false
	}
	if err := o.load(); err != nil {
		if !errors.Is(err, ErrNotFound) || o.deleted {
			log.Warn("cannot serve document", "doc", o.id, "peer", p.id, "err", err)
			p.enqueue(p.unavailable(o.id))
			return
		}
		if isRequest {
			// Nobody here has it: say so at once (the client would
			// otherwise wait 60 s).
			p.enqueue(p.unavailable(o.id))
			return
		}
		// An unsolicited sync for a new document: start it empty; it
		// is stored as soon as changes arrive.
		o.doc = o.repo.newDoc()
	}
	o.directSync()
	if hashes, err := o.validateIncoming(data); err != nil {
		log.Info("rejected changes from a peer", "doc", o.id, "peer", p.id, "changes", len(hashes), "err", err)
		p.sendError(rejectionText(o.id, hashes, err))
		return
	}
	pd := o.peerDoc(p)
	msg, err := crdt.ParseSyncMessage(data)
	if err != nil {
		log.Info("rejected sync message", "doc", o.id, "peer", p.id, "err", err)
		p.sendError(fmt.Sprintf("invalid sync message for %s", o.id))
		return
	}
	o.markRemoteBefore()
	if o.probe == nil && len(o.subs) > 0 && o.repo.cfg.ConflictWindow > 0 {
		// Conflicts are only for subscribers; checked once per batch.
		o.probe = o.probeConflicts()
	}
	var res crdt.SyncResult
	direct := !o.repo.cfg.SessionsOnly && o.doc.CanApplyDirectly(msg)
	if direct {
		o.repo.net.stats.directIn.Add(1)
		res, err = o.doc.ApplyDirectly(msg)
	} else {
		o.repo.net.stats.sessionIn.Add(1)
		res, err = pd.ss.Receive(data)
	}
	o.mutated()
	if err != nil {
		o.repo.obs.ChangesRejected(max(msg.NChanges(), 1), RejectInvalid)
		log.Info("rejected sync message", "doc", o.id, "peer", p.id, "err", err)
		p.sendError(fmt.Sprintf("invalid sync message for %s", o.id))
		return
	}
	pd.theirHeads = res.Heads
	pd.lastRecv = time.Now()
	pd.unanswered = true
	// A new session of the peer's (it re-requested a document it has)
	// must hear back, or it never learns that it is in sync.
	pd.lastEmpty = res.NChanges == 0 && !msg.FromScratch()
	pd.unavailable = false
	if p.upstream() {
		o.confirm(res.Heads)
	}
	if res.NChanges > 0 && len(res.Changes) > 0 {
		o.pending = append(o.pending, res.Changes)
		o.direct.delta = append(o.direct.delta, res.Changes)
	}
	usable := direct
	if !direct && !o.repo.cfg.SessionsOnly && msg.Need() == 0 {
		usable = true
		for _, h := range res.Heads {
			if !o.doc.HasChange(h) {
				usable = false
				break
			}
		}
	}
	o.learnHeads(pd, res.Heads, usable)
	if res.Changed {
		o.changed = true
		o.remoteArrived = true
	}
	o.dirtyPeers[p] = struct{}{}
}

// generate returns the next messages for p, after flushing: nothing leaves
// this process before it is durable.
func (o *owner) generate(ctx context.Context, p *peer) ([]transport.Message, error) {
	var out []transport.Message
	err := o.do(ctx, func(o *owner) error {
		o.settle()
		if err := o.flush(); err != nil {
			return err
		}
		// A message pushed since the writer took the ready slots goes
		// first: it is older than anything made below.
		if r, ok := p.takeReady(o.id); ok {
			out = append(out, r.m)
		}
		if o.doc == nil {
			return nil
		}
		pd := o.peers[p]
		if pd == nil {
			return nil
		}
		if pd.push != nil {
			out = append(out, transport.Message{
				Type: transport.TypeSync, SenderID: o.repo.net.peerID, TargetID: p.id,
				DocumentID: string(o.id), Data: pd.push,
			})
			pd.push = nil
		}
		o.directSync()
		if pd.hasOK {
			if m := o.generateDirect(p, pd, nil); m != nil {
				o.repo.net.stats.directOut.Add(1)
				out = append(out, transport.Message{
					Type: transport.TypeSync, SenderID: o.repo.net.peerID, TargetID: p.id,
					DocumentID: string(o.id), Data: m,
				})
			}
			if pd.hasOK {
				return nil
			}
		}
		msg, ok := pd.ss.Generate()
		if !ok && pd.unanswered && p.accepted {
			// Automerge says nothing to a peer that is already in sync,
			// so a client would never learn that we have its changes.
			// A server answers every message: when automerge has nothing
			// to say, with a small message of our heads (and any changes
			// the peer lacks, normally none). Our session is unaffected.
			if m, err := o.doc.PushMessage(pd.theirHeads); err == nil {
				msg, ok = m, true
			}
		}
		pd.unanswered = false
		if !ok {
			return nil
		}
		pd.sent = true
		pd.sentHeads = sortedHashes(o.heads())
		o.repo.net.stats.sessionOut.Add(1)
		typ := transport.TypeSync
		if pd.request && len(o.doc.Heads()) == 0 {
			typ = transport.TypeRequest
		}
		pd.request = false
		out = append(out, transport.Message{
			Type: typ, SenderID: o.repo.net.peerID, TargetID: p.id,
			DocumentID: string(o.id), Data: msg,
		})
		return nil
	})
	return out, err
}

// wakePeers tells writers to pull, after a successful flush.
func (o *owner) wakePeers() {
	o.distribute()
	if o.changed {
		for p := range o.peers {
			o.dirtyPeers[p] = struct{}{}
		}
		o.changed = false
		if o.doc != nil && len(o.heads()) > 0 {
			for _, w := range o.findWaiters {
				w <- nil
			}
			o.findWaiters = nil
		}
	}
	var shared directShare
	for p := range o.dirtyPeers {
		if !o.pushDirect(p, &shared) {
			p.markDirty(o.id)
		}
	}
	clear(o.dirtyPeers)
}

// directShare lets the peers of one distribution that get the same changes
// share one encoded message.
type directShare struct {
	out [][]byte
	msg []byte
}

// pushDirect builds the next message for a peer on the direct path here,
// right after the flush, and hands it to the peer's writer, instead of
// having the writer ask for it with a round trip through the owner's inbox
// (one per peer per batch: 16% of a server's CPU with 1,000 peers). It
// reports false when the peer needs the pull path: not on the direct path,
// something else to send first, or its ready slot still taken.
func (o *owner) pushDirect(p *peer, shared *directShare) bool {
	pd := o.peers[p]
	if o.doc == nil || pd == nil || !pd.hasOK || pd.behind || pd.push != nil || pd.request ||
		o.coalesce.active() || o.doc.HasUncommitted() || p.readyPending(o.id) {
		return false
	}
	msg := o.generateDirect(p, pd, shared)
	if msg == nil {
		return true // nothing to say; the pull path would find nothing either
	}
	o.repo.net.stats.directOut.Add(1)
	p.deliverReady(o.id, transport.Message{
		Type: transport.TypeSync, SenderID: o.repo.net.peerID, TargetID: p.id,
		DocumentID: string(o.id), Data: msg,
	})
	return true
}

// sameChunks reports whether a and b hold the same chunks (the same bytes
// in memory: the peers' queues share the batch's chunks).
func sameChunks(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) || (len(a[i]) > 0 && &a[i][0] != &b[i][0]) {
			return false
		}
	}
	return true
}

func (o *owner) peerUnavailable(p *peer) {
	if pd := o.peers[p]; pd != nil {
		pd.unavailable = true
	}
	o.checkUnavailable()
}

func (o *owner) peerGone(p *peer) {
	o.statusDirty = true
	o.checkUnavailable()
}

// checkUnavailable fails pending remote finds once every peer said no.
func (o *owner) checkUnavailable() {
	if len(o.findWaiters) == 0 {
		return
	}
	if o.doc != nil && len(o.heads()) > 0 {
		return
	}
	for _, pd := range o.peers {
		if !pd.unavailable {
			return
		}
	}
	for _, w := range o.findWaiters {
		w <- fmt.Errorf("%w: %s", ErrUnavailable, o.id)
	}
	o.findWaiters = nil
}

// findRemote asks every connected peer for a document this repo lacks and
// waits until one delivers content, all say unavailable, or ctx ends.
func (n *network) findRemote(ctx context.Context, id crdt.DocumentID) (*DocHandle, error) {
	o, err := n.r.acquire(id)
	if err != nil {
		return nil, err
	}
	defer n.r.release(o)
	wait := make(chan error, 1)
	err = o.do(ctx, func(o *owner) error {
		if err := o.load(); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if o.doc != nil && len(o.heads()) > 0 {
			wait <- nil
			return nil
		}
		o.findWaiters = append(o.findWaiters, wait)
		return nil
	})
	if err != nil {
		return nil, err
	}
	asked := 0
	for _, p := range n.peerList() {
		// Ask only peers we would share the document with: a server
		// (announce nothing) never asks its clients.
		if !n.r.cfg.Share.Announce(p.id, id) {
			continue
		}
		if p.attach(id, true) == nil {
			asked++
		}
	}
	if asked == 0 {
		return nil, fmt.Errorf("%w: %s (no peer to ask)", ErrUnavailable, id)
	}
	select {
	case err := <-wait:
		if err != nil {
			return nil, err
		}
		n.r.markOpen(id)
		return &DocHandle{repo: n.r, id: id}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, id, ctx.Err())
	}
}
