package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/repo"
)

// Media types of the REST API.
const (
	jsonType      = "application/json"
	jsonPatchType = "application/json-patch+json"
	binaryType    = "application/octet-stream"
)

func (s *Server) routeAPI() {
	s.mux.HandleFunc("/api/docs", s.handleDocs)
	s.mux.HandleFunc("/api/docs/{id}", s.handleDoc)
	s.mux.HandleFunc("/api/docs/{id}/history", s.handleHistory)
	s.mux.HandleFunc("/api/docs/{id}/binary", s.handleBinary)
	s.mux.HandleFunc("/api/revocations", s.handleRevocations)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not-found", "no such endpoint: "+r.URL.Path)
	})
}

func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
}

// docInfo is one entry of GET /api/docs.
type docInfo struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	Heads   []string  `json:"heads"`
}

// handleDocs: GET lists the documents the token may read; POST creates one
// from a JSON object (application/json) or imports an Automerge binary
// (application/octet-stream).
func (s *Server) handleDocs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		c, ok := s.authorizeAll(w, r, auth.None)
		if !ok {
			return
		}
		list, err := s.cfg.Repo.List(ctx)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		out := make([]docInfo, 0, len(list))
		for _, d := range list {
			if c != nil && !c.CanRead(d.ID) {
				continue
			}
			heads := d.Heads
			if heads == nil {
				heads = []string{}
			}
			out = append(out, docInfo{ID: string(d.ID), URL: d.URL, Size: d.Size, Created: d.Created, Updated: d.Updated, Heads: heads})
		}
		writeJSON(w, http.StatusOK, map[string]any{"documents": out})
	case http.MethodPost:
		c, ok := s.authorizeAll(w, r, auth.Write)
		if !ok {
			return
		}
		limit := s.cfg.MaxBodyBytes
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); strings.EqualFold(mt, binaryType) {
			limit = s.cfg.MaxBinaryBytes
		}
		body, mt, ok := s.readBodyType(w, r, limit, jsonType, binaryType)
		if !ok {
			return
		}
		var h *repo.DocHandle
		var err error
		if mt == binaryType {
			if len(body) == 0 {
				writeProblem(w, http.StatusUnprocessableEntity, "invalid-document", "the body is empty; want an Automerge document")
				return
			}
			h, err = s.cfg.Repo.Import(ctx, body)
		} else {
			if !json.Valid(body) {
				writeProblem(w, http.StatusBadRequest, "malformed-json", "the body is not valid JSON")
				return
			}
			h, err = s.cfg.Repo.CreateJSON(ctx, body)
			if errors.Is(err, crdt.ErrTypeMismatch) {
				writeProblem(w, http.StatusUnprocessableEntity, "invalid-document", err.Error())
				return
			}
		}
		if err != nil {
			s.changeError(w, r, err)
			return
		}
		heads, err := h.Heads(ctx)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		s.log.Info("document created over REST", "doc", h.ID(), "who", subject(c))
		w.Header().Set("Location", "/api/docs/"+string(h.ID()))
		setETag(w, heads)
		writeJSON(w, http.StatusCreated, map[string]any{"id": string(h.ID()), "url": h.URL(), "heads": hexHeads(heads)})
	default:
		methodNotAllowed(w, "GET, HEAD, POST")
	}
}

func subject(c *auth.Claims) string {
	if c == nil {
		return ""
	}
	return c.Subject
}

// docID parses the {id} path segment (a bare id or an automerge URL) or
// writes 400.
func docID(w http.ResponseWriter, r *http.Request) (crdt.DocumentID, bool) {
	raw := r.PathValue("id")
	id, heads, err := crdt.ParseURL(raw)
	if err != nil || len(heads) > 0 {
		writeProblem(w, http.StatusBadRequest, "invalid-document-id", "not a document id or automerge URL: "+raw)
		return "", false
	}
	return id, true
}

