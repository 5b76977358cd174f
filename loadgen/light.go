package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// lightClient is a simulated user that costs almost nothing per change it
// receives (Config.Light): it speaks the automerge-repo protocol itself over
// one WebSocket and never applies received changes into Automerge. It keeps
// the document's change graph as hashes only: the set of changes it has
// and their heads. For each incoming sync message it checks the changes'
// framing and checksums (crdt.ParseSyncMessage), adds the new ones to the
// graph, reads their commit messages ("lg W N": writer W's change N) to
// count deliveries, and acknowledges with its heads (crdt.DirectMessage), as
// an Automerge peer that applied them would.
//
// A light writer also holds the initial document in a crdt.Doc and makes
// its changes there; since that document never takes the others' changes,
// each writer's changes form a chain from the initial document, concurrent
// with the other writers' chains (valid Automerge: the server merges them).
type lightClient struct {
	conn     transport.Conn
	peerID   string
	serverID string
	docID    string

	// mu guards the graph and orders writes on conn, so that the heads a
	// message advertises are never ahead of the changes sent before it.
	mu      sync.Mutex
	known   map[crdt.Hash]struct{}    // changes this client has (as hashes)
	heads   map[crdt.Hash]struct{}    // the heads of known
	pending map[crdt.Hash]crdt.Change // received changes whose deps are not all known yet
	own     map[crdt.Hash][]byte      // a writer's own changes, to answer a need
	acked   []crdt.Hash               // the server's heads we last answered without news
	doc     *crdt.Doc                 // writers only: the initial document plus its own changes
	docDeps []crdt.Hash               // the doc's heads: the next own change's deps
	sorted  []crdt.Hash               // heads, sorted (valid while sortOK)
	sortOK  bool

	bytesIn, bytesOut atomic.Int64
	bad               atomic.Int64 // sync messages it could not read
}

// errUnavailable: the server said it does not have the document.
var errUnavailable = errors.New("loadgen: the server does not have the document")

// lightHandshake bounds join → peer.
const lightHandshake = 10 * time.Second

func dialLight(ctx context.Context, url string) (*lightClient, error) {
	conn, err := ws.Dial(ctx, url, ws.Config{})
	if err != nil {
		return nil, fmt.Errorf("loadgen: connect to %s: %w", url, err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	lc := &lightClient{conn: conn, peerID: "loadgen-light-" + hex.EncodeToString(id[:])}
	hctx, cancel := context.WithTimeout(ctx, lightHandshake)
	defer cancel()
	err = conn.WriteMessage(hctx, transport.Message{
		Type: transport.TypeJoin, SenderID: lc.peerID,
		SupportedProtocolVersions: []string{transport.ProtocolV1},
		PeerMetadata:              &transport.PeerMetadata{IsEphemeral: true},
	})
	if err == nil {
		var m transport.Message
		m, err = conn.ReadMessage(hctx)
		switch {
		case err != nil:
		case m.Type == transport.TypeError:
			err = fmt.Errorf("server said %q", m.Message)
		case m.Type != transport.TypePeer || m.SenderID == "":
			err = fmt.Errorf("got %q, want peer", m.Type)
		default:
			lc.serverID = m.SenderID
		}
	}
	if err != nil {
		_ = conn.Close(err)
		return nil, fmt.Errorf("loadgen: handshake with %s: %w", url, err)
	}
	return lc, nil
}

func (lc *lightClient) close() { _ = lc.conn.Close(nil) }

// open starts syncing docID as a returning user who has exactly the
// template (a sync message saying "I have these heads"), and waits for the
// server's first answer. A writer also loads the template into a crdt.Doc.
func (lc *lightClient) open(ctx context.Context, docID crdt.DocumentID, t *template, writer bool) ([]crdt.Change, error) {
	lc.mu.Lock()
	lc.docID = string(docID)
	lc.known = make(map[crdt.Hash]struct{}, 1024)
	lc.heads = map[crdt.Hash]struct{}{}
	lc.pending = map[crdt.Hash]crdt.Change{}
	for _, h := range t.heads {
		lc.known[h] = struct{}{}
		lc.heads[h] = struct{}{}
	}
	lc.sortOK = false
	if writer {
		d, err := crdt.Load(t.Data)
		if err != nil {
			lc.mu.Unlock()
			return nil, err
		}
		lc.doc, lc.docDeps, lc.own = d, slices.Clone(t.heads), map[crdt.Hash][]byte{}
	}
	err := lc.send(ctx, crdt.DirectMessage(lc.headList(), nil))
	lc.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var got []crdt.Change
	for {
		m, err := lc.conn.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, transport.ErrClosed) {
				continue // one bad frame
			}
			return nil, fmt.Errorf("loadgen: open %s: %w", docID, err)
		}
		cs, answered, err := lc.handle(ctx, m)
		got = append(got, cs...)
		if err != nil {
			return got, fmt.Errorf("loadgen: open %s: %w", docID, err)
		}
		if answered {
			return got, nil
		}
	}
}

