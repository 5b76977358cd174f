package transport

import (
	"errors"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// strictMode is an independent reference: fxamacker's decoder with duplicate
// keys and invalid UTF-8 rejected.
var strictMode, _ = cbor.DecOptions{
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	UTF8:             cbor.UTF8RejectInvalid,
	MaxNestedLevels:  maxNestedLevels,
	MaxArrayElements: maxArrayElements,
	MaxMapPairs:      maxMapPairs,
}.DecMode()

// FuzzDecode checks that Decode never panics and that whatever it accepts
// survives Encode and Decode unchanged. Seeded with the real frames of
// testdata/test-vectors.json and a few edge cases; `go test` runs the seeds,
// `go test -fuzz FuzzDecode ./transport` explores.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.frame(f))
	}
	f.Add(kv(f, "type", "ephemeral", "senderId", "a", "count", 3.0, "x", undef, "data", []byte{1}))
	f.Add(kv(f, "type", "remote-heads-changed", "newHeads", map[string]any{"s": map[string]any{"heads": []string{"h"}, "timestamp": uint64(7)}}))
	f.Add(kv(f, "type", "join", "peerMetadata", map[string]any{"storageId": null}, "supportedProtocolVersions", []string{}))
	f.Add(kv(f, "type", "what", "documentId", []byte{1}))
	f.Add([]byte{0xbf, 0x64, 't', 'y', 'p', 'e', 0x64, 's', 'y', 'n', 'c', 0xff})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Decode(in)
		if err != nil && !errors.Is(err, ErrUnknownType) {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMissingField) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode error %v wraps no sentinel", err)
			}
			return
		}
		if m.Type == "" {
			t.Fatalf("Decode accepted a message without type: %#v", m)
		}
		// What Decode accepts, the reference accepts too, with the same type.
		// (The reference also checks the content of built-in tags such as
		// bignums; Decode has no use for tags and leaves them be.)
		var ref map[string]cbor.RawMessage
		var tagErr *cbor.InadmissibleTagContentTypeError
		if err := strictMode.Unmarshal(in, &ref); errors.As(err, &tagErr) {
			return
		} else if err != nil {
			t.Fatalf("Decode accepted %x, the reference decoder says %v", in, err)
		}
		var refType string
		if err := strictMode.Unmarshal(ref["type"], &refType); err != nil || refType != m.Type {
			t.Fatalf("type %q, reference %q (%v)", m.Type, refType, err)
		}
		validErr := m.Validate()
		out, err := Encode(m)
		if err != nil {
			if validErr == nil {
				t.Fatalf("Encode of a valid decoded message: %v (%#v)", err, m)
			}
			if !errors.Is(err, ErrMissingField) {
				t.Fatalf("Encode of a decoded message: %v (%#v)", err, m)
			}
			return
		}
		again, err := Decode(out)
		if err != nil && !errors.Is(err, ErrUnknownType) {
			t.Fatalf("Decode(Encode(m)): %v\nin  %x\nout %x", err, in, out)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message\n got %#v\nwant %#v\nin  %x\nout %x", again, m, in, out)
		}
	})
}
