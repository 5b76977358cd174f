package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
)

// flooder is a raw automerge-repo peer (gorilla/websocket, no Tandem
// client code) on one document: it can sync it like any client (fetch),
// flood it with real Automerge changes (flood), or send whatever a test
// builds (send).
type flooder struct {
	t      *testing.T
	c      *websocket.Conn
	self   string
	server string
	id     crdt.DocumentID

	wmu sync.Mutex // gorilla allows one writer at a time
	mu  sync.Mutex // guards d and ss (the reader applies what arrives)
	d   *crdt.Doc
	ss  *crdt.SyncState

	sent     atomic.Int64 // messages written by flood or the test
	readDone chan struct{}
	readErr  error // why reading ended; set before readDone is closed
}

func newFlooder(t *testing.T, url, self string, id crdt.DocumentID) *flooder {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	d := crdt.New()
	f := &flooder{t: t, c: c, self: self, id: id, d: d, ss: crdt.NewSyncState(d), readDone: make(chan struct{})}
	if err := f.send(transport.Message{Type: transport.TypeJoin, SenderID: self, SupportedProtocolVersions: []string{"1"}}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	m, err := transport.Decode(b)
	if err != nil || m.Type != transport.TypePeer {
		t.Fatalf("join answered %+v, %v", m, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	f.server = m.SenderID
	go f.read()
	return f
}

func (f *flooder) send(m transport.Message) error {
	return f.sendBy(m, time.Now().Add(10*time.Second))
}

// sendBy writes m, giving up at deadline (a timeout leaves the connection
// unusable for writing).
func (f *flooder) sendBy(m transport.Message, deadline time.Time) error {
	b, err := transport.Encode(m)
	if err != nil {
		return err
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_ = f.c.SetWriteDeadline(deadline)
	return f.c.WriteMessage(websocket.BinaryMessage, b)
}

// read applies the server's sync messages until the connection ends.
func (f *flooder) read() {
	defer close(f.readDone)
	for {
		_, b, err := f.c.ReadMessage()
		if err != nil {
			f.readErr = err
			return
		}
		m, err := transport.Decode(b)
		if err != nil || m.Type != transport.TypeSync || m.DocumentID != string(f.id) {
			continue
		}
		f.mu.Lock()
		_, _ = f.ss.Receive(m.Data)
		f.mu.Unlock()
	}
}

// sync sends what the sync session has to say, if anything.
func (f *flooder) sync() error {
	f.mu.Lock()
	data, ok := f.ss.Generate()
	f.mu.Unlock()
	if !ok {
		return nil
	}
	return f.send(transport.Message{Type: transport.TypeSync, SenderID: f.self, TargetID: f.server, DocumentID: string(f.id), Data: data})
}

// fetch syncs until the flooder holds the value at ptr.
func (f *flooder) fetch(ptr string) {
	f.t.Helper()
	eventually(f.t, "the flooder fetches the document", func() bool {
		if err := f.sync(); err != nil {
			f.t.Fatalf("flooder sync: %v", err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		_, err := f.d.Get(ptr)
		return err == nil
	})
}

// flood sends up to n changes, one per message, until deadline: perTick
// messages every 10ms, or as fast as the socket takes them if perTick is
// 0. It returns how many messages went out and the write error that
// stopped it (a timeout if the server held a write back past deadline).
func (f *flooder) flood(n int, deadline time.Time, perTick int) (int, error) {
	var tick <-chan time.Time
	if perTick > 0 {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	sent := 0
	for i := 0; sent < n && time.Now().Before(deadline); i++ {
		if tick != nil && i%perTick == 0 {
			<-tick
		}
		// A sync message that carries just the new change, as a client
		// sends once in sync (the full session would cost the flooder
		// more than the server under -race).
		f.mu.Lock()
		err := f.d.Set("/flood", i)
		var ci crdt.CommitInfo
		if err == nil {
			ci, _, err = f.d.Commit("")
		}
		heads := f.d.Heads()
		f.mu.Unlock()
		if err != nil {
			return sent, err
		}
		data := crdt.DirectMessage(heads, [][]byte{ci.Bytes})
		// A write the server holds back gives up a second after deadline.
		if err := f.sendBy(transport.Message{Type: transport.TypeSync, SenderID: f.self, TargetID: f.server, DocumentID: string(f.id), Data: data}, deadline.Add(time.Second)); err != nil {
			return sent, err
		}
		sent++
		f.sent.Add(1)
	}
	return sent, nil
}

// closed waits until the server closes the connection and returns the
// WebSocket close code and text it sent (0: no close frame arrived).
func (f *flooder) closed(d time.Duration) (int, string) {
	f.t.Helper()
	select {
	case <-f.readDone:
	case <-time.After(d):
		f.t.Fatalf("the server did not close the connection of %s within %v (%d messages sent)", f.self, d, f.sent.Load())
	}
	var ce *websocket.CloseError
	if errors.As(f.readErr, &ce) {
		return ce.Code, ce.Text
	}
	f.t.Logf("%s: reading ended without a close frame: %v", f.self, f.readErr)
	return 0, ""
}

// neighbour is a normal client's round trip on the flooded document: it
// changes a value and waits until the observer has it, again and again
// (at most one round per roundEvery, well under the message rate limit
// like a live dashboard), until stopped; each round must finish within
// roundLimit.
type neighbour struct {
	rounds  atomic.Int64
	slowest atomic.Int64 // ns
	failed  atomic.Value // error
	stop    chan struct{}
	done    chan struct{}
}

const (
	roundLimit = 10 * time.Second
	roundEvery = 50 * time.Millisecond
)

func startNeighbour(ctx context.Context, writer, observer *repo.DocHandle) *neighbour {
	n := &neighbour{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(n.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		pace := time.NewTicker(roundEvery)
		defer pace.Stop()
		for round := 0; round < 100000; round++ {
			select {
			case <-n.stop:
				return
			case <-pace.C:
			}
			t0 := time.Now()
			if _, err := writer.Set(ctx, "/widgets/cpu/value", round); err != nil {
				n.failed.Store(fmt.Errorf("round %d: %w", round, err))
				return
			}
			for {
				v, err := observer.Get(ctx, "/widgets/cpu/value")
				if err == nil && fmt.Sprint(v) == fmt.Sprint(round) {
					break
				}
				if time.Since(t0) > roundLimit {
					n.failed.Store(fmt.Errorf("round %d: the observer did not get the change within %v (has %v, %v)", round, roundLimit, v, err))
					return
				}
				<-tick.C
			}
			n.rounds.Add(1)
			if d := int64(time.Since(t0)); d > n.slowest.Load() {
				n.slowest.Store(d)
			}
		}
	}()
	return n
}

// check fails the test if a round failed.
func (n *neighbour) check(t *testing.T) {
	t.Helper()
	if err, _ := n.failed.Load().(error); err != nil {
		t.Fatalf("normal client: %v", err)
	}
}

func (n *neighbour) finish(t *testing.T) {
	t.Helper()
	close(n.stop)
	<-n.done
	n.check(t)
}

// metric scrapes one sample of the server's /metrics, named with its
// labels as the text format writes them (`name{label="value"}`).
func metric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	code, body := getStatus(t, http.DefaultClient, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s %q: %v", sample, v, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", sample)
	return 0
}

// Issue #6: a client flooding a document is slowed (over the message rate
// or the payload bytes per second), and one oversized
// message closes its sender with 1009, while a normal client's changes on
// the same document keep reaching an observer throughout. Latency is not
// asserted here (BenchmarkFloodNeighbourLatency measures it); every round
// of the normal client only has to arrive within a generous deadline.
func TestServeFloodLimits(t *testing.T) {
	const (
		rate      = 250       // messages per second per connection (burst 500)
		rateBytes = 256 << 10 // payload bytes per second per connection
		maxMsg    = 128 << 10
		floodMax  = 20000 // messages; the rate limit must stop it long before
	)
	ctx := testCtx(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0", "--rate", fmt.Sprint(rate),
		"--rate-bytes", fmt.Sprint(rateBytes), "--max-message-size", fmt.Sprint(maxMsg))
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", sp.stderr.String())
		}
	}()
	normal := newGoClient(t, sp.url())
	observer := newGoClient(t, sp.url())
	hn, err := normal.r.CreateJSON(ctx, []byte(`{"widgets":{"cpu":{"value":-1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var ho *repo.DocHandle
	eventually(t, "the observer finds the document", func() bool {
		ho, err = observer.r.Find(ctx, hn.ID())
		return err == nil
	})
	nb := startNeighbour(ctx, hn, ho)
	defer func() {
		if nb != nil {
			close(nb.stop)
			<-nb.done
		}
	}()

	// 1. Sync messages with real changes, as fast as the socket takes
	// them, for two seconds: slowed once past the burst (the server reads
	// its messages at the rate, TCP pushes back), not cut off.
	f := newFlooder(t, sp.url(), "flooder-changes", hn.ID())
	f.fetch("/widgets/cpu")
	inBefore := metric(t, sp.addr, "tandem_messages_received_total")
	start := time.Now()
	stop := start.Add(2 * time.Second)
	_, werr := f.flood(floodMax, stop, 0)
	var ne net.Error
	if werr != nil && !(errors.As(werr, &ne) && ne.Timeout()) {
		t.Fatalf("message flood: %v", werr)
	}
	in := metric(t, sp.addr, "tandem_messages_received_total") - inBefore
	// Whatever the machine's speed, the server cannot have read more than
	// the burst and the rate over the elapsed time, plus the normal
	// clients' own messages (a few hundred a second at most).
	if bound := 2*rate + (rate+500)*time.Since(start).Seconds(); in > bound {
		t.Fatalf("message flood: the server read %.0f messages in %v, over the %d/s limit (bound %.0f)", in, time.Since(start), rate, bound)
	}
	select {
	case <-f.readDone:
		t.Fatalf("message flood: the slowed flooder was disconnected: %v", f.readErr)
	default:
	}
	if n := metric(t, sp.addr, `tandem_peers_slowed_total{limit="messages"}`); n != 1 {
		t.Fatalf("tandem_peers_slowed_total{limit=\"messages\"} = %v, want 1", n)
	}
	t.Logf("message flood: %d messages written in 2s, the server read %.0f (burst %d, %d/s); %d rounds of the normal client so far", f.sent.Load(), in, 2*rate, rate, nb.rounds.Load())
	nb.check(t)
	// Reset, not closed: what the socket still holds is dropped instead of
	// being read at the rate for seconds while the next parts measure.
	if tc, ok := f.c.NetConn().(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = f.c.Close()

	// 2. The same just under the rate (80%) for two seconds: not cut off,
	// and its changes, fanned out, do not get the other clients cut off
	// either (they acknowledge what they receive: messages of their own).
	p := newFlooder(t, sp.url(), "flooder-paced", hn.ID())
	p.fetch("/widgets/cpu")
	if _, err := p.flood(floodMax, time.Now().Add(2*time.Second), rate*8/10/100); err != nil {
		t.Fatalf("paced flood: %v", err)
	}
	select {
	case <-p.readDone:
		t.Fatalf("paced flood under the rate limit: disconnected: %v", p.readErr)
	default:
	}
	t.Logf("paced flood: %d messages in 2s, not cut off", p.sent.Load())
	nb.check(t)

	// 3. Large ephemeral messages (relayed to the other peers of the
	// document), well under the message rate: slowed to the byte rate,
	// not cut off.
	g := newFlooder(t, sp.url(), "flooder-bytes", hn.ID())
	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	before := metric(t, sp.addr, "tandem_received_bytes_total")
	start = time.Now()
	stop = start.Add(2 * time.Second)
	for i := 1; i <= 1000 && time.Now().Before(stop); i++ {
		err := g.sendBy(transport.Message{Type: transport.TypeEphemeral, SenderID: g.self, TargetID: g.server, DocumentID: string(hn.ID()), SessionID: "s", Count: uint64(i), Data: payload}, stop)
		if errors.As(err, &ne) && ne.Timeout() {
			break // the server reads slowly, TCP pushed back: slowed, as it should be
		}
		if err != nil {
			t.Fatalf("byte flood: write %d: %v", i, err)
		}
		g.sent.Add(1)
	}
	got := metric(t, sp.addr, "tandem_received_bytes_total") - before
	// Whatever the machine's speed, the server cannot have taken more than
	// the rate over the elapsed time, plus the one-second burst, one
	// message let in on credit, and the normal clients' own traffic.
	bound := rateBytes*time.Since(start).Seconds() + rateBytes + maxMsg + 256<<10
	if got > bound {
		t.Fatalf("byte flood: the server took %.0f bytes in %v, over the %d B/s limit (bound %.0f)", got, time.Since(start), rateBytes, bound)
	}
	select {
	case <-g.readDone:
		t.Fatalf("byte flood: the slowed flooder was disconnected: %v", g.readErr)
	default:
	}
	t.Logf("byte flood: %d messages (%d KiB) written in %v, server took %.0f KiB", g.sent.Load(), g.sent.Load()*64, time.Since(start).Round(time.Millisecond), got/1024)
	nb.check(t)

	// 4. One message over --max-message-size: closed with 1009.
	h := newFlooder(t, sp.url(), "flooder-oversized", hn.ID())
	_ = h.send(transport.Message{Type: transport.TypeSync, SenderID: h.self, TargetID: h.server, DocumentID: string(hn.ID()), Data: make([]byte, 2*maxMsg)}) // may fail: the server closes mid-message
	if code, _ := h.closed(15 * time.Second); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized message: close %d, want 1009", code)
	}

	// The normal client kept going through all of it, on one connection.
	rounds := nb.rounds.Load()
	eventually(t, "the normal client completes more rounds after the floods", func() bool {
		nb.check(t)
		return nb.rounds.Load() >= rounds+3
	})
	slowest := time.Duration(nb.slowest.Load())
	nb.finish(t)
	nb = nil
	if err := normal.conn.LastError(); err != nil {
		t.Fatalf("the normal client was disconnected: %v", err)
	}
	if err := observer.conn.LastError(); err != nil {
		t.Fatalf("the observer was disconnected: %v", err)
	}
	t.Logf("normal client: %d rounds through all floods, slowest %v", rounds, slowest)
}
