package ws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/tandemsync/tandem/transport"
)

// Sentinel errors of ReadMessage, the same values as in package transport
// (the engine, which imports only transport, tests those).
var (
	// ErrTextFrame: the peer sent a text message. The connection stays
	// usable; JavaScript servers close it, and so should the caller.
	ErrTextFrame = transport.ErrTextFrame
	// ErrEmptyFrame: the peer sent an empty binary message. The connection
	// stays usable.
	ErrEmptyFrame = transport.ErrEmptyFrame
	// ErrTooLarge: the peer sent a message over Config.MaxMessageSize. The
	// connection is closed (the error also wraps transport.ErrClosed): the
	// rest of the oversized message is never read, so the stream cannot be
	// resynchronised.
	ErrTooLarge = transport.ErrTooLarge
	// ErrPeerTimeout: nothing arrived from the peer between two pings (see
	// Config.PingInterval). The connection is closed (the error also wraps
	// transport.ErrClosed).
	ErrPeerTimeout = transport.ErrPeerTimeout
)

const (
	// writeChunk is the most written under one write deadline; larger
	// messages go out as a fragmented message whose deadline is renewed
	// for each chunk, so a slow but live peer can take a big document.
	writeChunk = 1 << 20
	// writeBufferSize is the frame size of fragmented messages. The buffer
	// comes from writeBufferPool only while a message is being written.
	writeBufferSize = 64 << 10
	// closeGrace bounds the attempt to send a close frame.
	closeGrace = time.Second
	// firstReadBuffer is the initial read buffer; it doubles as needed.
	firstReadBuffer = 512
)

var writeBufferPool sync.Pool

// Accept upgrades an HTTP request to a WebSocket connection speaking the
// automerge-repo protocol. Any path is accepted and no subprotocol is
// negotiated, as with the JavaScript sync server. On failure an HTTP error
// has already been written to w (403 for a refused origin, 400 for a request
// that is not a WebSocket upgrade, 500 for an invalid cfg).
//
// The returned Conn pings the peer every cfg.PingInterval and reads in the
// background; see Config for limits and timeouts.
func Accept(w http.ResponseWriter, r *http.Request, cfg Config) (transport.Conn, error) {
	if err := cfg.validate(); err != nil {
		http.Error(w, "websocket endpoint misconfigured", http.StatusInternalServerError)
		return nil, err
	}
	cfg = cfg.withDefaults()
	up := websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		WriteBufferSize:  writeBufferSize,
		WriteBufferPool:  &writeBufferPool,
		CheckOrigin:      cfg.CheckOrigin,
	}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil, fmt.Errorf("ws: upgrade from %s: %w", r.RemoteAddr, err)
	}
	return newConn(c, cfg, "server"), nil
}

// Dial opens a WebSocket connection to url (ws://, wss://, or http(s)://,
// which is rewritten to ws(s)://). It honours ctx for the whole opening
// handshake and cfg.HandshakeTimeout, and uses the proxy given by the
// environment (HTTPS_PROXY etc.). The caller sends join next.
func Dial(ctx context.Context, url string, cfg Config) (transport.Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	shown := redact(url)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ws: dial %s: %w", shown, err)
	}
	target := url
	switch {
	case strings.HasPrefix(target, "http://"):
		target = "ws://" + strings.TrimPrefix(target, "http://")
	case strings.HasPrefix(target, "https://"):
		target = "wss://" + strings.TrimPrefix(target, "https://")
	}
	// gorilla applies ctx's deadline to the handshake but does not watch
	// for cancellation once the TCP connection is up; this does.
	stopWatch := func() bool { return true }
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: cfg.HandshakeTimeout,
		WriteBufferSize:  writeBufferSize,
		WriteBufferPool:  &writeBufferPool,
		NetDialContext: func(dctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			stopWatch = context.AfterFunc(ctx, func() { nc.Close() })
			return nc, nil
		},
	}
	c, resp, err := d.DialContext(ctx, target, nil)
	if !stopWatch() && err == nil {
		// ctx ended just as the handshake finished.
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		cerr := ctx.Err()
		if dl, ok := ctx.Deadline(); ok && cerr == nil && isTimeout(err) && !time.Now().Before(dl) {
			// The socket deadline (ctx's) fired a moment before ctx noticed.
			cerr = context.DeadlineExceeded
		}
		if cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		if resp != nil {
			return nil, fmt.Errorf("ws: dial %s: %w (HTTP status %s)", shown, err, resp.Status)
		}
		return nil, fmt.Errorf("ws: dial %s: %w", shown, err)
	}
	return newConn(c, cfg, "client"), nil
}

// redact drops the user info and query of a URL, which may hold
// credentials, for error messages.
func redact(rawURL string) string {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.Fragment = ""
	return u.String()
}

