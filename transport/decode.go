package transport

import (
	"fmt"
	"math"

	"github.com/fxamacker/cbor/v2"
)

// DefaultMaxSize is the frame size limit Decode applies when none is given:
// 64 MiB, enough for whole documents of tens of megabytes, which travel in
// one message.
const DefaultMaxSize = 64 << 20

// DecodeOptions configures decoding.
type DecodeOptions struct {
	// MaxSize is the largest frame accepted, in bytes; larger frames fail
	// with ErrTooLarge before any parsing. 0 (or less) means DefaultMaxSize.
	MaxSize int64
}

// Structural limits: a protocol message is a flat map with a few short lists;
// these bound what a hostile frame can make the decoder allocate (declared
// lengths are also checked against the bytes actually present).
const (
	maxNestedLevels  = 16
	maxArrayElements = 1 << 16
	maxMapPairs      = 1 << 12
)

// decMode is the CBOR decoder configuration; decModeErr is set only if the
// (constant) options were rejected, which Decode reports instead of panicking.
var decMode, decModeErr = cbor.DecOptions{
	DupMapKey:          cbor.DupMapKeyEnforcedAPF,
	MaxNestedLevels:    maxNestedLevels,
	MaxArrayElements:   maxArrayElements,
	MaxMapPairs:        maxMapPairs,
	IndefLength:        cbor.IndefLengthAllowed,
	UTF8:               cbor.UTF8RejectInvalid,
	ByteStringToString: cbor.ByteStringToStringForbidden,
}.DecMode()

// Decode decodes one frame with the default options. See DecodeOptions.Decode.
func Decode(b []byte) (Message, error) {
	return DecodeOptions{}.Decode(b)
}

// Decode decodes one frame: a single CBOR map with text keys and a text
// "type". It checks the CBOR type of every known field but not which fields
// the message type requires (see Message.Validate).
//
// Errors wrap ErrTooLarge, ErrMalformed, ErrMissingField (no "type") or
// ErrUnknownType. With ErrUnknownType the returned Message holds every field
// that could be decoded; with the other errors it holds at most the Type.
// The returned Message never aliases b.
func (o DecodeOptions) Decode(b []byte) (Message, error) {
	maxSize := o.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if int64(len(b)) > maxSize {
		return Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), maxSize)
	}
	if decModeErr != nil {
		return Message{}, fmt.Errorf("transport: CBOR decoder setup: %w", decModeErr)
	}
	if len(b) == 0 {
		return Message{}, fmt.Errorf("%w: empty input", ErrMalformed)
	}
	if mt := b[0] >> 5; mt != majorMap {
		return Message{}, fmt.Errorf("%w: top level is %s, not a map", ErrMalformed, majorName(b[0]))
	}
	var top map[string]cbor.RawMessage
	if err := decMode.Unmarshal(b, &top); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}

	var m Message
	raw, ok := top[keyType]
	if !ok || isAbsent(raw) {
		return Message{}, fmt.Errorf("%w: type", ErrMissingField)
	}
	t, err := decodeText(keyType, raw)
	if err != nil {
		return Message{}, err
	}
	if t == "" {
		return Message{}, fmt.Errorf("%w: type is empty", ErrMissingField)
	}
	m.Type = t
	if err := m.decodeFields(top); err != nil {
		return Message{Type: m.Type}, err
	}
	if !KnownType(m.Type) {
		return m, fmt.Errorf("%w: %q", ErrUnknownType, m.Type)
	}
	return m, nil
}

