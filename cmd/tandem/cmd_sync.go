package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/tandemsync/tandem/crdt"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// runSync syncs a local store with a server: once (--once) or until
// interrupted.
func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("sync", "sync --server ws://HOST:PORT/sync [--data DIR] [--once] [--timeout 30s] [URL...]", stderr)
	server := fs.String("server", "", "the sync server's WebSocket URL (required)")
	once := fs.Bool("once", false, "exit 0 once every local change is confirmed and every remote change received")
	timeout := fs.Duration("timeout", 30*time.Second, "with --once: give up after this long")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *server == "" {
		return fmt.Errorf("%w: sync needs --server ws://HOST:PORT/sync", errUsage)
	}
	u, err := url.Parse(*server)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("%w: --server %q is not a ws:// or wss:// URL", errUsage, *server)
	}
	if *timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	var ids []crdt.DocumentID
	for _, a := range pos {
		id, err := parseURLArg(a)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}

	store, err := badgerstore.Open(badgerstore.DefaultConfig(*data))
	if err != nil {
		return fmt.Errorf("open store %s: %w", *data, err)
	}
	defer store.Close()
	r, err := repo.New(repo.Config{Store: store, Share: repo.ClientSharePolicy{}})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = r.Close(cctx)
	}()
	if len(ids) == 0 {
		docs, err := r.List(ctx)
		if err != nil {
			return err
		}
		for _, d := range docs {
			ids = append(ids, d.ID)
		}
	}
	conn := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, *server, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second})
	defer conn.Close()

	if !*once {
		return syncForever(ctx, r, ids, stdout)
	}
	octx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := conn.WaitConnected(octx); err != nil {
		if last := conn.LastError(); last != nil {
			return fmt.Errorf("cannot reach %s within %v: %v (local store intact)", *server, *timeout, last)
		}
		return fmt.Errorf("cannot reach %s within %v (local store intact)", *server, *timeout)
	}
	for _, id := range ids {
		if err := syncOne(octx, r, id, stdout); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%s not synced within %v (local store intact)", id.URL(), *timeout)
			}
			return err
		}
	}
	return nil
}

// syncOne syncs one document and prints what moved.
func syncOne(ctx context.Context, r *repo.Repo, id crdt.DocumentID, stdout io.Writer) error {
	h, err := r.Find(ctx, id)
	if err != nil {
		return fmt.Errorf("%s: %w", id.URL(), err)
	}
	before, err := h.History(ctx)
	if err != nil {
		return err
	}
	pending, err := h.Pending(ctx)
	if err != nil {
		return err
	}
	if err := h.WaitSynced(ctx); err != nil {
		return err
	}
	after, err := h.History(ctx)
	if err != nil {
		return err
	}
	received := len(after) - len(before)
	switch {
	case len(pending) == 0 && received == 0:
		fmt.Fprintf(stdout, "%s up to date\n", id.URL())
	default:
		fmt.Fprintf(stdout, "%s pushed %d changes, received %d changes\n", id.URL(), len(pending), received)
	}
	return nil
}

// syncForever keeps syncing and prints every status change until ctx ends.
func syncForever(ctx context.Context, r *repo.Repo, ids []crdt.DocumentID, stdout io.Writer) error {
	for _, id := range ids {
		if _, err := r.Find(ctx, id); err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", id.URL(), err)
		}
	}
	r.WatchStatus(ctx, func(st repo.RepoStatus) {
		line := fmt.Sprintf("%s %s pending=%d unsynced=%d", time.Now().Format(time.TimeOnly), st.State, st.Pending, st.Unsynced)
		if st.LastError != nil && st.State != repo.StateSynced {
			line += " error=" + st.LastError.Error()
		}
		fmt.Fprintln(stdout, line)
	})
	return nil
}
