package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/transport"
)

// Errors about peers.
var (
	ErrProtocol         = errors.New("repo: protocol violation")
	ErrHandshake        = errors.New("repo: handshake failed")
	ErrTooManyDocuments = errors.New("repo: peer opened too many documents")
	ErrReplaced         = errors.New("repo: peer replaced by a newer connection with the same id")
)

// PeerConfig bounds what one connection may do.
type PeerConfig struct {
	// HandshakeTimeout is how long a connection may take to join. Default 10s.
	HandshakeTimeout time.Duration
	// RatePerSecond and Burst limit incoming messages per connection: a
	// peer over its budget is slowed, not cut off (its next message is
	// read only once the budget allows it, so TCP pushes back on the
	// sender), so a client that resyncs thousands of documents on
	// reconnecting gets through at the rate. Defaults 2000 and 4000.
	RatePerSecond float64
	Burst         float64
	// MaxDocuments bounds how many documents one connection may sync;
	// messages for further documents are refused (a request with
	// doc-unavailable) and the connection stays up.
	// Default 10000.
	MaxDocuments int
	// SyncInterval, if positive, is the least time between two rounds of
	// sync messages to one peer: a change after a quiet period leaves at
	// once, later ones within the interval leave together at its end. It
	// trades latency for fewer messages (the JavaScript client uses 100ms).
	// Default 0: no throttle; a peer's writer still batches whatever
	// accumulated while it was busy writing.
	SyncInterval time.Duration
	// StallTimeout: on a connection this repo dialled, a document whose
	// local changes have had no answer from the server for this long gets
	// a fresh sync session. Default 2s; negative: never.
	StallTimeout time.Duration
	// SendRatePerSecond paces the messages this repo sends on connections
	// it dialled, so that a client with thousands of documents stays under
	// a server's incoming limit (RatePerSecond above, 2000/s by default)
	// when it connects and announces them all, instead of being slowed by
	// it (or, by servers that do so, cut off).
	// Messages wait; nothing is dropped. Default 1800; negative: no pacing.
	// Accepted connections (a server's clients) are never paced.
	SendRatePerSecond float64
	// OutboxSize bounds queued control messages (ephemeral relays,
	// doc-unavailable, errors) per peer; ephemeral messages beyond it are
	// dropped. Default 1024.
	OutboxSize int
}

func (c *PeerConfig) setDefaults() {
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = 2000
	}
	if c.Burst <= 0 {
		c.Burst = 2 * c.RatePerSecond
	}
	if c.MaxDocuments <= 0 {
		c.MaxDocuments = 10000
	}
	if c.OutboxSize <= 0 {
		c.OutboxSize = 1024
	}
	if c.SendRatePerSecond == 0 {
		c.SendRatePerSecond = 1800
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 2 * time.Second
	}

}

// netStats counts traffic; read with Repo.Stats.
type netStats struct {
	msgsIn, msgsOut, bytesIn, bytesOut, syncOut, peersTotal atomic.Int64
	// sync messages taken and made on the direct path or by an Automerge
	// session (see direct.go)
	directIn, directOut, sessionIn, sessionOut atomic.Int64
	fullBuilt, fullCached                      atomic.Int64
}

// Stats is a snapshot of a repo's counters since it started.
type Stats struct {
	Peers         int   // connected now
	PeersTotal    int64 // handshakes completed
	LiveDocuments int   // documents in memory
	Hibernating   int   // documents peers sync that are out of memory (Config.HibernateAfter)
	Parked        int   // hibernating documents whose goroutine has stopped until the next message
	// LiveBytes is the stored (compressed) size of the documents in
	// memory; their in-memory form is several times larger.
	LiveBytes int64
	// InCore counts the documents in memory that are built in the
	// Automerge core: all of them, unless Config.GraphDocuments keeps them
	// as change graphs until their content is read or written.
	InCore      int
	MessagesIn  int64
	MessagesOut int64
	BytesIn     int64 // sync and ephemeral payload bytes received
	BytesOut    int64 // sync and ephemeral payload bytes sent
	SyncOut     int64 // sync messages generated for peers
	// Sync messages received and generated on the direct path (cost: the
	// size of the changes) and by Automerge sync sessions (cost: the
	// document's history); see the repo package documentation.
	DirectIn, DirectOut, SessionIn, SessionOut int64
	// Direct messages with the whole document for peers that had none of
	// it: built by asking Automerge for every change, or from the
	// document's cached change list (see directState.all) or its change
	// graph (Config.GraphDocuments).
	FullBuilt, FullCached int64
}

