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
)

// The crash test re-runs this test binary as a child that writes through
// the Repo; these variables switch it into child mode.
const (
	envCrashChild = "TANDEM_CRASH_CHILD_DIR"
	envCrashDoc   = "TANDEM_CRASH_CHILD_DOC"
	envCrashRound = "TANDEM_CRASH_CHILD_ROUND"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashChild); dir != "" {
		os.Exit(crashChild(dir, os.Getenv(envCrashDoc), os.Getenv(envCrashRound)))
	}
	os.Exit(m.Run())
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
