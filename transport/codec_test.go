package transport

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

var (
	undef = cbor.RawMessage{0xf7}
	null  = cbor.RawMessage{0xf6}
)

// h is a CBOR item written in hex.
func h(tb testing.TB, s string) cbor.RawMessage {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// kv builds a CBOR map in cbor-x's shape (b9 00 NN) from key, value pairs.
// Keys are text unless given as cbor.RawMessage; values are CBOR-marshalled
// unless they are a cbor.RawMessage already.
func kv(tb testing.TB, pairs ...any) []byte {
	tb.Helper()
	if len(pairs)%2 != 0 {
		tb.Fatal("kv: odd number of arguments")
	}
	out := []byte{0xb9, 0, 0}
	binary.BigEndian.PutUint16(out[1:], uint16(len(pairs)/2))
	for _, p := range pairs {
		if r, ok := p.(cbor.RawMessage); ok {
			out = append(out, r...)
			continue
		}
		b, err := cbor.Marshal(p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// syncFrame is a valid sync message plus the extra pairs given.
func syncFrame(tb testing.TB, extra ...any) []byte {
	base := []any{"type", "sync", "senderId", "a", "targetId", "b", "documentId", "3ybZCR5J6TswAfXnMg85CH9kGuZB", "data", []byte{0x42, 0}}
	return kv(tb, append(base, extra...)...)
}

func TestDecodeMalformed(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, 40) // 40 nested one-element arrays
	deep = append(deep, 0x01)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"JSON text", []byte(`{"type":"join","senderId":"x"}`), ErrMalformed},
		{"not CBOR", []byte{0xff, 0x00, 0x13}, ErrMalformed},
		{"array at top", h(t, "826474797065646a6f696e"), ErrMalformed},
		{"int at top", []byte{0x01}, ErrMalformed},
		{"text at top", h(t, "646a6f696e"), ErrMalformed},
		{"tagged map at top", append([]byte{0xd8, 0x40}, kv(t, "type", "join")...), ErrMalformed},
		{"truncated map", kv(t, "type", "join")[:8], ErrMalformed},
		{"trailing bytes", append(kv(t, "type", "join", "senderId", "a"), 0x00), ErrMalformed},
		{"missing type", kv(t, "senderId", "a"), ErrMissingField},
		{"type undefined", kv(t, "type", undef, "senderId", "a"), ErrMissingField},
		{"type empty", kv(t, "type", "", "senderId", "a"), ErrMissingField},
		{"type not text", kv(t, "type", 7), ErrMalformed},
		{"type as bytes", kv(t, "type", []byte("join")), ErrMalformed},
		{"int key", kv(t, "type", "join", cbor.RawMessage{0x01}, "x"), ErrMalformed},
		{"byte-string key", kv(t, "type", "join", []byte("senderId"), "x"), ErrMalformed},
		{"duplicate key", kv(t, "type", "join", "senderId", "a", "senderId", "b"), ErrMalformed},
		{"invalid UTF-8", kv(t, "type", "join", "senderId", cbor.RawMessage{0x62, 0xff, 0xfe}), ErrMalformed},
		{"senderId int", kv(t, "type", "join", "senderId", 5), ErrMalformed},
		{"documentId as bytes", kv(t, "type", "sync", "senderId", "a", "targetId", "b",
			"documentId", make([]byte, 16), "data", []byte{0x42}), ErrMalformed},
		{"documentId tagged", kv(t, "type", "sync", "documentId", h(t, "d8 20 61 78")), ErrMalformed},
		{"data as text", kv(t, "type", "sync", "documentId", "d", "data", "QgA="), ErrMalformed},
		{"data as array", kv(t, "type", "sync", "documentId", "d", "data", []int{0x42, 0}), ErrMalformed},
		{"count negative", kv(t, "type", "ephemeral", "count", -1), ErrMalformed},
		{"count fractional", kv(t, "type", "ephemeral", "count", 1.5), ErrMalformed},
		{"count NaN", kv(t, "type", "ephemeral", "count", math.NaN()), ErrMalformed},
		{"count 2^64", kv(t, "type", "ephemeral", "count", 18446744073709551616.0), ErrMalformed},
		{"count text", kv(t, "type", "ephemeral", "count", "1"), ErrMalformed},
		{"peerMetadata array", kv(t, "type", "join", "peerMetadata", []string{"x"}), ErrMalformed},
		{"storageId bytes", kv(t, "type", "join", "peerMetadata", map[string]any{"storageId": []byte{1}}), ErrMalformed},
		{"isEphemeral int", kv(t, "type", "join", "peerMetadata", map[string]any{"isEphemeral": 1}), ErrMalformed},
		{"versions not list", kv(t, "type", "join", "supportedProtocolVersions", "1"), ErrMalformed},
		{"versions with int", kv(t, "type", "join", "supportedProtocolVersions", []any{"1", 2}), ErrMalformed},
		{"add with bytes", kv(t, "type", "remote-subscription-change", "add", []any{[]byte{1}}), ErrMalformed},
		{"newHeads array", kv(t, "type", "remote-heads-changed", "newHeads", []string{}), ErrMalformed},
		{"newHeads entry text", kv(t, "type", "remote-heads-changed", "newHeads", map[string]any{"s": "x"}), ErrMalformed},
		{"heads not text", kv(t, "type", "remote-heads-changed", "newHeads",
			map[string]any{"s": map[string]any{"heads": []any{[]byte{1}}, "timestamp": 1.0}}), ErrMalformed},
		{"timestamp text", kv(t, "type", "remote-heads-changed", "newHeads",
			map[string]any{"s": map[string]any{"heads": []string{}, "timestamp": "now"}}), ErrMalformed},
		{"timestamp infinite", kv(t, "type", "remote-heads-changed", "newHeads",
			map[string]any{"s": map[string]any{"heads": []string{}, "timestamp": math.Inf(1)}}), ErrMalformed},
		{"nesting too deep", kv(t, "type", "ephemeral", "x", cbor.RawMessage(deep)), ErrMalformed},
		{"byte string declares 2^62 bytes", kv(t, "type", "sync", "data", h(t, "5b4000000000000000 00")), ErrMalformed},
		{"array declares 2^32 items", kv(t, "type", "join", "supportedProtocolVersions", h(t, "9b0000000100000000 61 31")), ErrMalformed},
		{"map declares 65535 pairs", h(t, "b9ffff 6474797065 646a6f696e"), ErrMalformed},
		{"text declares 2^31 bytes", kv(t, "type", "join", "senderId", h(t, "7a80000000 61")), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("Decode(%x) = %+v, %v; want %v", c.in, m, err, c.want)
			}
		})
	}
}

