package repo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tandemsync/tandem/transport"
)

// DialFunc opens one connection to a sync server.
type DialFunc func(ctx context.Context) (transport.Conn, error)

// ReconnectConfig shapes the reconnect backoff of a Connection.
type ReconnectConfig struct {
	// MinBackoff is the first delay after a failure. Default 100ms.
	MinBackoff time.Duration
	// MaxBackoff caps the delay. Default 10s.
	MaxBackoff time.Duration
	// StableAfter: a connection that lasted this long resets the backoff.
	// Default 5s.
	StableAfter time.Duration
}

func (c *ReconnectConfig) setDefaults() {
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.StableAfter <= 0 {
		c.StableAfter = 5 * time.Second
	}
}

// Connection keeps a repo connected to one server, reconnecting with
// exponential backoff and full jitter. Every open document is synced again
// after each reconnect.
type Connection struct {
	r      *Repo
	dial   DialFunc
	cfg    ReconnectConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	dialing   bool
	connected bool
	serverID  string
	lastErr   error
	attempts  int
	changed   chan struct{} // closed and replaced on every state change
}

// ConnectLoop starts a background Connection. Stop it with Close.
func (r *Repo) ConnectLoop(dial DialFunc, cfg ReconnectConfig) *Connection {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Connection{r: r, dial: dial, cfg: cfg, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	r.connMu.Lock()
	r.conns[c] = struct{}{}
	r.connMu.Unlock()
	go c.loop(ctx)
	return c
}

func (c *Connection) setState(connected bool, serverID string, err error) {
	c.mu.Lock()
	c.connected = connected
	c.dialing = false
	if serverID != "" {
		c.serverID = serverID
	}
	if err != nil {
		c.lastErr = err
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.r.connectionChanged()
}

func (c *Connection) setDialing() {
	c.mu.Lock()
	c.dialing = true
	c.mu.Unlock()
	c.r.connectionChanged()
}

// Connected reports whether the handshake with the server is done.
func (c *Connection) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// ServerID is the server's peer id, once known.
func (c *Connection) ServerID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.serverID
}

// LastError is the reason the last connection attempt or connection ended.
func (c *Connection) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// WaitConnected blocks until the connection is up or ctx ends.
func (c *Connection) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		ok, ch := c.connected, c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-c.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops reconnecting and closes the current connection.
func (c *Connection) Close() {
	c.cancel()
	<-c.done
	c.r.connMu.Lock()
	delete(c.r.conns, c)
	c.r.connMu.Unlock()
	c.r.connectionChanged()
}

func (c *Connection) loop(ctx context.Context) {
	defer close(c.done)
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := c.once(ctx)
		c.setState(false, "", err)
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return
		}
		if time.Since(start) >= c.cfg.StableAfter {
			backoff = c.cfg.MinBackoff
		}
		// Full jitter: a uniformly random wait in [backoff/2, backoff].
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		c.r.log.Info("reconnecting", "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff *= 2
		if backoff > c.cfg.MaxBackoff {
			backoff = c.cfg.MaxBackoff
		}
	}
}

func (c *Connection) once(ctx context.Context) error {
	c.setDialing()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := c.dial(dctx)
	cancel()
	if err != nil {
		return fmt.Errorf("repo: dial: %w", err)
	}
	return c.r.Connect(ctx, conn, func(server string) { c.setState(true, server, nil) })
}

// connectionChanged refreshes every live document's status after the
// connection state moved.
func (r *Repo) connectionChanged() {
	r.mu.Lock()
	owners := make([]*owner, 0, len(r.docs))
	for _, o := range r.docs {
		owners = append(owners, o)
	}
	r.mu.Unlock()
	for _, o := range owners {
		select {
		case o.inbox <- func(o *owner) { o.statusDirty = true }:
			o.resume()
		default: // a busy owner publishes soon anyway
		}
	}
	r.statusChanged()
}
