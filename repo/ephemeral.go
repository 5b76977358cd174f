package repo

import (
	"context"
	"fmt"
	"sync"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
)

// maxEphemeralSenders bounds the de-duplication table.
const maxEphemeralSenders = 100000

// EphemeralMessage is a non-persistent message about a document (presence,
// cursors), as sent by automerge-repo's handle.broadcast.
type EphemeralMessage struct {
	DocumentID crdt.DocumentID
	SenderID   string
	Data       []byte // opaque; JavaScript apps put CBOR here
}

// EphemeralSubscription receives ephemeral messages for one document. Messages
// are dropped, not queued, when the reader falls behind: they are transient.
type EphemeralSubscription struct {
	n    *network
	id   crdt.DocumentID
	ch   chan EphemeralMessage
	once sync.Once
}

// Messages is closed when the subscription ends.
func (s *EphemeralSubscription) Messages() <-chan EphemeralMessage { return s.ch }

// Close ends the subscription.
func (s *EphemeralSubscription) Close() {
	s.n.ephMu.Lock()
	defer s.n.ephMu.Unlock()
	if subs := s.n.ephSubs[s.id]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(s.n.ephSubs, s.id)
		}
	}
	s.closeLocked()
}

func (s *EphemeralSubscription) closeLocked() { s.once.Do(func() { close(s.ch) }) }

// SubscribeEphemeral delivers ephemeral messages other peers send about this
// document.
func (h *DocHandle) SubscribeEphemeral() *EphemeralSubscription {
	n := h.repo.net
	s := &EphemeralSubscription{n: n, id: h.id, ch: make(chan EphemeralMessage, 256)}
	n.ephMu.Lock()
	defer n.ephMu.Unlock()
	if n.ephSubs[h.id] == nil {
		n.ephSubs[h.id] = make(map[*EphemeralSubscription]struct{})
	}
	n.ephSubs[h.id][s] = struct{}{}
	return s
}

// Broadcast sends data as an ephemeral message to every peer syncing this
// document. Nothing is stored.
func (h *DocHandle) Broadcast(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty ephemeral data", ErrProtocol)
	}
	n := h.repo.net
	for _, p := range n.peerList() {
		if !p.syncing(h.id) {
			continue
		}
		n.ephMu.Lock()
		n.ephCount++
		count := n.ephCount
		n.ephMu.Unlock()
		p.enqueue(transport.Message{
			Type: transport.TypeEphemeral, SenderID: n.peerID, TargetID: p.id,
			DocumentID: string(h.id), SessionID: n.sessionID, Count: count,
			Data: append([]byte(nil), data...),
		})
	}
	return ctx.Err()
}

// ephemeral de-duplicates, delivers locally and relays an ephemeral message
// to every other peer syncing the document.
func (p *peer) ephemeral(m transport.Message) error {
	n := p.n
	id, err := crdt.ParseDocumentID(m.DocumentID)
	if err != nil {
		n.r.log.Info("bad documentId in ephemeral", "peer", p.id, "doc", m.DocumentID)
		p.sendError(fmt.Sprintf("invalid documentId %q", m.DocumentID))
		return nil
	}
	if m.SessionID == "" || len(m.Data) == 0 {
		p.sendError("ephemeral message without sessionId or data")
		return nil
	}
	if !p.canRead(id) {
		p.enqueue(p.unavailable(id))
		return nil
	}
	key := m.SenderID + "\x00" + m.SessionID
	n.ephMu.Lock()
	if last, ok := n.ephSeen[key]; ok && m.Count <= last {
		n.ephMu.Unlock()
		return nil
	}
	if len(n.ephSeen) >= maxEphemeralSenders {
		clear(n.ephSeen)
	}
	n.ephSeen[key] = m.Count
	for s := range n.ephSubs[id] {
		select {
		case s.ch <- EphemeralMessage{DocumentID: id, SenderID: m.SenderID, Data: m.Data}:
		default:
		}
	}
	n.ephMu.Unlock()
	for _, q := range n.peerList() {
		if q == p || q.id == m.SenderID || !q.syncing(id) {
			continue
		}
		fwd := m
		fwd.TargetID = q.id
		q.enqueue(fwd)
	}
	return nil
}
