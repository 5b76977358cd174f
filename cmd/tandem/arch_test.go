package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tandemsync/tandem"

// deps lists the packages pkg depends on (transitively), via go list.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	var ds []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && l != module+"/"+pkg {
			ds = append(ds, l)
		}
	}
	return ds
}

// The import directions of DESIGN.md: cmd → server → repo → crdt;
// repo → persistence, transport (interfaces only); adapters import only
// their interface package and libraries; crdt only automerge-go.
func TestImportDirections(t *testing.T) {
	rules := []struct {
		pkg     string
		allowed []string // module packages it may depend on
		thirdOK []string // third-party prefixes it may depend on ("" = any)
	}{
		{"crdt", nil, []string{"github.com/automerge/automerge-go"}},
		{"persistence", nil, []string{}},
		{"persistence/memory", []string{"persistence"}, []string{}},
		{"persistence/badger", []string{"persistence"}, []string{""}},
		{"transport", nil, []string{"github.com/fxamacker/cbor", "github.com/x448/float16"}},
		{"transport/ws", []string{"transport"}, []string{"github.com/fxamacker/cbor", "github.com/x448/float16", "github.com/gorilla/websocket"}},
		{"repo", []string{"crdt", "persistence", "transport"}, []string{"github.com/automerge/automerge-go", "github.com/fxamacker/cbor", "github.com/x448/float16"}},
		{"auth", []string{"crdt"}, []string{"github.com/automerge/automerge-go", "github.com/golang-jwt/jwt"}},
		{"server", []string{"crdt", "persistence", "transport", "transport/ws", "repo", "auth"}, []string{""}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			if rest, ok := strings.CutPrefix(d, module+"/"); ok {
				allowed := false
				for _, a := range r.allowed {
					if rest == a {
						allowed = true
					}
				}
				if !allowed {
					t.Errorf("%s must not import %s", r.pkg, rest)
				}
				continue
			}
			ok := false
			for _, p := range r.thirdOK {
				if p == "" || strings.HasPrefix(d, p) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s must not depend on %s", r.pkg, d)
			}
		}
	}
	// Nothing imports cmd or bench.
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for _, imp := range f[min(1, len(f)):] {
			if strings.HasPrefix(imp, module+"/cmd") || strings.HasPrefix(imp, module+"/bench") {
				t.Errorf("%s imports %s", f[0], imp)
			}
		}
	}
}
