package repo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
)

// countingObserver counts every Observer call.
type countingObserver struct {
	repo.NopObserver
	mu                sync.Mutex
	in, out           map[string]int
	inBytes, outBytes map[string]int
	appliedLocal      int
	appliedRemote     int
	rejected          map[string]int
	persists          int
	persistedChanges  int
	persistedBytes    int
	fanouts           int
	dropped           map[string]int
	slowed            map[string]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{
		in: map[string]int{}, out: map[string]int{}, inBytes: map[string]int{}, outBytes: map[string]int{},
		rejected: map[string]int{}, dropped: map[string]int{}, slowed: map[string]int{},
	}
}

func (c *countingObserver) MessageIn(typ string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.in[typ]++
	c.inBytes[typ] += n
}

func (c *countingObserver) MessageOut(typ string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out[typ]++
	c.outBytes[typ] += n
}

func (c *countingObserver) ChangesApplied(n int, remote bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote {
		c.appliedRemote += n
	} else {
		c.appliedLocal += n
	}
}

func (c *countingObserver) ChangesRejected(n int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejected[reason] += n
}

func (c *countingObserver) Persisted(changes, bytes int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d < 0 || bytes <= 0 || changes <= 0 {
		panic(fmt.Sprintf("Persisted(%d, %d, %v)", changes, bytes, d))
	}
	c.persists++
	c.persistedChanges += changes
	c.persistedBytes += bytes
}

func (c *countingObserver) FanoutLatency(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d < 0 {
		panic(d)
	}
	c.fanouts++
}

func (c *countingObserver) PeerDropped(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropped[reason]++
}

func (c *countingObserver) PeerSlowed(limit string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slowed[limit]++
}

// check reads the counts under the lock.
func (c *countingObserver) check(f func(c *countingObserver) bool) func() bool {
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return f(c)
	}
}

func (c *countingObserver) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("in=%v out=%v applied local=%d remote=%d rejected=%v persists=%d (%d changes) fanouts=%d dropped=%v",
		c.in, c.out, c.appliedLocal, c.appliedRemote, c.rejected, c.persists, c.persistedChanges, c.fanouts, c.dropped)
}

func TestObserverSeesTraffic(t *testing.T) {
	ctx := ctxT(t)
	obs := newCountingObserver()
	noBad := func(_ crdt.DocumentID, view any) error {
		if m, ok := view.(map[string]any); ok && m["bad"] != nil {
			return errors.New("no bad")
		}
		return nil
	}
	srv := newRepo(t, memory.New(), func(c *repo.Config) { c.Observer = obs; c.Validate = noBad })
	a := clientRepo(t)
	b := clientRepo(t)
	pair(t, srv, a)
	pair(t, srv, b)

	// A client's document and change reach the server (remote changes,
	// persisted) and go on to the other client (fan-out).
	ha, err := a.CreateJSON(ctx, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := srv.Find(ctx, ha.ID())
		return err == nil
	}, "server has the document")
	hb, err := b.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ha.Set(ctx, "/n", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		v, err := hb.Get(ctx, "/n")
		return err == nil && fmt.Sprint(v) == "1"
	}, "b sees a's change")

	// A change on the server itself is local.
	hs, err := srv.Find(ctx, ha.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs.Set(ctx, "/n", 2); err != nil {
		t.Fatal(err)
	}
	// Rejected by the validator: here and from a peer.
	if _, err := hs.Set(ctx, "/bad", true); !errors.Is(err, repo.ErrRejected) {
		t.Fatalf("local bad change: %v", err)
	}
	if _, err := ha.Set(ctx, "/bad", true); err != nil {
		t.Fatal(err)
	}

	waitForDump(t, obs.check(func(c *countingObserver) bool {
		return c.in[transport.TypeJoin] == 2 && c.out[transport.TypePeer] == 2 &&
			c.in[transport.TypeSync] > 0 && c.out[transport.TypeSync] > 0 && c.inBytes[transport.TypeSync] > 0 &&
			c.outBytes[transport.TypeSync] > 0 && c.out[transport.TypeError] > 0 &&
			c.appliedRemote >= 2 && c.appliedLocal == 1 && c.rejected[repo.RejectValidation] == 2 &&
			c.persists >= 2 && c.persistedChanges == c.appliedLocal+c.appliedRemote && c.fanouts > 0
	}), "observer counts", func() { t.Log(obs) })

	obs.mu.Lock()
	defer obs.mu.Unlock()
	for typ := range obs.in {
		if !transport.KnownType(typ) {
			t.Errorf("unexpected message type %q", typ)
		}
	}
}

