package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

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

// Structural limits: a protocol message is a flat map with a few short lists.
// Together with the check that declared lengths are backed by bytes, they
// bound what a hostile frame can make the decoder do.
const (
	maxNestedLevels  = 16
	maxArrayElements = 1 << 16
	maxMapPairs      = 1 << 12
)

// decMode checks well-formedness and the limits above before Decode looks
// at a frame; decModeErr is set only if the (constant) options were
// rejected, which Decode and Encode report instead of panicking.
var decMode, decModeErr = cbor.DecOptions{
	MaxNestedLevels:  maxNestedLevels,
	MaxArrayElements: maxArrayElements,
	MaxMapPairs:      maxMapPairs,
	IndefLength:      cbor.IndefLengthAllowed,
}.DecMode()

// Decode decodes one frame with the default options. See DecodeOptions.Decode.
func Decode(b []byte) (Message, error) {
	return DecodeOptions{}.Decode(b)
}

// Decode decodes one frame: a single CBOR map with unique text keys and a
// text "type". It checks the CBOR type of every known field but not which
// fields the message type requires (see Message.Validate).
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
	if b[0]>>5 != majorMap {
		return Message{}, fmt.Errorf("%w: top level is %s, not a map", ErrMalformed, majorName(b[0]))
	}
	// From here on b is one well-formed item within the limits, so the
	// walk below only has to check types, UTF-8 and duplicate keys.
	if err := decMode.Wellformed(b); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var f topFields
	if err := f.collect(b); err != nil {
		return Message{}, err
	}
	raw := f.raw[idxType]
	if raw == nil {
		return Message{}, fmt.Errorf("%w: type", ErrMissingField)
	}
	t, err := decodeText(keyType, raw)
	if err != nil {
		return Message{}, err
	}
	if t == "" {
		return Message{}, fmt.Errorf("%w: type is empty", ErrMissingField)
	}
	m := Message{Type: t}
	if err := m.decodeFields(&f); err != nil {
		return Message{Type: m.Type}, err
	}
	if !KnownType(m.Type) {
		return m, fmt.Errorf("%w: %q", ErrUnknownType, m.Type)
	}
	return m, nil
}

// Indexes of the top-level keys in topFields.raw.
const (
	idxType = iota
	idxSenderID
	idxTargetID
	idxDocumentID
	idxData
	idxPeerMetadata
	idxSupportedProtocolVersions
	idxSelectedProtocolVersion
	idxMessage
	idxSessionID
	idxCount
	idxAdd
	idxRemove
	idxNewHeads
	numKeys
)

func keyIndex(k []byte) int {
	switch string(k) {
	case keyType:
		return idxType
	case keySenderID:
		return idxSenderID
	case keyTargetID:
		return idxTargetID
	case keyDocumentID:
		return idxDocumentID
	case keyData:
		return idxData
	case keyPeerMetadata:
		return idxPeerMetadata
	case keySupportedProtocolVersions:
		return idxSupportedProtocolVersions
	case keySelectedProtocolVersion:
		return idxSelectedProtocolVersion
	case keyMessage:
		return idxMessage
	case keySessionID:
		return idxSessionID
	case keyCount:
		return idxCount
	case keyAdd:
		return idxAdd
	case keyRemove:
		return idxRemove
	case keyNewHeads:
		return idxNewHeads
	}
	return -1
}

// topFields holds the raw values of a frame's known keys (nil when absent,
// undefined or null) and its unknown pairs. All slices point into the frame.
type topFields struct {
	raw     [numKeys][]byte
	unknown [][2][]byte
}

func (f *topFields) collect(b []byte) error {
	p, err := pairsOf(b, "message")
	if err != nil {
		return err
	}
	for {
		k, v, ok, err := p.next()
		if !ok || err != nil {
			return err
		}
		if i := keyIndex(k); i < 0 {
			f.unknown = append(f.unknown, [2][]byte{k, v})
		} else if !isAbsent(v) {
			f.raw[i] = v
		}
	}
}

