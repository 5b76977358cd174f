package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport"
)

// errPushRejected: the repo answered an uploaded document with an error
// message (for example read-only access).
var errPushRejected = errors.New("server: upload rejected")

// push merges doc into the repo's document id the way a sync client would:
// it joins the repo over an in-memory connection and runs the Automerge
// sync protocol until the repo advertises exactly doc's heads (merged with
// its own). The repo thus applies, stores and fans out the uploaded changes
// like changes from any WebSocket peer, under the same access rules. It
// returns the merged heads.
//
// have is the document's current heads in the repo (nil if it does not
// exist): when they equal doc's, there is nothing to send (a peer in sync
// may get no answer at all).
func (s *Server) push(ctx context.Context, id crdt.DocumentID, doc *crdt.Doc, have []crdt.Hash, c *auth.Claims) ([]crdt.Hash, error) {
	if have != nil && sameHeads(have, doc.Heads()) {
		return have, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mine, theirs := transport.Pipe()
	label := "rest-upload"
	if c != nil {
		label += ":" + c.Subject
	}
	done := make(chan error, 1)
	go func() { done <- s.cfg.Repo.Accept(ctx, theirs, acceptOptions(c, label)...) }()
	defer func() {
		_ = mine.Close(nil)
		<-done
	}()

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	me := "tandem-rest-" + hex.EncodeToString(rnd[:])
	if err := mine.WriteMessage(ctx, transport.Message{
		Type: transport.TypeJoin, SenderID: me,
		SupportedProtocolVersions: []string{transport.ProtocolV1},
		PeerMetadata:              &transport.PeerMetadata{IsEphemeral: true},
	}); err != nil {
		return nil, err
	}
	var server string
	for server == "" {
		m, err := mine.ReadMessage(ctx)
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case transport.TypePeer:
			server = m.SenderID
		case transport.TypeError:
			return nil, fmt.Errorf("%w: %s", errPushRejected, m.Message)
		}
	}
	ss := crdt.NewSyncState(doc)
	var theirHeads []crdt.Hash
	for {
		for {
			data, ok := ss.Generate()
			if !ok {
				break
			}
			if err := mine.WriteMessage(ctx, transport.Message{Type: transport.TypeSync, SenderID: me, TargetID: server, DocumentID: string(id), Data: data}); err != nil {
				return nil, err
			}
		}
		if theirHeads != nil && sameHeads(theirHeads, doc.Heads()) {
			return theirHeads, nil
		}
		m, err := mine.ReadMessage(ctx)
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case transport.TypeSync, transport.TypeRequest:
			if m.DocumentID != string(id) {
				continue
			}
			res, err := ss.Receive(m.Data)
			if err != nil {
				return nil, err
			}
			theirHeads = res.Heads
			if theirHeads == nil {
				theirHeads = []crdt.Hash{}
			}
		case transport.TypeError:
			return nil, fmt.Errorf("%w: %s", errPushRejected, m.Message)
		case transport.TypeDocUnavailable:
			return nil, fmt.Errorf("%w: document unavailable", errPushRejected)
		}
	}
}

func sameHeads(a, b []crdt.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	set := make(map[crdt.Hash]bool, len(a))
	for _, h := range a {
		set[h] = true
	}
	for _, h := range b {
		if !set[h] {
			return false
		}
	}
	return true
}

func (s *Server) pushError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errPushRejected) {
		msg := strings.TrimPrefix(err.Error(), errPushRejected.Error()+": ")
		writeProblem(w, http.StatusUnprocessableEntity, "rejected", msg)
		return
	}
	s.internalError(w, r, err)
}