// send writes one sync message for the document. Callers hold mu.
func (lc *lightClient) send(ctx context.Context, data []byte) error {
	lc.bytesOut.Add(int64(len(data)))
	return lc.conn.WriteMessage(ctx, transport.Message{
		Type: transport.TypeSync, SenderID: lc.peerID, TargetID: lc.serverID, DocumentID: lc.docID, Data: data,
	})
}

// headList returns the heads sorted as Automerge sorts them (a peer
// compares heads as lists). Callers hold mu and must not keep the result
// past it.
func (lc *lightClient) headList() []crdt.Hash {
	if !lc.sortOK {
		lc.sorted = lc.sorted[:0]
		for h := range lc.heads {
			lc.sorted = append(lc.sorted, h)
		}
		slices.SortFunc(lc.sorted, func(a, b crdt.Hash) int { return bytes.Compare(a[:], b[:]) })
		lc.sortOK = true
	}
	return lc.sorted
}

// headsNow returns a copy of the client's heads.
func (lc *lightClient) headsNow() []crdt.Hash {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return slices.Clone(lc.headList())
}

// add puts c into the graph. Callers hold mu.
func (lc *lightClient) add(c crdt.Hash, deps []crdt.Hash) {
	lc.known[c] = struct{}{}
	for _, d := range deps {
		delete(lc.heads, d)
	}
	lc.heads[c] = struct{}{}
	lc.sortOK = false
}

func (lc *lightClient) hasAll(deps []crdt.Hash) bool {
	for _, d := range deps {
		if _, ok := lc.known[d]; !ok {
			return false
		}
	}
	return true
}

