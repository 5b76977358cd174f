package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

func TestConfig(t *testing.T) {
	if _, err := server.New(server.Config{}); !errors.Is(err, server.ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpointsAndGracefulShutdown(t *testing.T) {
	r, err := repo.New(repo.Config{Store: memory.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	srv, err := server.New(server.Config{Repo: r})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get(t, base+"/"); code != 200 || !strings.Contains(body, "/sync") {
		t.Fatalf("root: %d %s", code, body)
	}
	if code, _ := get(t, base+"/sync"); code != http.StatusUpgradeRequired {
		t.Fatalf("/sync without upgrade: %d", code)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Fatalf("/nope: %d", code)
	}

	// A client joined on "/" (the Node sync server's URL form) stays
	// connected until shutdown closes it.
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	c, err := ws.Dial(dctx, "ws://"+ln.Addr().String()+"/", ws.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(dctx, transport.Message{Type: transport.TypeJoin, SenderID: "client"}); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(dctx)
	if err != nil || m.Type != transport.TypePeer || m.PeerMetadata == nil || m.PeerMetadata.StorageID == "" {
		t.Fatalf("join answered %+v, %v", m, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client connection still open after shutdown")
	}
}