// joinedPipe connects a raw client "c" to srv over a pipe and completes the
// handshake; done reports how the server's side of the connection ended
// (the connection is closed when the test ends).
func joinedPipe(t *testing.T, srv *repo.Repo) (transport.Conn, <-chan error) {
	t.Helper()
	sc, cc := transport.Pipe()
	done := make(chan error, 1)
	actx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go func() { done <- srv.Accept(actx, sc) }()
	ctx := ctxT(t)
	if err := cc.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: "c"}); err != nil {
		t.Fatal(err)
	}
	if m, err := cc.ReadMessage(ctx); err != nil || m.Type != transport.TypePeer {
		t.Fatalf("handshake: %+v, %v", m, err)
	}
	return cc, done
}

// TestObserverUnknownTypeAndSlowPeer: a peer over its message rate is
// slowed, not cut off: what it sends past the burst is read at the rate,
// the Observer hears of it once, and the connection stays up.
func TestObserverUnknownTypeAndSlowPeer(t *testing.T) {
	const rate, burst, sent = 20, 2, 12
	obs := newCountingObserver()
	srv := newRepo(t, memory.New(), func(c *repo.Config) {
		c.Observer = obs
		c.Peers = repo.PeerConfig{RatePerSecond: rate, Burst: burst}
	})
	cc, done := joinedPipe(t, srv)
	ctx := ctxT(t)
	start := time.Now()
	for i := 0; i < sent-1; i++ {
		if err := cc.WriteMessage(ctx, transport.Message{Type: "x-bogus", SenderID: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	// The last one needs an answer: a request for a missing document.
	data, _ := crdt.NewSyncState(crdt.New()).Generate()
	id := crdt.NewDocumentID()
	if err := cc.WriteMessage(ctx, transport.Message{Type: transport.TypeRequest, SenderID: "c", TargetID: srv.PeerID(), DocumentID: string(id), Data: data}); err != nil {
		t.Fatal(err)
	}
	m, err := cc.ReadMessage(ctx)
	if err != nil || m.Type != transport.TypeDocUnavailable {
		t.Fatalf("answer: %+v, %v", m, err)
	}
	// Messages past the burst cost 1/rate each.
	if d, least := time.Since(start), time.Duration(sent-burst)*time.Second/rate; d < least-20*time.Millisecond {
		t.Fatalf("%d messages answered after %v: not slowed to %d/s (at least %v)", sent, d, rate, least)
	}
	select {
	case err := <-done:
		t.Fatalf("the slowed peer was cut off: %v", err)
	default:
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.slowed[repo.SlowMessages] != 1 || len(obs.dropped) != 0 {
		t.Errorf("slowed = %v, dropped = %v; want slowed once, nothing dropped", obs.slowed, obs.dropped)
	}
	if obs.in[repo.MessageTypeUnknown] != sent-1 || obs.in["x-bogus"] != 0 {
		t.Errorf("in = %v, want %d %q", obs.in, sent-1, repo.MessageTypeUnknown)
	}
}

// stuckConn fails every write after the first (the handshake's answer)
// with a write deadline, as a WebSocket to a peer that stopped reading.
type stuckConn struct {
	transport.Conn
	writes atomic.Int32
}

func (c *stuckConn) WriteMessage(ctx context.Context, m transport.Message) error {
	if c.writes.Add(1) > 1 {
		return fmt.Errorf("write: %w", os.ErrDeadlineExceeded)
	}
	return c.Conn.WriteMessage(ctx, m)
}

func TestObserverWriteTimeout(t *testing.T) {
	obs := newCountingObserver()
	srv := newRepo(t, memory.New(), func(c *repo.Config) { c.Observer = obs })
	sc, cc := transport.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.Accept(context.Background(), &stuckConn{Conn: sc}) }()
	ctx := ctxT(t)
	if err := cc.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.ReadMessage(ctx); err != nil {
		t.Fatal(err)
	}
	// Anything the server must answer: a request for a missing document.
	data, _ := crdt.NewSyncState(crdt.New()).Generate()
	id := crdt.NewDocumentID()
	if err := cc.WriteMessage(ctx, transport.Message{Type: transport.TypeRequest, SenderID: "c", TargetID: srv.PeerID(), DocumentID: string(id), Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Accept: %v", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.dropped[repo.DropWriteTimeout] != 1 {
		t.Errorf("dropped = %v", obs.dropped)
	}
}

func TestObserverOutboxFull(t *testing.T) {
	obs := newCountingObserver()
	srv := newRepo(t, memory.New(), func(c *repo.Config) {
		c.Observer = obs
		c.Peers = repo.PeerConfig{OutboxSize: 1}
	})
	sc, cc := transport.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.Accept(context.Background(), sc) }()
	ctx := ctxT(t)
	if err := cc.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.ReadMessage(ctx); err != nil {
		t.Fatal(err)
	}
	// Ask for many missing documents and read none of the answers: the
	// pipe's buffer fills, then the outbox.
	data, _ := crdt.NewSyncState(crdt.New()).Generate()
	for i := 0; i < 10*transport.PipeBuffer; i++ {
		m := transport.Message{Type: transport.TypeRequest, SenderID: "c", TargetID: srv.PeerID(), DocumentID: string(crdt.NewDocumentID()), Data: data}
		if err := cc.WriteMessage(ctx, m); err != nil {
			break // closed: fine
		}
	}
	if err := <-done; !errors.Is(err, repo.ErrProtocol) {
		t.Fatalf("Accept: %v, want ErrProtocol (outbox full)", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.dropped[repo.DropOutboxFull] != 1 || len(obs.dropped) != 1 {
		t.Errorf("dropped = %v", obs.dropped)
	}
}

// TestTooManyDocumentsRefused: past MaxDocuments a connection's messages
// for further documents are refused (one error, doc-unavailable for a
// request), and the connection stays up for the documents it has.
func TestTooManyDocumentsRefused(t *testing.T) {
	srv := newRepo(t, memory.New(), func(c *repo.Config) { c.Peers = repo.PeerConfig{MaxDocuments: 2} })
	cc, done := joinedPipe(t, srv)
	ctx := ctxT(t)
	ids := make([]crdt.DocumentID, 5)
	for i := range ids {
		ids[i] = crdt.NewDocumentID()
	}
	syncFor := func(i int) transport.Message {
		d, err := crdt.FromJSON([]byte(fmt.Sprintf(`{"i":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := crdt.NewSyncState(d).Generate()
		return transport.Message{Type: transport.TypeSync, SenderID: "c", TargetID: srv.PeerID(), DocumentID: string(ids[i]), Data: data}
	}
	// Two documents fill the connection; the third and fourth are refused.
	for i := 0; i < 4; i++ {
		if err := cc.WriteMessage(ctx, syncFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A request past the limit is answered at once.
	req := syncFor(4)
	req.Type = transport.TypeRequest
	if err := cc.WriteMessage(ctx, req); err != nil {
		t.Fatal(err)
	}
	errs, synced := 0, map[string]bool{}
	for !synced[string(ids[0])] || !synced[string(ids[1])] || errs == 0 {
		m, err := cc.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read: %v (errors %d, synced %v)", err, errs, synced)
		}
		switch m.Type {
		case transport.TypeError:
			errs++
			if !strings.Contains(m.Message, "too many documents") || !strings.Contains(m.Message, string(ids[2])) {
				t.Fatalf("error %q", m.Message)
			}
		case transport.TypeSync:
			if m.DocumentID != string(ids[0]) && m.DocumentID != string(ids[1]) {
				t.Fatalf("a refused document was synced: %+v", m)
			}
			synced[m.DocumentID] = true
		case transport.TypeDocUnavailable:
			if m.DocumentID != string(ids[4]) {
				t.Fatalf("doc-unavailable for %s", m.DocumentID)
			}
		}
	}
	// Still up: the first document keeps syncing, and nothing more was refused aloud.
	if err := cc.WriteMessage(ctx, syncFor(0)); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cc.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read after the refusals: %v", err)
		}
		if m.Type == transport.TypeError {
			errs++
		}
		if m.Type == transport.TypeSync && m.DocumentID == string(ids[0]) {
			break
		}
	}
	if errs != 1 {
		t.Errorf("%d errors, want one", errs)
	}
	select {
	case err := <-done:
		t.Fatalf("the connection ended: %v", err)
	default:
	}
	if docs, err := srv.List(ctx); err == nil && len(docs) > 2 {
		t.Errorf("the server keeps %d documents from a connection allowed 2", len(docs))
	}
}
