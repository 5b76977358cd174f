package crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
)

func mustFromJSON(t testing.TB, s string) *Doc {
	t.Helper()
	d, err := FromJSON([]byte(s))
	if err != nil {
		t.Fatalf("FromJSON(%s): %v", s, err)
	}
	return d
}

// fatalHelper is the part of testing.TB (and rapid.T) the helpers need.
type fatalHelper interface {
	Helper()
	Fatalf(format string, args ...any)
}

func jsonOf(t fatalHelper, d *Doc, ptr string) string {
	t.Helper()
	b, err := d.JSON(ptr)
	if err != nil {
		t.Fatalf("JSON(%q): %v", ptr, err)
	}
	return string(b)
}

func mustCommit(t testing.TB, d *Doc, msg string) CommitInfo {
	t.Helper()
	info, ok, err := d.Commit(msg)
	if err != nil || !ok {
		t.Fatalf("Commit(%q) = %v, %v", msg, ok, err)
	}
	return info
}

const sample = `{"title":"Ops","n":1,"f":1.5,"whole":2.0,"ok":true,"none":null,` +
	`"list":[1,"two",{"three":3}],"nested":{"a":{"b":"c"}},"a/b":1,"m~n":2}`

func TestFromJSONRoundTrip(t *testing.T) {
	tests := []string{
		`{}`,
		`{"a":1}`,
		sample,
		`{"big":9223372036854775807,"neg":-9223372036854775808,"huge":1e300,"tiny":1e-7,"exp":1e+21}`,
		`{"s":"quote \" backslash \\ newline \n tab \t ctrl \u0001 html <&> unicode é ✓ 😀 \u2028"}`,
		`{"deep":[[[[{"x":[]}]]]],"emptyobj":{},"emptystr":""}`,
	}
	for _, in := range tests {
		d := mustFromJSON(t, in)
		out := jsonOf(t, d, "")
		var a, b any
		decAny(t, in, &a)
		decAny(t, out, &b)
		if !jsonEqual(normalizeT(t, a), normalizeT(t, b)) {
			t.Errorf("round trip of %s gave %s", in, out)
		}
		// A second round trip is byte-identical (keys sorted).
		d2 := mustFromJSON(t, out)
		if out2 := jsonOf(t, d2, ""); out2 != out {
			t.Errorf("second round trip: %s != %s", out2, out)
		}
		h, err := d.History()
		if err != nil || len(h) != 1 || h[0].Message != "create" {
			t.Errorf("FromJSON(%s) history = %+v, %v; want one change \"create\"", in, h, err)
		}
		if d.HasUncommitted() {
			t.Errorf("FromJSON(%s) left uncommitted writes", in)
		}
	}
}

func decAny(t testing.TB, s string, v *any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
}