func TestDecodeLenient(t *testing.T) {
	cases := []struct {
		name  string
		in    []byte
		check func(Message) bool
	}{
		{"count as float64", kv(t, "type", "ephemeral", "count", 3.0),
			func(m Message) bool { return m.Count == 3 }},
		{"count above 2^32 as float64", kv(t, "type", "ephemeral", "count", 5e9),
			func(m Message) bool { return m.Count == 5_000_000_000 }},
		{"count as float16", kv(t, "type", "ephemeral", "count", h(t, "f93c00")),
			func(m Message) bool { return m.Count == 1 }},
		{"count undefined", kv(t, "type", "ephemeral", "count", undef),
			func(m Message) bool { return m.Count == 0 }},
		{"timestamp as uint", kv(t, "type", "remote-heads-changed", "newHeads",
			map[string]any{"s": map[string]any{"heads": []string{"h"}, "timestamp": uint64(1795625782648)}}),
			func(m Message) bool { return m.NewHeads["s"].Timestamp == 1795625782648 }},
		{"timestamp and heads missing", kv(t, "type", "remote-heads-changed", "newHeads", map[string]any{"s": map[string]any{}}),
			func(m Message) bool { return m.NewHeads["s"].Heads != nil && len(m.NewHeads["s"].Heads) == 0 }},
		{"storageId undefined", kv(t, "type", "join", "peerMetadata", map[string]any{"storageId": undef, "isEphemeral": true}),
			func(m Message) bool { return *m.PeerMetadata == PeerMetadata{IsEphemeral: true} }},
		{"storageId null, isEphemeral missing", kv(t, "type", "join", "peerMetadata", map[string]any{"storageId": null}),
			func(m Message) bool { return *m.PeerMetadata == PeerMetadata{} }},
		{"peerMetadata undefined", kv(t, "type", "join", "peerMetadata", undef),
			func(m Message) bool { return m.PeerMetadata == nil }},
		{"add and remove undefined", kv(t, "type", "remote-subscription-change", "add", undef, "remove", null),
			func(m Message) bool { return m.Add == nil && m.Remove == nil }},
		{"empty versions list kept", kv(t, "type", "join", "supportedProtocolVersions", []string{}),
			func(m Message) bool {
				return m.SupportedProtocolVersions != nil && len(m.SupportedProtocolVersions) == 0
			}},
		{"preferred map header", h(t, "a2 6474797065 646a6f696e 6873656e6465724964 6161"),
			func(m Message) bool { return m.Type == TypeJoin && m.SenderID == "a" }},
		{"indefinite map, text and bytes", h(t, "bf 6474797065 7f 6273 79 626e63 ff 6464617461 5f 4142 4100 ff ff"),
			func(m Message) bool { return m.Type == TypeSync && bytes.Equal(m.Data, []byte{0x42, 0}) }},
		{"empty data is absent", kv(t, "type", "sync", "data", []byte{}),
			func(m Message) bool { return m.Data == nil }},
		{"unknown keys ignored outside ephemeral", syncFrame(t, "futureField", map[string]any{"a": 1}),
			func(m Message) bool { return m.Extra == nil && m.DocumentID != "" }},
		{"unknown keys kept in ephemeral", kv(t, "type", "ephemeral", "z", undef, "futureField", map[string]any{"a": 1}),
			func(m Message) bool {
				return len(m.Extra) == 2 && bytes.Equal(m.Extra["z"], undef) &&
					bytes.Equal(m.Extra["futureField"], h(t, "a1616101"))
			}},
		{"key order free", kv(t, "data", []byte{1}, "senderId", "s", "type", "sync"),
			func(m Message) bool { return m.Type == TypeSync && m.SenderID == "s" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !c.check(m) {
				t.Fatalf("unexpected result %#v", m)
			}
		})
	}
}

