package repo_test

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

func Example() {
	ctx := context.Background()
	// A real program opens persistence/badger; memory keeps the example small.
	r, err := repo.New(repo.Config{Store: memory.New()})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(ctx)

	h, err := r.CreateJSON(ctx, []byte(`{"widgets":{"cpu":{"value":0}}}`))
	if err != nil {
		log.Fatal(err)
	}
	// One Automerge change, durable when Change returns.
	res, err := h.Change(ctx, func(d *crdt.Doc) error {
		return d.Set("/widgets/cpu/value", 42)
	}, repo.WithMessage("cpu sample"))
	if err != nil {
		log.Fatal(err)
	}
	b, _ := h.JSON(ctx, "/widgets")
	fmt.Println(res.Paths, string(b))
	// Output: [/widgets/cpu/value] {"cpu":{"value":42}}
}

func ExampleDocHandle_Subscribe() {
	ctx := context.Background()
	r, _ := repo.New(repo.Config{Store: memory.New()})
	defer r.Close(ctx)
	h, _ := r.CreateJSON(ctx, []byte(`{"title":"ops"}`))

	sub, err := h.Subscribe(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	if _, err := h.Set(ctx, "/title", "ops, eu"); err != nil {
		log.Fatal(err)
	}
	e := <-sub.Events()
	fmt.Println(e.Local, e.Paths)
	// Output: true [/title]
}

func ExampleRepo_ConnectLoop() {
	ctx := context.Background()
	r, _ := repo.New(repo.Config{Store: memory.New(), Share: repo.ClientSharePolicy{}})
	defer r.Close(ctx)
	conn := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, "ws://127.0.0.1:7070/sync", ws.Config{})
	}, repo.ReconnectConfig{})
	defer conn.Close()
	// Documents created or found through r now sync with the server,
	// and again after every reconnect.
}

// changeCounter counts the changes a repo makes durable. NopObserver
// supplies the methods it does not need.
type changeCounter struct {
	repo.NopObserver
	local, remote atomic.Int64
}

func (c *changeCounter) ChangesApplied(n int, remote bool) {
	if remote {
		c.remote.Add(int64(n))
	} else {
		c.local.Add(int64(n))
	}
}

func ExampleObserver() {
	ctx := context.Background()
	obs := &changeCounter{}
	r, err := repo.New(repo.Config{Store: memory.New(), Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(ctx)
	h, _ := r.CreateJSON(ctx, []byte(`{"n":0}`))
	for i := 1; i <= 3; i++ {
		if _, err := h.Set(ctx, "/n", i); err != nil {
			log.Fatal(err)
		}
	}
	// The server package's NewObserver turns these calls into Prometheus
	// metrics.
	fmt.Println("local:", obs.local.Load(), "remote:", obs.remote.Load())
	// Output: local: 3 remote: 0
}
