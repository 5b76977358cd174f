package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemsync/tandem/transport"
)

// startServeEnv starts tandem serve with extra environment variables and
// returns it with its admin address ("" without --admin-addr).
func startServeEnv(t *testing.T, env []string, args ...string) (*serverProc, string) {
	t.Helper()
	cmd := exec.Command(tandemBin(t), append([]string{"serve"}, args...)...)
	cmd.Env = append(withoutTandemEnv(os.Environ()), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sp := &serverProc{t: t, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = sp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wantAdmin := false
	for _, a := range args {
		if a == "--admin-addr" {
			wantAdmin = true
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, "TANDEM_ADMIN_ADDR=") {
			wantAdmin = true
		}
	}
	type line struct{ admin, addr string }
	lines := make(chan line, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				lines <- line{addr: a}
			}
			if a, ok := strings.CutPrefix(sc.Text(), "admin listening on "); ok {
				lines <- line{admin: a}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { sp.exited <- cmd.Wait() }()
	t.Cleanup(func() { sp.kill() })
	admin := ""
	timeout := time.After(60 * time.Second)
	for sp.addr == "" || (wantAdmin && admin == "") {
		select {
		case l := <-lines:
			if l.addr != "" {
				sp.addr = l.addr
			} else {
				admin = l.admin
			}
		case err := <-sp.exited:
			t.Fatalf("tandem serve exited: %v\n%s", err, sp.stderr.String())
		case <-timeout:
			t.Fatalf("tandem serve did not start:\n%s", sp.stderr.String())
		}
	}
	return sp, admin
}

func withoutTandemEnv(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "TANDEM_") {
			out = append(out, e)
		}
	}
	return out
}

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key
// into dir and returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tandem test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func getStatus(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
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

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	sp, _ := startServeEnv(t, nil, "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	if code, body := getStatus(t, client, "https://"+sp.addr+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Fatalf("https /healthz: %d %s", code, body)
	}
	// A client that does not trust the certificate is refused.
	if _, err := http.Get("https://" + sp.addr + "/healthz"); err == nil {
		t.Fatal("an untrusting client got through")
	}
	// Plain HTTP on the TLS port does not work.
	if resp, err := http.Get("http://" + sp.addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200 on the TLS port")
		}
	}

	// WSS: join is answered by peer.
	ctx := testCtx(t)
	d := websocket.Dialer{TLSClientConfig: tlsCfg, HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, "wss://"+sp.addr+"/sync", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	resp.Body.Close()
	defer conn.Close()
	join, err := transport.Encode(transport.Message{Type: transport.TypeJoin, SenderID: "tls-client", SupportedProtocolVersions: []string{"1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteMessage(websocket.BinaryMessage, join); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read peer: %v", err)
	}
	m, err := transport.Decode(data)
	if err != nil || m.Type != transport.TypePeer || m.TargetID != "tls-client" {
		t.Fatalf("join answered %+v, %v", m, err)
	}
	if !strings.Contains(sp.stderr.String(), "wss://") {
		t.Errorf("start-up log does not give the wss URL:\n%s", sp.stderr.String())
	}
}

func TestServeTLSFlagsGoTogether(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	for _, args := range [][]string{
		{"--tls-cert", certFile},
		{"--tls-key", keyFile},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data")}, args...), nil, io.Discard, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), "--tls-cert and --tls-key") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	// Unreadable files are a clear error, not a usage error.
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--tls-cert", keyFile, "--tls-key", certFile}, nil, io.Discard, &stderr)
	if code != exitErr || !strings.Contains(stderr.String(), "TLS certificate") {
		t.Errorf("swapped files: exit %d, stderr %q", code, stderr.String())
	}
}

func TestServeAdminAddr(t *testing.T) {
	dir := t.TempDir()
	sp, admin := startServeEnv(t, nil, "--addr", "127.0.0.1:0", "--data", dir, "--admin-addr", "127.0.0.1:0")
	if code, body := getStatus(t, http.DefaultClient, "http://"+admin+"/metrics"); code != http.StatusOK || !strings.Contains(body, "tandem_connections") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("admin /metrics: %d %.300s", code, body)
	}
	if code, _ := getStatus(t, http.DefaultClient, "http://"+admin+"/debug/pprof/"); code != http.StatusOK {
		t.Fatalf("admin pprof: %d", code)
	}
	if code, body := getStatus(t, http.DefaultClient, "http://"+sp.addr+"/metrics"); code != http.StatusOK || !strings.Contains(body, "tandem_documents_in_memory") {
		t.Fatalf("main /metrics: %d %.300s", code, body)
	}
	if code, _ := getStatus(t, http.DefaultClient, "http://"+sp.addr+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("pprof on the main listener: %d", code)
	}
	if err := sp.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, sp.stderr.String())
	}
}

func TestServeEnv(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("env-secret-0123456789abcdef-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"TANDEM_ADDR=127.0.0.1:0",
		"TANDEM_DATA=" + filepath.Join(dir, "data"),
		"TANDEM_AUTH_SECRET_FILE=" + secret,
		"TANDEM_ADMIN_ADDR=127.0.0.1:0",
		"TANDEM_LOG_LEVEL=bogus", // overridden by the flag below
	}
	sp, admin := startServeEnv(t, env, "--log-level", "debug")
	if admin == "" {
		t.Fatal("TANDEM_ADMIN_ADDR was not applied")
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatalf("TANDEM_DATA was not applied: %v", err)
	}
	// TANDEM_AUTH_SECRET_FILE turned auth on.
	if code, _ := getStatus(t, http.DefaultClient, "http://"+sp.addr+"/api/docs"); code != http.StatusUnauthorized {
		t.Fatalf("GET /api/docs without token: %d, want 401", code)
	}
	// It started at all, so --log-level beat the invalid TANDEM_LOG_LEVEL.
	if err := sp.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, sp.stderr.String())
	}
}

func TestServeEnvInvalid(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ key, value, want string }{
		{"TANDEM_RATE", "fast", "TANDEM_RATE"},
		{"TANDEM_HANDSHAKE_TIMEOUT", "10", "TANDEM_HANDSHAKE_TIMEOUT"},
		{"TANDEM_MAX_BODY_SIZE", "-1", "must be positive"},
		{"TANDEM_LOG_LEVEL", "loud", "--log-level"},
	} {
		t.Run(c.key, func(t *testing.T) {
			t.Setenv(c.key, c.value)
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data")}, nil, io.Discard, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want usage error mentioning %q", code, stderr.String(), c.want)
			}
		})
	}
	// The flag wins over an invalid environment value too.
	t.Setenv("TANDEM_RATE", "fast")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--rate", "10", "--max-body-size", "0", "--data", filepath.Join(dir, "data")}, nil, io.Discard, &stderr)
	if code != exitUsage || strings.Contains(stderr.String(), "TANDEM_RATE") {
		t.Errorf("flag did not win over TANDEM_RATE: exit %d, stderr %q", code, stderr.String())
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{"addr": "TANDEM_ADDR", "auth-secret-file": "TANDEM_AUTH_SECRET_FILE", "max-docs-per-conn": "TANDEM_MAX_DOCS_PER_CONN"} {
		if got := envName("TANDEM_", flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}
