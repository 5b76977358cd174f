package ws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/gorilla/websocket"
	"github.com/tandemsync/tandem/transport"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 5 * time.Second

// server is a loopback HTTP server whose handler Accepts every request.
type server struct {
	*httptest.Server
	conns chan transport.Conn
	errs  chan error
}

func newServer(t testing.TB, cfg Config) *server {
	t.Helper()
	s := &server{conns: make(chan transport.Conn, 16), errs: make(chan error, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, cfg)
		if err != nil {
			s.errs <- err
			return
		}
		s.conns <- c
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) wsURL() string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/any/path" }

// accept returns the next server-side connection, closed at cleanup.
func (s *server) accept(t testing.TB) transport.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close(nil) })
		return c
	case err := <-s.errs:
		t.Fatalf("Accept: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("no connection accepted")
	}
	return nil
}

func dial(t testing.TB, s *server, cfg Config) transport.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, s.URL, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close(nil) })
	return c
}

// rawDial connects a bare gorilla client, for sending what our Conn never
// sends and for peers that misbehave.
func rawDial(t testing.TB, s *server) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(s.wsURL(), nil)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func encode(t testing.TB, m transport.Message) []byte {
	t.Helper()
	b, err := transport.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func read(t testing.TB, c transport.Conn) (transport.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	m, err := c.ReadMessage(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("ReadMessage: nothing arrived")
	}
	return m, err
}

func write(t testing.TB, c transport.Conn, m transport.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.WriteMessage(ctx, m); err != nil {
		t.Fatalf("WriteMessage: %v", err)
	}
}

func waitDone(t testing.TB, c transport.Conn, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("%s: Done not closed", what)
	}
}

func isOpen(c transport.Conn) bool {
	select {
	case <-c.Done():
		return false
	default:
		return true
	}
}

func syncMsg(size int) transport.Message {
	data := bytes.Repeat([]byte{0x42, 7, 9}, size/3+1)[:size]
	return transport.Message{Type: transport.TypeSync, SenderID: "peer-a", TargetID: "server",
		DocumentID: "3ybZCR5J6TswAfXnMg85CH9kGuZB", Data: data}
}

func TestRoundTrip(t *testing.T) {
	s := newServer(t, Config{})
	client := dial(t, s, Config{})
	srv := s.accept(t)

	join := transport.Message{Type: transport.TypeJoin, SenderID: "peer-a",
		PeerMetadata:              &transport.PeerMetadata{IsEphemeral: true},
		SupportedProtocolVersions: []string{transport.ProtocolV1}}
	write(t, client, join)
	if got, err := read(t, srv); err != nil || got.SenderID != "peer-a" || !got.PeerMetadata.IsEphemeral {
		t.Fatalf("server read %+v, %v", got, err)
	}
	peer := transport.Message{Type: transport.TypePeer, SenderID: "server", TargetID: "peer-a",
		SelectedProtocolVersion: transport.ProtocolV1}
	write(t, srv, peer)
	if got, err := read(t, client); err != nil || got.Type != transport.TypePeer || got.SelectedProtocolVersion != "1" {
		t.Fatalf("client read %+v, %v", got, err)
	}

	eph := transport.Message{Type: transport.TypeEphemeral, SenderID: "peer-a", TargetID: "server",
		DocumentID: "3ybZCR5J6TswAfXnMg85CH9kGuZB", SessionID: "s1", Count: 1, Data: []byte{0xa0},
		Extra: map[string]cbor.RawMessage{"future": {0xf5}}}
	write(t, client, eph)
	if got, err := read(t, srv); err != nil || got.Count != 1 || !bytes.Equal(got.Extra["future"], []byte{0xf5}) {
		t.Fatalf("server read %+v, %v", got, err)
	}

	// Small, medium and multi-MiB messages (the last is written in chunks)
	// in both directions.
	for _, size := range []int{1, 200, 70_000, 5<<20 + 17} {
		for _, dir := range [][2]transport.Conn{{client, srv}, {srv, client}} {
			m := syncMsg(size)
			write(t, dir[0], m)
			got, err := read(t, dir[1])
			if err != nil || !bytes.Equal(got.Data, m.Data) || got.DocumentID != m.DocumentID {
				t.Fatalf("size %d: read %d bytes, %v", size, len(got.Data), err)
			}
		}
	}
	if !strings.HasPrefix(srv.RemoteAddr(), "127.0.0.1:") || client.RemoteAddr() != strings.TrimPrefix(s.URL, "http://") {
		t.Fatalf("RemoteAddr %q / %q", srv.RemoteAddr(), client.RemoteAddr())
	}
}