// Stats returns the repo's counters.
func (r *Repo) Stats() Stats {
	n := r.net
	n.mu.Lock()
	peers := len(n.peers)
	n.mu.Unlock()
	liveBytes, inCore := r.liveBytes()
	return Stats{
		Peers: peers, PeersTotal: n.stats.peersTotal.Load(), LiveDocuments: r.Live(), Hibernating: int(r.hibernated.Load()),
		Parked:    int(r.parked.Load()),
		LiveBytes: liveBytes, InCore: inCore,
		MessagesIn: n.stats.msgsIn.Load(), MessagesOut: n.stats.msgsOut.Load(),
		BytesIn: n.stats.bytesIn.Load(), BytesOut: n.stats.bytesOut.Load(), SyncOut: n.stats.syncOut.Load(),
		DirectIn: n.stats.directIn.Load(), DirectOut: n.stats.directOut.Load(),
		SessionIn: n.stats.sessionIn.Load(), SessionOut: n.stats.sessionOut.Load(),
		FullBuilt: n.stats.fullBuilt.Load(), FullCached: n.stats.fullCached.Load(),
	}
}

// storageIDKey is where the store keeps the repo's storage id.
const storageIDKey = "storage-adapter-id"

// network tracks the repo's connected peers.
type network struct {
	r      *Repo
	peerID string
	cfg    PeerConfig

	mu        sync.Mutex
	peers     map[string]*peer
	closed    bool
	storageID string
	wg        sync.WaitGroup

	stats netStats

	ephMu     sync.Mutex
	ephSeen   map[string]uint64 // senderId + "\x00" + sessionId -> highest count
	sessionID string
	ephCount  uint64
	ephSubs   map[crdt.DocumentID]map[*EphemeralSubscription]struct{}
}

func newNetwork(r *Repo) *network {
	id := r.cfg.PeerID
	if id == "" {
		id = "tandem-" + randomHex(6)
	}
	return &network{
		r: r, peerID: id, cfg: r.cfg.Peers, peers: make(map[string]*peer),
		ephSeen: make(map[string]uint64), sessionID: randomHex(6),
		ephSubs: make(map[crdt.DocumentID]map[*EphemeralSubscription]struct{}),
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StorageID returns the id of this repo's store, creating and persisting it
// on first use (a UUID v4 text, as automerge-repo makes them).
func (r *Repo) StorageID(ctx context.Context) (string, error) {
	n := r.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if r.cfg.StorageID != "" {
		return r.cfg.StorageID, nil
	}
	if n.storageID != "" {
		return n.storageID, nil
	}
	v, err := r.store.GetValue(ctx, storageIDKey)
	if err == nil && len(v) > 0 {
		n.storageID = string(v)
		return n.storageID, nil
	}
	if err != nil && !errors.Is(err, persistence.ErrNotFound) {
		return "", err
	}
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	if err := r.store.PutValue(ctx, storageIDKey, []byte(id)); err != nil {
		return "", err
	}
	n.storageID = id
	return id, nil
}

// hasPeersFor reports whether some connected peer could be asked for id.
func (n *network) hasPeersFor(id crdt.DocumentID) bool {
	for _, p := range n.peerList() {
		if n.r.cfg.Share.Announce(p.id, id) {
			return true
		}
	}
	return false
}

func (n *network) peerList() []*peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*peer, 0, len(n.peers))
	for _, p := range n.peers {
		out = append(out, p)
	}
	return out
}

// announce pushes a document to every peer the share policy announces it to.
func (n *network) announce(id crdt.DocumentID) {
	for _, p := range n.peerList() {
		if n.r.cfg.Share.Announce(p.id, id) {
			p.attach(id, false)
		}
	}
}

func (n *network) close() {
	n.mu.Lock()
	n.closed = true
	peers := make([]*peer, 0, len(n.peers))
	for _, p := range n.peers {
		peers = append(peers, p)
	}
	n.mu.Unlock()
	for _, p := range peers {
		p.close(ErrClosed)
	}
	n.wg.Wait()
	n.ephMu.Lock()
	for _, subs := range n.ephSubs {
		for s := range subs {
			s.closeLocked()
		}
	}
	n.ephSubs = map[crdt.DocumentID]map[*EphemeralSubscription]struct{}{}
	n.ephMu.Unlock()
}

// register makes p the peer for its id, closing an older connection with the
// same id (a reconnecting tab looks like that).
func (n *network) register(p *peer) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	old := n.peers[p.id]
	n.peers[p.id] = p
	n.mu.Unlock()
	if old != nil {
		old.close(ErrReplaced)
	}
	return nil
}

func (n *network) unregister(p *peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.peers[p.id] == p {
		delete(n.peers, p.id)
	}
}