func normalizeT(t testing.TB, v any) any {
	t.Helper()
	n, err := normalize(v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNumberTypes(t *testing.T) {
	d := mustFromJSON(t, `{"i":1,"f":1.5,"w":2.0,"e":1e2,"big":18446744073709551615,"neg":-3}`)
	want := map[string]any{
		"i":   int64(1),
		"f":   1.5,
		"w":   2.0,
		"e":   100.0,
		"big": 18446744073709551615.0, // does not fit int64: float64
		"neg": int64(-3),
	}
	got, err := d.Get("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %#v, want %#v", got, want)
	}
	if s := jsonOf(t, d, "/w"); s != "2" { // as JSON.stringify writes it
		t.Errorf("JSON(/w) = %s, want 2", s)
	}
	if s := jsonOf(t, d, "/e"); s != "100" {
		t.Errorf("JSON(/e) = %s, want 100", s)
	}

	// Go values.
	for _, tt := range []struct {
		in   any
		want any
	}{
		{int(7), int64(7)},
		{int8(-7), int64(-7)},
		{uint16(7), int64(7)},
		{uint64(1 << 63), uint64(1 << 63)},
		{float32(0.5), 0.5},
		{json.Number("12"), int64(12)},
		{json.Number("12.0"), 12.0},
		{json.Number("-1E3"), -1000.0},
		{json.RawMessage(`{"x":[1,2.5]}`), map[string]any{"x": []any{int64(1), 2.5}}},
		{struct {
			A int    `json:"a"`
			B string `json:"b,omitempty"`
		}{A: 1}, map[string]any{"a": int64(1)}},
		{[]string{"x", "y"}, []any{"x", "y"}},
		{map[string]int{"k": 1}, map[string]any{"k": int64(1)}},
	} {
		if err := d.Set("/v", tt.in); err != nil {
			t.Errorf("Set(%#v): %v", tt.in, err)
			continue
		}
		got, err := d.Get("/v")
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Set(%#v) then Get = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestFromJSONErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{``, ErrInvalidJSON},
		{`{`, ErrInvalidJSON},
		{`{"a":1} x`, ErrInvalidJSON},
		{`{"a":1}{}`, ErrInvalidJSON},
		{`[1,2]`, ErrTypeMismatch},
		{`"s"`, ErrTypeMismatch},
		{`null`, ErrTypeMismatch},
		{`{"a":1e999}`, ErrInvalidJSON},
		{`{"":1}`, ErrTypeMismatch},
		{`{"a":[{"":1}]}`, ErrTypeMismatch},
	}
	for _, tt := range tests {
		if _, err := FromJSON([]byte(tt.in)); !errors.Is(err, tt.want) {
			t.Errorf("FromJSON(%q) err = %v, want %v", tt.in, err, tt.want)
		}
	}
}

func TestGet(t *testing.T) {
	d := mustFromJSON(t, sample)
	tests := []struct {
		ptr     string
		want    string
		wantErr error
	}{
		{"/title", `"Ops"`, nil},
		{"/n", `1`, nil},
		{"/f", `1.5`, nil},
		{"/whole", `2`, nil},
		{"/ok", `true`, nil},
		{"/none", `null`, nil},
		{"/list", `[1,"two",{"three":3}]`, nil},
		{"/list/0", `1`, nil},
		{"/list/2/three", `3`, nil},
		{"/nested/a/b", `"c"`, nil},
		{"/a~1b", `1`, nil},
		{"/m~0n", `2`, nil},
		{"/", ``, ErrPathNotFound},
		{"/missing", ``, ErrPathNotFound},
		{"/list/3", ``, ErrPathNotFound},
		{"/list/-", ``, ErrPathNotFound},
		{"/list/01", ``, ErrInvalidPointer},
		{"/list/x", ``, ErrInvalidPointer},
		{"/title/x", ``, ErrPathNotFound},
		{"/n/0", ``, ErrPathNotFound},
		{"/none/x", ``, ErrPathNotFound},
		{"/nested/a/b/c", ``, ErrPathNotFound},
		{"title", ``, ErrInvalidPointer},
		{"/a~2", ``, ErrInvalidPointer},
	}
	for _, tt := range tests {
		got, err := d.JSON(tt.ptr)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("JSON(%q) err = %v, want %v", tt.ptr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("JSON(%q) = %s, %v; want %s", tt.ptr, got, err, tt.want)
		}
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name    string
		ptr     string
		value   any
		want    string // JSON of the whole document afterwards
		path    string // the pointer recorded for Commit
		wantErr error
	}{
		{"new key", "/c", "x", `{"a":1,"l":[10,20],"m":{"k":"v"},"c":"x"}`, "/c", nil},
		{"replace key", "/a", 2, `{"a":2,"l":[10,20],"m":{"k":"v"}}`, "/a", nil},
		{"replace type", "/m", []any{1}, `{"a":1,"l":[10,20],"m":[1]}`, "/m", nil},
		{"nested key", "/m/k2", 2.5, `{"a":1,"l":[10,20],"m":{"k":"v","k2":2.5}}`, "/m/k2", nil},
		{"list index", "/l/1", "x", `{"a":1,"l":[10,"x"],"m":{"k":"v"}}`, "/l/1", nil},
		{"list append", "/l/-", nil, `{"a":1,"l":[10,20,null],"m":{"k":"v"}}`, "/l/2", nil},
		{"nested object", "/o", map[string]any{"x": []any{map[string]any{"y": "z"}}, "b": true},
			`{"a":1,"l":[10,20],"m":{"k":"v"},"o":{"b":true,"x":[{"y":"z"}]}}`, "/o", nil},
		{"dash key in map", "/m/-", 1, `{"a":1,"l":[10,20],"m":{"-":1,"k":"v"}}`, "/m/-", nil},
		{"escaped key", "/x~1y", 1, `{"a":1,"l":[10,20],"m":{"k":"v"},"x/y":1}`, "/x~1y", nil},
		{"root", "", map[string]any{"a": 5, "z": "new"}, `{"a":5,"z":"new"}`, "", nil},
		{"root empty", "", map[string]any{}, `{}`, "", nil},
		{"list end", "/l/2", 1, ``, "", ErrPathNotFound},
		{"list beyond", "/l/9", 1, ``, "", ErrPathNotFound},
		{"list bad index", "/l/01", 1, ``, "", ErrInvalidPointer},
		{"missing parent", "/nope/x", 1, ``, "", ErrPathNotFound},
		{"scalar parent", "/a/x", 1, ``, "", ErrPathNotFound},
		{"text parent", "/m/k/0", 1, ``, "", ErrPathNotFound},
		{"root not object", "", []any{1}, ``, "", ErrTypeMismatch},
		{"bad pointer", "a", 1, ``, "", ErrInvalidPointer},
		{"NaN", "/a", nan(), ``, "", ErrTypeMismatch},
		{"empty key", "/", 1, ``, "", ErrInvalidPointer},
		{"empty key in value", "/a", map[string]any{"": 1}, ``, "", ErrTypeMismatch},
		{"unsupported", "/a", make(chan int), ``, "", ErrTypeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustFromJSON(t, `{"a":1,"l":[10,20],"m":{"k":"v"}}`)
			heads := d.Heads()
			err := d.Set(tt.ptr, tt.value)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Set(%q) err = %v, want %v", tt.ptr, err, tt.wantErr)
				}
				if d.HasUncommitted() {
					t.Errorf("failed Set left uncommitted writes")
				}
				return
			}
			if err != nil {
				t.Fatalf("Set(%q): %v", tt.ptr, err)
			}
			if !d.HasUncommitted() {
				t.Errorf("HasUncommitted = false after Set")
			}
			if !reflect.DeepEqual(d.Heads(), heads) {
				t.Errorf("Heads changed before Commit")
			}
			assertJSONEqual(t, jsonOf(t, d, ""), tt.want)
			info := mustCommit(t, d, "set")
			if !reflect.DeepEqual(info.Paths, []string{tt.path}) {
				t.Errorf("Paths = %q, want [%q]", info.Paths, tt.path)
			}
			if got := d.Heads(); len(got) != 1 || got[0] != info.Hash {
				t.Errorf("Heads = %v, want [%v]", got, info.Hash)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

func assertJSONEqual(t testing.TB, got, want string) {
	t.Helper()
	var a, b any
	decAny(t, got, &a)
	decAny(t, want, &b)
	if !jsonEqual(normalizeT(t, a), normalizeT(t, b)) {
		t.Errorf("JSON = %s, want %s", got, want)
	}
}

func TestAddDelete(t *testing.T) {
	const start = `{"a":1,"l":[10,20],"m":{"k":"v"}}`
	tests := []struct {
		name    string
		del     bool
		ptr     string
		value   any
		want    string
		path    string
		wantErr error
	}{
		{"add insert front", false, "/l/0", 5, `{"a":1,"l":[5,10,20],"m":{"k":"v"}}`, "/l/0", nil},
		{"add insert middle", false, "/l/1", "x", `{"a":1,"l":[10,"x",20],"m":{"k":"v"}}`, "/l/1", nil},
		{"add at length", false, "/l/2", 30, `{"a":1,"l":[10,20,30],"m":{"k":"v"}}`, "/l/2", nil},
		{"add dash", false, "/l/-", []any{}, `{"a":1,"l":[10,20,[]],"m":{"k":"v"}}`, "/l/2", nil},
		{"add map key", false, "/m/n", 1, `{"a":1,"l":[10,20],"m":{"k":"v","n":1}}`, "/m/n", nil},
		{"add replaces map key", false, "/a", "s", `{"a":"s","l":[10,20],"m":{"k":"v"}}`, "/a", nil},
		{"add beyond", false, "/l/3", 1, ``, "", ErrPathNotFound},
		{"add root scalar", false, "", 1, ``, "", ErrTypeMismatch},
		{"delete key", true, "/a", nil, `{"l":[10,20],"m":{"k":"v"}}`, "/a", nil},
		{"delete index", true, "/l/0", nil, `{"a":1,"l":[20],"m":{"k":"v"}}`, "/l/0", nil},
		{"delete nested", true, "/m/k", nil, `{"a":1,"l":[10,20],"m":{}}`, "/m/k", nil},
		{"delete missing key", true, "/zz", nil, ``, "", ErrPathNotFound},
		{"delete missing index", true, "/l/2", nil, ``, "", ErrPathNotFound},
		{"delete dash", true, "/l/-", nil, ``, "", ErrPathNotFound},
		{"delete under scalar", true, "/a/b", nil, ``, "", ErrPathNotFound},
		{"delete root", true, "", nil, ``, "", ErrInvalidPointer},
		{"delete bad pointer", true, "x", nil, ``, "", ErrInvalidPointer},
		{"delete empty key", true, "/", nil, ``, "", ErrPathNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustFromJSON(t, start)
			var err error
			if tt.del {
				err = d.Delete(tt.ptr)
			} else {
				err = d.Add(tt.ptr, tt.value)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if d.HasUncommitted() {
					t.Errorf("failed write left uncommitted writes")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertJSONEqual(t, jsonOf(t, d, ""), tt.want)
			info := mustCommit(t, d, "")
			if !reflect.DeepEqual(info.Paths, []string{tt.path}) {
				t.Errorf("Paths = %q, want [%q]", info.Paths, tt.path)
			}
		})
	}
}

func TestSetJSON(t *testing.T) {
	d := New()
	if err := d.SetJSON("/x", []byte(`{"n":1.0,"i":2}`)); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, d, "/x"); got != `{"i":2,"n":1}` {
		t.Errorf("got %s", got)
	}
	if err := d.SetJSON("/x", []byte(`{`)); !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("SetJSON bad = %v", err)
	}
}

func TestStringsAreText(t *testing.T) {
	d := New()
	if err := d.Set("/s", "hello"); err != nil {
		t.Fatal(err)
	}
	if err := d.Set("/l", []any{"a", map[string]any{"b": "c"}}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, d, "")
	// Look underneath: the strings must be Automerge Text objects.
	for _, p := range [][]any{{"s"}, {"l", 0}, {"l", 1, "b"}} {
		v, err := d.am.Path(p...).Get()
		if err != nil || v.Kind() != automerge.KindText {
			t.Errorf("%v: kind %v, %v; want Text", p, v.Kind(), err)
		}
	}
	// And scalar strings written by others read as strings too.
	if err := d.am.RootMap().Set("raw", "scalar"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Get("/raw"); got != "scalar" {
		t.Errorf("scalar string read as %#v", got)
	}
}

func TestOtherValueKinds(t *testing.T) {
	d := New()
	m := d.am.RootMap()
	ts := time.UnixMilli(1700000000123)
	for k, v := range map[string]any{
		"counter": automerge.NewCounter(5),
		"time":    ts,
		"bytes":   []byte{1, 2, 3},
		"uint":    uint64(1 << 63),
	} {
		if err := m.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.Get("")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"counter": int64(5),
		"time":    "2023-11-14T22:13:20.123Z",
		"bytes":   "AQID",
		"uint":    uint64(1 << 63),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %#v, want %#v", got, want)
	}
}

func TestLoadJavaScriptDocument(t *testing.T) {
	data, err := os.ReadFile("testdata/js-automerge3.bin")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	// JavaScript stored the -7 pushed into the list as f64 (and 42 as int).
	want := `{"big":2.25,"bin":"AQID","count":5,"enabled":true,"nothing":null,"raw":"scalar",` +
		`"title":"Dashboard!","when":"2023-11-14T22:13:20.123Z",` +
		`"widgets":[{"id":"w1","ratio":0.5,"value":42},{"id":"w2","value":-7}]}`
	if got := jsonOf(t, d, ""); got != want {
		t.Errorf("JSON = %s\nwant   %s", got, want)
	}
	if h := d.Heads(); len(h) != 1 || h[0].String() != "c40bb1921297d787efd36b697645d8af014d3641e3da57c9d5a5778fe62c623a" {
		t.Errorf("Heads = %v", h)
	}
	hist, err := d.History()
	if err != nil || len(hist) != 3 {
		t.Fatalf("History = %v, %v", hist, err)
	}
	if hist[0].Actor != "aaaaaaaaaaaaaaaa" || hist[1].Message != "more" || hist[1].Seq != 2 {
		t.Errorf("History = %+v", hist)
	}
	// We can write to it and it still loads.
	if err := d.Set("/widgets/0/value", 43); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, d, "go edit")
	d2, err := Load(d.Save())
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, d2, "/widgets/0/value"); got != "43" {
		t.Errorf("after edit: %s", got)
	}
}

func TestLoadJavaScriptFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/js-automerge3.automerge")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/js-automerge3.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	// Same value, and the same text once JavaScript's indentation is removed.
	got := jsonOf(t, d, "")
	assertJSONEqual(t, got, string(want))
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if got != compact.String() {
		t.Errorf("JSON = %s\nwant   %s", got, compact.String())
	}
}

func TestCommit(t *testing.T) {
	d, err := NewWithActor("0102030405")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Commit("nothing"); ok || err != nil {
		t.Errorf("empty Commit = %v, %v; want false, nil", ok, err)
	}
	if d.HasUncommitted() {
		t.Error("HasUncommitted on new doc")
	}
	if len(d.Heads()) != 0 {
		t.Error("new doc has heads")
	}
	_ = d.Set("/a", map[string]any{"b": 1})
	_ = d.Set("/a/b", 2)
	_ = d.Set("/c", 1)
	_ = d.Set("/a/b", 3)
	_ = d.Delete("/c")
	if err := d.Set("/missing/x", 1); err == nil {
		t.Fatal("Set under missing parent succeeded")
	}
	before := time.Now().Add(-time.Second)
	info := mustCommit(t, d, "first")
	if want := []string{"/a", "/a/b", "/c"}; !reflect.DeepEqual(info.Paths, want) {
		t.Errorf("Paths = %q, want %q", info.Paths, want)
	}
	if d.HasUncommitted() {
		t.Error("HasUncommitted after Commit")
	}
	if _, ok, _ := d.Commit("again"); ok {
		t.Error("second Commit reported a change")
	}
	// CommitInfo.Bytes is the change alone: loadable onto the previous state.
	other := New()
	if err := other.LoadIncremental(info.Bytes); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, other, ""); got != `{"a":{"b":3}}` {
		t.Errorf("change bytes give %s", got)
	}
	if !reflect.DeepEqual(other.Heads(), []Hash{info.Hash}) {
		t.Errorf("heads %v, want %v", other.Heads(), info.Hash)
	}
	hist, err := d.History()
	if err != nil || len(hist) != 1 {
		t.Fatalf("History = %v, %v", hist, err)
	}
	h := hist[0]
	if h.Hash != info.Hash || h.Actor != "0102030405" || h.Seq != 1 || h.Message != "first" || len(h.Deps) != 0 {
		t.Errorf("ChangeInfo = %+v", h)
	}
	if h.Time.Before(before) || h.Time.After(time.Now().Add(time.Second)) || h.Time.Location() != time.UTC {
		t.Errorf("Time = %v", h.Time)
	}
	_ = d.Set("/d", true)
	info2 := mustCommit(t, d, "")
	hist, _ = d.History()
	if len(hist) != 2 || hist[1].Seq != 2 || !reflect.DeepEqual(hist[1].Deps, []Hash{info.Hash}) || hist[1].Hash != info2.Hash {
		t.Errorf("second ChangeInfo = %+v", hist[1])
	}
}

