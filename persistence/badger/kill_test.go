package badger

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tandemsync/tandem/persistence/storetest"
)

const (
	killDirEnv   = "TANDEM_BADGER_KILL_DIR"
	killStageEnv = "TANDEM_BADGER_KILL_STAGE"
	killWriters  = 8
)

// TestKill9 runs writers in a child process that kills itself (SIGKILL,
// no cleanup) in the middle of a split Compact while other goroutines keep
// appending. Every append the child saw succeed must be in the reopened
// store, and the compacted document must load to the same content.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for stage := range 3 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
		cmd.Env = append(os.Environ(), killDirEnv+"="+dir, killStageEnv+"="+strconv.Itoa(stage))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("stage %d: child exited with %v, want killed\nstdout:\n%s\nstderr:\n%s", stage, err, out, stderr.String())
		}
		acked := map[string][]string{} // doc -> acknowledged lines
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if doc, line, ok := strings.Cut(sc.Text(), "\t"); ok && strings.HasPrefix(doc, "ack ") {
				acked[doc[4:]] = append(acked[doc[4:]], line)
			}
		}
		if len(acked["doc-0"]) == 0 {
			t.Fatalf("stage %d: child acknowledged nothing:\n%s", stage, out)
		}

		s := openT(t, testSizes(DefaultConfig(dir)))
		total := 0
		for doc, lines := range acked {
			r := mustLoad(t, s, doc)
			have := map[string]bool{}
			for _, l := range storetest.Content(r) {
				have[l] = true
			}
			for _, l := range lines {
				if !have[l] {
					t.Fatalf("stage %d: %s lost acknowledged change %q", stage, doc, l)
				}
			}
			total += len(lines)
		}
		if _, err := s.Sweep(bg); err != nil {
			t.Fatal(err)
		}
		t.Logf("stage %d: %d acknowledged appends in %d documents survived SIGKILL", stage, total, len(acked))
	}
}

// TestKill9Child is the child process of TestKill9; it does nothing in a
// normal test run.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv(killDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9")
	}
	stage, _ := strconv.Atoi(os.Getenv(killStageEnv))
	var outMu sync.Mutex
	acks := 0
	busy := make(chan struct{}) // closed after 200 acknowledged appends
	ack := func(doc, line string) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, "ack %s\t%s\n", doc, line) // unbuffered: reaches the pipe now
		if acks++; acks == 200 {
			close(busy)
		}
	}
	n := 0
	cfg := testSizes(DefaultConfig(dir))
	cfg.hooks = &testHooks{forceSplit: true, deleteBatch: 3, compact: func(string) error {
		if n == stage {
			p, _ := os.FindProcess(os.Getpid())
			_ = p.Kill()
			select {} // wait for the signal
		}
		n++
		return nil
	}}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendLine := func(doc string, i int) {
		line := fmt.Sprintf("%s change %d", doc, i)
		if _, err := s.Append(bg, doc, []byte(line+"\n"), nil); err != nil {
			t.Error(err)
			return
		}
		ack(doc, line)
	}
	// doc-0 gets 20 chunks; its snapshot covers the first 15.
	var snap []byte
	for i := 1; i <= 20; i++ {
		appendLine("doc-0", i)
		if i <= 15 {
			snap = append(snap, fmt.Sprintf("doc-0 change %d\n", i)...)
		}
	}
	for w := 1; w < killWriters; w++ {
		go func() {
			for i := 1; ; i++ {
				appendLine(fmt.Sprintf("doc-%d", w), i)
			}
		}()
	}
	<-busy // compact while the other writers are going
	if err := s.Compact(bg, "doc-0", snap, 15, nil); err != nil {
		t.Error(err)
	}
	t.Error("not killed")
}