func TestDecodeUnknownType(t *testing.T) {
	m, err := Decode(kv(t, "type", "future-thing", "senderId", "a", "documentId", "d"))
	if !errors.Is(err, ErrUnknownType) {
		t.Fatalf("err = %v", err)
	}
	if m.Type != "future-thing" || m.SenderID != "a" || m.DocumentID != "d" {
		t.Fatalf("m = %+v", m)
	}
	// A malformed known field still wins over the unknown type.
	m, err = Decode(kv(t, "type", "future-thing", "documentId", []byte{1}))
	if !errors.Is(err, ErrMalformed) || m.Type != "future-thing" {
		t.Fatalf("m, err = %+v, %v", m, err)
	}
}

func TestDecodeMaxSize(t *testing.T) {
	in := syncFrame(t)
	if _, err := (DecodeOptions{MaxSize: int64(len(in))}).Decode(in); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := (DecodeOptions{MaxSize: int64(len(in) - 1)}).Decode(in); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	big := kv(t, "type", "sync", "data", make([]byte, DefaultMaxSize))
	if _, err := Decode(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the default limit: %v", err)
	}
}

// TestDecodeHugeDeclaredLengths checks that lengths declared in a frame but
// not backed by bytes are rejected without allocating for them.
func TestDecodeHugeDeclaredLengths(t *testing.T) {
	inputs := [][]byte{
		kv(t, "type", "sync", "data", h(t, "5b4000000000000000")),
		kv(t, "type", "sync", "data", h(t, "5a7fffffff 00")),
		kv(t, "type", "join", "supportedProtocolVersions", h(t, "9a7fffffff 6131")),
		kv(t, "type", "join", "supportedProtocolVersions", h(t, "9a0000ffff 6131")),
		h(t, "bb0000000100000000 6474797065 646a6f696e"),
		kv(t, "type", "ephemeral", "x", h(t, "ba00010000 0101")),
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, in := range inputs {
		if _, err := Decode(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%x): %v, want ErrMalformed", in, err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("decoding %d hostile frames allocated %d bytes", len(inputs), d)
	}
}

func TestEncodeShape(t *testing.T) {
	m := Message{
		Type:         TypePeer,
		SenderID:     "server",
		TargetID:     "peer-x",
		PeerMetadata: &PeerMetadata{},
	}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := cbor.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	pm, ok := generic["peerMetadata"].(map[any]any)
	if !ok || len(pm) != 1 || pm["isEphemeral"] != false {
		t.Fatalf("peerMetadata = %#v, want only isEphemeral: false", generic["peerMetadata"])
	}
	if len(generic) != 4 {
		t.Fatalf("keys %v, want type senderId targetId peerMetadata", generic)
	}
	if !bytes.HasPrefix(b, h(t, "b90004 6474797065 6470656572")) {
		t.Fatalf("frame starts %x, want a b9-headed map with type first", b[:12])
	}
	for _, undefOrNull := range []byte{0xf6, 0xf7} {
		if bytes.IndexByte(b, undefOrNull) >= 0 {
			t.Fatalf("frame %x contains %x", b, undefOrNull)
		}
	}

	b, err = Encode(Message{Type: TypeEphemeral, SenderID: "a", Data: []byte{1}, Count: 0})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, h(t, "65636f756e74 00")) {
		t.Fatalf("ephemeral frame %x has no count 0", b)
	}
	b, err = Encode(Message{Type: TypeEphemeral, Data: []byte{1}, Count: 300})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, h(t, "65636f756e74 19012c")) {
		t.Fatalf("count 300 not a shortest uint in %x", b)
	}
	b, err = Encode(Message{Type: TypeRemoteHeadsChanged, NewHeads: map[string]HeadsAt{"s": {Timestamp: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, h(t, "6568656164 73 80 6974696d657374616d70 fb4000000000000000")) {
		t.Fatalf("heads [] and float64 timestamp not found in %x", b)
	}
	b, err = Encode(Message{Type: TypeSync, Data: []byte{0x42}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, h(t, "6464617461 41 42")) {
		t.Fatalf("data not a byte string in %x", b)
	}
}

func TestEncodeErrors(t *testing.T) {
	cases := []struct {
		name string
		m    Message
		want error
	}{
		{"no type", Message{SenderID: "a"}, ErrMissingField},
		{"sync without data", Message{Type: TypeSync, DocumentID: "d"}, ErrMissingField},
		{"request with empty data", Message{Type: TypeRequest, Data: []byte{}}, ErrMissingField},
		{"ephemeral without data", Message{Type: TypeEphemeral, Count: 1}, ErrMissingField},
		{"invalid UTF-8", Message{Type: TypeJoin, SenderID: "\xff"}, ErrMalformed},
		{"invalid UTF-8 in list", Message{Type: TypeJoin, SupportedProtocolVersions: []string{"\xff"}}, ErrMalformed},
		{"NaN timestamp", Message{Type: TypeRemoteHeadsChanged, NewHeads: map[string]HeadsAt{"s": {Timestamp: math.NaN()}}}, ErrMalformed},
		{"Extra names a field", Message{Type: TypeEphemeral, Data: []byte{1}, Extra: map[string]cbor.RawMessage{"count": {0x01}}}, ErrMalformed},
		{"Extra not CBOR", Message{Type: TypeEphemeral, Data: []byte{1}, Extra: map[string]cbor.RawMessage{"x": {0x82, 0x01}}}, ErrMalformed},
		{"Extra two items", Message{Type: TypeEphemeral, Data: []byte{1}, Extra: map[string]cbor.RawMessage{"x": {0x01, 0x01}}}, ErrMalformed},
		{"Extra empty", Message{Type: TypeEphemeral, Data: []byte{1}, Extra: map[string]cbor.RawMessage{"x": {}}}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if b, err := Encode(c.m); !errors.Is(err, c.want) {
				t.Fatalf("Encode = %x, %v; want %v", b, err, c.want)
			}
		})
	}
}

func TestEncodeDecodeAllFields(t *testing.T) {
	m := Message{
		Type:                      "some-future-type",
		SenderID:                  "peer-a",
		TargetID:                  "peer-b",
		DocumentID:                "3ybZCR5J6TswAfXnMg85CH9kGuZB",
		Data:                      bytes.Repeat([]byte{0xab}, 70000),
		PeerMetadata:              &PeerMetadata{StorageID: "50440a38-275a-416a-9cc0-2a68077df23f", IsEphemeral: true},
		SupportedProtocolVersions: []string{"1", "2"},
		SelectedProtocolVersion:   ProtocolV1,
		Message:                   "unsupported protocol version",
		SessionID:                 "09hwb4i1hwo4",
		Count:                     math.MaxUint64,
		Add:                       []string{"x"},
		Remove:                    []string{},
		NewHeads: map[string]HeadsAt{
			"s1": {Heads: []string{"h1", "h2"}, Timestamp: 1795625782648.5},
			"s2": {Heads: []string{}, Timestamp: -1},
		},
		Extra: map[string]cbor.RawMessage{"future": {0xa1, 0x61, 0x61, 0xf7}},
	}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if !errors.Is(err, ErrUnknownType) {
		t.Fatalf("Decode: %v", err)
	}
	got.Extra = m.Extra // Decode keeps Extra for ephemeral messages only.
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
	}
	m.Type = TypeEphemeral
	if b, err = Encode(m); err != nil {
		t.Fatal(err)
	}
	if got, err = Decode(b); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("ephemeral round trip: %v\n got %#v\nwant %#v", err, got, m)
	}
}

