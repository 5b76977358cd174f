package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tandemsync/tandem/crdt"
)

// Sentinel errors, always wrapped with detail; test them with errors.Is.
var (
	// ErrNoToken: the request carried no token.
	ErrNoToken = errors.New("auth: no token")
	// ErrInvalidToken: the token is malformed, not signed with this
	// server's secret (or not with HS256), not yet valid, or its claims are
	// not what Tandem expects (no exp, no jti, an unknown permission, a
	// document key that is not a document id).
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrExpired: the token's exp has passed.
	ErrExpired = errors.New("auth: token expired")
	// ErrRevoked: the token's jti was revoked.
	ErrRevoked = errors.New("auth: token revoked")
	// ErrWeakSecret: the signing secret is shorter than MinSecretLen.
	ErrWeakSecret = errors.New("auth: secret too short")
	// ErrInvalidGrant: Issue was given a grant it cannot sign.
	ErrInvalidGrant = errors.New("auth: invalid grant")
)

// MinSecretLen is the shortest HS256 secret accepted, in bytes (RFC 7518
// §3.2: a key of at least the hash size).
const MinSecretLen = 32

// Any is the document key that matches every document.
const Any = "*"

// Perm is a permission on a document. Each level includes the ones below.
type Perm uint8

// Permission levels.
const (
	None  Perm = iota // the document does not exist for the bearer
	Read              // sync and read; own changes are rejected
	Write             // read, change; create documents (on "*")
	Admin             // write, delete; on "*" also revoke tokens
)

// ParsePerm parses "read", "write" or "admin".
func ParsePerm(s string) (Perm, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "admin":
		return Admin, nil
	}
	return None, fmt.Errorf("unknown permission %q (want read, write or admin)", s)
}

