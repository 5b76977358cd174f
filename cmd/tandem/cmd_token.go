package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tandemsync/tandem/auth"
)

// docList is a repeatable --doc flag.
type docList []string

func (d *docList) String() string     { return strings.Join(*d, ",") }
func (d *docList) Set(v string) error { *d = append(*d, v); return nil }

// runToken prints a signed access token for tandem serve --auth-secret-file.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secretFile := fs.String("secret-file", "", "the server's secret file (--auth-secret-file). Required")
	sub := fs.String("sub", "", "subject: who the token is for (shown in the server's logs). Required")
	var docs docList
	fs.Var(&docs, "doc", "automerge URL, document id, or '*' for every document; repeat for several. Required")
	perm := fs.String("perm", "read", "permission on those documents: read, write or admin")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	jti := fs.String("jti", "", "token id, what revocation names (default: random)")
	asJSON := fs.Bool("json", false, "print {token, jti, sub, exp, docs} as JSON instead of the bare token")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem token --secret-file FILE --sub NAME --doc URL|'*' [--doc ...] [--perm read|write|admin] [--ttl 1h]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: token: unexpected arguments %q", errUsage, pos)
	}
	switch {
	case *secretFile == "":
		return fmt.Errorf("%w: token: --secret-file is required", errUsage)
	case *sub == "":
		return fmt.Errorf("%w: token: --sub is required", errUsage)
	case len(docs) == 0:
		return fmt.Errorf("%w: token: --doc is required (an automerge URL, or '*' for every document)", errUsage)
	case *ttl <= 0:
		return fmt.Errorf("%w: token: --ttl must be positive", errUsage)
	}
	p, err := auth.ParsePerm(*perm)
	if err != nil {
		return fmt.Errorf("%w: token: --perm: %v", errUsage, err)
	}
	grant := auth.Grant{Subject: *sub, TTL: *ttl, ID: *jti, Docs: make(map[string]auth.Perm, len(docs))}
	for _, d := range docs {
		if _, err := auth.NormalizeDocKey(d); err != nil {
			return fmt.Errorf("%w: token: --doc %q: %v", errUsage, d, err)
		}
		grant.Docs[d] = p
	}
	secret, err := auth.LoadSecret(*secretFile)
	if err != nil {
		return err
	}
	a, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		return err
	}
	tok, c, err := a.Issue(grant)
	if err != nil {
		return err
	}
	if !*asJSON {
		_, err = fmt.Fprintln(stdout, tok)
		return err
	}
	out := map[string]any{"token": tok, "jti": c.ID, "sub": c.Subject, "exp": c.Expires.UTC().Format(time.RFC3339), "docs": c.Docs}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, string(b))
	return err
}
