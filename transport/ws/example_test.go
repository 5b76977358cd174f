package ws_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// handshake is a minimal server side: answer join with peer.
func handshake(conn transport.Conn) error {
	ctx := context.Background()
	join, err := conn.ReadMessage(ctx)
	if err != nil {
		return err
	}
	if err := join.Validate(); err != nil || join.Type != transport.TypeJoin {
		return fmt.Errorf("expected join, got %q: %v", join.Type, err)
	}
	return conn.WriteMessage(ctx, transport.Message{
		Type:                    transport.TypePeer,
		SenderID:                "tandem-server",
		TargetID:                join.SenderID,
		SelectedProtocolVersion: transport.ProtocolV1,
	})
}

func ExampleAccept() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := ws.Accept(w, r, ws.Config{}) // any path; defaults: 64 MiB messages, 5 s pings
		if err != nil {
			log.Print(err) // the client already got an HTTP error
			return
		}
		go func() {
			err := handshake(conn)
			conn.Close(err) // a real server would go on serving here
		}()
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()

	conn, err := ws.Dial(context.Background(), srv.URL, ws.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(nil)
	ctx := context.Background()
	_ = conn.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: "peer-a",
		SupportedProtocolVersions: []string{transport.ProtocolV1}})
	peer, err := conn.ReadMessage(ctx)
	fmt.Println(peer.Type, peer.SenderID, peer.TargetID, err)
	_, err = conn.ReadMessage(ctx)
	fmt.Println(errors.Is(err, transport.ErrClosed))
	// Output:
	// peer tandem-server peer-a <nil>
	// true
}

func ExampleDial() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conn, err := ws.Accept(w, r, ws.Config{}); err == nil {
			go func() { conn.Close(handshake(conn)) }()
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := ws.Dial(ctx, "ws"+srv.URL[len("http"):]+"/sync", ws.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(nil)
	if err := conn.WriteMessage(ctx, transport.Message{Type: transport.TypeJoin, SenderID: "peer-b"}); err != nil {
		fmt.Println(err)
		return
	}
	peer, err := conn.ReadMessage(ctx)
	fmt.Println(peer.Type, peer.SelectedProtocolVersion, err)

	// A cancelled context makes Dial fail at once.
	cancel()
	_, err = ws.Dial(ctx, srv.URL, ws.Config{})
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// peer 1 <nil>
	// true
}