func TestFramesThatAreNotMessages(t *testing.T) {
	s := newServer(t, Config{})
	raw := rawDial(t, s)
	srv := s.accept(t)

	send := func(typ int, b []byte) {
		t.Helper()
		if err := raw.WriteMessage(typ, b); err != nil {
			t.Fatal(err)
		}
	}
	send(websocket.TextMessage, []byte(`{"type":"join","senderId":"x"}`))
	if _, err := read(t, srv); !errors.Is(err, ErrTextFrame) || errors.Is(err, transport.ErrClosed) {
		t.Fatalf("text frame: %v", err)
	}
	send(websocket.BinaryMessage, nil)
	if _, err := read(t, srv); !errors.Is(err, ErrEmptyFrame) {
		t.Fatalf("empty frame: %v", err)
	}
	send(websocket.BinaryMessage, []byte{0xff, 0x00})
	if _, err := read(t, srv); !errors.Is(err, transport.ErrMalformed) {
		t.Fatalf("not CBOR: %v", err)
	}
	send(websocket.BinaryMessage, encode(t, transport.Message{Type: "future", SenderID: "x"}))
	if m, err := read(t, srv); !errors.Is(err, transport.ErrUnknownType) || m.SenderID != "x" {
		t.Fatalf("unknown type: %+v, %v", m, err)
	}
	// None of these closed the connection.
	send(websocket.BinaryMessage, encode(t, syncMsg(10)))
	if m, err := read(t, srv); err != nil || m.Type != transport.TypeSync {
		t.Fatalf("after bad frames: %+v, %v", m, err)
	}
	if !isOpen(srv) {
		t.Fatal("connection closed")
	}
}

func TestTooLarge(t *testing.T) {
	s := newServer(t, Config{MaxMessageSize: 1024})
	raw := rawDial(t, s)
	srv := s.accept(t)

	if err := raw.WriteMessage(websocket.BinaryMessage, encode(t, syncMsg(900))); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, srv); err != nil {
		t.Fatalf("message under the limit: %v", err)
	}
	if err := raw.WriteMessage(websocket.BinaryMessage, encode(t, syncMsg(2000))); err != nil {
		t.Fatal(err)
	}
	_, err := read(t, srv)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("oversized message: %v", err)
	}
	waitDone(t, srv, "after oversized message")
	_ = raw.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, _, err := raw.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("peer saw %v, want close 1009", err)
	}

	// The server goes on serving others.
	client := dial(t, s, Config{})
	srv2 := s.accept(t)
	write(t, client, syncMsg(100))
	if _, err := read(t, srv2); err != nil {
		t.Fatal(err)
	}
}

// A connection closed for a limit the peer broke tells the peer which
// (close code 1008 with the reason as text, cut to a valid close frame).
func TestPolicyViolationClose(t *testing.T) {
	s := newServer(t, Config{})
	raw := rawDial(t, s)
	srv := s.accept(t)
	reason := fmt.Errorf("%w: message rate over 200/s: %s", transport.ErrPolicyViolation, strings.Repeat("é", 100))
	_ = srv.Close(reason)
	_ = raw.SetReadDeadline(time.Now().Add(waitTimeout))
	_, _, err := raw.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("peer saw %v, want close 1008", err)
	}
	if !strings.HasPrefix(ce.Text, "transport: policy violation: message rate over 200/s") || len(ce.Text) > 123 || !utf8.ValidString(ce.Text) {
		t.Fatalf("close text %q (%d bytes)", ce.Text, len(ce.Text))
	}
}

func TestDeadPeerDropped(t *testing.T) {
	const interval = 50 * time.Millisecond
	s := newServer(t, Config{PingInterval: interval})
	start := time.Now()
	rawDial(t, s) // never reads, so never answers a ping
	srv := s.accept(t)

	waitDone(t, srv, "silent peer")
	if d := time.Since(start); d < 2*interval {
		t.Fatalf("dropped after %v, before two ping intervals", d)
	}
	if _, err := srv.ReadMessage(context.Background()); !errors.Is(err, ErrPeerTimeout) || !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("ReadMessage: %v", err)
	}
}

// TestHeldMessageSuspendsLiveness: while a received message waits for
// ReadMessage, the connection reads nothing (pongs included), so a slow
// consumer must not make the peer look dead; the check resumes afterwards.
func TestHeldMessageSuspendsLiveness(t *testing.T) {
	const interval = 50 * time.Millisecond
	s := newServer(t, Config{PingInterval: interval})
	raw := rawDial(t, s) // sends one message, then never reads or answers pings
	srv := s.accept(t)
	if err := raw.WriteMessage(websocket.BinaryMessage, encode(t, syncMsg(10))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Done():
		t.Fatal("dropped while its message waited for ReadMessage")
	case <-time.After(6 * interval):
	}
	if m, err := read(t, srv); err != nil || m.Type != transport.TypeSync {
		t.Fatalf("held message: %+v, %v", m, err)
	}
	waitDone(t, srv, "silent peer after its message was read")
	if _, err := srv.ReadMessage(context.Background()); !errors.Is(err, ErrPeerTimeout) {
		t.Fatalf("ReadMessage: %v", err)
	}
}

