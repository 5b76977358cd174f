package crdt

import (
	"reflect"
	"testing"
)

func TestChangedPaths(t *testing.T) {
	tests := []struct {
		name          string
		before, after string
		want          []string
	}{
		{"equal", `{"a":1,"b":[1,{"c":2}]}`, `{"a":1,"b":[1,{"c":2}]}`, nil},
		{"numbers by value", `{"a":1}`, `{"a":1.0}`, nil},
		{"changed leaf", `{"a":1,"b":{"c":2,"d":3}}`, `{"a":1,"b":{"c":5,"d":3}}`, []string{"/b/c"}},
		{"added key", `{"a":1}`, `{"a":1,"n":{"deep":[1]}}`, []string{"/n"}},
		{"removed key", `{"a":1,"n":{"deep":[1]}}`, `{"a":1}`, []string{"/n"}},
		{"type change", `{"a":{"x":1}}`, `{"a":[1]}`, []string{"/a"}},
		{"scalar to map", `{"a":1}`, `{"a":{"x":1}}`, []string{"/a"}},
		{"null vs missing", `{"a":null}`, `{}`, []string{"/a"}},
		{"string change", `{"s":"x"}`, `{"s":"y"}`, []string{"/s"}},
		{"bool vs number", `{"s":true}`, `{"s":1}`, []string{"/s"}},
		{"list grow", `{"l":[1,2]}`, `{"l":[1,2,3,4]}`, []string{"/l/2", "/l/3"}},
		{"list shrink", `{"l":[1,2,3]}`, `{"l":[1]}`, []string{"/l/1", "/l/2"}},
		{"list element", `{"l":[{"v":1},{"v":2}]}`, `{"l":[{"v":1},{"v":3}]}`, []string{"/l/1/v"}},
		{"list insert front", `{"l":[1,2]}`, `{"l":[0,1,2]}`, []string{"/l/0", "/l/1", "/l/2"}},
		{"escaping", `{"a/b":{"c~d":1}}`, `{"a/b":{"c~d":2}}`, []string{"/a~1b/c~0d"}},
		{"sorted", `{"z":1,"a":1,"m":1}`, `{"z":2,"a":2,"m":2}`, []string{"/a", "/m", "/z"}},
		{"root replaced", `{"a":1}`, `[1]`, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a, b any
			decAny(t, tt.before, &a)
			decAny(t, tt.after, &b)
			got := ChangedPaths(normalizeT(t, a), normalizeT(t, b))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ChangedPaths = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestChangedPathsOfMerge(t *testing.T) {
	a := mustFromJSON(t, `{"widgets":[{"id":"w1","value":1},{"id":"w2","value":2}],"title":"t"}`)
	b, _ := a.Fork()
	_ = b.Set("/widgets/1/value", 20)
	mustCommit(t, b, "")
	before, _ := a.Get("")
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	after, _ := a.Get("")
	if got := ChangedPaths(before, after); !reflect.DeepEqual(got, []string{"/widgets/1/value"}) {
		t.Errorf("ChangedPaths = %q", got)
	}
}
