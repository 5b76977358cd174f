package repo_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemsync/tandem/crdt"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/transport"
	"github.com/tandemsync/tandem/transport/ws"
)

// The crash test re-runs this test binary as a child that writes through
// the Repo; these variables switch it into child mode.
const (
	envCrashChild = "TANDEM_CRASH_CHILD_DIR"
	envCrashDoc   = "TANDEM_CRASH_CHILD_DOC"
	envCrashRound = "TANDEM_CRASH_CHILD_ROUND"
)

const (
	envClientChild = "TANDEM_CLIENT_CHILD_MODE" // write or push
	envClientDir   = "TANDEM_CLIENT_CHILD_DIR"
	envClientURL   = "TANDEM_CLIENT_CHILD_SERVER"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashChild); dir != "" {
		os.Exit(crashChild(dir, os.Getenv(envCrashDoc), os.Getenv(envCrashRound)))
	}
	if mode := os.Getenv(envClientChild); mode != "" {
		os.Exit(clientChild(mode, os.Getenv(envClientDir), os.Getenv(envClientURL)))
	}
	os.Exit(m.Run())
}

// clientChild is a client process. "write": create a document and make
// changes while the server is unreachable, printing "doc URL" and then
// "ok I" once each change is durable locally. "push": start again on the
// same store and print "synced" once the server confirmed everything.
func clientChild(mode, dir, serverURL string) int {
	ctx := context.Background()
	store, err := badgerstore.Open(badgerstore.DefaultConfig(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	r, err := repo.New(repo.Config{Store: store, Share: repo.ClientSharePolicy{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "repo:", err)
		return 3
	}
	conn := r.ConnectLoop(func(ctx context.Context) (transport.Conn, error) {
		return ws.Dial(ctx, serverURL, ws.Config{})
	}, repo.ReconnectConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	defer conn.Close()
	out := bufio.NewWriter(os.Stdout)
	switch mode {
	case "write":
		h, err := r.CreateJSON(ctx, []byte(`{"k":{}}`))
		if err != nil {
			fmt.Fprintln(os.Stderr, "create:", err)
			return 3
		}
		fmt.Fprintf(out, "doc %s\n", h.URL())
		out.Flush()
		for i := range 100000 {
			if _, err := h.Set(ctx, "/k/"+strconv.Itoa(i), i); err != nil {
				fmt.Fprintln(os.Stderr, "set:", err)
				return 3
			}
			fmt.Fprintf(out, "ok %d\n", i)
			out.Flush()
		}
	case "push":
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		r.WatchStatus(wctx, func(st repo.RepoStatus) {
			if st.State == repo.StateSynced && st.Unsynced == 0 && st.Pending == 0 {
				fmt.Fprintln(out, "synced")
				out.Flush()
				cancel()
			}
		})
	}
	return 0
}

// crashChild writes changes to one document and, for each, prints
// "ok ROUND I" only after the Repo says the change is durable. It also
// creates one new document per round and prints "new URL" once stored.
func crashChild(dir, docURL, round string) int {
	ctx := context.Background()
	store, err := badgerstore.Open(badgerstore.DefaultConfig(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	r, err := repo.New(repo.Config{Store: store, CompactMinBytes: 2 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "repo:", err)
		return 3
	}
	h, err := r.FindURL(ctx, docURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "find:", err)
		return 3
	}
	out := bufio.NewWriter(os.Stdout)
	nh, err := r.CreateJSON(ctx, []byte(`{"round":`+round+`}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, "create:", err)
		return 3
	}
	fmt.Fprintf(out, "new %s\n", nh.URL())
	out.Flush()
	for i := range 100000 {
		_, err := h.Change(ctx, func(d *crdt.Doc) error {
			if _, err := d.Get("/r" + round); err != nil {
				if err := d.Set("/r"+round, map[string]any{}); err != nil {
					return err
				}
			}
			return d.Set("/r"+round+"/"+strconv.Itoa(i%50), i)
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "change:", err)
			return 3
		}
		fmt.Fprintf(out, "ok %s %d\n", round, i)
		out.Flush()
	}
	return 0
}

func TestCrashSafetySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	ctx := ctxT(t)
	dir := t.TempDir()
	// Seed the document.
	s := openBadger(t, dir)
	r, err := repo.New(repo.Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.CreateJSON(ctx, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	docURL := h.URL()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	const rounds = 20
	acked := map[int]int{} // round -> last acknowledged i
	created := map[int]string{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range rounds {
		killAfter := 1 + rng.IntN(60)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashChild+"="+dir, envCrashDoc+"="+docURL, envCrashRound+"="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		acked[round] = -1
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "new":
				created[round] = f[1]
			case len(f) == 3 && f[0] == "ok":
				i, _ := strconv.Atoi(f[2])
				acked[round] = i
				n++
			}
			if n >= killAfter {
				break
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if n < killAfter {
			t.Fatalf("round %d: child stopped after %d acks: %s", round, n, stderr.String())
		}

		// Reopen and check every acknowledged change is there.
		s := openBadger(t, dir)
		r, err := repo.New(repo.Config{Store: s})
		if err != nil {
			t.Fatal(err)
		}
		h, err := r.FindURL(ctx, docURL)
		if err != nil {
			t.Fatal(err)
		}
		v, err := h.Get(ctx, "")
		if err != nil {
			t.Fatalf("round %d: document does not load: %v", round, err)
		}
		root := v.(map[string]any)
		for rd := 0; rd <= round; rd++ {
			last := acked[rd]
			if last < 0 {
				continue
			}
			m, _ := root["r"+strconv.Itoa(rd)].(map[string]any)
			// Each of the last 50 acknowledged values must be there (or
			// overwritten by a later write of the same round).
			for i := max(0, last-49); i <= last; i++ {
				got := fmt.Sprint(m[strconv.Itoa(i%50)])
				gi, _ := strconv.Atoi(got)
				if gi < i {
					t.Fatalf("round %d: change %d acknowledged but key %d holds %s", rd, i, i%50, got)
				}
			}
		}
		for rd, u := range created {
			if _, err := r.FindURL(ctx, u); err != nil {
				t.Fatalf("round %d: created document %s lost: %v", rd, u, err)
			}
		}
		if err := r.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClientKilledOfflineRestartsAndPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	ctx := ctxT(t)
	addr := freeAddr(t)
	url := "ws://" + addr + "/sync"
	dir := t.TempDir()

	// 1. Offline edits, then SIGKILL.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envClientChild+"=write", envClientDir+"="+dir, envClientURL+"="+url)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	docURL, acked := "", -1
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "doc" {
			docURL = f[1]
		}
		if len(f) == 2 && f[0] == "ok" {
			acked, _ = strconv.Atoi(f[1])
			if acked >= 24 {
				break
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if docURL == "" || acked < 24 {
		t.Fatalf("writer stopped early (doc %q, acked %d): %s", docURL, acked, stderr.String())
	}

	// 2. The server comes up; the restarted client pushes.
	srv := startLoopServer(t, t.TempDir(), addr)
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envClientChild+"=push", envClientDir+"="+dir, envClientURL+"="+url)
	var perr strings.Builder
	cmd.Stderr = &perr
	b, err := cmd.Output()
	if err != nil || !strings.Contains(string(b), "synced") {
		t.Fatalf("push run: %v, printed %q\n%s", err, b, perr.String())
	}

	// 3. Nothing lost, nothing duplicated.
	h, err := srv.r.FindURL(ctx, docURL)
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.Get(ctx, "/k")
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	for i := 0; i <= acked; i++ {
		if fmt.Sprint(m[strconv.Itoa(i)]) != strconv.Itoa(i) {
			t.Fatalf("acknowledged change %d missing on the server: %v", i, m)
		}
	}
	hist, err := h.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range hist {
		k := c.Actor + "/" + strconv.FormatUint(c.Seq, 10)
		if seen[k] {
			t.Fatalf("duplicate change %s", k)
		}
		seen[k] = true
	}
	if len(hist) != len(m)+1 {
		t.Fatalf("%d changes for %d keys: duplicates or strays", len(hist), len(m))
	}
}