// decodeFields decodes the known fields in a fixed order, so that the first
// error reported is deterministic, and, for ephemeral messages, keeps the
// unknown pairs in Extra.
func (m *Message) decodeFields(f *topFields) error {
	text := [...]struct {
		idx int
		key string
		dst *string
	}{
		{idxSenderID, keySenderID, &m.SenderID},
		{idxTargetID, keyTargetID, &m.TargetID},
		{idxDocumentID, keyDocumentID, &m.DocumentID},
		{idxSelectedProtocolVersion, keySelectedProtocolVersion, &m.SelectedProtocolVersion},
		{idxMessage, keyMessage, &m.Message},
		{idxSessionID, keySessionID, &m.SessionID},
	}
	for _, t := range text {
		if raw := f.raw[t.idx]; raw != nil {
			s, err := decodeText(t.key, raw)
			if err != nil {
				return err
			}
			*t.dst = s
		}
	}
	lists := [...]struct {
		idx int
		key string
		dst *[]string
	}{
		{idxSupportedProtocolVersions, keySupportedProtocolVersions, &m.SupportedProtocolVersions},
		{idxAdd, keyAdd, &m.Add},
		{idxRemove, keyRemove, &m.Remove},
	}
	for _, l := range lists {
		if raw := f.raw[l.idx]; raw != nil {
			v, err := decodeTextList(l.key, raw)
			if err != nil {
				return err
			}
			*l.dst = v
		}
	}
	var err error
	if raw := f.raw[idxData]; raw != nil {
		if m.Data, err = decodeBytes(keyData, raw); err != nil {
			return err
		}
	}
	if raw := f.raw[idxCount]; raw != nil {
		if m.Count, err = decodeCount(keyCount, raw); err != nil {
			return err
		}
	}
	if raw := f.raw[idxPeerMetadata]; raw != nil {
		if m.PeerMetadata, err = decodePeerMetadata(raw); err != nil {
			return err
		}
	}
	if raw := f.raw[idxNewHeads]; raw != nil {
		if m.NewHeads, err = decodeNewHeads(raw); err != nil {
			return err
		}
	}
	if m.Type == TypeEphemeral && len(f.unknown) > 0 {
		m.Extra = make(map[string]cbor.RawMessage, len(f.unknown))
		for _, kv := range f.unknown {
			m.Extra[string(kv[0])] = bytes.Clone(kv[1])
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
)

// CBOR simple values, float heads and the break code.
const (
	cborFalse     = 0xf4
	cborTrue      = 0xf5
	cborNull      = 0xf6
	cborUndefined = 0xf7
	cborFloat16   = 0xf9
	cborFloat32   = 0xfa
	cborFloat64   = 0xfb
	cborBreak     = 0xff
	aiIndefinite  = 31
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
func isAbsent(raw []byte) bool {
	return len(raw) == 1 && (raw[0] == cborUndefined || raw[0] == cborNull)
}

func typeError(key string, raw []byte, want string) error {
	return fmt.Errorf("%w: %s is %s, want %s", ErrMalformed, key, majorName(raw[0]), want)
}

// The walker below reads items that decMode.Wellformed has accepted. It
// still checks every bound and reports a violation as errTruncated rather
// than trusting that, so that no input can make it panic.

var errTruncated = fmt.Errorf("%w: truncated or invalid CBOR", ErrMalformed)

// head parses the head of the item at b[off:]. arg is the argument (value,
// length or count; 0 for an indefinite length) and next the offset after the
// head.
func head(b []byte, off int) (major, ai byte, arg uint64, next int, err error) {
	if off >= len(b) {
		return 0, 0, 0, 0, errTruncated
	}
	major, ai = b[off]>>5, b[off]&0x1f
	n := 0
	switch {
	case ai < 24:
		return major, ai, uint64(ai), off + 1, nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	case ai == aiIndefinite:
		return major, ai, 0, off + 1, nil
	default:
		return 0, 0, 0, 0, errTruncated
	}
	if off+1+n > len(b) {
		return 0, 0, 0, 0, errTruncated
	}
	var buf [8]byte
	copy(buf[8-n:], b[off+1:off+1+n])
	return major, ai, binary.BigEndian.Uint64(buf[:]), off + 1 + n, nil
}

// itemEnd returns the offset just past the item at b[off:].
func itemEnd(b []byte, off, depth int) (int, error) {
	if depth > maxNestedLevels {
		return 0, errTruncated
	}
	major, ai, arg, next, err := head(b, off)
	if err != nil {
		return 0, err
	}
	switch major {
	case majorUint, majorNegInt:
		return next, nil
	case majorBytes, majorText:
		if ai == aiIndefinite {
			return untilBreak(b, next, depth)
		}
		if arg > uint64(len(b)-next) {
			return 0, errTruncated
		}
		return next + int(arg), nil
	case majorArray, majorMap:
		if ai == aiIndefinite {
			return untilBreak(b, next, depth)
		}
		if arg > uint64(len(b)-next) { // every item takes at least one byte
			return 0, errTruncated
		}
		n := int(arg)
		if major == majorMap {
			n *= 2
		}
		for range n {
			if next, err = itemEnd(b, next, depth+1); err != nil {
				return 0, err
			}
		}
		return next, nil
	case majorTag:
		return itemEnd(b, next, depth+1)
	}
	if ai == aiIndefinite { // a break where an item belongs
		return 0, errTruncated
	}
	return next, nil // simple value or float
}

// untilBreak skips items from off up to and including the break code.
func untilBreak(b []byte, off, depth int) (int, error) {
	for {
		if off >= len(b) {
			return 0, errTruncated
		}
		if b[off] == cborBreak {
			return off + 1, nil
		}
		var err error
		if off, err = itemEnd(b, off, depth+1); err != nil {
			return 0, err
		}
	}
}

// items iterates over the items of an array or map item (for a map: keys
// and values alternately).
type items struct {
	raw   []byte
	off   int
	left  uint64 // items left, for a definite length
	indef bool
}

func itemsOf(raw []byte) (items, error) {
	major, ai, arg, off, err := head(raw, 0)
	if err != nil {
		return items{}, err
	}
	if arg > uint64(len(raw)) { // every item takes at least one byte
		return items{}, errTruncated
	}
	if major == majorMap {
		arg *= 2
	}
	return items{raw: raw, off: off, left: arg, indef: ai == aiIndefinite}, nil
}

// next returns the next item; ok is false at the end.
func (it *items) next() (item []byte, ok bool, err error) {
	if it.indef {
		if it.off >= len(it.raw) {
			return nil, false, errTruncated
		}
		if it.raw[it.off] == cborBreak {
			return nil, false, nil
		}
	} else {
		if it.left == 0 {
			return nil, false, nil
		}
		it.left--
	}
	end, err := itemEnd(it.raw, it.off, 1)
	if err != nil {
		return nil, false, err
	}
	item = it.raw[it.off:end]
	it.off = end
	return item, true, nil
}

// pairs iterates over the entries of a map item, checking that keys are
// text strings and unique.
type pairs struct {
	it     items
	name   string // which map, for errors
	small  [16][]byte
	nsmall int
	big    map[string]struct{}
}

func pairsOf(raw []byte, name string) (pairs, error) {
	it, err := itemsOf(raw)
	return pairs{it: it, name: name}, err
}

// next returns the next key text and raw value; ok is false at the end.
func (p *pairs) next() (k, v []byte, ok bool, err error) {
	item, ok, err := p.it.next()
	if !ok || err != nil {
		return nil, nil, false, err
	}
	if item[0]>>5 != majorText {
		return nil, nil, false, fmt.Errorf("%w: %s has a key that is %s, not text", ErrMalformed, p.name, majorName(item[0]))
	}
	if k, err = textBytes(item); err != nil {
		return nil, nil, false, fmt.Errorf("%w: %s key: %v", ErrMalformed, p.name, err)
	}
	if v, ok, err = p.it.next(); !ok || err != nil {
		return nil, nil, false, errTruncated
	}
	// Duplicate check: a scan while small, a set beyond that.
	if p.big != nil {
		if _, dup := p.big[string(k)]; dup {
			return nil, nil, false, fmt.Errorf("%w: %s has key %q twice", ErrMalformed, p.name, k)
		}
		p.big[string(k)] = struct{}{}
		return k, v, true, nil
	}
	for _, s := range p.small[:p.nsmall] {
		if bytes.Equal(s, k) {
			return nil, nil, false, fmt.Errorf("%w: %s has key %q twice", ErrMalformed, p.name, k)
		}
	}
	if p.nsmall < len(p.small) {
		p.small[p.nsmall] = k
		p.nsmall++
	} else {
		p.big = make(map[string]struct{}, 4*len(p.small))
		for _, s := range p.small {
			p.big[string(s)] = struct{}{}
		}
		p.big[string(k)] = struct{}{}
	}
	return k, v, true, nil
}

// stringBytes returns the content of the byte or text string item raw: a
// subslice of raw for a definite length, a new slice joining the chunks for
// an indefinite one.
func stringBytes(raw []byte) ([]byte, error) {
	_, ai, arg, off, err := head(raw, 0)
	if err != nil {
		return nil, err
	}
	if ai != aiIndefinite {
		if arg != uint64(len(raw)-off) {
			return nil, errTruncated
		}
		return raw[off:], nil
	}
	it, err := itemsOf(raw)
	if err != nil {
		return nil, err
	}
	out := []byte{}
	for {
		chunk, ok, err := it.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		if chunk[0]>>5 != raw[0]>>5 || chunk[0]&0x1f == aiIndefinite {
			return nil, errTruncated
		}
		c, err := stringBytes(chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, c...)
	}
}

// textBytes is stringBytes for a text string, checking that it is UTF-8.
func textBytes(raw []byte) ([]byte, error) {
	b, err := stringBytes(raw)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, errors.New("invalid UTF-8")
	}
	return b, nil
}

func decodeText(key string, raw []byte) (string, error) {
	if raw[0]>>5 != majorText {
		return "", typeError(key, raw, "text")
	}
	b, err := textBytes(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
	}
	return string(b), nil
}

// decodeTextList decodes an array of text strings. An empty array gives an
// empty, non-nil slice.
func decodeTextList(key string, raw []byte) ([]string, error) {
	if raw[0]>>5 != majorArray {
		return nil, typeError(key, raw, "an array of text")
	}
	it, err := itemsOf(raw)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for {
		item, ok, err := it.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		if item[0]>>5 != majorText {
			return nil, typeError(fmt.Sprintf("%s[%d]", key, len(out)), item, "text")
		}
		b, err := textBytes(item)
		if err != nil {
			return nil, fmt.Errorf("%w: %s[%d]: %v", ErrMalformed, key, len(out), err)
		}
		out = append(out, string(b))
	}
}

// decodeBytes decodes a byte string into a new slice; an empty one gives nil.
func decodeBytes(key string, raw []byte) ([]byte, error) {
	if raw[0]>>5 != majorBytes {
		return nil, typeError(key, raw, "a byte string")
	}
	b, err := stringBytes(raw)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	if raw[0]&0x1f == aiIndefinite {
		return b, nil // already a new slice
	}
	return bytes.Clone(b), nil
}

// decodeNumber decodes an unsigned or negative integer or a float into a
// float64, rejecting NaN and infinities. isUint reports an unsigned integer,
// whose exact value is u.
func decodeNumber(key string, raw []byte) (f float64, u uint64, isUint bool, err error) {
	major, _, arg, _, err := head(raw, 0)
	if err != nil {
		return 0, 0, false, err
	}
	switch {
	case major == majorUint:
		return float64(arg), arg, true, nil
	case major == majorNegInt:
		return -1 - float64(arg), 0, false, nil
	case raw[0] == cborFloat16:
		f = float16To64(uint16(arg))
	case raw[0] == cborFloat32:
		f = float64(math.Float32frombits(uint32(arg)))
	case raw[0] == cborFloat64:
		f = math.Float64frombits(arg)
	default:
		return 0, 0, false, typeError(key, raw, "a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, 0, false, fmt.Errorf("%w: %s is %v", ErrMalformed, key, f)
	}
	return f, 0, false, nil
}

// float16To64 converts an IEEE 754 half-precision value.
func float16To64(h uint16) float64 {
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	var f float64
	switch exp {
	case 0: // zero or subnormal
		f = math.Ldexp(mant, -24)
	case 0x1f:
		if mant == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}

// decodeCount decodes a non-negative integer sent as uint or, as cbor-x does
// above 2^32-1, as an integral float.
func decodeCount(key string, raw []byte) (uint64, error) {
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

func decodePeerMetadata(raw []byte) (*PeerMetadata, error) {
	if raw[0]>>5 != majorMap {
		return nil, typeError(keyPeerMetadata, raw, "a map")
	}
	p, err := pairsOf(raw, keyPeerMetadata)
	if err != nil {
		return nil, err
	}
	var pm PeerMetadata
	for {
		k, v, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return &pm, nil
		}
		if isAbsent(v) {
			continue
		}
		switch string(k) {
		case keyStorageID:
			if pm.StorageID, err = decodeText(keyPeerMetadata+"."+keyStorageID, v); err != nil {
				return nil, err
			}
		case keyIsEphemeral:
			switch v[0] {
			case cborTrue:
				pm.IsEphemeral = true
			case cborFalse:
			default:
				return nil, typeError(keyPeerMetadata+"."+keyIsEphemeral, v, "a boolean")
			}
		}
	}
}

func decodeNewHeads(raw []byte) (map[string]HeadsAt, error) {
	if raw[0]>>5 != majorMap {
		return nil, typeError(keyNewHeads, raw, "a map")
	}
	p, err := pairsOf(raw, keyNewHeads)
	if err != nil {
		return nil, err
	}
	out := map[string]HeadsAt{}
	for {
		k, v, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		storageID := string(k)
		h, err := decodeHeadsAt(keyNewHeads+"["+storageID+"]", v)
		if err != nil {
			return nil, err
		}
		out[storageID] = h
	}
}

func decodeHeadsAt(name string, raw []byte) (HeadsAt, error) {
	if raw[0]>>5 != majorMap {
		return HeadsAt{}, typeError(name, raw, "a map")
	}
	p, err := pairsOf(raw, name)
	if err != nil {
		return HeadsAt{}, err
	}
	h := HeadsAt{Heads: []string{}}
	for {
		k, v, ok, err := p.next()
		if err != nil {
			return HeadsAt{}, err
		}
		if !ok {
			return h, nil
		}
		if isAbsent(v) {
			continue
		}
		switch string(k) {
		case keyHeads:
			if h.Heads, err = decodeTextList(name+"."+keyHeads, v); err != nil {
				return HeadsAt{}, err
			}
		case keyTimestamp:
			if h.Timestamp, _, _, err = decodeNumber(name+"."+keyTimestamp, v); err != nil {
				return HeadsAt{}, err
			}
		}
	}
}