func TestValidate(t *testing.T) {
	full := Message{SenderID: "a", TargetID: "b", DocumentID: "d", Data: []byte{1}, SessionID: "s", Count: 1,
		NewHeads: map[string]HeadsAt{}}
	with := func(typ string, edit func(*Message)) Message {
		m := full
		m.Type = typ
		if edit != nil {
			edit(&m)
		}
		return m
	}
	cases := []struct {
		name string
		m    Message
		want error
	}{
		{"no type", Message{}, ErrMissingField},
		{"unknown type", with("nope", nil), ErrUnknownType},
		{"join", Message{Type: TypeJoin, SenderID: "a"}, nil},
		{"join without sender", Message{Type: TypeJoin}, ErrMissingField},
		{"peer", Message{Type: TypePeer, SenderID: "s"}, nil},
		{"error bare", Message{Type: TypeError, Message: "x"}, nil},
		{"leave", Message{Type: TypeLeave, SenderID: "a"}, nil},
		{"sync", with(TypeSync, nil), nil},
		{"sync without target", with(TypeSync, func(m *Message) { m.TargetID = "" }), ErrMissingField},
		{"sync without document", with(TypeSync, func(m *Message) { m.DocumentID = "" }), ErrMissingField},
		{"request without data", with(TypeRequest, func(m *Message) { m.Data = nil }), ErrMissingField},
		{"doc-unavailable", Message{Type: TypeDocUnavailable, SenderID: "a", TargetID: "b", DocumentID: "d"}, nil},
		{"doc-unavailable without document", Message{Type: TypeDocUnavailable, SenderID: "a", TargetID: "b"}, ErrMissingField},
		{"ephemeral", with(TypeEphemeral, nil), nil},
		{"ephemeral without session", with(TypeEphemeral, func(m *Message) { m.SessionID = "" }), ErrMissingField},
		{"ephemeral count 0", with(TypeEphemeral, func(m *Message) { m.Count = 0 }), ErrMissingField},
		{"ephemeral without data", with(TypeEphemeral, func(m *Message) { m.Data = nil }), ErrMissingField},
		{"remote-subscription-change", Message{Type: TypeRemoteSubscriptionChange, SenderID: "a", TargetID: "b"}, nil},
		{"remote-heads-changed", with(TypeRemoteHeadsChanged, nil), nil},
		{"remote-heads-changed without heads", with(TypeRemoteHeadsChanged, func(m *Message) { m.NewHeads = nil }), ErrMissingField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.m.Validate()
			if c.want == nil && err != nil || !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
}

func BenchmarkDecodeSync(b *testing.B) {
	in, err := Encode(Message{Type: TypeSync, SenderID: "peer-a", TargetID: "server", DocumentID: "3ybZCR5J6TswAfXnMg85CH9kGuZB", Data: make([]byte, 200)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSync(b *testing.B) {
	m := Message{Type: TypeSync, SenderID: "peer-a", TargetID: "server", DocumentID: "3ybZCR5J6TswAfXnMg85CH9kGuZB", Data: make([]byte, 200)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m); err != nil {
			b.Fatal(err)
		}
	}
}