// conn is a transport.Conn over a gorilla WebSocket connection.
//
// Goroutines: readLoop is the only caller of gorilla's read methods (the
// ping and pong handlers run inside it); WriteMessage's caller is the only
// caller of the write methods; keepalive, the ping handler and shutdown use
// only WriteControl and Close, which gorilla allows concurrently.
type conn struct {
	ws     *websocket.Conn
	cfg    Config
	log    *slog.Logger
	remote string
	decode transport.DecodeOptions

	in      chan readResult // unbuffered: readLoop is at most one message ahead
	done    chan struct{}
	writing atomic.Bool // a WriteMessage is on the wire

	// Liveness, for keepalive: when something last arrived from the peer
	// (Unix nanoseconds), and whether readLoop is holding a message for
	// ReadMessage (and so not reading).
	lastSeen atomic.Int64
	holding  atomic.Bool

	closeOnce sync.Once
	reason    error // set once, before done is closed

	wg      sync.WaitGroup
	running atomic.Int32 // goroutines still running, for tests
}

type readResult struct {
	msg transport.Message
	err error
}

func newConn(ws *websocket.Conn, cfg Config, role string) *conn {
	remote := ws.RemoteAddr().String()
	c := &conn{
		ws:     ws,
		cfg:    cfg,
		log:    cfg.Logger.With("remote", remote, "role", role),
		remote: remote,
		decode: transport.DecodeOptions{MaxSize: cfg.MaxMessageSize},
		in:     make(chan readResult),
		done:   make(chan struct{}),
	}
	c.alive()
	ws.SetReadLimit(cfg.MaxMessageSize)
	ws.SetPongHandler(func(string) error { c.alive(); return nil })
	ws.SetPingHandler(c.onPing)
	c.start(c.readLoop)
	if cfg.PingInterval > 0 {
		c.start(c.keepalive)
	}
	return c
}

func (c *conn) start(f func()) {
	c.wg.Add(1)
	c.running.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.running.Add(-1)
		f()
	}()
}

// ReadMessage returns the next message. Errors wrapping ErrTextFrame,
// ErrEmptyFrame or a transport decoding error concern one message; all
// others wrap transport.ErrClosed and mean the connection is gone.
func (c *conn) ReadMessage(ctx context.Context) (transport.Message, error) {
	if c.isClosed() {
		return transport.Message{}, c.closedErr()
	}
	if err := ctx.Err(); err != nil {
		return transport.Message{}, err
	}
	select {
	case r := <-c.in:
		return r.msg, r.err
	case <-c.done:
		return transport.Message{}, c.closedErr()
	case <-ctx.Done():
		return transport.Message{}, ctx.Err()
	}
}

// WriteMessage encodes m and writes it as one binary message. An encoding
// error leaves the connection usable; a write error, or ctx ending while the
// message is being written, closes it.
func (c *conn) WriteMessage(ctx context.Context, m transport.Message) error {
	if c.isClosed() {
		return c.closedErr()
	}
	b, err := transport.Encode(m)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.writing.Store(true)
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			c.shutdown(fmt.Errorf("write abandoned: %w", context.Cause(ctx)))
		})
	}
	err = c.write(ctx, b)
	stop()
	c.writing.Store(false)
	if err != nil {
		c.shutdown(fmt.Errorf("write: %w", err))
		return c.closedErr()
	}
	return nil
}

func (c *conn) writeDeadline(ctx context.Context) time.Time {
	d := time.Now().Add(c.cfg.WriteTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
		return dl
	}
	return d
}

func (c *conn) write(ctx context.Context, b []byte) error {
	if len(b) <= writeChunk {
		_ = c.ws.SetWriteDeadline(c.writeDeadline(ctx))
		return c.ws.WriteMessage(websocket.BinaryMessage, b)
	}
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		_ = c.ws.SetWriteDeadline(c.writeDeadline(ctx))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	_ = c.ws.SetWriteDeadline(c.writeDeadline(ctx))
	return w.Close()
}

// Close sends a close frame (best effort, unless a write is in progress),
// closes the socket and waits for the connection's goroutines to exit. Only
// the first call has an effect; it returns the socket's close error.
func (c *conn) Close(reason error) error {
	err := c.shutdown(reason)
	c.wg.Wait()
	return err
}

// shutdown closes the connection once; it never waits for the goroutines,
// so they may call it themselves.
func (c *conn) shutdown(reason error) error {
	var err error
	c.closeOnce.Do(func() {
		c.reason = reason
		close(c.done)
		c.log.Debug("ws: connection closed", "reason", reason)
		if !c.writing.Load() {
			// A close frame cannot be sent inside a message being written.
			code := closeCode(reason)
			msg := websocket.FormatCloseMessage(code, closeText(code, reason))
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
		}
		err = c.ws.Close()
	})
	return err
}

// closeCode picks the close status for reason. JavaScript peers ignore it
// (any close means "reconnect in 5 s"); it helps people reading captures.
func closeCode(reason error) int {
	switch {
	case reason == nil:
		return websocket.CloseNormalClosure
	case errors.Is(reason, transport.ErrTooLarge):
		return websocket.CloseMessageTooBig
	case errors.Is(reason, transport.ErrPolicyViolation):
		return websocket.ClosePolicyViolation
	case errors.Is(reason, transport.ErrTextFrame):
		return websocket.CloseUnsupportedData
	case errors.Is(reason, transport.ErrMalformed), errors.Is(reason, transport.ErrEmptyFrame),
		errors.Is(reason, transport.ErrMissingField), errors.Is(reason, transport.ErrUnknownType):
		return websocket.CloseProtocolError
	}
	return websocket.CloseNormalClosure
}