func TestImplicitCommit(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	heads := d.Heads()
	_ = d.Set("/a", 2)
	// Heads and Get do not commit.
	if !reflect.DeepEqual(d.Heads(), heads) || !d.HasUncommitted() {
		t.Fatal("Heads committed pending writes")
	}
	if got := jsonOf(t, d, "/a"); got != "2" {
		t.Errorf("Get does not see pending write: %s", got)
	}
	// Save does, with an empty message.
	saved := d.Save()
	if d.HasUncommitted() || reflect.DeepEqual(d.Heads(), heads) {
		t.Error("Save did not commit pending writes")
	}
	d2, err := Load(saved)
	if err != nil || jsonOf(t, d2, "/a") != "2" {
		t.Errorf("saved doc: %v", err)
	}
	hist, _ := d.History()
	if len(hist) != 2 || hist[1].Message != "" {
		t.Errorf("history %+v", hist)
	}
}

func TestRollback(t *testing.T) {
	d, _ := NewWithActor("abcd")
	if err := d.Rollback(); err != nil { // nothing to roll back
		t.Fatal(err)
	}
	// Rollback on a doc without history.
	_ = d.Set("/x", 1)
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, d, ""); got != `{}` || d.HasUncommitted() || len(d.Heads()) != 0 {
		t.Errorf("after rollback: %s %v %v", got, d.HasUncommitted(), d.Heads())
	}
	if d.ActorID() != "abcd" {
		t.Errorf("actor changed to %s", d.ActorID())
	}

	_ = d.Set("/a", []any{1, 2})
	c1 := mustCommit(t, d, "one")
	saved := d.SaveIncremental()
	_ = d.Set("/b", "x")
	c2 := mustCommit(t, d, "two")
	_ = d.Set("/a/0", 100)
	_ = d.Delete("/b")
	_ = d.Add("/a/-", 3)
	if err := d.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, d, ""); got != `{"a":[1,2],"b":"x"}` {
		t.Errorf("after rollback: %s", got)
	}
	if d.HasUncommitted() || !reflect.DeepEqual(d.Heads(), []Hash{c2.Hash}) || d.ActorID() != "abcd" {
		t.Errorf("state after rollback: %v %v %s", d.HasUncommitted(), d.Heads(), d.ActorID())
	}
	// The next commit continues the actor's sequence.
	_ = d.Set("/c", 1)
	c3 := mustCommit(t, d, "three")
	hist, _ := d.History()
	if len(hist) != 3 || hist[2].Seq != 3 || hist[2].Hash != c3.Hash || hist[0].Hash != c1.Hash {
		t.Errorf("history after rollback: %+v", hist)
	}
	// SaveIncremental still covers "two" (committed before the rollback).
	inc := d.SaveIncremental()
	d2, err := Load(append(saved, inc...))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d2.Heads(), d.Heads()) || jsonOf(t, d2, "") != jsonOf(t, d, "") {
		t.Errorf("incremental after rollback: %s vs %s", jsonOf(t, d2, ""), jsonOf(t, d, ""))
	}
}

