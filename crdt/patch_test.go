package crdt

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestApplyPatch(t *testing.T) {
	const start = `{"a":1,"l":[10,20,30],"m":{"k":"v","n":{"x":1}},"s":"str"}`
	tests := []struct {
		name    string
		patch   string
		want    string
		paths   []string
		wantErr error
	}{
		{"add key", `[{"op":"add","path":"/b","value":{"c":[1]}}]`,
			`{"a":1,"b":{"c":[1]},"l":[10,20,30],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/b"}, nil},
		{"add list insert", `[{"op":"add","path":"/l/1","value":15}]`,
			`{"a":1,"l":[10,15,20,30],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/l/1"}, nil},
		{"add list end", `[{"op":"add","path":"/l/-","value":40},{"op":"add","path":"/l/4","value":50}]`,
			`{"a":1,"l":[10,20,30,40,50],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/l/3", "/l/4"}, nil},
		{"add null", `[{"op":"add","path":"/z","value":null}]`,
			`{"a":1,"l":[10,20,30],"m":{"k":"v","n":{"x":1}},"s":"str","z":null}`, []string{"/z"}, nil},
		{"add root", `[{"op":"add","path":"","value":{"only":true}}]`, `{"only":true}`, []string{""}, nil},
		{"remove key", `[{"op":"remove","path":"/m/n"}]`,
			`{"a":1,"l":[10,20,30],"m":{"k":"v"},"s":"str"}`, []string{"/m/n"}, nil},
		{"remove index", `[{"op":"remove","path":"/l/0"}]`,
			`{"a":1,"l":[20,30],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/l/0"}, nil},
		{"replace", `[{"op":"replace","path":"/a","value":"one"},{"op":"replace","path":"/l/2","value":[3]}]`,
			`{"a":"one","l":[10,20,[3]],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/a", "/l/2"}, nil},
		{"replace root", `[{"op":"replace","path":"","value":{}}]`, `{}`, []string{""}, nil},
		{"move key", `[{"op":"move","from":"/m/n","path":"/n"}]`,
			`{"a":1,"l":[10,20,30],"m":{"k":"v"},"n":{"x":1},"s":"str"}`, []string{"/m/n", "/n"}, nil},
		{"move in list", `[{"op":"move","from":"/l/0","path":"/l/2"}]`,
			`{"a":1,"l":[20,30,10],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/l/0", "/l/2"}, nil},
		{"move onto itself", `[{"op":"move","from":"/a","path":"/a"}]`, start, nil, nil},
		{"copy", `[{"op":"copy","from":"/m","path":"/l/-"}]`,
			`{"a":1,"l":[10,20,30,{"k":"v","n":{"x":1}}],"m":{"k":"v","n":{"x":1}},"s":"str"}`, []string{"/l/3"}, nil},
		{"test ok", `[{"op":"test","path":"/m","value":{"n":{"x":1.0},"k":"v"}},{"op":"test","path":"/a","value":1}]`, start, nil, nil},
		{"test then write", `[{"op":"test","path":"/s","value":"str"},{"op":"replace","path":"/s","value":"new"}]`,
			`{"a":1,"l":[10,20,30],"m":{"k":"v","n":{"x":1}},"s":"new"}`, []string{"/s"}, nil},
		{"sequential semantics", `[{"op":"add","path":"/t","value":[]},{"op":"add","path":"/t/0","value":"x"},{"op":"copy","from":"/t/0","path":"/t/-"},{"op":"test","path":"/t","value":["x","x"]}]`,
			`{"a":1,"l":[10,20,30],"m":{"k":"v","n":{"x":1}},"s":"str","t":["x","x"]}`, []string{"/t", "/t/0", "/t/1"}, nil},

		{"test fails", `[{"op":"replace","path":"/a","value":2},{"op":"test","path":"/a","value":1}]`, "", nil, ErrTestFailed},
		{"test type differs", `[{"op":"test","path":"/a","value":"1"}]`, "", nil, ErrTestFailed},
		{"test missing", `[{"op":"test","path":"/zz","value":1}]`, "", nil, ErrPathNotFound},
		{"remove missing", `[{"op":"add","path":"/b","value":1},{"op":"remove","path":"/zz"}]`, "", nil, ErrPathNotFound},
		{"remove root", `[{"op":"remove","path":""}]`, "", nil, ErrInvalidPointer},
		{"replace missing", `[{"op":"replace","path":"/zz","value":1}]`, "", nil, ErrPathNotFound},
		{"replace dash", `[{"op":"replace","path":"/l/-","value":1}]`, "", nil, ErrPathNotFound},
		{"add beyond list", `[{"op":"add","path":"/l/4","value":1}]`, "", nil, ErrPathNotFound},
		{"add bad index", `[{"op":"add","path":"/l/01","value":1}]`, "", nil, ErrInvalidPointer},
		{"add under scalar", `[{"op":"add","path":"/a/b","value":1}]`, "", nil, ErrPathNotFound},
		{"add missing parent", `[{"op":"add","path":"/q/r","value":1}]`, "", nil, ErrPathNotFound},
		{"add root array", `[{"op":"add","path":"","value":[]}]`, "", nil, ErrTypeMismatch},
		{"move into child", `[{"op":"move","from":"/m","path":"/m/n/y"}]`, "", nil, ErrInvalidPatch},
		{"move missing", `[{"op":"move","from":"/zz","path":"/y"}]`, "", nil, ErrPathNotFound},
		{"copy missing", `[{"op":"copy","from":"/l/9","path":"/y"}]`, "", nil, ErrPathNotFound},
		{"empty key", `[{"op":"add","path":"/b","value":{"":1}}]`, "", nil, ErrTypeMismatch},
		{"empty key pointer", `[{"op":"add","path":"/","value":1}]`, "", nil, ErrInvalidPointer},
		{"replace empty key", `[{"op":"replace","path":"/","value":1}]`, "", nil, ErrPathNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustFromJSON(t, start)
			heads := d.Heads()
			ops, err := ParsePatch([]byte(tt.patch))
			if err != nil {
				t.Fatalf("ParsePatch: %v", err)
			}
			err = d.ApplyPatch(ops)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ApplyPatch err = %v, want %v", err, tt.wantErr)
				}
				// Atomic: nothing written, nothing pending, same heads.
				if d.HasUncommitted() {
					t.Error("failed patch left uncommitted writes")
				}
				if !reflect.DeepEqual(d.Heads(), heads) {
					t.Error("failed patch changed heads")
				}
				assertJSONEqual(t, jsonOf(t, d, ""), start)
				if _, ok, _ := d.Commit("x"); ok {
					t.Error("failed patch left something to commit")
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyPatch: %v", err)
			}
			assertJSONEqual(t, jsonOf(t, d, ""), tt.want)
			info, ok, err := d.Commit("patch")
			if err != nil {
				t.Fatal(err)
			}
			if ok != (len(tt.paths) > 0) {
				t.Errorf("Commit ok = %v with paths %q", ok, tt.paths)
			}
			if !reflect.DeepEqual(info.Paths, tt.paths) {
				t.Errorf("Paths = %q, want %q", info.Paths, tt.paths)
			}
		})
	}
}

func TestApplyPatchRollsBackOnWriteFailure(t *testing.T) {
	d := mustFromJSON(t, `{"a":1,"l":[1,2]}`)
	heads := d.Heads()
	// A failed dry run leaves earlier pending writes alone.
	if err := d.Set("/b", 2); err != nil {
		t.Fatal(err)
	}
	err := d.ApplyPatch([]PatchOp{{Op: "add", Path: "/c", Value: 3}, {Op: "test", Path: "/b", Value: 99}})
	if !errors.Is(err, ErrTestFailed) {
		t.Fatalf("err = %v", err)
	}
	if !d.HasUncommitted() || jsonOf(t, d, "") != `{"a":1,"b":2,"l":[1,2]}` {
		t.Errorf("pending write lost: %s", jsonOf(t, d, ""))
	}
	mustCommit(t, d, "b")
	heads = d.Heads()

	// A write that fails after the dry run passed: everything is rolled back.
	boom := errors.New("boom")
	patchStepHook = func(i int) error {
		if i == 2 {
			return boom
		}
		return nil
	}
	defer func() { patchStepHook = nil }()
	err = d.ApplyPatch([]PatchOp{
		{Op: "replace", Path: "/a", Value: 10},
		{Op: "remove", Path: "/l/0"},
		{Op: "add", Path: "/z", Value: "z"},
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if d.HasUncommitted() || !reflect.DeepEqual(d.Heads(), heads) || jsonOf(t, d, "") != `{"a":1,"b":2,"l":[1,2]}` {
		t.Errorf("not rolled back: %s", jsonOf(t, d, ""))
	}
	patchStepHook = nil
	_ = d.Set("/a", 5)
	info := mustCommit(t, d, "after")
	if !reflect.DeepEqual(info.Paths, []string{"/a"}) {
		t.Errorf("paths after rollback: %q", info.Paths)
	}
}

func TestApplyPatchGoValues(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	// Built in Go: nil Value is null, numbers of any Go type.
	err := d.ApplyPatch([]PatchOp{
		{Op: "add", Path: "/n", Value: nil},
		{Op: "add", Path: "/i", Value: 3},
		{Op: "test", Path: "/i", Value: 3.0},
		{Op: "test", Path: "/a", Value: json.Number("1")},
		{Op: "test", Path: "/n", Value: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, d, ""); got != `{"a":1,"i":3,"n":null}` {
		t.Errorf("got %s", got)
	}
	if err := d.ApplyPatch(nil); err != nil {
		t.Error(err)
	}
	if err := d.ApplyPatch([]PatchOp{{Op: "frob", Path: "/a"}}); !errors.Is(err, ErrInvalidPatch) {
		t.Errorf("unknown op: %v", err)
	}
}

func TestParsePatch(t *testing.T) {
	ok := []struct {
		in   string
		want []PatchOp
	}{
		{`[]`, []PatchOp{}},
		{`[{"op":"add","path":"/a","value":1}]`, []PatchOp{{Op: "add", Path: "/a", Value: json.Number("1"), HasValue: true}}},
		{`[{"op":"add","path":"/a","value":null}]`, []PatchOp{{Op: "add", Path: "/a", Value: nil, HasValue: true}}},
		{`[{"op":"remove","path":"/a","extra":"ignored"}]`, []PatchOp{{Op: "remove", Path: "/a"}}},
		{`[{"op":"move","from":"","path":"/a"}]`, []PatchOp{{Op: "move", Path: "/a", From: ""}}},
		{`[{"op":"copy","from":"/b","path":"/a"}]`, []PatchOp{{Op: "copy", Path: "/a", From: "/b"}}},
		{`[{"path":"/a","op":"test","value":{"x":[1.5]}}]`, []PatchOp{{Op: "test", Path: "/a",
			Value: map[string]any{"x": []any{json.Number("1.5")}}, HasValue: true}}},
	}
	for _, tt := range ok {
		got, err := ParsePatch([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePatch(%s) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
	bad := []string{
		``, `{}`, `null`, `[1]`, `[null]`, `["add"]`,
		`[{"path":"/a","value":1}]`,
		`[{"op":"add","value":1}]`,
		`[{"op":"add","path":"/a"}]`,
		`[{"op":"replace","path":"/a"}]`,
		`[{"op":"test","path":"/a"}]`,
		`[{"op":"move","path":"/a"}]`,
		`[{"op":"copy","path":"/a"}]`,
		`[{"op":"ADD","path":"/a","value":1}]`,
		`[{"op":"add","path":"a","value":1}]`,
		`[{"op":"add","path":"/a~","value":1}]`,
		`[{"op":"move","path":"/a","from":"b"}]`,
		`[{"op":1,"path":"/a"}]`,
		`[{"op":"remove","path":5}]`,
		`[{"op":"remove","path":"/a"}] trailing`,
	}
	for _, in := range bad {
		if _, err := ParsePatch([]byte(in)); !errors.Is(err, ErrInvalidPatch) {
			t.Errorf("ParsePatch(%s) err = %v, want ErrInvalidPatch", in, err)
		}
	}
}

func TestPatchOpJSON(t *testing.T) {
	ops := []PatchOp{
		{Op: "add", Path: "/a", Value: nil, HasValue: true},
		{Op: "remove", Path: "/b"},
		{Op: "move", Path: "/c", From: ""},
		{Op: "replace", Path: "/d", Value: map[string]any{"x": 1.5}},
	}
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"add","path":"/a","value":null},{"op":"remove","path":"/b"},` +
		`{"op":"move","path":"/c","from":""},{"op":"replace","path":"/d","value":{"x":1.5}}]`
	if string(b) != want {
		t.Errorf("Marshal = %s\nwant      %s", b, want)
	}
	var back []PatchOp
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 4 || !back[0].HasValue || back[0].Value != nil || back[2].From != "" {
		t.Errorf("Unmarshal = %#v", back)
	}
	var op PatchOp
	if err := json.Unmarshal([]byte(`{"op":"add","path":"/a"}`), &op); !errors.Is(err, ErrInvalidPatch) {
		t.Errorf("Unmarshal of bad op: %v", err)
	}
}