// find returns the document's handle or writes 404 (or 500).
func (s *Server) find(ctx context.Context, w http.ResponseWriter, r *http.Request, id crdt.DocumentID) (*repo.DocHandle, bool) {
	h, err := s.cfg.Repo.Find(ctx, id)
	if err != nil {
		s.docError(w, r, id, err)
		return nil, false
	}
	return h, true
}

// openDoc is the prologue of a handler acting on an existing document:
// check the token for need on id, then find the document. ok false: the
// answer (401, 403, 404 or 500) was written.
func (s *Server) openDoc(ctx context.Context, w http.ResponseWriter, r *http.Request, id crdt.DocumentID, need auth.Perm) (*auth.Claims, *repo.DocHandle, bool) {
	c, ok := s.authorizeDoc(w, r, id, need)
	if !ok {
		return nil, nil, false
	}
	h, ok := s.find(ctx, w, r, id)
	return c, h, ok
}

// docError answers an error of reading or finding a document.
func (s *Server) docError(w http.ResponseWriter, r *http.Request, id crdt.DocumentID, err error) {
	switch {
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, repo.ErrUnavailable):
		writeProblem(w, http.StatusNotFound, "not-found", "no such document: "+id.URL())
	case errors.Is(err, crdt.ErrInvalidPointer):
		writeProblem(w, http.StatusBadRequest, "invalid-pointer", err.Error())
	case errors.Is(err, crdt.ErrPathNotFound):
		writeProblem(w, http.StatusNotFound, "path-not-found", err.Error())
	default:
		s.internalError(w, r, err)
	}
}

// changeError answers an error of a change, a patch or a creation.
func (s *Server) changeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errHeadsMismatch):
		writeProblem(w, http.StatusPreconditionFailed, "heads-changed", "the document's heads are not those of If-Match; nothing changed")
	case errors.Is(err, repo.ErrTooLarge):
		writeProblem(w, http.StatusRequestEntityTooLarge, "document-too-large", err.Error()+"; nothing changed")
	case errors.Is(err, repo.ErrRejected):
		writeProblem(w, http.StatusUnprocessableEntity, "rejected", err.Error()+"; nothing changed")
	case errors.Is(err, crdt.ErrTestFailed):
		writeProblem(w, http.StatusConflict, "test-failed", err.Error()+"; nothing changed")
	case errors.Is(err, crdt.ErrInvalidJSON):
		writeProblem(w, http.StatusBadRequest, "malformed-json", err.Error())
	case errors.Is(err, crdt.ErrInvalidPatch):
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-patch", err.Error())
	case errors.Is(err, crdt.ErrInvalidPointer), errors.Is(err, crdt.ErrPathNotFound), errors.Is(err, crdt.ErrTypeMismatch):
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-patch", err.Error()+"; nothing changed")
	case errors.Is(err, crdt.ErrCorrupt):
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-document", err.Error())
	case errors.Is(err, repo.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "not-found", "no such document")
	default:
		s.internalError(w, r, err)
	}
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, repo.ErrClosed):
		writeProblem(w, http.StatusServiceUnavailable, "shutting-down", "the server is shutting down")
		return
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, http.StatusServiceUnavailable, "timeout", "the request took too long")
		return
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	s.log.Error("REST request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeProblem(w, http.StatusInternalServerError, "internal", "internal error")
}