func TestSaveLoadIncremental(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	full := d.Save()
	if inc := d.SaveIncremental(); len(inc) != 0 {
		t.Errorf("SaveIncremental after Save = %d bytes", len(inc))
	}
	var chunks [][]byte
	for i := 0; i < 3; i++ {
		_ = d.Set("/a", i)
		mustCommit(t, d, "")
		chunks = append(chunks, d.SaveIncremental())
	}
	all := append([]byte{}, full...)
	for _, c := range chunks {
		all = append(all, c...)
	}
	// Load of the concatenation.
	d2, err := Load(all)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d2.Heads(), d.Heads()) {
		t.Error("Load(concatenation) heads differ")
	}
	// Load then LoadIncremental chunk by chunk.
	d3, err := Load(full)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if err := d3.LoadIncremental(c); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(d3.Heads(), d.Heads()) || jsonOf(t, d3, "") != `{"a":2}` {
		t.Error("LoadIncremental heads differ")
	}
	// LoadIncremental of everything into an empty doc keeps the actor.
	d4, _ := NewWithActor("beef")
	if err := d4.LoadIncremental(all); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d4.Heads(), d.Heads()) || d4.ActorID() != "beef" {
		t.Error("LoadIncremental into empty doc")
	}
	// Applying again is a no-op.
	if err := d3.LoadIncremental(all); err != nil || !reflect.DeepEqual(d3.Heads(), d.Heads()) {
		t.Error("repeated LoadIncremental")
	}
	// Empty input.
	if err := d3.LoadIncremental(nil); err != nil {
		t.Error(err)
	}
	if e, err := Load(nil); err != nil || len(e.Heads()) != 0 {
		t.Errorf("Load(nil) = %v", err)
	}
}

