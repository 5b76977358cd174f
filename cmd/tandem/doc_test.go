package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs one tandem command line in-process.
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("tandem %v: exit %d: %s", args, code, errs)
	}
	return strings.TrimSpace(out)
}

func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("output %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got %s, want %s", gb, wb)
	}
}

func TestDocRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	url := mustCLI(t, "doc", "new", "--data", dir, "--json", `{"widgets":{"cpu":{"value":0}},"tags":[]}`)
	if !strings.HasPrefix(url, "automerge:") {
		t.Fatalf("new printed %q", url)
	}
	mustCLI(t, "doc", "set", url, "/widgets/cpu/value", "42", "--data", dir)
	mustCLI(t, "doc", "set", "--data", dir, url, "/tags/-", `"prod"`)
	mustCLI(t, "doc", "set", "--data", dir, url, "/delta", "-5")
	mustCLI(t, "doc", "patch", "--data", dir, url, `[{"op":"test","path":"/widgets/cpu/value","value":42},{"op":"add","path":"/widgets/mem","value":{"value":1.5}}]`)
	mustCLI(t, "doc", "del", "--data", dir, url, "/delta")
	sameJSON(t, mustCLI(t, "doc", "get", "--data", dir, url), `{"widgets":{"cpu":{"value":42},"mem":{"value":1.5}},"tags":["prod"]}`)
	sameJSON(t, mustCLI(t, "doc", "get", "--data", dir, url, "/widgets/cpu"), `{"value":42}`)

	ls := mustCLI(t, "doc", "ls", "--data", dir)
	if !strings.Contains(ls, url) {
		t.Fatalf("ls: %s", ls)
	}
	hist := mustCLI(t, "doc", "history", "--json", "--data", dir, url)
	if n := len(strings.Split(hist, "\n")); n != 6 {
		t.Fatalf("history has %d lines, want 6:\n%s", n, hist)
	}

	// Export, import: same content under a new URL.
	file := filepath.Join(t.TempDir(), "doc.automerge")
	mustCLI(t, "doc", "export", "--data", dir, url, file)
	url2 := mustCLI(t, "doc", "import", "--data", dir, file)
	if url2 == url || !strings.HasPrefix(url2, "automerge:") {
		t.Fatalf("import printed %q", url2)
	}
	sameJSON(t, mustCLI(t, "doc", "get", "--data", dir, url2), mustCLI(t, "doc", "get", "--data", dir, url))
}

func TestImportJavaScriptFixture(t *testing.T) {
	dir := t.TempDir()
	url := mustCLI(t, "doc", "import", "--data", dir, "../../crdt/testdata/js-automerge3.automerge")
	want, err := os.ReadFile("../../crdt/testdata/js-automerge3.json")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, mustCLI(t, "doc", "get", "--data", dir, url), string(want))
}

func TestDocBadInputChangesNothing(t *testing.T) {
	dir := t.TempDir()
	url := mustCLI(t, "doc", "new", "--data", dir, "--json", `{"a":{"b":1},"l":[1]}`)
	snapshot := func() string {
		return mustCLI(t, "doc", "get", "--data", dir, url) + mustCLI(t, "doc", "history", "--json", "--data", dir, url) + mustCLI(t, "doc", "ls", "--json", "--data", dir)
	}
	before := snapshot()
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("not automerge at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := "automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB"
	cases := []struct {
		name string
		args []string
		want string // substring of stderr
	}{
		{"bad url", []string{"doc", "get", "automerge:xyz"}, "invalid"},
		{"bad checksum", []string{"doc", "get", "automerge:3ybZCR5J6TswAfXnMg85CH9kGuZC"}, "invalid"},
		{"missing doc", []string{"doc", "get", missing}, "not found"},
		{"set missing doc", []string{"doc", "set", missing, "/a", "1"}, "not found"},
		{"bad pointer", []string{"doc", "set", url, "a/b", "1"}, "pointer"},
		{"missing parent", []string{"doc", "set", url, "/x/y/z", "1"}, "not found"},
		{"invalid json", []string{"doc", "set", url, "/a/b", "{nope"}, "JSON"},
		{"unquoted string", []string{"doc", "set", url, "/a/b", "hello"}, "JSON"},
		{"del missing", []string{"doc", "del", url, "/nope"}, "not found"},
		{"list index out of range", []string{"doc", "set", url, "/l/7", "1"}, ""},
		{"failed patch test", []string{"doc", "patch", url, `[{"op":"replace","path":"/a/b","value":2},{"op":"test","path":"/a/b","value":3}]`}, "test"},
		{"invalid patch", []string{"doc", "patch", url, `[{"op":"frobnicate","path":"/a"}]`}, "patch"},
		{"patch not json", []string{"doc", "patch", url, `[{`}, ""},
		{"corrupt import", []string{"doc", "import", garbage}, "Automerge"},
		{"missing import file", []string{"doc", "import", filepath.Join(dir, "nope")}, "no such file"},
		{"new with non-object", []string{"doc", "new", "--json", `[1,2]`}, ""},
		{"new with bad json", []string{"doc", "new", "--json", `{`}, "JSON"},
		{"unknown command", []string{"doc", "frob"}, "unknown"},
		{"too many args", []string{"doc", "get", url, "/a", "extra"}, "arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append(c.args, "--data", dir)
			_, stderr, code := cli(t, "", args...)
			if code == 0 {
				t.Fatalf("exit 0 for %v", args)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "tandem: ") {
				t.Fatalf("stderr is not one clear line: %q", stderr)
			}
			if c.want != "" && !strings.Contains(strings.ToLower(stderr), strings.ToLower(c.want)) {
				t.Fatalf("stderr %q lacks %q", stderr, c.want)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("bad input changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

func TestHelp(t *testing.T) {
	out, _, code := cli(t, "", "--help")
	if code != 0 || !strings.Contains(out, "doc patch") || !strings.Contains(out, "serve") {
		t.Fatalf("--help: %d %s", code, out)
	}
	out, _, code = cli(t, "", "doc", "--help")
	if code != 0 || !strings.Contains(out, "history") {
		t.Fatalf("doc --help: %d %s", code, out)
	}
	_, errs, code := cli(t, "", "doc", "set", "--help")
	if code != 0 || !strings.Contains(errs, "POINTER") {
		t.Fatalf("doc set --help: %d %s", code, errs)
	}
	if _, _, code := cli(t, ""); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
}

func TestReadCommandOnMissingStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	_, stderr, code := cli(t, "", "doc", "ls", "--data", dir)
	if code == 0 || !strings.Contains(stderr, "no store") {
		t.Fatalf("ls on missing store: %d %q", code, stderr)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("ls created the store directory")
	}
}
