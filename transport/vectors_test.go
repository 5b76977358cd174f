package transport

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// vector is one real frame captured between JavaScript automerge-repo 2.5.6
// peers (testdata/test-vectors.json, a copy of shared/protocol/test-vectors.json).
type vector struct {
	Label   string         `json:"label"`
	Dir     string         `json:"dir"`
	Bytes   int            `json:"bytes"`
	Hex     string         `json:"hex"`
	Decoded map[string]any `json:"decoded"`
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	raw, err := os.ReadFile("testdata/test-vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		tb.Fatal(err)
	}
	return vs
}

func (v vector) frame(tb testing.TB) []byte {
	tb.Helper()
	b, err := hex.DecodeString(v.Hex)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b) != v.Bytes {
		tb.Fatalf("%s: %d bytes, file says %d", v.Label, len(b), v.Bytes)
	}
	return b
}

// expected builds the Message a vector's "decoded" JSON describes, without
// using the codec under test. "$undefined" marks a key present with CBOR
// undefined; {"$bytesHex": ...} a byte string.
func (v vector) expected(tb testing.TB) Message {
	tb.Helper()
	str := func(x any) string {
		s, ok := x.(string)
		if !ok {
			tb.Fatalf("%s: %v is not a string", v.Label, x)
		}
		return s
	}
	list := func(x any) []string {
		if x == "$undefined" {
			return nil
		}
		items, ok := x.([]any)
		if !ok {
			tb.Fatalf("%s: %v is not a list", v.Label, x)
		}
		out := []string{}
		for _, it := range items {
			out = append(out, str(it))
		}
		return out
	}
	var m Message
	for k, x := range v.Decoded {
		switch k {
		case "type":
			m.Type = str(x)
		case "senderId":
			m.SenderID = str(x)
		case "targetId":
			m.TargetID = str(x)
		case "documentId":
			m.DocumentID = str(x)
		case "selectedProtocolVersion":
			m.SelectedProtocolVersion = str(x)
		case "message":
			m.Message = str(x)
		case "sessionId":
			m.SessionID = str(x)
		case "count":
			m.Count = uint64(x.(float64))
		case "data":
			b, err := hex.DecodeString(str(x.(map[string]any)["$bytesHex"]))
			if err != nil {
				tb.Fatal(err)
			}
			m.Data = b
		case "peerMetadata":
			pm := x.(map[string]any)
			m.PeerMetadata = &PeerMetadata{IsEphemeral: pm["isEphemeral"].(bool)}
			if s := str(pm["storageId"]); s != "$undefined" {
				m.PeerMetadata.StorageID = s
			}
		case "supportedProtocolVersions":
			m.SupportedProtocolVersions = list(x)
		case "add":
			m.Add = list(x)
		case "remove":
			m.Remove = list(x)
		case "newHeads":
			m.NewHeads = map[string]HeadsAt{}
			for sid, e := range x.(map[string]any) {
				e := e.(map[string]any)
				m.NewHeads[sid] = HeadsAt{Heads: list(e["heads"]), Timestamp: e["timestamp"].(float64)}
			}
		default:
			tb.Fatalf("%s: test does not know key %q", v.Label, k)
		}
	}
	return m
}

func TestVectorsDecode(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) != 12 {
		t.Fatalf("%d vectors, want 12", len(vs))
	}
	types := map[string]bool{}
	for _, v := range vs {
		t.Run(v.Label, func(t *testing.T) {
			got, err := Decode(v.frame(t))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := v.expected(t)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode:\n got %#v\nwant %#v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			types[got.Type] = true

			enc, err := Encode(got)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			again, err := Decode(enc)
			if err != nil {
				t.Fatalf("Decode(Encode): %v", err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", again, got)
			}
		})
	}
	for _, typ := range []string{TypeJoin, TypePeer, TypeError, TypeRequest, TypeSync, TypeDocUnavailable,
		TypeEphemeral, TypeRemoteSubscriptionChange, TypeRemoteHeadsChanged} {
		if !types[typ] {
			t.Errorf("no vector of type %s", typ)
		}
	}
}

// TestVectorsSpotChecks pins the quirks PROTOCOL.md calls out, independently
// of the JSON expectations.
func TestVectorsSpotChecks(t *testing.T) {
	byLabel := map[string]Message{}
	for _, v := range loadVectors(t) {
		m, err := Decode(v.frame(t))
		if err != nil {
			t.Fatal(err)
		}
		byLabel[v.Label] = m
	}
	if pm := byLabel["join (client without storage)"].PeerMetadata; pm == nil || pm.StorageID != "" || !pm.IsEphemeral {
		t.Errorf("join without storage: peerMetadata %+v, want undefined storageId and isEphemeral", pm)
	}
	if m := byLabel["remote-subscription-change"]; m.Remove != nil || len(m.Add) != 1 {
		t.Errorf("remote-subscription-change: add %q remove %q", m.Add, m.Remove)
	}
	h := byLabel["remote-heads-changed"].NewHeads["50440a38-275a-416a-9cc0-2a68077df23f"]
	if h.Timestamp != 1795625782648 || len(h.Heads) != 1 || h.Heads[0] != "2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS" {
		t.Errorf("remote-heads-changed entry %+v", h)
	}
	if m := byLabel["request"]; hex.EncodeToString(m.Data) != "42000001000000020284" {
		t.Errorf("request data %x", m.Data)
	}
	if m := byLabel["ephemeral (server relays to another client)"]; m.Count != 1 || m.SessionID != "09hwb4i1hwo4" || m.Extra != nil {
		t.Errorf("relayed ephemeral %+v", m)
	}
}
