package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/tandemsync/tandem/auth"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
	"github.com/tandemsync/tandem/transport/ws"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("serve", "serve [--addr 127.0.0.1:7070] [--data ./tandem-data]", stderr)
	addr := fs.String("addr", "127.0.0.1:7070", "listen address (port 0 picks a free port)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	maxMsg := fs.Int64("max-message-size", 64<<20, "largest WebSocket message accepted, in bytes")
	peerID := fs.String("peer-id", "", "the server's peer id (default: tandem-<random>)")
	handshake := fs.Duration("handshake-timeout", 10*time.Second, "time a connection has to send join")
	rate := fs.Float64("rate", 2000, "messages per second allowed per connection (burst: twice that)")
	maxDocs := fs.Int("max-docs-per-conn", 10000, "documents one connection may sync")
	ping := fs.Duration("ping-interval", 5*time.Second, "WebSocket ping interval; a peer silent for two intervals is dropped")
	secretFile := fs.String("auth-secret-file", "", "file holding the HS256 token secret (at least 32 bytes); every sync connection and REST request then needs a token")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins (scheme://host[:port]) allowed to open WebSockets; empty or * allows any")
	maxBody := fs.Int64("max-body-size", 8<<20, "largest REST JSON body accepted, in bytes (uploads of Automerge binaries: --max-message-size)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("serve", pos, 0, 0); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, *logLevel)
	}
	if *maxMsg <= 0 || *handshake <= 0 || *rate <= 0 || *maxDocs <= 0 || *ping <= 0 || *maxBody <= 0 {
		return fmt.Errorf("%w: --max-message-size, --handshake-timeout, --rate, --max-docs-per-conn, --ping-interval and --max-body-size must be positive", errUsage)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var authority *auth.Authority
	if *secretFile != "" {
		secret, err := auth.LoadSecret(*secretFile)
		if err != nil {
			return err
		}
		if authority, err = auth.New(auth.Config{Secret: secret}); err != nil {
			return err
		}
	}

	scfg := badgerstore.DefaultConfig(*data)
	store, err := badgerstore.Open(scfg)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return fmt.Errorf("store %s is in use by another process: %w", *data, err)
		}
		return fmt.Errorf("open store %s: %w", *data, err)
	}
	defer store.Close()
	r, err := repo.New(repo.Config{
		Store: store, Logger: log, PeerID: *peerID,
		Peers: repo.PeerConfig{HandshakeTimeout: *handshake, RatePerSecond: *rate, MaxDocuments: *maxDocs},
	})
	if err != nil {
		return err
	}
	// Create the storage id before accepting anyone (PROTOCOL.md §9).
	sid, err := r.StorageID(ctx)
	if err != nil {
		return err
	}
	wcfg := ws.Config{MaxMessageSize: *maxMsg, PingInterval: *ping, Logger: log}
	if *origins != "" {
		wcfg.CheckOrigin = server.AllowOrigins(strings.Split(*origins, ","))
	}
	srv, err := server.New(server.Config{Repo: r, WS: wcfg, Logger: log, Auth: authority, MaxBodyBytes: *maxBody, MaxBinaryBytes: *maxMsg})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	if authority == nil {
		log.Warn("authentication is OFF: anyone who can reach this address can read, change and delete every document; start with --auth-secret-file to require tokens", "addr", ln.Addr().String())
	} else {
		log.Info("authentication is on: every sync connection and REST request needs a token", "secret_file", *secretFile)
	}
	log.Info("serving", "addr", ln.Addr().String(), "sync", "ws://"+ln.Addr().String()+"/sync", "api", "http://"+ln.Addr().String()+"/api", "data", *data, "peer_id", r.PeerID(), "storage_id", sid)
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	serr := srv.Serve(ctx, ln)
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Close(cctx); err != nil {
		return err
	}
	log.Info("stopped")
	return serr
}
