package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tandemsync/tandem/transport"
)

// fakeConn hands out messages of size bytes at once, for ever.
type fakeConn struct {
	size   int
	done   chan struct{}
	reason error
}

func (c *fakeConn) ReadMessage(ctx context.Context) (transport.Message, error) {
	return transport.Message{Type: transport.TypeSync, Data: make([]byte, c.size)}, nil
}
func (c *fakeConn) WriteMessage(context.Context, transport.Message) error { return nil }
func (c *fakeConn) Close(reason error) error {
	if c.reason == nil {
		c.reason = reason
		close(c.done)
	}
	return nil
}
func (c *fakeConn) RemoteAddr() string    { return "fake" }
func (c *fakeConn) Done() <-chan struct{} { return c.done }

func TestLimitedConnSlowsBytes(t *testing.T) {
	const rate = 1 << 20
	fc := &fakeConn{size: rate / 10, done: make(chan struct{})}
	obs := NewObserver()
	lc := newLimitedConn(fc, rate, slog.New(slog.DiscardHandler), obs)
	start := time.Now()
	// 15 messages of a tenth of the rate: one second's burst, then 0.4 s
	// of waiting at least (the 11th overdraws; the 12th to 15th wait).
	for range 15 {
		if _, err := lc.ReadMessage(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Fatalf("1.5 MiB read in %v at 1 MiB/s with a 1 MiB burst: not slowed", d)
	}
	var m dto.Metric
	if err := obs.slowed.WithLabelValues(SlowBytes).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("tandem_peers_slowed_total{limit=bytes} = %v, want 1 (once per connection)", got)
	}
	// A reader waiting for its budget stops with its context.
	fc.size = 8 * rate // eight seconds in debt
	if _, err := lc.ReadMessage(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lc.ReadMessage(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

func TestLimitedConnUnlimited(t *testing.T) {
	fc := &fakeConn{size: 8 << 20, done: make(chan struct{})}
	lc := newLimitedConn(fc, -1, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // any wait would fail
	for range 10 {
		if _, err := lc.ReadMessage(ctx); err != nil {
			t.Fatalf("unlimited: %v", err)
		}
	}
}