// maxCloseText is the most text a close frame carries (RFC 6455 §5.5).
const maxCloseText = 123

// closeText is the reason sent in the close frame: for a limit the peer
// broke, which one (for client authors reading captures); otherwise
// nothing. It is cut at a rune boundary to stay valid UTF-8. (An oversized
// message gets gorilla's own 1009 frame first.)
func closeText(code int, reason error) string {
	if reason == nil || code != websocket.ClosePolicyViolation {
		return ""
	}
	s := strings.ToValidUTF8(reason.Error(), "?")
	if len(s) <= maxCloseText {
		return s
	}
	n := maxCloseText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (c *conn) RemoteAddr() string { return c.remote }

func (c *conn) Done() <-chan struct{} { return c.done }

func (c *conn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// closedErr is the error of every call after the close; call it only once
// done is closed.
func (c *conn) closedErr() error {
	if c.reason == nil {
		return transport.ErrClosed
	}
	return fmt.Errorf("%w: %w", transport.ErrClosed, c.reason)
}

// alive records that something arrived from the peer.
func (c *conn) alive() {
	c.lastSeen.Store(time.Now().UnixNano())
}

// onPing answers a ping (a peer that pings is alive too).
func (c *conn) onPing(data string) error {
	c.alive()
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.WriteTimeout))
	if err == nil || errors.Is(err, websocket.ErrCloseSent) || isTimeout(err) {
		// A pong that could not be sent in time is skipped, as gorilla's
		// default handler does; the peer's own check decides.
		return nil
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readLoop reads messages and hands them to ReadMessage one at a time.
// Per-message errors are handed over too; a connection-level error closes
// the connection, and ReadMessage then reports it via closedErr.
func (c *conn) readLoop() {
	for {
		r, fatal := c.readOne()
		if fatal != nil {
			c.shutdown(fatal)
			return
		}
		c.holding.Store(true)
		select {
		case c.in <- r:
		case <-c.done:
			return
		}
		// Whatever arrived while we held r is read next. (alive before
		// holding is cleared: keepalive reads them in the other order.)
		c.alive()
		c.holding.Store(false)
	}
}

// readOne reads one message. fatal is non-nil if the connection is unusable.
func (c *conn) readOne() (r readResult, fatal error) {
	typ, rd, err := c.ws.NextReader()
	if err != nil {
		return r, c.readFailure(err)
	}
	c.alive()
	buf, err := c.readAll(rd)
	if err != nil {
		return r, c.readFailure(err)
	}
	switch {
	case typ != websocket.BinaryMessage:
		r.err = fmt.Errorf("ws: %w (%d bytes)", transport.ErrTextFrame, len(buf))
	case len(buf) == 0:
		r.err = fmt.Errorf("ws: %w", transport.ErrEmptyFrame)
	default:
		r.msg, r.err = c.decode.Decode(buf)
	}
	return r, nil
}

// readAll reads the rest of a message, noting that the peer is alive while
// data keeps arriving, so that a large message on a slow link is not taken
// for a dead peer. gorilla enforces the size limit.
func (c *conn) readAll(rd io.Reader) ([]byte, error) {
	buf := make([]byte, 0, firstReadBuffer)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if n > 0 {
			c.alive()
		}
	}
}

// readFailure turns a gorilla read error into the reason the connection is
// closed.
func (c *conn) readFailure(err error) error {
	var ce *websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return fmt.Errorf("%w (limit %d bytes)", transport.ErrTooLarge, c.cfg.MaxMessageSize)
	case errors.As(err, &ce):
		return fmt.Errorf("closed by peer: %w", err)
	}
	return fmt.Errorf("read: %w", err)
}

// keepalive pings the peer every PingInterval and drops it when nothing at
// all has arrived since the previous ping, sent one interval earlier: a
// silent peer goes between one and two intervals after it fell silent.
// (Checking at the tick after a ping, rather than with a read deadline,
// keeps a stall of this process from passing for a dead peer.) A ping that
// cannot be sent in time (a large write holds the connection) is skipped,
// and the next tick does not check; any other ping failure closes the
// connection.
func (c *conn) keepalive() {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	var pinged int64 // when the previous ping went out (Unix ns), 0 if it did not
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		if pinged != 0 && !c.holding.Load() && c.lastSeen.Load() < pinged {
			silent := time.Since(time.Unix(0, c.lastSeen.Load())).Round(time.Millisecond)
			c.shutdown(fmt.Errorf("%w: nothing received for %v", transport.ErrPeerTimeout, silent))
			return
		}
		now := time.Now().UnixNano()
		err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout))
		switch {
		case err == nil:
			pinged = now
		case isTimeout(err):
			pinged = 0
			c.log.Debug("ws: ping skipped", "err", err)
		default:
			c.shutdown(fmt.Errorf("ping: %w", err))
			return
		}
	}
}
