package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
)

// rawConn is a bare WebSocket client that can send anything.
type rawConn struct {
	t *testing.T
	c *websocket.Conn
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c}
}

func (r *rawConn) send(typ int, b []byte) {
	r.t.Helper()
	if err := r.c.WriteMessage(typ, b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawConn) sendMsg(m transport.Message) {
	r.t.Helper()
	b, err := transport.Encode(m)
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(websocket.BinaryMessage, b)
}

func (r *rawConn) join(id string) {
	r.t.Helper()
	r.sendMsg(transport.Message{Type: transport.TypeJoin, SenderID: id, SupportedProtocolVersions: []string{"1"}})
	m := r.read()
	if m.Type != transport.TypePeer {
		r.t.Fatalf("join answered with %+v", m)
	}
}

// read returns the next message, failing the test on a timeout or close.
func (r *rawConn) read() transport.Message {
	r.t.Helper()
	m, err := r.tryRead(10 * time.Second)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return m
}

func (r *rawConn) tryRead(d time.Duration) (transport.Message, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	typ, b, err := r.c.ReadMessage()
	if err != nil {
		return transport.Message{}, err
	}
	if typ != websocket.BinaryMessage {
		return transport.Message{}, errors.New("server sent a non-binary frame")
	}
	return transport.Decode(b)
}

// expectClosed waits until the server closes the connection, skipping any
// messages it sends first (such as an error).
func (r *rawConn) expectClosed() []transport.Message {
	r.t.Helper()
	var got []transport.Message
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m, err := r.tryRead(time.Until(deadline))
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return got
		}
		got = append(got, m)
	}
	r.t.Fatalf("server did not close the connection (got %+v)", got)
	return nil
}

// expectOpen checks the connection still works: a request for an unknown
// document is answered with doc-unavailable.
func (r *rawConn) expectOpen(self string) {
	r.t.Helper()
	id := crdt.NewDocumentID()
	r.sendMsg(transport.Message{Type: transport.TypeRequest, SenderID: self, TargetID: "server", DocumentID: string(id), Data: []byte{0x42, 0, 0, 1, 0, 0, 0}})
	for {
		m := r.read()
		if m.Type == transport.TypeDocUnavailable {
			if m.DocumentID != string(id) {
				r.t.Fatalf("answered a message it should have dropped: %+v", m)
			}
			return
		}
	}
}