// TestLivePeerKept: a peer that only answers pings (what a browser does when
// idle) stays connected for many intervals, and so do two idle Tandem ends.
func TestLivePeerKept(t *testing.T) {
	const interval = 50 * time.Millisecond
	s := newServer(t, Config{PingInterval: interval})
	raw := rawDial(t, s)
	go func() {
		for {
			if _, _, err := raw.ReadMessage(); err != nil { // the default ping handler answers
				return
			}
		}
	}()
	srvRaw := s.accept(t)
	client := dial(t, s, Config{PingInterval: interval})
	srv := s.accept(t)

	select {
	case <-srvRaw.Done():
		t.Fatal("a peer answering pings was dropped")
	case <-srv.Done():
		t.Fatal("an idle Tandem client was dropped")
	case <-client.Done():
		t.Fatal("an idle Tandem server was dropped")
	case <-time.After(10 * interval):
	}
	write(t, client, syncMsg(10))
	if _, err := read(t, srv); err != nil {
		t.Fatal(err)
	}
}

func TestCloseIdempotentAndUnblocksRead(t *testing.T) {
	s := newServer(t, Config{})
	client := dial(t, s, Config{})
	srv := s.accept(t)

	readErr := make(chan error, 1)
	go func() {
		_, err := client.ReadMessage(context.Background())
		readErr <- err
	}()
	reason := errors.New("shutting down")
	if err := client.Close(reason); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, transport.ErrClosed) || !errors.Is(err, reason) {
			t.Fatalf("pending ReadMessage: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not unblock ReadMessage")
	}
	for range 3 {
		if err := client.Close(nil); err != nil {
			t.Fatalf("repeated Close: %v", err)
		}
	}
	if n := client.(*conn).running.Load(); n != 0 {
		t.Fatalf("%d goroutines still running after Close", n)
	}
	if err := client.WriteMessage(context.Background(), syncMsg(10)); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}

	// The server side sees the close.
	waitDone(t, srv, "server after client Close")
	if _, err := srv.ReadMessage(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("server read: %v", err)
	}
	var ce *websocket.CloseError
	if _, err := srv.ReadMessage(context.Background()); !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("server read: %v, want a normal close from the peer", err)
	}
}

func TestConcurrentClose(t *testing.T) {
	s := newServer(t, Config{PingInterval: 10 * time.Millisecond})
	client := dial(t, s, Config{PingInterval: 10 * time.Millisecond})
	srv := s.accept(t)
	go func() {
		for {
			if _, err := srv.ReadMessage(context.Background()); errors.Is(err, transport.ErrClosed) {
				return
			}
		}
	}()
	go func() {
		for i := 0; ; i++ {
			if err := client.WriteMessage(context.Background(), syncMsg(100+i%1000)); err != nil {
				return
			}
		}
	}()
	done := make(chan struct{})
	for range 4 {
		go func() { client.Close(nil); srv.Close(nil); done <- struct{}{} }()
	}
	for range 4 {
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Fatal("Close did not return")
		}
	}
}

func TestReadContext(t *testing.T) {
	s := newServer(t, Config{})
	client := dial(t, s, Config{})
	srv := s.accept(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := srv.ReadMessage(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadMessage: %v", err)
	}
	write(t, client, syncMsg(10))
	if _, err := read(t, srv); err != nil {
		t.Fatalf("after a timed-out read: %v", err)
	}
}

// blackhole accepts WebSocket connections and never reads from them.
func blackhole(t *testing.T) string {
	t.Helper()
	held := make(chan *websocket.Conn, 4)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err == nil {
			held <- c
		}
	}))
	t.Cleanup(func() {
		s.Close()
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	})
	return s.URL
}

