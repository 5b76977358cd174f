package server_test

import (
	"context"
	"log"
	"net"
	"os/signal"
	"syscall"

	"github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
)

// A sync server that JavaScript automerge-repo clients can use at
// ws://127.0.0.1:7070/sync, stopped gracefully by SIGTERM.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	store, err := badger.Open(badger.DefaultConfig("./tandem-data"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	r, err := repo.New(repo.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(context.Background())
	srv, err := server.New(server.Config{Repo: r})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:7070")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
}
