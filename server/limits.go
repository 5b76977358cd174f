package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
)

// DefaultBytesPerSecond is Config.BytesPerSecond's default: 16 MiB/s, far
// above what live editing sends, low enough that one connection cannot
// keep the server busy with payload alone.
const DefaultBytesPerSecond = 16 << 20

// limitedConn is the server's side of one sync connection, between the
// WebSocket and the engine. It slows a peer that sends more payload bytes
// per second than allowed: the next read waits until the peer is back
// under its budget, so TCP pushes back on the sender and its neighbours
// keep their share of the server (the engine slows a peer over its message
// rate the same way).
type limitedConn struct {
	transport.Conn
	rate   float64 // bytes per second; 0: unlimited
	tokens float64 // may go negative: a large message is let in, then paid for
	last   time.Time
	log    *slog.Logger
	obs    repo.Observer // nil: none
	slowed bool          // logged and counted once per connection
}

// SlowBytes is the limit the server reports to Observer.PeerSlowed for a
// peer over Config.BytesPerSecond.
const SlowBytes = "bytes"

func newLimitedConn(c transport.Conn, bytesPerSecond int64, log *slog.Logger, obs repo.Observer) *limitedConn {
	lc := &limitedConn{Conn: c, last: time.Now(), log: log, obs: obs}
	if bytesPerSecond > 0 {
		lc.rate = float64(bytesPerSecond)
		lc.tokens = lc.rate // a burst of one second's worth
	}
	return lc
}

// ReadMessage waits while the peer is over its byte budget, then reads.
// Only the engine's reader goroutine calls it, so the bucket needs no lock.
func (c *limitedConn) ReadMessage(ctx context.Context) (transport.Message, error) {
	if c.rate > 0 {
		c.refill()
		if c.tokens < 0 {
			if !c.slowed {
				c.slowed = true
				c.log.Info("slowing peer over its byte rate", "remote", c.RemoteAddr(), "limit_bytes_per_s", int64(c.rate))
				if c.obs != nil {
					c.obs.PeerSlowed(SlowBytes)
				}
			}
			t := time.NewTimer(time.Duration(-c.tokens / c.rate * float64(time.Second)))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return transport.Message{}, ctx.Err()
			case <-c.Done():
				t.Stop() // the read below reports the close
			}
			c.refill()
		}
	}
	m, err := c.Conn.ReadMessage(ctx)
	if c.rate > 0 {
		c.tokens -= float64(len(m.Data))
	}
	return m, err
}

func (c *limitedConn) refill() {
	now := time.Now()
	c.tokens = min(c.rate, c.tokens+now.Sub(c.last).Seconds()*c.rate)
	c.last = now
}