func (p Perm) String() string {
	switch p {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return "none"
}

// MarshalText writes the permission's name.
func (p Perm) MarshalText() ([]byte, error) {
	if p == None || p > Admin {
		return nil, fmt.Errorf("auth: cannot encode permission %d", p)
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads "read", "write" or "admin".
func (p *Perm) UnmarshalText(b []byte) error {
	v, err := ParsePerm(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// NormalizeDocKey turns a document key of a grant ("*", an automerge URL or
// a bare document id) into the form tokens carry ("*" or the bare id).
func NormalizeDocKey(s string) (string, error) {
	if s == Any {
		return Any, nil
	}
	id, heads, err := crdt.ParseURL(s)
	if err != nil {
		return "", err
	}
	if len(heads) > 0 {
		return "", fmt.Errorf("document key %q names a version (heads); give the document", s)
	}
	return string(id), nil
}

// Claims is what a verified token grants.
type Claims struct {
	Subject  string
	ID       string // jti: what revocation names
	Expires  time.Time
	IssuedAt time.Time
	// Docs maps a bare document id, or "*", to a permission.
	Docs map[string]Perm
}

// Perm is the bearer's permission on doc: the higher of its own entry and
// the "*" entry.
func (c *Claims) Perm(doc crdt.DocumentID) Perm {
	if c == nil {
		return None
	}
	p := c.Docs[Any]
	if q := c.Docs[string(doc)]; q > p {
		p = q
	}
	return p
}

// Allows reports whether the bearer has at least p on doc.
func (c *Claims) Allows(doc crdt.DocumentID, p Perm) bool { return p != None && c.Perm(doc) >= p }

// CanRead implements repo.PeerAccess.
func (c *Claims) CanRead(doc crdt.DocumentID) bool { return c.Allows(doc, Read) }

// CanWrite implements repo.PeerAccess.
func (c *Claims) CanWrite(doc crdt.DocumentID) bool { return c.Allows(doc, Write) }

// AllDocs reports the permission the token has on every document ("*").
func (c *Claims) AllDocs() Perm {
	if c == nil {
		return None
	}
	return c.Docs[Any]
}

// wireClaims is the JWT payload.
type wireClaims struct {
	jwt.RegisteredClaims
	Docs map[string]string `json:"docs"`
}

// Grant describes a token to issue.
type Grant struct {
	Subject string
	// Docs maps "*", an automerge URL or a bare document id to a
	// permission. At least one entry.
	Docs map[string]Perm
	// TTL is how long the token is valid. Required, positive.
	TTL time.Duration
	// ID is the token's jti. Default: 16 random bytes in hex.
	ID string
}

// Config configures an Authority.
type Config struct {
	// Secret signs and verifies tokens (HS256). At least MinSecretLen
	// bytes.
	Secret []byte
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Authority issues and verifies tokens with one secret and keeps the set of
// revoked token ids. It is safe for concurrent use.
type Authority struct {
	key    []byte
	now    func() time.Time
	parser *jwt.Parser

	mu      sync.Mutex
	revoked map[string]time.Time // jti → keep until (zero: for ever)
}

// New makes an Authority.
func New(cfg Config) (*Authority, error) {
	if len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrWeakSecret, len(cfg.Secret), MinSecretLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authority{
		key:     append([]byte(nil), cfg.Secret...),
		now:     cfg.Now,
		revoked: make(map[string]time.Time),
	}
	a.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(cfg.Now),
	)
	return a, nil
}

// LoadSecret reads a secret file: its bytes with surrounding white space
// (a trailing newline) removed. It fails if fewer than MinSecretLen remain.
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read secret: %w", err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) < MinSecretLen {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want at least %d (e.g. head -c 32 /dev/urandom | base64 > %s)", ErrWeakSecret, path, len(b), MinSecretLen, path)
	}
	return b, nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// Issue signs a token for g and returns it with its claims.
func (a *Authority) Issue(g Grant) (string, *Claims, error) {
	if g.TTL <= 0 {
		return "", nil, fmt.Errorf("%w: TTL %v must be positive", ErrInvalidGrant, g.TTL)
	}
	if len(g.Docs) == 0 {
		return "", nil, fmt.Errorf("%w: no documents", ErrInvalidGrant)
	}
	c := &Claims{Subject: g.Subject, ID: g.ID, Docs: make(map[string]Perm, len(g.Docs))}
	if c.ID == "" {
		c.ID = randomID()
	}
	wire := make(map[string]string, len(g.Docs))
	for k, p := range g.Docs {
		key, err := NormalizeDocKey(k)
		if err != nil {
			return "", nil, fmt.Errorf("%w: %w", ErrInvalidGrant, err)
		}
		if p == None || p > Admin {
			return "", nil, fmt.Errorf("%w: permission %d for %s", ErrInvalidGrant, p, k)
		}
		if p > c.Docs[key] {
			c.Docs[key] = p
			wire[key] = p.String()
		}
	}
	now := a.now().Truncate(time.Second)
	c.IssuedAt = now
	c.Expires = now.Add(g.TTL)
	if !c.Expires.After(now) { // a TTL below one second
		c.Expires = now.Add(time.Second)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, wireClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.Subject,
			ID:        c.ID,
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ExpiresAt: jwt.NewNumericDate(c.Expires),
		},
		Docs: wire,
	})
	s, err := tok.SignedString(a.key)
	if err != nil {
		return "", nil, fmt.Errorf("auth: sign: %w", err)
	}
	return s, c, nil
}

// Verify checks a token's signature, expiry and revocation and returns what
// it grants. Errors wrap ErrNoToken, ErrInvalidToken, ErrExpired or
// ErrRevoked.
func (a *Authority) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var wc wireClaims
	_, err := a.parser.ParseWithClaims(token, &wc, func(*jwt.Token) (any, error) { return a.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %w", ErrExpired, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if wc.ID == "" {
		return nil, fmt.Errorf("%w: no jti", ErrInvalidToken)
	}
	c := &Claims{Subject: wc.Subject, ID: wc.ID, Docs: make(map[string]Perm, len(wc.Docs))}
	if wc.ExpiresAt != nil {
		c.Expires = wc.ExpiresAt.Time
	}
	if wc.IssuedAt != nil {
		c.IssuedAt = wc.IssuedAt.Time
	}
	for k, v := range wc.Docs {
		key, err := NormalizeDocKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: docs: %w", ErrInvalidToken, err)
		}
		p, err := ParsePerm(v)
		if err != nil {
			return nil, fmt.Errorf("%w: docs[%q]: %w", ErrInvalidToken, k, err)
		}
		if p > c.Docs[key] {
			c.Docs[key] = p
		}
	}
	if a.IsRevoked(c.ID) {
		return nil, fmt.Errorf("%w: jti %s", ErrRevoked, c.ID)
	}
	return c, nil
}

// Revocation is one revoked token id.
type Revocation struct {
	ID string `json:"jti"`
	// Until is when the entry may be forgotten (the token's expiry); zero
	// keeps it for the life of the Authority.
	Until time.Time `json:"until,omitzero"`
}

// Revoke makes every later Verify of tokens with this jti fail. until, if
// not zero, is when the entry may be forgotten (a token past its expiry is
// refused anyway). Revoking an id again keeps the later until.
func (a *Authority) Revoke(jti string, until time.Time) {
	if jti == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for id, u := range a.revoked {
		if !u.IsZero() && u.Before(now) {
			delete(a.revoked, id)
		}
	}
	if old, ok := a.revoked[jti]; ok && (old.IsZero() || (!until.IsZero() && old.After(until))) {
		return
	}
	a.revoked[jti] = until
}

// IsRevoked reports whether jti was revoked.
func (a *Authority) IsRevoked(jti string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.revoked[jti]
	return ok
}

// Revocations lists the revoked ids, sorted.
func (a *Authority) Revocations() []Revocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Revocation, 0, len(a.revoked))
	for id, u := range a.revoked {
		out = append(out, Revocation{ID: id, Until: u})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
