package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsync/tandem/auth"
	"github.com/tandemsync/tandem/crdt"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
)

var apiBenchSecret = []byte("bench-secret-0123456789abcdef-0123456789")

// apiBenchServer is tandem's HTTP front on 127.0.0.1:0 over Badger.
type apiBenchServer struct {
	base   string
	repo   *repo.Repo
	auth   *auth.Authority
	client *http.Client
	stop   func()
}

func startAPIBenchServer(b *testing.B, withAuth bool) *apiBenchServer {
	b.Helper()
	store, err := badgerstore.Open(badgerstore.DefaultConfig(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.New(repo.Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	cfg := server.Config{Repo: r}
	var a *auth.Authority
	if withAuth {
		if a, err = auth.New(auth.Config{Secret: apiBenchSecret}); err != nil {
			b.Fatal(err)
		}
		cfg.Auth = a
	}
	srv, err := server.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	s := &apiBenchServer{base: "http://" + ln.Addr().String(), repo: r, auth: a, client: &http.Client{Transport: tr}}
	s.stop = func() {
		cancel()
		<-done
		tr.CloseIdleConnections()
		_ = r.Close(context.Background())
		_ = store.Close()
	}
	return s
}

func (s *apiBenchServer) token(b *testing.B) string {
	if s.auth == nil {
		return ""
	}
	tok, _, err := s.auth.Issue(auth.Grant{Subject: "bench", TTL: time.Hour, Docs: map[string]auth.Perm{"*": auth.Write}})
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func (s *apiBenchServer) patch(id crdt.DocumentID, token string, body []byte) error {
	req, err := http.NewRequest("PATCH", s.base+"/api/docs/"+string(id), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json-patch+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PATCH: %s", resp.Status)
	}
	return nil
}

func apiBenchDashboard(widgets int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"widgets":{`)
	for i := range widgets {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `"w%d":{"kind":"gauge","value":0}`, i)
	}
	buf.WriteString(`}}`)
	return buf.Bytes()
}

// BenchmarkRESTPatch: JSON Patches (one widget value each) through PATCH
// /api/docs/{id}, each durable in Badger before the answer; one client in
// series, and 16 clients on 16 documents. With and without a token (the
// difference is the per-request cost of auth: verifying an HS256 JWT).
func BenchmarkRESTPatch(b *testing.B) {
	for _, withAuth := range []bool{false, true} {
		name := "open"
		if withAuth {
			name = "auth"
		}
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d", name, clients), func(b *testing.B) {
				benchRESTPatch(b, withAuth, clients)
			})
		}
	}
}

func benchRESTPatch(b *testing.B, withAuth bool, clients int) {
	s := startAPIBenchServer(b, withAuth)
	defer s.stop()
	tok := s.token(b)
	ctx := context.Background()
	ids := make([]crdt.DocumentID, clients)
	for i := range ids {
		h, err := s.repo.CreateJSON(ctx, apiBenchDashboard(20))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = h.ID()
	}
	var next atomic.Int64
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	if clients == 1 {
		for i := range b.N {
			body := fmt.Appendf(nil, `[{"op":"replace","path":"/widgets/w%d/value","value":%d}]`, i%20, i)
			if err := s.patch(ids[0], tok, body); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism((clients + 1) / 2) // GOMAXPROCS × this goroutines
		b.RunParallel(func(pb *testing.PB) {
			id := ids[int(next.Add(1)-1)%len(ids)]
			i := 0
			for pb.Next() {
				i++
				body := fmt.Appendf(nil, `[{"op":"replace","path":"/widgets/w%d/value","value":%d}]`, i%20, i)
				if err := s.patch(id, tok, body); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	el := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "patches/s")
}

// BenchmarkAuthPerChange: what auth costs. A WebSocket peer's token is
// verified once, when it connects; after that each change it sends costs
// one permission lookup (CanWrite). A REST request verifies its token each
// time (Verify).
func BenchmarkAuthPerChange(b *testing.B) {
	a, err := auth.New(auth.Config{Secret: apiBenchSecret})
	if err != nil {
		b.Fatal(err)
	}
	doc := crdt.NewDocumentID()
	tok, c, err := a.Issue(auth.Grant{Subject: "bench", TTL: time.Hour, Docs: map[string]auth.Perm{string(doc): auth.Write, "*": auth.Read}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := a.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CanWrite", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if !c.CanWrite(doc) {
				b.Fatal("denied")
			}
		}
	})
}