// decodeFields fills every known field present in top (in a fixed order, so
// that the first error reported is deterministic) and, for ephemeral
// messages, keeps the unknown keys in Extra.
func (m *Message) decodeFields(top map[string]cbor.RawMessage) error {
	text := []struct {
		key string
		dst *string
	}{
		{keySenderID, &m.SenderID},
		{keyTargetID, &m.TargetID},
		{keyDocumentID, &m.DocumentID},
		{keySelectedProtocolVersion, &m.SelectedProtocolVersion},
		{keyMessage, &m.Message},
		{keySessionID, &m.SessionID},
	}
	for _, f := range text {
		raw, ok := present(top, f.key)
		if !ok {
			continue
		}
		s, err := decodeText(f.key, raw)
		if err != nil {
			return err
		}
		*f.dst = s
	}
	lists := []struct {
		key string
		dst *[]string
	}{
		{keySupportedProtocolVersions, &m.SupportedProtocolVersions},
		{keyAdd, &m.Add},
		{keyRemove, &m.Remove},
	}
	for _, f := range lists {
		raw, ok := present(top, f.key)
		if !ok {
			continue
		}
		l, err := decodeTextList(f.key, raw)
		if err != nil {
			return err
		}
		*f.dst = l
	}
	if raw, ok := present(top, keyData); ok {
		d, err := decodeBytes(keyData, raw)
		if err != nil {
			return err
		}
		m.Data = d
	}
	if raw, ok := present(top, keyCount); ok {
		c, err := decodeCount(keyCount, raw)
		if err != nil {
			return err
		}
		m.Count = c
	}
	if raw, ok := present(top, keyPeerMetadata); ok {
		pm, err := decodePeerMetadata(raw)
		if err != nil {
			return err
		}
		m.PeerMetadata = pm
	}
	if raw, ok := present(top, keyNewHeads); ok {
		nh, err := decodeNewHeads(raw)
		if err != nil {
			return err
		}
		m.NewHeads = nh
	}
	if m.Type == TypeEphemeral {
		for k, raw := range top {
			if knownKey(k) {
				continue
			}
			if m.Extra == nil {
				m.Extra = make(map[string]cbor.RawMessage)
			}
			m.Extra[k] = raw
		}
	}
	return nil
}

// CBOR major types.
const (
	majorUint   = 0
	majorNegInt = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7
)

// CBOR simple values and float heads.
const (
	cborFalse     = 0xf4
	cborTrue      = 0xf5
	cborNull      = 0xf6
	cborUndefined = 0xf7
	cborFloat16   = 0xf9
	cborFloat32   = 0xfa
	cborFloat64   = 0xfb
)

func majorName(b0 byte) string {
	switch b0 {
	case cborFalse, cborTrue:
		return "a boolean"
	case cborNull:
		return "null"
	case cborUndefined:
		return "undefined"
	case cborFloat16, cborFloat32, cborFloat64:
		return "a float"
	}
	switch b0 >> 5 {
	case majorUint:
		return "an unsigned integer"
	case majorNegInt:
		return "a negative integer"
	case majorBytes:
		return "a byte string"
	case majorText:
		return "a text string"
	case majorArray:
		return "an array"
	case majorMap:
		return "a map"
	case majorTag:
		return "a tagged item"
	}
	return "a simple value"
}

// isAbsent reports whether raw is CBOR undefined or null, which JavaScript
// peers send for an optional value that is not set.
func isAbsent(raw cbor.RawMessage) bool {
	return len(raw) == 1 && (raw[0] == cborUndefined || raw[0] == cborNull)
}

// present returns the raw value of key unless it is missing, undefined or null.
func present(m map[string]cbor.RawMessage, key string) (cbor.RawMessage, bool) {
	raw, ok := m[key]
	if !ok || isAbsent(raw) {
		return nil, false
	}
	return raw, true
}

func typeError(key string, raw cbor.RawMessage, want string) error {
	return fmt.Errorf("%w: %s is %s, want %s", ErrMalformed, key, majorName(raw[0]), want)
}

// Every raw value below comes from a successful Unmarshal of the enclosing
// item, so it is one well-formed, non-empty CBOR item.

func decodeText(key string, raw cbor.RawMessage) (string, error) {
	if raw[0]>>5 != majorText {
		return "", typeError(key, raw, "text")
	}
	var s string
	if err := decMode.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
	}
	return s, nil
}

