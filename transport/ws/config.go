package ws

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults applied to zero Config fields.
const (
	// DefaultMaxMessageSize is 64 MiB: whole documents of tens of megabytes
	// travel in one message (the JavaScript server allows 100 MiB).
	DefaultMaxMessageSize = 64 << 20
	// DefaultWriteTimeout bounds how long a write may make no progress.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultPingInterval matches the JavaScript server's keep-alive.
	DefaultPingInterval = 5 * time.Second
	// DefaultHandshakeTimeout bounds the WebSocket opening handshake.
	DefaultHandshakeTimeout = 10 * time.Second
)

// Config configures Accept and Dial. The zero value is ready to use: each zero
// field takes its documented default.
type Config struct {
	// MaxMessageSize is the largest message accepted from the peer, in
	// bytes (default DefaultMaxMessageSize). A larger message makes
	// ReadMessage fail with ErrTooLarge and closes the connection (the
	// WebSocket stream cannot be resynchronised past it). Negative is an
	// error.
	MaxMessageSize int64
	// WriteTimeout bounds each write (default DefaultWriteTimeout): a small
	// message must be written within it, a large one must keep making
	// progress (the deadline is renewed for every MiB written). A write
	// that times out closes the connection. Negative is an error.
	WriteTimeout time.Duration
	// PingInterval is how often a ping is sent (default
	// DefaultPingInterval). A peer from which nothing arrived (no pong, no
	// ping, no message) since the previous ping is dropped at the next
	// tick, so a silent peer goes within two intervals: ReadMessage fails
	// with ErrPeerTimeout and Done is closed. Negative disables pings and
	// the liveness check.
	PingInterval time.Duration
	// HandshakeTimeout bounds the opening handshake (default
	// DefaultHandshakeTimeout). Negative is an error.
	HandshakeTimeout time.Duration
	// CheckOrigin decides whether Accept lets a browser from another origin
	// connect. nil allows every origin: automerge-repo clients are web
	// pages served from anywhere, and authorisation belongs to the server.
	CheckOrigin func(*http.Request) bool
	// Logger receives debug records about connections (close reasons, ping
	// failures). nil discards them.
	Logger *slog.Logger
}

func (c Config) validate() error {
	var errs []error
	if c.MaxMessageSize < 0 {
		errs = append(errs, fmt.Errorf("MaxMessageSize %d is negative", c.MaxMessageSize))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("WriteTimeout %v is negative", c.WriteTimeout))
	}
	if c.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("HandshakeTimeout %v is negative", c.HandshakeTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ws: invalid config: %w", err)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.CheckOrigin == nil {
		c.CheckOrigin = func(*http.Request) bool { return true }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
