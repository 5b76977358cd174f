package transport

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"
)

// Encode encodes m as one CBOR map with text keys, in the shape JavaScript
// automerge-repo accepts:
//
//   - absent optional fields are omitted, never written as undefined or null
//     (see Message for what counts as absent);
//   - data is a byte string, count an unsigned integer, timestamp a float64,
//     selectedProtocolVersion text; peerMetadata always has isEphemeral;
//   - the top-level map uses the 2-byte count form (b9 00 NN) like cbor-x,
//     and a fixed key order starting with "type";
//   - count is written for every ephemeral message, even when 0.
//
// Encode returns an error wrapping ErrMissingField if Type is empty or if
// Data is empty for request, sync and ephemeral (JavaScript peers throw on
// an empty data), and ErrMalformed for text that is not valid UTF-8, a
// non-finite timestamp, or an Extra entry that is not one well-formed CBOR
// item or whose key names a known field. It does not otherwise validate;
// call Validate for that.
func Encode(m Message) ([]byte, error) {
	if m.Type == "" {
		return nil, fmt.Errorf("%w: type", ErrMissingField)
	}
	if needsData(m.Type) && len(m.Data) == 0 {
		return nil, fmt.Errorf("%w: %s message without data", ErrMissingField, m.Type)
	}
	e := encoder{buf: make([]byte, 0, 128+len(m.Data))}
	e.buf = append(e.buf, 0xb9, 0, 0) // map header, count patched below
	pairs := 0
	text := func(key, v string) {
		if v != "" {
			e.text(key, key)
			e.text(key, v)
			pairs++
		}
	}
	list := func(key string, v []string) {
		if v != nil {
			e.text(key, key)
			e.textList(key, v)
			pairs++
		}
	}
	text(keyType, m.Type)
	text(keySenderID, m.SenderID)
	text(keyTargetID, m.TargetID)
	text(keyDocumentID, m.DocumentID)
	if len(m.Data) > 0 {
		e.text(keyData, keyData)
		e.head(majorBytes, uint64(len(m.Data)))
		e.buf = append(e.buf, m.Data...)
		pairs++
	}
	text(keySessionID, m.SessionID)
	if m.Count != 0 || m.Type == TypeEphemeral {
		e.text(keyCount, keyCount)
		e.head(majorUint, m.Count)
		pairs++
	}
	if pm := m.PeerMetadata; pm != nil {
		e.text(keyPeerMetadata, keyPeerMetadata)
		n := uint64(1)
		if pm.StorageID != "" {
			n++
		}
		e.head(majorMap, n)
		if pm.StorageID != "" {
			e.text(keyStorageID, keyStorageID)
			e.text(keyStorageID, pm.StorageID)
		}
		e.text(keyIsEphemeral, keyIsEphemeral)
		e.bool(pm.IsEphemeral)
		pairs++
	}
	list(keySupportedProtocolVersions, m.SupportedProtocolVersions)
	text(keySelectedProtocolVersion, m.SelectedProtocolVersion)
	text(keyMessage, m.Message)
	list(keyAdd, m.Add)
	list(keyRemove, m.Remove)
	if m.NewHeads != nil {
		e.text(keyNewHeads, keyNewHeads)
		e.head(majorMap, uint64(len(m.NewHeads)))
		for _, storageID := range sortedKeys(m.NewHeads) {
			h := m.NewHeads[storageID]
			e.text(keyNewHeads, storageID)
			e.head(majorMap, 2)
			e.text(keyHeads, keyHeads)
			e.textList(keyHeads, h.Heads)
			e.text(keyTimestamp, keyTimestamp)
			e.float64(keyTimestamp, h.Timestamp)
		}
		pairs++
	}
	if len(m.Extra) > 0 && decModeErr != nil {
		return nil, fmt.Errorf("transport: CBOR decoder setup: %w", decModeErr)
	}
	for _, k := range sortedKeys(m.Extra) {
		if knownKey(k) {
			return nil, fmt.Errorf("%w: Extra key %q names a known field", ErrMalformed, k)
		}
		v := m.Extra[k]
		if len(v) == 0 {
			return nil, fmt.Errorf("%w: Extra[%q] is empty", ErrMalformed, k)
		}
		if err := decMode.Wellformed(v); err != nil {
			return nil, fmt.Errorf("%w: Extra[%q]: %v", ErrMalformed, k, err)
		}
		e.text("Extra key", k)
		e.buf = append(e.buf, v...)
		pairs++
	}
	if e.err != nil {
		return nil, e.err
	}
	if pairs > math.MaxUint16 {
		return nil, fmt.Errorf("%w: %d map entries", ErrMalformed, pairs)
	}
	binary.BigEndian.PutUint16(e.buf[1:3], uint16(pairs))
	return e.buf, nil
}

// encoder appends CBOR items to buf; the first error sticks.
type encoder struct {
	buf []byte
	err error
}

// head appends the head of an item of major type mt with argument n, in the
// shortest form.
func (e *encoder) head(mt byte, n uint64) {
	mt <<= 5
	switch {
	case n < 24:
		e.buf = append(e.buf, mt|byte(n))
	case n <= math.MaxUint8:
		e.buf = append(e.buf, mt|24, byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, mt|25)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
	case n <= math.MaxUint32:
		e.buf = append(e.buf, mt|26)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	default:
		e.buf = append(e.buf, mt|27)
		e.buf = binary.BigEndian.AppendUint64(e.buf, n)
	}
}

func (e *encoder) text(field, s string) {
	if !utf8.ValidString(s) {
		if e.err == nil {
			e.err = fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, field)
		}
		return
	}
	e.head(majorText, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) textList(field string, l []string) {
	e.head(majorArray, uint64(len(l)))
	for _, s := range l {
		e.text(field, s)
	}
}

func (e *encoder) bool(b bool) {
	if b {
		e.buf = append(e.buf, cborTrue)
	} else {
		e.buf = append(e.buf, cborFalse)
	}
}

func (e *encoder) float64(field string, f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		if e.err == nil {
			e.err = fmt.Errorf("%w: %s is %v", ErrMalformed, field, f)
		}
		return
	}
	e.buf = append(e.buf, cborFloat64)
	e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(f))
}

// sortedKeys returns the keys of m in lexical order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
