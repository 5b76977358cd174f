package server

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// problem is an RFC 9457 problem detail. Type is always "about:blank"
// (the status says what kind of problem it is); Code is a stable,
// machine-readable extension member that tells problems of the same status
// apart (for example "test-failed" or "invalid-patch").
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
}

const problemContentType = "application/problem+json"

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", problemContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "internal", "encoding the response failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "allowed methods: "+allow)
}

// readBody checks the request's Content-Type against types (a missing one
// is refused too) and reads at most limit bytes. It returns the body, or
// writes 415, 413 or 400 and returns ok false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, types ...string) (body []byte, ok bool) {
	body, _, ok = s.readBodyType(w, r, limit, types...)
	return body, ok
}

// readBodyType is readBody that also returns which of types matched.
func (s *Server) readBodyType(w http.ResponseWriter, r *http.Request, limit int64, types ...string) ([]byte, string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	found := false
	for _, t := range types {
		if strings.EqualFold(mt, t) {
			mt, found = t, true
			break
		}
	}
	if !found {
		if r.Method == http.MethodPatch {
			w.Header().Set("Accept-Patch", strings.Join(types, ", "))
		}
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Content-Type must be "+strings.Join(types, " or "))
		return nil, "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "the body exceeds the limit of "+formatBytes(tooLarge.Limit))
			return nil, "", false
		}
		writeProblem(w, http.StatusBadRequest, "bad-body", "reading the body failed")
		return nil, "", false
	}
	return body, mt, true
}

func formatBytes(n int64) string {
	const unit = 1024
	switch {
	case n >= unit*unit && n%(unit*unit) == 0:
		return itoa(n/(unit*unit)) + " MiB"
	case n >= unit && n%unit == 0:
		return itoa(n/unit) + " KiB"
	}
	return itoa(n) + " bytes"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
