package crdt

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDocumentIDWorkedExample(t *testing.T) {
	// PROTOCOL.md §3.1.
	raw, _ := hex.DecodeString("d59946260838467a90447ba8cfd4c181")
	if got := base58CheckEncode(raw); got != "3ybZCR5J6TswAfXnMg85CH9kGuZB" {
		t.Fatalf("base58check = %s", got)
	}
	if got := hex.EncodeToString(checksum(raw)); got != "690f5722" {
		t.Errorf("checksum = %s", got)
	}
	id, err := ParseDocumentID("3ybZCR5J6TswAfXnMg85CH9kGuZB")
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(id.Bytes()) != "d59946260838467a90447ba8cfd4c181" {
		t.Errorf("Bytes = %x", id.Bytes())
	}
	if id.URL() != "automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB" || id.String() != "3ybZCR5J6TswAfXnMg85CH9kGuZB" {
		t.Errorf("URL = %s", id.URL())
	}
	// The 27-character id seen in a doc-unavailable frame (§13).
	if _, err := ParseDocumentID("eTz7BQn7mdphdcvajLFeyB7rMMC"); err != nil {
		t.Errorf("27-char id: %v", err)
	}
}

func TestHashWorkedExample(t *testing.T) {
	h, err := ParseHash("d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698")
	if err != nil {
		t.Fatal(err)
	}
	const b58 = "2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS"
	if h.Base58() != b58 {
		t.Errorf("Base58 = %s", h.Base58())
	}
	back, err := ParseBase58Hash(b58)
	if err != nil || back != h {
		t.Errorf("ParseBase58Hash = %v, %v", back, err)
	}
	if h.String() != "d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698" {
		t.Errorf("String = %s", h)
	}
	// JSON uses hex.
	b, _ := json.Marshal(struct{ H Hash }{h})
	if string(b) != `{"H":"d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698"}` {
		t.Errorf("JSON = %s", b)
	}
	var v struct{ H Hash }
	if err := json.Unmarshal(b, &v); err != nil || v.H != h {
		t.Errorf("Unmarshal: %v", err)
	}
	for _, bad := range []string{"", "d4", strings.Repeat("z", 64), strings.Repeat("0", 63), strings.Repeat("0", 66)} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("ParseHash(%q) err = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "0OIl", b58[:len(b58)-1] + "T", "3ybZCR5J6TswAfXnMg85CH9kGuZB", strings.Repeat("2", 200)} {
		if _, err := ParseBase58Hash(bad); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("ParseBase58Hash(%q) err = %v", bad, err)
		}
	}
}

func TestBase58(t *testing.T) {
	tests := []struct{ hex, b58 string }{
		{"", ""},
		{"00", "1"},
		{"0000", "11"},
		{"61", "2g"},
		{"626262", "a3gV"},
		{"636363", "aPEr"},
		{"00000000000000000000", "1111111111"},
		{"000000287fb4cd", "111233QC4"},
		{"73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"},
		{"ffffffff", "7YXq9G"},
	}
	for _, tt := range tests {
		raw, _ := hex.DecodeString(tt.hex)
		if got := base58Encode(raw); got != tt.b58 {
			t.Errorf("encode(%s) = %s, want %s", tt.hex, got, tt.b58)
		}
		back, err := base58Decode(tt.b58)
		if err != nil || hex.EncodeToString(back) != tt.hex {
			t.Errorf("decode(%s) = %x, %v", tt.b58, back, err)
		}
	}
	if _, err := base58Decode("abc0"); err == nil {
		t.Error("decoded '0'")
	}
}

func TestNewDocumentID(t *testing.T) {
	seen := map[DocumentID]bool{}
	for i := 0; i < 100; i++ {
		id := NewDocumentID()
		if seen[id] {
			t.Fatal("duplicate id")
		}
		seen[id] = true
		if _, err := ParseDocumentID(string(id)); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		b := id.Bytes()
		if len(b) != 16 || b[6]>>4 != 4 || b[8]>>6 != 2 {
			t.Fatalf("%s: not a UUID v4: %x", id, b)
		}
		if n := len(id); n > 28 { // usually 27 or 28; shorter when the first byte is small
			t.Errorf("%s: length %d", id, n)
		}
	}
}

func TestParseDocumentIDErrors(t *testing.T) {
	sixteen, _ := hex.DecodeString("d59946260838467a90447ba8cfd4c181")
	tests := []struct {
		in, reason string
	}{
		{"", "empty"},
		{"3ybZCR5J6TswAfXnMg85CH9kGuZC", "checksum"},               // last char changed
		{"3ybZCR5J6TswAfXnMg85CH9kGuZ0", "invalid base58"},         // '0' is not base58
		{"d5994626-0838-467a-9044-7ba8cfd4c181", "invalid base58"}, // legacy UUID form
		{base58CheckEncode(sixteen[:15]), "want 16"},
		{base58CheckEncode(append(sixteen, 0)), "want 16"},
		{"1111", "checksum"},
		{"11", "too short"},
		{strings.Repeat("z", 100), "too long"},
		{"automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB", "invalid base58"},
	}
	for _, tt := range tests {
		_, err := ParseDocumentID(tt.in)
		if !errors.Is(err, ErrInvalidDocumentID) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ParseDocumentID(%q) err = %v, want reason %q", tt.in, err, tt.reason)
		}
	}
	if DocumentID("garbage").Bytes() != nil {
		t.Error("Bytes of an invalid id")
	}
}

func TestParseURL(t *testing.T) {
	const id = "3ybZCR5J6TswAfXnMg85CH9kGuZB"
	const h1 = "2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS"
	var zero Hash
	h2 := zero.Base58()
	tests := []struct {
		in      string
		heads   int
		wantErr error
	}{
		{"automerge:" + id, 0, nil},
		{id, 0, nil},
		{"automerge:" + id + "#", 0, nil},
		{"automerge:" + id + "#" + h1, 1, nil},
		{"automerge:" + id + "#" + h1 + "|" + h2, 2, nil},
		{"", 0, ErrInvalidDocumentID},
		{"automerge:", 0, ErrInvalidDocumentID},
		{"automerge:" + id + "x", 0, ErrInvalidDocumentID},
		{"automerge://" + id, 0, ErrInvalidDocumentID},
		{"Automerge:" + id, 0, ErrInvalidDocumentID},
		{"automerge:" + id + "#" + h1 + "|", 0, ErrInvalidHash},
		{"automerge:" + id + "#zzz", 0, ErrInvalidHash},
		{"automerge:" + id + "#" + id, 0, ErrInvalidHash},
		{"automerge:" + id + "#d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698", 0, ErrInvalidHash},
	}
	for _, tt := range tests {
		gotID, heads, err := ParseURL(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, ErrInvalidURL) || !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseURL(%q) err = %v, want ErrInvalidURL and %v", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || gotID != id || len(heads) != tt.heads {
			t.Errorf("ParseURL(%q) = %q, %v, %v", tt.in, gotID, heads, err)
			continue
		}
		if tt.heads > 0 && heads[0].Base58() != h1 {
			t.Errorf("head 0 = %s", heads[0].Base58())
		}
		if tt.heads > 0 {
			if u := FormatURL(gotID, heads); u != tt.in {
				t.Errorf("FormatURL = %s, want %s", u, tt.in)
			}
		}
	}
	if u := FormatURL(id, nil); u != "automerge:"+id {
		t.Errorf("FormatURL = %s", u)
	}
}
