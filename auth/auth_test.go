package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func newAuthority(t *testing.T, now func() time.Time) *auth.Authority {
	t.Helper()
	a, err := auth.New(auth.Config{Secret: secret, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestWeakSecret(t *testing.T) {
	if _, err := auth.New(auth.Config{Secret: []byte("short")}); !errors.Is(err, auth.ErrWeakSecret) {
		t.Fatalf("err = %v", err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	if err := os.WriteFile(p, []byte("  short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadSecret(p); !errors.Is(err, auth.ErrWeakSecret) {
		t.Fatalf("LoadSecret: %v", err)
	}
	if err := os.WriteFile(p, append(append([]byte(nil), secret...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := auth.LoadSecret(p)
	if err != nil || string(b) != string(secret) {
		t.Fatalf("LoadSecret = %q, %v", b, err)
	}
	if _, err := auth.LoadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestIssueVerifyPermissions(t *testing.T) {
	a := newAuthority(t, nil)
	d1, d2 := crdt.NewDocumentID(), crdt.NewDocumentID()
	tok, c, err := a.Issue(auth.Grant{Subject: "alice", TTL: time.Hour, Docs: map[string]auth.Perm{d1.URL(): auth.Write, string(d2): auth.Read}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" || c.Subject != "alice" {
		t.Fatalf("claims %+v", c)
	}
	v, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if v.ID != c.ID || v.Subject != "alice" || !v.Expires.Equal(c.Expires) {
		t.Fatalf("verified %+v, issued %+v", v, c)
	}
	other := crdt.NewDocumentID()
	for _, tc := range []struct {
		doc         crdt.DocumentID
		read, write bool
	}{{d1, true, true}, {d2, true, false}, {other, false, false}} {
		if v.CanRead(tc.doc) != tc.read || v.CanWrite(tc.doc) != tc.write {
			t.Errorf("%s: read %v write %v", tc.doc, v.CanRead(tc.doc), v.CanWrite(tc.doc))
		}
	}
	if v.AllDocs() != auth.None || v.Allows(d1, auth.Admin) {
		t.Error("token grants more than asked")
	}

	// "*" raises every document; a document's own entry can raise it further.
	tok, _, err = a.Issue(auth.Grant{Subject: "ops", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Read, string(d1): auth.Admin}})
	if err != nil {
		t.Fatal(err)
	}
	v, err = a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !v.CanRead(other) || v.CanWrite(other) || v.Perm(d1) != auth.Admin || v.AllDocs() != auth.Read {
		t.Fatalf("wildcard claims wrong: %+v", v.Docs)
	}
}

func TestIssueRejectsBadGrants(t *testing.T) {
	a := newAuthority(t, nil)
	for name, g := range map[string]auth.Grant{
		"no ttl":    {Docs: map[string]auth.Perm{"*": auth.Read}},
		"no docs":   {TTL: time.Hour},
		"bad doc":   {TTL: time.Hour, Docs: map[string]auth.Perm{"nope": auth.Read}},
		"none perm": {TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.None}},
		"huge perm": {TTL: time.Hour, Docs: map[string]auth.Perm{"*": 9}},
		"doc@heads": {TTL: time.Hour, Docs: map[string]auth.Perm{crdt.NewDocumentID().URL() + "#" + crdt.Hash{1}.Base58(): auth.Read}},
	} {
		if _, _, err := a.Issue(g); !errors.Is(err, auth.ErrInvalidGrant) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// sign makes an HS256 JWT by hand, as any other issuer would.
func sign(t *testing.T, key []byte, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + enc.EncodeToString(m.Sum(nil))
}

func TestVerifyRefuses(t *testing.T) {
	a := newAuthority(t, nil)
	past := newAuthority(t, func() time.Time { return time.Now().Add(-2 * time.Hour) })
	expired, _, err := past.Issue(auth.Grant{Subject: "x", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Read}})
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := a.Issue(auth.Grant{Subject: "x", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Read}})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := otherKey.Issue(auth.Grant{Subject: "x", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Admin}})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	hs := `{"alg":"HS256","typ":"JWT"}`
	cases := map[string]struct {
		tok  string
		want error
	}{
		"empty":         {"", auth.ErrNoToken},
		"garbage":       {"not.a.jwt", auth.ErrInvalidToken},
		"bad signature": {foreign, auth.ErrInvalidToken},
		"tampered":      {good[:len(good)-2] + "AA", auth.ErrInvalidToken},
		"expired":       {expired, auth.ErrExpired},
		"alg none":      {sign(t, secret, `{"alg":"none"}`, `{"jti":"a","exp":`+itoa(exp)+`,"docs":{"*":"admin"}}`), auth.ErrInvalidToken},
		"HS512":         {sign(t, secret, `{"alg":"HS512"}`, `{"jti":"a","exp":`+itoa(exp)+`}`), auth.ErrInvalidToken},
		"no exp":        {sign(t, secret, hs, `{"jti":"a","docs":{"*":"read"}}`), auth.ErrInvalidToken},
		"no jti":        {sign(t, secret, hs, `{"exp":`+itoa(exp)+`,"docs":{"*":"read"}}`), auth.ErrInvalidToken},
		"bad perm":      {sign(t, secret, hs, `{"jti":"a","exp":`+itoa(exp)+`,"docs":{"*":"root"}}`), auth.ErrInvalidToken},
		"bad doc key":   {sign(t, secret, hs, `{"jti":"a","exp":`+itoa(exp)+`,"docs":{"x y":"read"}}`), auth.ErrInvalidToken},
		"docs not map":  {sign(t, secret, hs, `{"jti":"a","exp":`+itoa(exp)+`,"docs":["*"]}`), auth.ErrInvalidToken},
		"not yet valid": {sign(t, secret, hs, `{"jti":"a","exp":`+itoa(exp)+`,"nbf":`+itoa(exp-60)+`}`), auth.ErrInvalidToken},
	}
	for name, tc := range cases {
		if _, err := a.Verify(tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
	// A token made by another issuer with the same secret is accepted.
	c, err := a.Verify(sign(t, secret, hs, `{"sub":"job","jti":"j1","exp":`+itoa(exp)+`,"docs":{"*":"write"}}`))
	if err != nil || c.Subject != "job" || c.AllDocs() != auth.Write {
		t.Fatalf("foreign-issued token: %+v, %v", c, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRevoke(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	a := newAuthority(t, clock)
	tok, c, err := a.Issue(auth.Grant{Subject: "x", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Read}})
	if err != nil {
		t.Fatal(err)
	}
	a.Revoke(c.ID, c.Expires)
	a.Revoke("", time.Time{}) // ignored
	if _, err := a.Verify(tok); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	a.Revoke("forever", time.Time{})
	a.Revoke("forever", now.Add(time.Minute)) // does not shorten "for ever"
	if got := a.Revocations(); len(got) != 2 || got[0].ID != c.ID || !got[0].Until.Equal(c.Expires) || got[1].ID != "forever" || !got[1].Until.IsZero() {
		t.Fatalf("revocations %+v", got)
	}
	// Entries past their until are forgotten at the next Revoke.
	now = now.Add(2 * time.Hour)
	a.Revoke("later", time.Time{})
	if a.IsRevoked(c.ID) || !a.IsRevoked("forever") || !a.IsRevoked("later") {
		t.Fatalf("after pruning: %+v", a.Revocations())
	}
}

func TestPermText(t *testing.T) {
	for _, p := range []auth.Perm{auth.Read, auth.Write, auth.Admin} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q auth.Perm
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Fatalf("%v round trip: %v %v", p, q, err)
		}
	}
	if _, err := auth.None.MarshalText(); err == nil {
		t.Fatal("None marshalled")
	}
	var q auth.Perm
	if err := q.UnmarshalText([]byte("root")); err == nil {
		t.Fatal("root parsed")
	}
	if auth.None.String() != "none" {
		t.Fatal(auth.None.String())
	}
}