// Accept runs the receiving side of the sync protocol on conn (a server's
// view of a client): it waits for join, answers peer, then syncs until the
// connection ends or ctx is cancelled. It returns why the connection ended.
func (r *Repo) Accept(ctx context.Context, conn transport.Conn, opts ...AcceptOption) error {
	var ao acceptOpts
	for _, o := range opts {
		o(&ao)
	}
	n := r.net
	if err := r.checkOpen(); err != nil {
		_ = conn.Close(err)
		return err
	}
	first, err := readWithTimeout(ctx, conn, n.cfg.HandshakeTimeout)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrHandshake, err)
		r.log.Info("handshake failed", "remote", conn.RemoteAddr(), "err", err)
		_ = conn.Close(err)
		return err
	}
	r.obs.MessageIn(msgType(first.Type), len(first.Data))
	if first.Type != transport.TypeJoin || first.SenderID == "" {
		err = fmt.Errorf("%w: first message is %q, want join with a senderId", ErrHandshake, first.Type)
		r.log.Info("handshake failed", "remote", conn.RemoteAddr(), "err", err)
		_ = conn.WriteMessage(ctx, transport.Message{Type: transport.TypeError, SenderID: n.peerID, TargetID: first.SenderID, Message: "expected a join message"})
		_ = conn.Close(err)
		return err
	}
	if !supportsV1(first.SupportedProtocolVersions) {
		err = fmt.Errorf("%w: unsupported protocol versions %v", ErrHandshake, first.SupportedProtocolVersions)
		r.log.Info("handshake failed", "peer", first.SenderID, "err", err)
		_ = conn.WriteMessage(ctx, transport.Message{Type: transport.TypeError, SenderID: n.peerID, TargetID: first.SenderID, Message: "unsupported protocol version"})
		_ = conn.Close(err)
		return err
	}
	storageID, err := r.StorageID(ctx)
	if err != nil {
		_ = conn.Close(err)
		return err
	}
	reply := transport.Message{
		Type: transport.TypePeer, SenderID: n.peerID, TargetID: first.SenderID,
		SelectedProtocolVersion: transport.ProtocolV1,
		PeerMetadata:            &transport.PeerMetadata{StorageID: storageID, IsEphemeral: r.cfg.Ephemeral},
	}
	if err := conn.WriteMessage(ctx, reply); err != nil {
		_ = conn.Close(err)
		return err
	}
	r.obs.MessageOut(transport.TypePeer, 0)
	p := newPeer(n, first.SenderID, conn, first.PeerMetadata)
	p.accepted = true
	p.access = ao.access
	p.deadline = ao.deadline
	p.label = ao.label
	return p.run(ctx)
}

// Connect runs the initiating side of the protocol on conn (a client's view
// of a server): it sends join, waits for peer, then syncs until the
// connection ends. It returns why the connection ended. onReady, if not nil,
// is called once the handshake is done.
func (r *Repo) Connect(ctx context.Context, conn transport.Conn, onReady func(peerID string)) error {
	n := r.net
	if err := r.checkOpen(); err != nil {
		_ = conn.Close(err)
		return err
	}
	storageID, err := r.StorageID(ctx)
	if err != nil {
		_ = conn.Close(err)
		return err
	}
	join := transport.Message{
		Type: transport.TypeJoin, SenderID: n.peerID,
		SupportedProtocolVersions: []string{transport.ProtocolV1},
		PeerMetadata:              &transport.PeerMetadata{StorageID: storageID, IsEphemeral: r.cfg.Ephemeral},
	}
	if err := conn.WriteMessage(ctx, join); err != nil {
		_ = conn.Close(err)
		return err
	}
	r.obs.MessageOut(transport.TypeJoin, 0)
	m, err := readWithTimeout(ctx, conn, n.cfg.HandshakeTimeout)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrHandshake, err)
		_ = conn.Close(err)
		return err
	}
	r.obs.MessageIn(msgType(m.Type), len(m.Data))
	switch m.Type {
	case transport.TypePeer:
	case transport.TypeError:
		err = fmt.Errorf("%w: server said %q", ErrHandshake, m.Message)
		_ = conn.Close(err)
		return err
	default:
		err = fmt.Errorf("%w: got %q, want peer", ErrHandshake, m.Type)
		_ = conn.Close(err)
		return err
	}
	if m.SenderID == "" {
		err = fmt.Errorf("%w: peer message without senderId", ErrHandshake)
		_ = conn.Close(err)
		return err
	}
	p := newPeer(n, m.SenderID, conn, m.PeerMetadata)
	p.onReady = onReady
	return p.run(ctx)
}

func supportsV1(vs []string) bool {
	if len(vs) == 0 {
		return true
	}
	for _, v := range vs {
		if v == transport.ProtocolV1 {
			return true
		}
	}
	return false
}

// readWithTimeout reads one message, closing conn if none arrives in time.
func readWithTimeout(ctx context.Context, conn transport.Conn, d time.Duration) (transport.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close(ctx.Err()) })
	defer stop()
	m, err := conn.ReadMessage(ctx)
	if err != nil && ctx.Err() != nil {
		return m, ctx.Err()
	}
	return m, err
}
