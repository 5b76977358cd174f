package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// nodeInterop returns the interop/js directory when its npm packages are
// installed. make test installs them and sets TANDEM_REQUIRE_NODE=1, so a
// missing install fails there instead of skipping.
func nodeInterop(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../interop/js")
	if err != nil {
		t.Fatal(err)
	}
	_, errNode := exec.LookPath("node")
	_, errMods := os.Stat(filepath.Join(dir, "node_modules", "@automerge", "automerge"))
	if errNode != nil || errMods != nil {
		if os.Getenv("TANDEM_REQUIRE_NODE") != "" {
			t.Fatalf("node or interop/js/node_modules missing (run make test): %v %v", errNode, errMods)
		}
		t.Skip("node or interop/js/node_modules missing; run `make test`")
	}
	return dir
}

// A document exported by Tandem loads in JavaScript Automerge 3 with the
// same content.
func TestExportLoadsInJavaScript(t *testing.T) {
	js := nodeInterop(t)
	dir := t.TempDir()
	content := `{"title":"Ops dashboard","widgets":{"cpu":{"kind":"gauge","value":42},"mem":{"kind":"gauge","value":63.5}},"tags":["prod","eu"],"enabled":true,"note":null,"big":9007199254740991}`
	url := mustCLI(t, "doc", "new", "--data", dir, "--json", content)
	mustCLI(t, "doc", "set", "--data", dir, url, "/widgets/cpu/value", "43")
	mustCLI(t, "doc", "set", "--data", dir, url, "/tags/-", `"ünïcode ✓"`)
	file := filepath.Join(t.TempDir(), "tandem.automerge")
	mustCLI(t, "doc", "export", "--data", dir, url, file)
	expected := filepath.Join(t.TempDir(), "expected.json")
	if err := os.WriteFile(expected, []byte(mustCLI(t, "doc", "get", "--data", dir, url)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(js, "load-check.mjs"), file, expected)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("JavaScript Automerge 3 rejected Tandem's export: %v\n%s", err, out)
	}
}
