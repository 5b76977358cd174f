package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// client is one simulated user: its own Repo (in memory) with one
// connection to the server.
type client struct {
	r     *repo.Repo
	conn  *repo.Connection
	store persistence.Store
	// changed is signalled (one slot: signals merge) when remote changes
	// were applied to the client's documents.
	changed chan struct{}
}

// arrivals signals a client's changed channel from its repo's observer.
type arrivals struct {
	repo.NopObserver
	changed chan struct{}
}

func (a arrivals) ChangesApplied(_ int, remote bool) {
	if remote {
		select {
		case a.changed <- struct{}{}:
		default:
		}
	}
}

// dial connects an unpaced client: the load generator measures servers,
// not the Go client's politeness (PeerConfig.SendRatePerSecond).
func dial(ctx context.Context, url string) (*client, error) { return dialRate(ctx, url, -1) }

// dialPaced connects a client paced as a Go application's is by default.
// Clients holding thousands of documents use it: unpaced, such a client
// re-syncs all of them at once after a reconnect, and a server that cuts
// off peers over their message rate cuts it off again and again (many-docs
// with 10,000 documents did not finish when tandem serve did that; it now
// slows such peers instead).
func dialPaced(ctx context.Context, url string) (*client, error) { return dialRate(ctx, url, 0) }

func dialRate(ctx context.Context, url string, rate float64) (*client, error) {
	store := memory.New()
	changed := make(chan struct{}, 1)
	r, err := repo.New(repo.Config{
		Store: store, Share: repo.ClientSharePolicy{}, IdleTimeout: time.Hour, ConflictWindow: -1,
		Observer: arrivals{changed: changed},
		Peers:    repo.PeerConfig{SendRatePerSecond: rate},
	})
	if err != nil {
		return nil, err
	}
	conn := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, url, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	if err := conn.WaitConnected(ctx); err != nil {
		conn.Close()
		_ = r.Close(context.Background())
		if le := conn.LastError(); le != nil {
			err = fmt.Errorf("%w (%v)", err, le)
		}
		return nil, fmt.Errorf("loadgen: connect to %s: %w", url, err)
	}
	return &client{r: r, conn: conn, store: store, changed: changed}, nil
}

func (c *client) close() {
	c.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.r.Close(ctx)
}

// dialAll connects n clients, at most conc at a time.
func dialAll(ctx context.Context, url string, n, conc int, prog func(int)) ([]*client, error) {
	cs := make([]*client, n)
	var (
		mu    sync.Mutex
		first error
		done  int
	)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx, url)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			cs[i] = c
			done++
			prog(done)
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		closeAll(cs)
		return nil, first
	}
	return cs, nil
}

func closeAll(cs []*client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.close() }()
		}
	}
	wg.Wait()
}

func trafficOf(cs []*client) (sent, recv int64) {
	for _, c := range cs {
		if c == nil {
			continue
		}
		st := c.r.Stats()
		sent += st.BytesOut
		recv += st.BytesIn
	}
	return sent, recv
}

// findRetry finds id through the server, retrying while the server does not
// have it yet (a document another client just created may still be on its
// way), until ctx ends.
func findRetry(ctx context.Context, c *client, id crdt.DocumentID) (*repo.DocHandle, int, error) {
	backoff := 5 * time.Millisecond
	for tries := 0; ; tries++ {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		h, err := c.r.Find(fctx, id)
		cancel()
		if err == nil {
			return h, tries, nil
		}
		if ctx.Err() != nil {
			return nil, tries, fmt.Errorf("loadgen: find %s: %w (last: %v)", id, ctx.Err(), err)
		}
		if !errors.Is(err, repo.ErrUnavailable) && !errors.Is(err, repo.ErrNotFound) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, tries, fmt.Errorf("loadgen: find %s: %w", id, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// waitFor polls cond every interval until it holds or ctx ends.
func waitFor(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func equalHeads(a, b []crdt.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[crdt.Hash]bool, len(a))
	for _, h := range a {
		m[h] = true
	}
	for _, h := range b {
		if !m[h] {
			return false
		}
	}
	return true
}
