package crdt

import (
	"fmt"
	"strconv"
	"strings"
)

// ParsePointer splits an RFC 6901 JSON Pointer into its unescaped reference
// tokens. "" is the whole document (no tokens); every other pointer starts
// with "/". "~0" stands for "~" and "~1" for "/"; any other "~" is an error
// (ErrInvalidPointer).
func ParsePointer(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("%w: %q does not start with \"/\"", ErrInvalidPointer, s)
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		if !strings.Contains(p, "~") {
			continue
		}
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			c := p[j]
			if c != '~' {
				b.WriteByte(c)
				continue
			}
			if j+1 >= len(p) || (p[j+1] != '0' && p[j+1] != '1') {
				return nil, fmt.Errorf("%w: %q: bad escape in token %q", ErrInvalidPointer, s, p)
			}
			if p[j+1] == '0' {
				b.WriteByte('~')
			} else {
				b.WriteByte('/')
			}
			j++
		}
		parts[i] = b.String()
	}
	return parts, nil
}

// FormatPointer is the inverse of ParsePointer: it escapes each token and
// joins them. No tokens give "", the whole document.
func FormatPointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

func escapeToken(t string) string {
	if !strings.ContainsAny(t, "~/") {
		return t
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(t)
}

// appendToken returns ptr extended by one token.
func appendToken(ptr, tok string) string {
	return ptr + "/" + escapeToken(tok)
}

// indexSyntax reports whether tok is a well-formed array index:
// "0" or a decimal number without a leading zero.
func indexSyntax(tok string) bool {
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return false
		}
	}
	return true
}

// Index modes for parseIndex.
const (
	idxExisting = iota // 0 <= i < n
	idxAppend          // 0 <= i < n, or "-" meaning n (Set)
	idxInsert          // 0 <= i <= n, or "-" meaning n (Add)
)

// parseIndex resolves tok against a list of length n. ptr is only used in
// error messages.
func parseIndex(ptr, tok string, n, mode int) (int, error) {
	if tok == "-" {
		if mode == idxExisting {
			return 0, fmt.Errorf("%w: %q: \"-\" names no existing element", ErrPathNotFound, ptr)
		}
		return n, nil
	}
	if !indexSyntax(tok) {
		return 0, fmt.Errorf("%w: %q: %q is not a list index", ErrInvalidPointer, ptr, tok)
	}
	i, err := strconv.Atoi(tok)
	limit := n
	if mode == idxInsert {
		limit = n + 1
	}
	if err != nil || i >= limit {
		return 0, fmt.Errorf("%w: %q: index %s out of range (length %d)", ErrPathNotFound, ptr, tok, n)
	}
	return i, nil
}