func TestServeBadInput(t *testing.T) {
	ctx := testCtx(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0",
		"--max-message-size", "1048576", "--handshake-timeout", "500ms", "--rate", "200")
	url := sp.url()

	// A healthy client checks, after every case, that others are served.
	good := newGoClient(t, url)
	other := newGoClient(t, url)
	stillServed := func(t *testing.T) {
		t.Helper()
		h, err := good.r.CreateJSON(ctx, []byte(`{"ok":true}`))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "a normal client is still served", func() bool {
			h2, err := other.r.Find(ctx, h.ID())
			if err != nil {
				return false
			}
			v, err := h2.Get(ctx, "/ok")
			return err == nil && v == true
		})
	}

	valid := func(typ string) transport.Message {
		return transport.Message{Type: typ, SenderID: "raw", TargetID: "server", DocumentID: string(crdt.NewDocumentID()), Data: []byte{0x42, 0, 0, 1, 0, 0, 0}}
	}
	cases := []struct {
		name string
		run  func(t *testing.T, r *rawConn)
	}{
		{"non-CBOR bytes", func(t *testing.T, r *rawConn) {
			r.join("raw")
			r.send(websocket.BinaryMessage, []byte{0xff, 0xfe, 0x00, 0x13})
			r.expectClosed()
		}},
		{"text frame", func(t *testing.T, r *rawConn) {
			r.join("raw")
			r.send(websocket.TextMessage, []byte(`{"type":"join"}`))
			r.expectClosed()
		}},
		{"empty frame", func(t *testing.T, r *rawConn) {
			r.join("raw")
			r.send(websocket.BinaryMessage, nil)
			r.expectClosed()
		}},
		{"CBOR that is not a map", func(t *testing.T, r *rawConn) {
			r.join("raw")
			r.send(websocket.BinaryMessage, []byte{0x83, 0x01, 0x02, 0x03})
			r.expectClosed()
		}},
		{"unknown type is dropped", func(t *testing.T, r *rawConn) {
			r.join("raw")
			r.sendMsg(transport.Message{Type: "frobnicate", SenderID: "raw", TargetID: "server"})
			r.expectOpen("raw")
		}},
		{"missing documentId", func(t *testing.T, r *rawConn) {
			r.join("raw")
			// {type:"sync", senderId:"raw", targetId:"s", data:h'42'}
			r.send(websocket.BinaryMessage, []byte("\xa4\x64type\x64sync\x68senderId\x63raw\x68targetId\x61s\x64data\x41\x42"))
			if got := r.read(); got.Type != transport.TypeError || !strings.Contains(got.Message, "documentId") {
				t.Fatalf("got %+v, want an error naming documentId", got)
			}
			r.expectOpen("raw")
		}},
		{"documentId as bytes", func(t *testing.T, r *rawConn) {
			r.join("raw")
			// {type:"request", senderId:"raw", targetId:"s", documentId:h'0102', data:h'42'}
			r.send(websocket.BinaryMessage, []byte("\xa5\x64type\x67request\x68senderId\x63raw\x68targetId\x61s\x6adocumentId\x42\x01\x02\x64data\x41\x42"))
			r.expectClosed()
		}},
		{"invalid base58check documentId", func(t *testing.T, r *rawConn) {
			r.join("raw")
			m := valid(transport.TypeRequest)
			m.DocumentID = "not-a-document-id"
			r.sendMsg(m)
			if got := r.read(); got.Type != transport.TypeError || !strings.Contains(got.Message, "documentId") {
				t.Fatalf("got %+v, want an error naming documentId", got)
			}
			r.expectOpen("raw")
		}},
		{"sync data Automerge rejects", func(t *testing.T, r *rawConn) {
			r.join("raw")
			m := valid(transport.TypeSync)
			m.Data = []byte("garbage garbage garbage")
			r.sendMsg(m)
			if got := r.read(); got.Type != transport.TypeError || !strings.Contains(got.Message, "invalid sync message") {
				t.Fatalf("got %+v, want an error", got)
			}
			r.expectOpen("raw")
		}},
		{"message before join", func(t *testing.T, r *rawConn) {
			r.sendMsg(valid(transport.TypeSync))
			msgs := r.expectClosed()
			if len(msgs) == 0 || msgs[0].Type != transport.TypeError {
				t.Fatalf("got %+v, want an error before the close", msgs)
			}
		}},
		{"unsupported protocol version", func(t *testing.T, r *rawConn) {
			r.sendMsg(transport.Message{Type: transport.TypeJoin, SenderID: "raw", SupportedProtocolVersions: []string{"2"}})
			msgs := r.expectClosed()
			if len(msgs) != 1 || msgs[0].Type != transport.TypeError || msgs[0].Message != "unsupported protocol version" {
				t.Fatalf("got %+v", msgs)
			}
		}},
		{"senderId that is not the joined peer", func(t *testing.T, r *rawConn) {
			r.join("raw")
			m := valid(transport.TypeRequest)
			m.SenderID = "someone-else"
			r.sendMsg(m)
			// The next answer must be for the valid request that follows,
			// never for the foreign one.
			r.expectOpen("raw")
		}},
		{"second join", func(t *testing.T, r *rawConn) {
			r.join("raw")
			r.sendMsg(transport.Message{Type: transport.TypeJoin, SenderID: "raw"})
			r.expectClosed()
		}},
		{"oversized message", func(t *testing.T, r *rawConn) {
			r.join("raw")
			m := valid(transport.TypeSync)
			m.Data = make([]byte, 2<<20)
			b, err := transport.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
				return // reset while writing: the server already closed
			}
			r.expectClosed()
		}},
		{"handshake that never finishes", func(t *testing.T, r *rawConn) {
			r.expectClosed()
		}},
		{"flood", func(t *testing.T, r *rawConn) {
			// Over --rate (200/s, burst 400): slowed, not cut off. The
			// request after the flood is answered once the flood has been
			// read at the rate.
			r.join("raw")
			m := transport.Message{Type: "frobnicate", SenderID: "raw", TargetID: "server"}
			b, _ := transport.Encode(m)
			const flood = 1000
			start := time.Now()
			for range flood {
				if err := r.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
					t.Fatalf("flood: %v", err)
				}
			}
			r.expectOpen("raw")
			if d, least := time.Since(start), time.Duration(flood-400)*time.Second/200; d < least*9/10 {
				t.Fatalf("%d messages read in %v: not slowed to 200/s (at least %v)", flood, d, least)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, url)
			c.run(t, r)
			stillServed(t)
		})
	}
	if t.Failed() {
		t.Logf("server log:\n%s", sp.stderr.String())
	}
	_ = context.Background()
}