func TestWriteCancelledClosesConn(t *testing.T) {
	url := blackhole(t)
	c, err := Dial(context.Background(), url, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(nil)
	// Far more than socket buffers hold, so the write blocks until ctx ends.
	big := syncMsg(32 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the write is under way.
		poll := time.NewTicker(time.Millisecond)
		defer poll.Stop()
		for !c.(*conn).writing.Load() {
			select {
			case <-poll.C:
			case <-c.Done():
				return
			}
		}
		cancel()
	}()
	err = c.WriteMessage(ctx, big)
	if !errors.Is(err, transport.ErrClosed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteMessage: %v", err)
	}
	waitDone(t, c, "after abandoned write")
}

func TestWriteTimeout(t *testing.T) {
	url := blackhole(t)
	c, err := Dial(context.Background(), url, Config{WriteTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(nil)
	big := syncMsg(32 << 20)
	start := time.Now()
	err = c.WriteMessage(context.Background(), big)
	if !errors.Is(err, transport.ErrClosed) || time.Since(start) > waitTimeout {
		t.Fatalf("WriteMessage: %v after %v", err, time.Since(start))
	}
	waitDone(t, c, "after write timeout")
}

func TestDialContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := Dial(ctx, "ws://127.0.0.1:1/", Config{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with cancelled ctx: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Dial with cancelled ctx took %v", d)
	}

	// A listener that accepts TCP but never answers the handshake: ctx ends it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := Dial(ctx, "ws://"+ln.Addr().String()+"/", Config{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent server: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Dial to a silent server took %v", d)
	}
	// Cancellation without a deadline, in the middle of the handshake.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	if _, err := Dial(ctx, "ws://"+ln.Addr().String()+"/", Config{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial cancelled during the handshake: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Dial cancelled during the handshake took %v", d)
	}
}

func TestDialRefusedOrigin(t *testing.T) {
	s := newServer(t, Config{CheckOrigin: func(*http.Request) bool { return false }})
	_, err := Dial(context.Background(), s.URL, Config{})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Dial: %v, want HTTP 403", err)
	}
	select {
	case err := <-s.errs:
		if err == nil {
			t.Fatal("Accept succeeded")
		}
	case <-time.After(waitTimeout):
		t.Fatal("Accept did not fail")
	}
}

func TestDialErrorHidesCredentials(t *testing.T) {
	_, err := Dial(context.Background(), "ws://user:secret@127.0.0.1:1/sync?token=secret", Config{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Dial error %q", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{{MaxMessageSize: -1}, {WriteTimeout: -1}, {HandshakeTimeout: -1}}
	for _, cfg := range bad {
		if err := cfg.validate(); err == nil {
			t.Errorf("validate(%+v) = nil", cfg)
		}
		if _, err := Dial(context.Background(), "ws://127.0.0.1:1/", cfg); err == nil || !strings.Contains(err.Error(), "invalid config") {
			t.Errorf("Dial(%+v): %v", cfg, err)
		}
		rec := httptest.NewRecorder()
		if _, err := Accept(rec, httptest.NewRequest("GET", "/", nil), cfg); err == nil || rec.Code != http.StatusInternalServerError {
			t.Errorf("Accept(%+v): %v, HTTP %d", cfg, err, rec.Code)
		}
	}
	if err := (Config{PingInterval: -1}).validate(); err != nil {
		t.Errorf("negative PingInterval (disabled) rejected: %v", err)
	}
	d := Config{}.withDefaults()
	if d.MaxMessageSize != DefaultMaxMessageSize || d.WriteTimeout != DefaultWriteTimeout ||
		d.PingInterval != DefaultPingInterval || d.HandshakeTimeout != DefaultHandshakeTimeout ||
		d.CheckOrigin == nil || d.Logger == nil {
		t.Fatalf("defaults %+v", d)
	}
}

// TestNoGoroutineLeak opens and closes connections (both ends, and ends the
// peer dropped) and checks that the goroutine count comes back.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Accept(w, r, Config{PingInterval: 100 * time.Millisecond})
			if err != nil {
				return
			}
			for {
				m, err := c.ReadMessage(context.Background())
				if err != nil {
					c.Close(err)
					return
				}
				if err := c.WriteMessage(context.Background(), m); err != nil {
					c.Close(err)
					return
				}
			}
		}))
		defer s.Close()
		for range 5 {
			c, err := Dial(context.Background(), s.URL, Config{PingInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			write(t, c, syncMsg(100))
			if _, err := read(t, c); err != nil {
				t.Fatal(err)
			}
			c.Close(nil)
		}
	}()
	deadline := time.After(waitTimeout)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for runtime.NumGoroutine() > before {
		select {
		case <-poll.C:
		case <-deadline:
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	}
}

// BenchmarkRoundTrip echoes a 200-byte sync message over loopback.
func BenchmarkRoundTrip(b *testing.B) {
	s := newServer(b, Config{})
	client := dial(b, s, Config{})
	srv := s.accept(b)
	go func() {
		for {
			m, err := srv.ReadMessage(context.Background())
			if err != nil {
				return
			}
			m.SenderID, m.TargetID = m.TargetID, m.SenderID
			if err := srv.WriteMessage(context.Background(), m); err != nil {
				return
			}
		}
	}()
	m := syncMsg(200)
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if err := client.WriteMessage(ctx, m); err != nil {
			b.Fatal(err)
		}
		if _, err := client.ReadMessage(ctx); err != nil {
			b.Fatal(err)
		}
	}
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/secs, "roundtrips/s")
	b.ReportMetric(2*float64(b.N)/secs, "msgs/s")
}
