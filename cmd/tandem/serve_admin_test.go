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
)

// getWithToken is getStatus with Authorization: Bearer token.
func getWithToken(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// --metrics-token-file (here from TANDEM_METRICS_TOKEN_FILE): /metrics on
// --addr needs the token; on --admin-addr it stays open.
func TestServeMetricsToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "metrics-token")
	if err := os.WriteFile(file, []byte("  scrape-me-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, admin := startServeEnv(t, []string{"TANDEM_METRICS_TOKEN_FILE=" + file},
		"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--admin-addr", "127.0.0.1:0")
	public := "http://" + sp.addr + "/metrics"
	code, body := getStatus(t, http.DefaultClient, public)
	if code != http.StatusUnauthorized || !strings.Contains(body, `"status":401`) {
		t.Fatalf("public /metrics without a token: %d %.200s", code, body)
	}
	if code, _ := getWithToken(t, public, "scrape-me-wrong"); code != http.StatusUnauthorized {
		t.Fatalf("public /metrics with a wrong token: %d", code)
	}
	if code, body := getWithToken(t, public, "scrape-me-0123456789"); code != http.StatusOK || !strings.Contains(body, "tandem_connections") {
		t.Fatalf("public /metrics with the token (trimmed from the file): %d %.200s", code, body)
	}
	if code, body := getStatus(t, http.DefaultClient, "http://"+admin+"/metrics"); code != http.StatusOK || !strings.Contains(body, "tandem_connections") {
		t.Fatalf("admin /metrics without a token: %d %.200s", code, body)
	}
	if err := sp.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, sp.stderr.String())
	}
}

func TestServeMetricsTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file string
		code int
		want string
	}{
		{empty, exitUsage, "holds no token"},
		{filepath.Join(dir, "missing"), exitErr, "--metrics-token-file"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--metrics-token-file", c.file}, nil, io.Discard, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d mentioning %q", c.file, code, stderr.String(), c.code, c.want)
		}
	}
}

// A token revoked over the admin API stays revoked when tandem serve
// restarts on the same data directory.
func TestServeRevocationSurvivesRestart(t *testing.T) {
	secretFile, _ := writeSecret(t)
	dir := t.TempDir()
	mint := func(args ...string) (token, jti string) {
		t.Helper()
		code, out, errs := runCmd(append([]string{"token", "--secret-file", secretFile, "--doc", "*", "--json"}, args...)...)
		if code != exitOK {
			t.Fatal(errs)
		}
		var v struct{ Token, JTI string }
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Token == "" || v.JTI == "" {
			t.Fatalf("tandem token --json: %q, %v", out, err)
		}
		return v.Token, v.JTI
	}
	admin, _ := mint("--sub", "ops", "--perm", "admin")
	user, jti := mint("--sub", "user", "--perm", "read")
	sp := startServe(t, dir, "127.0.0.1:0", "--auth-secret-file", secretFile)
	docs := func(sp *serverProc) int {
		code, _ := getWithToken(t, "http://"+sp.addr+"/api/docs", user)
		return code
	}
	if code := docs(sp); code != http.StatusOK {
		t.Fatalf("before revocation: %d", code)
	}
	req, err := http.NewRequestWithContext(testCtx(t), "POST", "http://"+sp.addr+"/api/revocations", strings.NewReader(`{"jti":"`+jti+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if err := sp.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	sp = startServe(t, dir, "127.0.0.1:0", "--auth-secret-file", secretFile)
	if code := docs(sp); code != http.StatusUnauthorized {
		t.Fatalf("revoked token after a restart: %d, want 401", code)
	}
	if !strings.Contains(sp.stderr.String(), "token revocations loaded") {
		t.Fatalf("no log of the loaded revocations:\n%s", sp.stderr.String())
	}
}