// decodeTextList decodes an array of text strings. An empty array gives an
// empty, non-nil slice.
func decodeTextList(key string, raw cbor.RawMessage) ([]string, error) {
	if raw[0]>>5 != majorArray {
		return nil, typeError(key, raw, "an array of text")
	}
	var items []cbor.RawMessage
	if err := decMode.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := decodeText(fmt.Sprintf("%s[%d]", key, i), it)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// decodeBytes decodes a byte string; an empty one gives nil. A definite-length
// byte string is returned as a subslice of raw (which the caller owns),
// saving a copy of what may be a whole document.
func decodeBytes(key string, raw cbor.RawMessage) ([]byte, error) {
	if raw[0]>>5 != majorBytes {
		return nil, typeError(key, raw, "a byte string")
	}
	var b []byte
	if off, ok := definiteHeadLen(raw); ok {
		b = raw[off:len(raw):len(raw)]
	} else if err := decMode.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

// definiteHeadLen returns the length of the head of a definite-length item.
func definiteHeadLen(raw []byte) (int, bool) {
	switch ai := raw[0] & 0x1f; {
	case ai < 24:
		return 1, true
	case ai == 24:
		return 2, true
	case ai == 25:
		return 3, true
	case ai == 26:
		return 5, true
	case ai == 27:
		return 9, true
	}
	return 0, false
}

// decodeNumber decodes an unsigned or negative integer or a float into a
// float64, rejecting NaN and infinities. isUint reports an unsigned integer,
// whose exact value is u.
func decodeNumber(key string, raw cbor.RawMessage) (f float64, u uint64, isUint bool, err error) {
	switch {
	case raw[0]>>5 == majorUint:
		if err := decMode.Unmarshal(raw, &u); err != nil {
			return 0, 0, false, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
		}
		return float64(u), u, true, nil
	case raw[0]>>5 == majorNegInt:
		var i int64
		if err := decMode.Unmarshal(raw, &i); err != nil {
			// Below -2^63: still a number, but not one worth keeping exactly.
			return 0, 0, false, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
		}
		return float64(i), 0, false, nil
	case raw[0] == cborFloat16 || raw[0] == cborFloat32 || raw[0] == cborFloat64:
		if err := decMode.Unmarshal(raw, &f); err != nil {
			return 0, 0, false, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, 0, false, fmt.Errorf("%w: %s is %v", ErrMalformed, key, f)
		}
		return f, 0, false, nil
	}
	return 0, 0, false, typeError(key, raw, "a number")
}

// decodeCount decodes a non-negative integer sent as uint or, as cbor-x does
// above 2^32-1, as an integral float.
func decodeCount(key string, raw cbor.RawMessage) (uint64, error) {
	f, u, isUint, err := decodeNumber(key, raw)
	if err != nil {
		return 0, err
	}
	if isUint {
		return u, nil
	}
	if f < 0 || f != math.Trunc(f) || f >= 1<<64 {
		return 0, fmt.Errorf("%w: %s is %v, want a non-negative integer", ErrMalformed, key, f)
	}
	return uint64(f), nil
}

// decodeMap decodes a map with text keys.
func decodeMap(key string, raw cbor.RawMessage) (map[string]cbor.RawMessage, error) {
	if raw[0]>>5 != majorMap {
		return nil, typeError(key, raw, "a map")
	}
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
	}
	return m, nil
}

func decodePeerMetadata(raw cbor.RawMessage) (*PeerMetadata, error) {
	m, err := decodeMap(keyPeerMetadata, raw)
	if err != nil {
		return nil, err
	}
	var pm PeerMetadata
	if v, ok := present(m, keyStorageID); ok {
		if pm.StorageID, err = decodeText(keyPeerMetadata+"."+keyStorageID, v); err != nil {
			return nil, err
		}
	}
	if v, ok := present(m, keyIsEphemeral); ok {
		switch v[0] {
		case cborTrue:
			pm.IsEphemeral = true
		case cborFalse:
		default:
			return nil, typeError(keyPeerMetadata+"."+keyIsEphemeral, v, "a boolean")
		}
	}
	return &pm, nil
}

func decodeNewHeads(raw cbor.RawMessage) (map[string]HeadsAt, error) {
	m, err := decodeMap(keyNewHeads, raw)
	if err != nil {
		return nil, err
	}
	out := make(map[string]HeadsAt, len(m))
	// Key order, so that the first error reported is deterministic.
	for _, storageID := range sortedKeys(m) {
		name := keyNewHeads + "[" + storageID + "]"
		v := m[storageID]
		entry, err := decodeMap(name, v)
		if err != nil {
			return nil, err
		}
		h := HeadsAt{Heads: []string{}}
		if hv, ok := present(entry, keyHeads); ok {
			if h.Heads, err = decodeTextList(name+"."+keyHeads, hv); err != nil {
				return nil, err
			}
		}
		if tv, ok := present(entry, keyTimestamp); ok {
			if h.Timestamp, _, _, err = decodeNumber(name+"."+keyTimestamp, tv); err != nil {
				return nil, err
			}
		}
		out[storageID] = h
	}
	return out, nil
}
