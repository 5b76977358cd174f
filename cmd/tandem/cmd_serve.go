package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
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
	rate := fs.Float64("rate", 2000, "messages per second allowed per connection (burst: twice that); a faster peer is slowed: its next message is read only once it is back under the rate")
	rateBytes := fs.Int64("rate-bytes", server.DefaultBytesPerSecond, "payload bytes per second allowed per connection (burst: one second's worth); a faster peer is slowed down")
	maxDocs := fs.Int("max-docs-per-conn", 10000, "documents one connection may sync; further ones are refused, the connection stays up")
	hibernate := fs.Duration("hibernate-after", 10*time.Second, "drop a document that every peer has in full from memory after this long untouched, or 200 times its load time if longer (peers stay attached; negative: never)")
	maxLive := fs.Int("max-live-docs", 1000, "soft bound on documents in memory: above it, quiet documents hibernate after a second (negative: none)")
	ping := fs.Duration("ping-interval", 5*time.Second, "WebSocket ping interval; a peer silent for two intervals is dropped")
	secretFile := fs.String("auth-secret-file", "", "file holding the HS256 token secret (at least 32 bytes); every sync connection and REST request then needs a token")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins (scheme://host[:port]) allowed to open WebSockets; empty or * allows any")
	maxDoc := fs.Int64("max-doc-size", 0, "hard limit on a document's stored size in bytes; changes that would exceed it are rejected (0: none)")
	warnDoc := fs.Int64("warn-doc-size", 0, "log a warning when a document's stored size passes this many bytes (0: none)")
	schemaFile := fs.String("schema", "", "JSON Schema file every document must match after every change (changes that break it are rejected)")
	maxBody := fs.Int64("max-body-size", 8<<20, "largest REST JSON body accepted, in bytes (uploads of Automerge binaries: --max-message-size)")
	metricsTokenFile := fs.String("metrics-token-file", "", "file holding a bearer token that /metrics on --addr then requires (Authorization: Bearer TOKEN); /metrics on --admin-addr stays open")
	adminAddr := fs.String("admin-addr", "", "separate listen address for /metrics and /debug/pprof/ (empty: off); keep it private")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) file; with --tls-key the server speaks HTTPS and WSS")
	tlsKey := fs.String("tls-key", "", "PEM private key file for --tls-cert")
	flagUsage := fs.Usage
	fs.Usage = func() {
		flagUsage()
		fmt.Fprintln(stderr, "\nEvery flag can also come from the environment as TANDEM_ and its name in upper case\nwith underscores (--auth-secret-file: TANDEM_AUTH_SECRET_FILE); the command line wins.")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := applyEnv(fs, "TANDEM_"); err != nil {
		return err
	}
	if err := wantArgs("serve", pos, 0, 0); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, *logLevel)
	}
	if *maxMsg <= 0 || *handshake <= 0 || *rate <= 0 || *rateBytes <= 0 || *maxDocs <= 0 || *ping <= 0 || *maxBody <= 0 {
		return fmt.Errorf("%w: --max-message-size, --handshake-timeout, --rate, --rate-bytes, --max-docs-per-conn, --ping-interval and --max-body-size must be positive", errUsage)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together: give both or neither", errUsage)
	}
	var tlsConfig *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate %s and key %s: %w", *tlsCert, *tlsKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
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

	var metricsToken string
	if *metricsTokenFile != "" {
		b, err := os.ReadFile(*metricsTokenFile)
		if err != nil {
			return fmt.Errorf("read --metrics-token-file: %w", err)
		}
		if metricsToken = strings.TrimSpace(string(b)); metricsToken == "" {
			return fmt.Errorf("%w: --metrics-token-file %s holds no token", errUsage, *metricsTokenFile)
		}
	}

	var validate repo.Validator
	if *schemaFile != "" {
		b, err := os.ReadFile(*schemaFile)
		if err != nil {
			return fmt.Errorf("read --schema: %w", err)
		}
		if validate, err = server.SchemaValidator(b); err != nil {
			return fmt.Errorf("--schema %s: %w", *schemaFile, err)
		}
	}

	slack, err := timerSlack()
	if err != nil {
		return err
	}
	limitMallocArenas(2)
	scfg := badgerstore.DefaultConfig(*data)
	var store *badgerstore.Store
	fixed, err := measureFixed(func() (err error) {
		store, err = badgerstore.Open(scfg)
		return err
	})
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return fmt.Errorf("store %s is in use by another process: %w", *data, err)
		}
		return fmt.Errorf("open store %s: %w", *data, err)
	}
	defer store.Close()
	defer startGCTuner(fixed)()
	obs := server.NewObserver() // engine metrics for /metrics
	r, err := repo.New(repo.Config{
		Store: store, Logger: log, PeerID: *peerID, Validate: validate, Observer: obs,
		MaxDocumentBytes: *maxDoc, WarnDocumentBytes: *warnDoc,
		HibernateAfter: *hibernate, MaxLiveDocuments: *maxLive, GraphDocuments: true,
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
	srv, err := server.New(server.Config{Repo: r, WS: wcfg, Logger: log, Auth: authority, MaxBodyBytes: *maxBody, MaxBinaryBytes: *maxMsg, TLS: tlsConfig, BytesPerSecond: *rateBytes, MetricsToken: metricsToken, Store: store, Observer: obs})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	var adminLn net.Listener
	if *adminAddr != "" {
		if adminLn, err = net.Listen("tcp", *adminAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on admin address %s: %w", *adminAddr, err)
		}
	}
	if authority == nil {
		log.Warn("authentication is OFF: anyone who can reach this address can read, change and delete every document; start with --auth-secret-file to require tokens", "addr", ln.Addr().String())
	} else {
		log.Info("authentication is on: every sync connection and REST request needs a token", "secret_file", *secretFile)
	}
	wsScheme, httpScheme := "ws", "http"
	if tlsConfig != nil {
		wsScheme, httpScheme = "wss", "https"
	}
	log.Info("serving", "addr", ln.Addr().String(), "sync", wsScheme+"://"+ln.Addr().String()+"/sync", "api", httpScheme+"://"+ln.Addr().String()+"/api", "metrics", httpScheme+"://"+ln.Addr().String()+"/metrics", "data", *data, "peer_id", r.PeerID(), "storage_id", sid, "timer_slack", slack)
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	adminDone := make(chan error, 1)
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	if adminLn != nil {
		log.Info("admin listener: metrics and pprof", "metrics", "http://"+adminLn.Addr().String()+"/metrics", "pprof", "http://"+adminLn.Addr().String()+"/debug/pprof/")
		fmt.Fprintf(stdout, "admin listening on %s\n", adminLn.Addr())
		go func() { adminDone <- srv.ServeAdmin(actx, adminLn) }()
	} else {
		adminDone <- nil
	}
	serr := srv.Serve(ctx, ln)
	acancel()
	if aerr := <-adminDone; aerr != nil {
		log.Warn("admin listener", "err", aerr)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Close(cctx); err != nil {
		return err
	}
	log.Info("stopped")
	return serr
}

// envName is the environment variable for flag name: prefix, then the name
// in upper case with dashes as underscores (auth-secret-file:
// TANDEM_AUTH_SECRET_FILE).
func envName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag of fs that the command line did not give from
// its environment variable (see envName). An empty variable counts as
// unset. A value the flag refuses is a usage error naming the variable.
func applyEnv(fs *flag.FlagSet, prefix string) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		key := envName(prefix, f.Name)
		v := os.Getenv(key)
		if v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%w: environment %s=%q: invalid value for --%s: %v", errUsage, key, v, f.Name, serr)
		}
	})
	return err
}