func TestChangesSince(t *testing.T) {
	d := mustFromJSON(t, `{"a":1}`)
	h0 := d.Heads()
	_ = d.Set("/b", 2)
	mustCommit(t, d, "")
	_ = d.Set("/c", 3)
	mustCommit(t, d, "")
	cs, err := d.ChangesSince(h0)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := d.ChangesSince(nil)
	// Rebuild from the first change plus ChangesSince.
	hist, _ := d.History()
	first, _ := d.am.Change(automerge.ChangeHash(hist[0].Hash))
	r := New()
	if err := r.LoadIncremental(first.Save()); err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIncremental(cs); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Heads(), d.Heads()) {
		t.Errorf("rebuilt heads %v, want %v", r.Heads(), d.Heads())
	}
	if none, _ := d.ChangesSince(d.Heads()); len(none) != 0 {
		t.Errorf("ChangesSince(heads) = %d bytes", len(none))
	}
	if all, _ := d.ChangesSince(nil); !bytes.Equal(all, old) {
		t.Error("ChangesSince(nil) not stable")
	}
}

func TestForkMerge(t *testing.T) {
	a := mustFromJSON(t, `{"x":1,"l":[]}`)
	b, err := a.Fork()
	if err != nil {
		t.Fatal(err)
	}
	if b.ActorID() == a.ActorID() {
		t.Error("Fork kept the actor id")
	}
	_ = a.Set("/x", 2)
	_ = a.Add("/l/-", "from a")
	mustCommit(t, a, "a")
	_ = b.Set("/y", 3)
	_ = b.Add("/l/-", "from b")
	mustCommit(t, b, "b")
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Merge(a); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(a); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Heads(), b.Heads()) || len(a.Heads()) != 2 {
		t.Errorf("heads %v vs %v", a.Heads(), b.Heads())
	}
	if ja, jb := jsonOf(t, a, ""), jsonOf(t, b, ""); ja != jb {
		t.Errorf("diverged: %s vs %s", ja, jb)
	}
	got, _ := a.Get("/l")
	if l, _ := got.([]any); len(l) != 2 {
		t.Errorf("list %v", got)
	}
}

