package server_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os/signal"
	"syscall"

	"github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/persistence/memory"
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

// The engine's metrics (messages by type, changes applied, rejected and
// persisted, persistence and fan-out latency, dropped peers) need the same
// Observer in the Repo, which feeds it, and in the Server, which serves it
// on /metrics.
func ExampleNewObserver() {
	ctx := context.Background()
	obs := server.NewObserver()
	r, err := repo.New(repo.Config{Store: memory.New(), Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(ctx)
	srv, err := server.New(server.Config{Repo: r, Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	h, _ := r.CreateJSON(ctx, []byte(`{"n":0}`))
	if _, err := h.Set(ctx, "/n", 1); err != nil {
		log.Fatal(err)
	}
	fams, err := srv.Gatherer().Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "tandem_changes_persisted_total" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	// Output: tandem_changes_persisted_total 1
}