func hexHeads(hs []crdt.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

// etag is the strong entity tag of a document state: its heads.
func etag(hs []crdt.Hash) string { return `"` + strings.Join(hexHeads(hs), ".") + `"` }

func setETag(w http.ResponseWriter, hs []crdt.Hash) { w.Header().Set("ETag", etag(hs)) }

var errHeadsMismatch = errors.New("heads mismatch")

// headsParam parses ?heads= (a historical view: change hashes as hex or
// base58check, "|" or ","-separated). at is nil without the parameter; ok
// false: 400 was written.
func headsParam(w http.ResponseWriter, r *http.Request) (at []crdt.Hash, ok bool) {
	if !r.URL.Query().Has("heads") {
		return nil, true
	}
	for _, part := range strings.FieldsFunc(r.URL.Query().Get("heads"), func(c rune) bool { return c == '|' || c == ',' }) {
		hh, err := crdt.ParseHash(part)
		if err != nil {
			if hh, err = crdt.ParseBase58Hash(part); err != nil {
				writeProblem(w, http.StatusBadRequest, "invalid-heads", fmt.Sprintf("%q is not a change hash (hex or base58check)", part))
				return nil, false
			}
		}
		at = append(at, hh)
	}
	if len(at) == 0 {
		writeProblem(w, http.StatusBadRequest, "invalid-heads", "heads is empty")
		return nil, false
	}
	return at, true
}

// handleDoc: GET reads the document (or the value at ?path=) as JSON,
// PATCH applies a JSON Patch as one change, DELETE removes it.
func (s *Server) handleDoc(w http.ResponseWriter, r *http.Request) {
	id, ok := docID(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, ok := s.authorizeDoc(w, r, id, auth.Read); !ok {
			return
		}
		at, ok := headsParam(w, r)
		if !ok {
			return
		}
		h, ok := s.find(ctx, w, r, id)
		if !ok {
			return
		}
		ptr := r.URL.Query().Get("path")
		var body []byte
		var heads []crdt.Hash
		err := h.Read(ctx, func(d *crdt.Doc) error {
			view := d
			if at != nil {
				f, err := d.ForkAt(at)
				if err != nil {
					return err
				}
				view = f
			}
			heads = view.Heads()
			var err error
			body, err = view.JSON(ptr)
			return err
		})
		if errors.Is(err, crdt.ErrInvalidHash) {
			writeProblem(w, http.StatusNotFound, "unknown-heads", err.Error())
			return
		}
		if err != nil {
			s.docError(w, r, id, err)
			return
		}
		tag := etag(heads)
		w.Header().Set("ETag", tag)
		if inm := r.Header.Get("If-None-Match"); inm != "" && inm == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", jsonType)
		_, _ = w.Write(append(body, '\n'))
	case http.MethodPatch:
		c, ok := s.authorizeDoc(w, r, id, auth.Write)
		if !ok {
			return
		}
		body, ok := s.readBody(w, r, s.cfg.MaxBodyBytes, jsonPatchType)
		if !ok {
			return
		}
		if !json.Valid(body) {
			writeProblem(w, http.StatusBadRequest, "malformed-json", "the body is not valid JSON")
			return
		}
		ops, err := crdt.ParsePatch(body)
		if err != nil {
			writeProblem(w, http.StatusUnprocessableEntity, "invalid-patch", err.Error())
			return
		}
		h, ok := s.find(ctx, w, r, id)
		if !ok {
			return
		}
		ifMatch := r.Header.Get("If-Match")
		var opts []repo.ChangeOption
		if msg := r.URL.Query().Get("message"); msg != "" {
			opts = append(opts, repo.WithMessage(msg))
		}
		res, err := h.Change(ctx, func(d *crdt.Doc) error {
			if ifMatch != "" && ifMatch != "*" && ifMatch != etag(d.Heads()) {
				return errHeadsMismatch
			}
			return d.ApplyPatch(ops)
		}, opts...)
		if err != nil {
			s.changeError(w, r, err)
			return
		}
		s.log.Debug("document patched over REST", "doc", id, "who", subject(c), "ops", len(ops), "changed", res.Changed)
		setETag(w, res.Heads)
		out := map[string]any{"url": id.URL(), "changed": res.Changed, "heads": hexHeads(res.Heads)}
		if res.Changed {
			out["hash"] = res.Hash.String()
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodDelete:
		c, _, ok := s.openDoc(ctx, w, r, id, auth.Admin)
		if !ok {
			return
		}
		if err := s.cfg.Repo.Delete(ctx, id); err != nil {
			s.docError(w, r, id, err)
			return
		}
		s.log.Info("document deleted over REST", "doc", id, "who", subject(c))
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET, HEAD, PATCH, DELETE")
	}
}

// changeJSON is one entry of GET /api/docs/{id}/history.
type changeJSON struct {
	Hash    string    `json:"hash"`
	Actor   string    `json:"actor"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time,omitzero"`
	Message string    `json:"message,omitempty"`
	Deps    []string  `json:"deps"`
}

// handleHistory lists a document's changes in causal order.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	id, ok := docID(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	_, h, ok := s.openDoc(ctx, w, r, id, auth.Read)
	if !ok {
		return
	}
	cs, err := h.History(ctx)
	if err != nil {
		s.docError(w, r, id, err)
		return
	}
	out := make([]changeJSON, len(cs))
	for i, c := range cs {
		out[i] = changeJSON{Hash: c.Hash.String(), Actor: c.Actor, Seq: c.Seq, Time: c.Time, Message: c.Message, Deps: hexHeads(c.Deps)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"url": id.URL(), "changes": out})
}

// handleBinary: GET downloads the whole document in Automerge's binary
// format; PUT merges an uploaded Automerge document into it (creating it,
// under this id, if it does not exist).
func (s *Server) handleBinary(w http.ResponseWriter, r *http.Request) {
	id, ok := docID(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		_, h, ok := s.openDoc(ctx, w, r, id, auth.Read)
		if !ok {
			return
		}
		b, err := h.Export(ctx)
		if err != nil {
			s.docError(w, r, id, err)
			return
		}
		w.Header().Set("Content-Type", binaryType)
		w.Header().Set("Content-Disposition", `attachment; filename="`+string(id)+`.automerge"`)
		_, _ = w.Write(b)
	case http.MethodPut:
		c, ok := s.authorizeDoc(w, r, id, auth.Write)
		if !ok {
			return
		}
		body, ok := s.readBody(w, r, s.cfg.MaxBinaryBytes, binaryType)
		if !ok {
			return
		}
		if len(body) == 0 {
			writeProblem(w, http.StatusUnprocessableEntity, "invalid-document", "the body is empty; want an Automerge document")
			return
		}
		doc, err := crdt.Load(body)
		if err != nil {
			writeProblem(w, http.StatusUnprocessableEntity, "invalid-document", err.Error())
			return
		}
		if len(doc.Heads()) == 0 {
			writeProblem(w, http.StatusUnprocessableEntity, "invalid-document", "the uploaded document has no changes")
			return
		}
		created := false
		var have []crdt.Hash
		if h, err := s.cfg.Repo.Find(ctx, id); err != nil {
			if !errors.Is(err, repo.ErrNotFound) && !errors.Is(err, repo.ErrUnavailable) {
				s.internalError(w, r, err)
				return
			}
			created = true
		} else if have, err = h.Heads(ctx); err != nil {
			s.docError(w, r, id, err)
			return
		}
		heads, err := s.push(ctx, id, doc, have, c)
		if err != nil {
			s.pushError(w, r, err)
			return
		}
		s.log.Info("document uploaded over REST", "doc", id, "who", subject(c), "created", created)
		status := http.StatusOK
		if created {
			status = http.StatusCreated
			w.Header().Set("Location", "/api/docs/"+string(id))
		}
		setETag(w, heads)
		writeJSON(w, status, map[string]any{"url": id.URL(), "heads": hexHeads(heads)})
	default:
		methodNotAllowed(w, "GET, HEAD, PUT")
	}
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ready := s.serving && !s.closing
	s.mu.Unlock()
	if !ready {
		writeProblem(w, http.StatusServiceUnavailable, "not-ready", "the server is starting or shutting down")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}