func TestActorID(t *testing.T) {
	for _, bad := range []string{"", "abc", "zz", "0x12"} {
		if _, err := NewWithActor(bad); !errors.Is(err, ErrInvalidActor) {
			t.Errorf("NewWithActor(%q) err = %v", bad, err)
		}
	}
	d, err := NewWithActor("ABCD")
	if err != nil || d.ActorID() != "abcd" {
		t.Errorf("NewWithActor(ABCD) = %v, %v", d.ActorID(), err)
	}
	if err := d.SetActorID("0011"); err != nil || d.ActorID() != "0011" {
		t.Errorf("SetActorID: %v %s", err, d.ActorID())
	}
	if err := d.SetActorID("x"); !errors.Is(err, ErrInvalidActor) {
		t.Errorf("SetActorID(x) = %v", err)
	}
	if New().ActorID() == New().ActorID() {
		t.Error("random actors collide")
	}
}

func TestCorruptInputs(t *testing.T) {
	good := mustFromJSON(t, sample).Save()
	inputs := [][]byte{
		[]byte("hello world"),
		{0x85, 0x6f, 0x4a, 0x83},
		{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 0, 0},
		good[:len(good)/2],
		append(append([]byte{}, good...), 1, 2, 3),
		flip(good, len(good)/2),
		flip(good, 9),
	}
	for i, in := range inputs {
		if _, err := Load(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("input %d: Load err = %v", i, err)
		}
		d := mustFromJSON(t, `{"keep":1}`)
		heads := d.Heads()
		if err := d.LoadIncremental(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("input %d: LoadIncremental err = %v", i, err)
		}
		if !reflect.DeepEqual(d.Heads(), heads) {
			t.Errorf("input %d: LoadIncremental changed the doc", i)
		}
		e := New()
		if err := e.LoadIncremental(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("input %d: LoadIncremental on empty err = %v", i, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0xff
	return c
}

func TestForkAtAndHashesSince(t *testing.T) {
	d, err := FromJSON([]byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	h1 := d.Heads()
	if err := d.Set("/a", 2); err != nil {
		t.Fatal(err)
	}
	c2, _, err := d.Commit("")
	if err != nil {
		t.Fatal(err)
	}
	old, err := d.ForkAt(h1)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := old.Get("/a"); v != int64(1) {
		t.Fatalf("fork at h1: a = %v", v)
	}
	since, err := d.HashesSince(h1)
	if err != nil || len(since) != 1 || since[0] != c2.Hash {
		t.Fatalf("since = %v, %v", since, err)
	}
	if _, err := d.ForkAt([]Hash{{1, 2, 3}}); !errors.Is(err, ErrInvalidHash) {
		t.Fatalf("unknown hash: %v", err)
	}
	all, _ := d.HashesSince(nil)
	if len(all) != 2 || !d.HasChange(c2.Hash) {
		t.Fatalf("all = %v", all)
	}
}

func TestPushMessageDeliversChanges(t *testing.T) {
	a, _ := FromJSON([]byte(`{"n":0}`))
	b, err := Load(a.Save())
	if err != nil {
		t.Fatal(err)
	}
	shared := a.Heads()
	for i := 1; i <= 5; i++ {
		_ = a.Set("/n", i)
		if _, _, err := a.Commit(""); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := a.PushMessage(shared)
	if err != nil {
		t.Fatal(err)
	}
	heads, n, err := InspectSyncMessage(msg)
	if err != nil || n != 5 || len(heads) != 1 {
		t.Fatalf("inspect: %v %d %v", heads, n, err)
	}
	res, err := NewSyncState(b).Receive(msg)
	if err != nil || !res.Changed {
		t.Fatalf("receive: %+v %v", res, err)
	}
	if v, _ := b.Get("/n"); v != int64(5) {
		t.Fatalf("n = %v", v)
	}
	if fmt.Sprint(b.Heads()) != fmt.Sprint(a.Heads()) {
		t.Fatal("heads differ")
	}
}