// handle takes one message from the server. It returns the changes that
// became part of the graph (in causal order) and whether it was a sync
// message for the document. It answers when the message brought changes,
// asked for some, or advertised heads other than ours (but not twice to the
// same heads without news, so that two peers that disagree do not talk
// forever).
func (lc *lightClient) handle(ctx context.Context, m transport.Message) ([]crdt.Change, bool, error) {
	switch {
	case m.DocumentID != lc.docID:
		return nil, false, nil
	case m.Type == transport.TypeDocUnavailable:
		return nil, false, errUnavailable
	case m.Type != transport.TypeSync:
		return nil, false, nil
	}
	lc.bytesIn.Add(int64(len(m.Data)))
	sm, err := crdt.ParseSyncMessage(m.Data)
	if err != nil || (sm.Version() != 0x42 && sm.NChanges() > 0) {
		// Not a message this client can follow (a version-2 message
		// carries a compressed document, not change chunks).
		lc.bad.Add(1)
		return nil, true, nil
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var applied []crdt.Change
	for _, c := range sm.Changes() {
		if _, ok := lc.known[c.Hash]; ok {
			continue
		}
		if _, ok := lc.pending[c.Hash]; ok {
			continue
		}
		if !lc.hasAll(c.Deps) {
			lc.pending[c.Hash] = c
			continue
		}
		lc.add(c.Hash, c.Deps)
		applied = append(applied, c)
		// Changes that waited for this one.
		for progress := len(lc.pending) > 0; progress; {
			progress = false
			for h, p := range lc.pending {
				if lc.hasAll(p.Deps) {
					delete(lc.pending, h)
					lc.add(h, p.Deps)
					applied = append(applied, p)
					progress = true
				}
			}
		}
	}
	var give [][]byte
	for _, h := range sm.NeedHashes() {
		if b, ok := lc.own[h]; ok {
			give = append(give, b)
		}
	}
	theirs := sm.Heads()
	ours := lc.headList()
	news := len(applied) > 0 || len(give) > 0
	if !news && (slices.Equal(theirs, ours) || slices.Equal(theirs, lc.acked)) {
		return applied, true, nil
	}
	if news {
		lc.acked = nil
	} else {
		lc.acked = slices.Clone(theirs)
	}
	return applied, true, lc.send(ctx, crdt.DirectMessage(ours, give))
}

// change makes one change on a light writer's document with set, commits
// it with message msg, and sends it. committed tells whether the change
// exists (and its number is used), even if sending it failed.
func (lc *lightClient) change(ctx context.Context, set func(d *crdt.Doc) error, msg string) (committed bool, err error) {
	if lc.doc == nil {
		return false, errors.New("loadgen: a light client that is not a writer cannot change the document")
	}
	if err := set(lc.doc); err != nil {
		_ = lc.doc.Rollback()
		return false, err
	}
	info, ok, err := lc.doc.Commit(msg)
	if err != nil || !ok {
		return false, err
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.add(info.Hash, lc.docDeps)
	lc.docDeps = append(lc.docDeps[:0], info.Hash)
	lc.own[info.Hash] = info.Bytes
	lc.acked = nil
	return true, lc.send(ctx, crdt.DirectMessage(lc.headList(), [][]byte{info.Bytes}))
}

// changeMsg is the commit message of writer w's change n.
func changeMsg(w int, n int64) string {
	return "lg " + strconv.Itoa(w) + " " + strconv.FormatInt(n, 10)
}

// parseChangeMsg reads a commit message made by changeMsg.
func parseChangeMsg(s string) (w int, n int64, ok bool) {
	rest, found := strings.CutPrefix(s, "lg ")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, " ")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(a)
	n, err2 := strconv.ParseInt(b, 10, 64)
	return w, n, err1 == nil && err2 == nil && w >= 0 && n >= 1
}

// dialLightAll connects n light clients, at most conc at a time.
func dialLightAll(ctx context.Context, url string, n, conc int, prog func(int)) ([]*lightClient, error) {
	cs := make([]*lightClient, n)
	err := forEach(ctx, n, conc, func(i int) (err error) {
		cs[i], err = dialLight(ctx, url)
		return err
	}, prog)
	if err != nil {
		closeLight(cs)
		return nil, err
	}
	return cs, nil
}

func closeLight(cs []*lightClient) {
	for _, c := range cs {
		if c != nil {
			c.close()
		}
	}
}

// receiveLight reads m's light client until the run stops, turning the
// changes it receives into deliveries.
func (lr *loadRun) receiveLight(ctx context.Context, m *member) {
	defer lr.recvWG.Done()
	for {
		msg, err := m.lc.conn.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
				return
			}
			continue // one bad frame
		}
		cs, _, _ := m.lc.handle(ctx, msg)
		if len(cs) > 0 {
			lr.deliverLight(m, cs, time.Now().UnixNano())
		}
	}
}

// deliverLight records the changes m received at (unix nanos): writer w's
// change n, by its commit message. Each receiver counts each change once
// (the graph knows every hash it has).
func (lr *loadRun) deliverLight(m *member, cs []crdt.Change, at int64) {
	for _, c := range cs {
		msg, err := crdt.ChangeMessage(c.Raw)
		if err != nil {
			continue
		}
		w, n, ok := parseChangeMsg(msg)
		if !ok || w == m.idx || w >= m.g.writers || n > int64(lr.capacity) {
			continue // the template's changes, or not ours
		}
		lr.received(m.g, w, n, 1, at)
	}
}
