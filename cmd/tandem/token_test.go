package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/transport/ws"
)

func writeSecret(t *testing.T) (string, []byte) {
	t.Helper()
	secret := []byte("cmd-test-secret-0123456789abcdefghij")
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, append(append([]byte(nil), secret...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, secret
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestTokenCommand(t *testing.T) {
	secretFile, secret := writeSecret(t)
	a, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	id := crdt.NewDocumentID()
	code, out, errs := runCmd("token", "--secret-file", secretFile, "--sub", "dash", "--doc", id.URL(), "--perm", "write", "--ttl", "10m")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	c, err := a.Verify(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "dash" || !c.CanWrite(id) || c.Allows(id, auth.Admin) || c.CanRead(crdt.NewDocumentID()) {
		t.Fatalf("claims %+v", c)
	}
	if d := time.Until(c.Expires); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("expires in %v", d)
	}

	code, out, errs = runCmd("token", "--secret-file", secretFile, "--sub", "ops", "--doc", "*", "--perm", "admin", "--jti", "ops-1", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var js struct{ Token, JTI, Sub, Exp string }
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.JTI != "ops-1" || js.Sub != "ops" {
		t.Fatalf("--json printed %q (%v)", out, err)
	}
	if c, err := a.Verify(js.Token); err != nil || c.AllDocs() != auth.Admin {
		t.Fatalf("json token: %+v %v", c, err)
	}

	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("tooshort"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no secret":    {"token", "--sub", "x", "--doc", "*"},
		"no sub":       {"token", "--secret-file", secretFile, "--doc", "*"},
		"no doc":       {"token", "--secret-file", secretFile, "--sub", "x"},
		"bad doc":      {"token", "--secret-file", secretFile, "--sub", "x", "--doc", "nope"},
		"bad perm":     {"token", "--secret-file", secretFile, "--sub", "x", "--doc", "*", "--perm", "root"},
		"bad ttl":      {"token", "--secret-file", secretFile, "--sub", "x", "--doc", "*", "--ttl", "-1h"},
		"extra args":   {"token", "--secret-file", secretFile, "--sub", "x", "--doc", "*", "extra"},
		"unknown flag": {"token", "--bogus"},
	} {
		if code, out, errs := runCmd(args...); code != exitUsage || out != "" || errs == "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out, errs)
		}
	}
	for name, args := range map[string][]string{
		"missing secret file": {"token", "--secret-file", filepath.Join(t.TempDir(), "none"), "--sub", "x", "--doc", "*"},
		"weak secret":         {"token", "--secret-file", short, "--sub", "x", "--doc", "*"},
	} {
		if code, out, errs := runCmd(args...); code != exitErr || out != "" || errs == "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out, errs)
		}
	}
	if code, _, _ := runCmd("token", "--help"); code != exitOK {
		t.Errorf("--help: exit %d", code)
	}
}

// tandem serve --auth-secret-file: tokens from tandem token open the REST
// API and the sync endpoint; without one both are refused.
func TestServeWithAuth(t *testing.T) {
	secretFile, _ := writeSecret(t)
	sp := startServe(t, t.TempDir(), "127.0.0.1:0", "--auth-secret-file", secretFile, "--allowed-origins", "https://dash.example.com")
	if strings.Contains(sp.stderr.String(), "authentication is OFF") {
		t.Fatalf("warned about open mode with a secret:\n%s", sp.stderr.String())
	}
	code, tok, errs := runCmd("token", "--secret-file", secretFile, "--sub", "script", "--doc", "*", "--perm", "write")
	if code != exitOK {
		t.Fatal(errs)
	}
	tok = strings.TrimSpace(tok)
	base := "http://" + sp.addr
	post := func(token string) *http.Response {
		req, _ := http.NewRequest("POST", base+"/api/docs", strings.NewReader(`{"a":1}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := post(""); resp.StatusCode != 401 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	if resp := post(tok); resp.StatusCode != 201 {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
	ctx := testCtx(t)
	if c, err := ws.Dial(ctx, sp.url(), ws.Config{}); err == nil {
		_ = c.Close(nil)
		t.Fatal("sync without a token accepted")
	}
	c, err := ws.Dial(ctx, sp.url()+"?token="+tok, ws.Config{})
	if err != nil {
		t.Fatalf("sync with a token: %v", err)
	}
	_ = c.Close(nil)
	// the origin allow-list
	upgrade := func(origin string) int {
		req, _ := http.NewRequest("GET", base+"/sync?token="+tok, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := upgrade("https://evil.example.com"); code != http.StatusForbidden {
		t.Fatalf("foreign origin: %d", code)
	}
	if code := upgrade("https://dash.example.com"); code != http.StatusSwitchingProtocols {
		t.Fatalf("allowed origin: %d", code)
	}
	if err := sp.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestServeOpenWarns(t *testing.T) {
	sp := startServe(t, t.TempDir(), "127.0.0.1:0")
	eventually(t, "open-mode warning", func() bool { return strings.Contains(sp.stderr.String(), "authentication is OFF") })
	if code, _, errs := runCmd("serve", "--auth-secret-file", filepath.Join(t.TempDir(), "missing"), "--addr", "127.0.0.1:0", "--data", t.TempDir()); code != exitErr || !strings.Contains(errs, "secret") {
		t.Fatalf("missing secret file: exit %d %s", code, errs)
	}
}
