package crdt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/automerge/automerge-go"
)

// This file converts between Go values, the JSON view of a document and
// Automerge values.
//
// The normalized form of a value (what normalize returns and what the
// writers accept) is one of: nil, bool, string, int64, uint64 (only above
// math.MaxInt64), float64 (finite), []any, map[string]any, recursively.

// errEmptyKey: Automerge refuses "" as a map key.
var errEmptyKey = fmt.Errorf("%w: Automerge map keys cannot be empty", ErrTypeMismatch)

// decodeJSON decodes exactly one JSON value with UseNumber semantics.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON value", ErrInvalidJSON)
	}
	return v, nil
}

// normalize converts a JSON-compatible Go value to the normalized form.
// Integers (Go integer types, json.Number without fraction or exponent that
// fits int64) become int64; other numbers float64. Invalid UTF-8 in strings
// is replaced by U+FFFD, as encoding/json does. Types it does not know are
// passed through encoding/json (so structs with json tags work).
func normalize(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return x, nil
	case string:
		return validUTF8(x), nil
	case json.Number:
		return normalizeNumber(string(x))
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		return normalizeUint(uint64(x)), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		return normalizeUint(x), nil
	case float32:
		return normalizeFloat(float64(x))
	case float64:
		return normalizeFloat(x)
	case json.RawMessage:
		d, err := decodeJSON(x)
		if err != nil {
			return nil, err
		}
		return normalize(d)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k == "" {
				return nil, errEmptyKey
			}
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[validUTF8(k)] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot store %T: %v", ErrTypeMismatch, v, err)
		}
		d, err := decodeJSON(raw)
		if err != nil {
			return nil, err
		}
		return normalize(d)
	}
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func normalizeUint(u uint64) any {
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return u
}

func normalizeFloat(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: %v is not a JSON number", ErrTypeMismatch, f)
	}
	return f, nil
}

func normalizeNumber(s string) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return nil, fmt.Errorf("%w: number %s is out of range", ErrInvalidJSON, s)
		}
		return nil, fmt.Errorf("%w: %q is not a number", ErrInvalidJSON, s)
	}
	return normalizeFloat(f)
}

// viewOf reads an Automerge value as a JSON-compatible Go value.
func viewOf(v *automerge.Value) (any, error) {
	noteForeign(resultCost)
	switch v.Kind() {
	case automerge.KindMap:
		vals, err := v.Map().Values()
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(vals))
		for k, e := range vals {
			x, err := viewOf(e)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	case automerge.KindList:
		vals, err := v.List().Values()
		if err != nil {
			return nil, err
		}
		out := make([]any, len(vals))
		for i, e := range vals {
			x, err := viewOf(e)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case automerge.KindText:
		return v.Text().Get()
	case automerge.KindStr:
		return v.Str(), nil
	case automerge.KindInt64:
		return v.Int64(), nil
	case automerge.KindUint64:
		return v.Uint64(), nil
	case automerge.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, nil // as JSON.stringify does
		}
		return f, nil
	case automerge.KindBool:
		return v.Bool(), nil
	case automerge.KindCounter:
		return automerge.As[int64](v)
	case automerge.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano), nil
	case automerge.KindBytes:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	default: // KindNull, KindUnknown (a type from a newer Automerge)
		return nil, nil
	}
}

// encodeJSON encodes a value of the JSON view as JavaScript's
// JSON.stringify and encoding/json would (numbers in their shortest form,
// so an integral float64 prints like an integer), with map keys sorted and
// without encoding/json's HTML escaping.
func encodeJSON(v any) ([]byte, error) {
	return appendJSON(nil, v)
}

func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return appendString(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendFloat(b, x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	default:
		n, err := normalize(v)
		if err != nil {
			return nil, err
		}
		return appendJSON(b, n)
	}
}

func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: %v is not a JSON number", ErrTypeMismatch, f)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// 1e-07 -> 1e-7, as encoding/json and JavaScript write it.
		n := len(b)
		if n-start >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// jsonEqual compares two JSON-view (or normalized) values; numbers compare
// by numeric value, whatever their Go type.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	if na, ok := toNumber(a); ok {
		nb, ok := toNumber(b)
		return ok && na.equal(nb)
	}
	return false
}

// number is a JSON number in one of three exact representations.
type number struct {
	kind byte // 'i' int64, 'u' uint64, 'f' float64
	i    int64
	u    uint64
	f    float64
}

func toNumber(v any) (number, bool) {
	switch x := v.(type) {
	case int64:
		return number{kind: 'i', i: x}, true
	case uint64:
		return number{kind: 'u', u: x}, true
	case float64:
		return number{kind: 'f', f: x}, true
	case json.Number:
		n, err := normalizeNumber(string(x))
		if err != nil {
			return number{}, false
		}
		return toNumber(n)
	case int, int8, int16, int32, uint, uint8, uint16, uint32, float32:
		n, err := normalize(x)
		if err != nil {
			return number{}, false
		}
		return toNumber(n)
	}
	return number{}, false
}

func (a number) equal(b number) bool {
	switch {
	case a.kind == 'f' || b.kind == 'f':
		return a.float() == b.float()
	case a.kind == 'i' && b.kind == 'i':
		return a.i == b.i
	case a.kind == 'u' && b.kind == 'u':
		return a.u == b.u
	case a.kind == 'i': // b is uint64 > MaxInt64 unless built by hand
		return a.i >= 0 && uint64(a.i) == b.u
	default:
		return b.i >= 0 && uint64(b.i) == a.u
	}
}

func (a number) float() float64 {
	switch a.kind {
	case 'i':
		return float64(a.i)
	case 'u':
		return float64(a.u)
	}
	return a.f
}

// deepCopy copies maps and slices of a normalized value.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// putInMap writes a normalized value under key. Strings become Text
// objects, maps and slices new Map and List objects filled recursively.
func putInMap(m *automerge.Map, key string, v any) error {
	switch x := v.(type) {
	case string:
		return m.Set(key, automerge.NewText(x))
	case map[string]any:
		nm := automerge.NewMap()
		if err := m.Set(key, nm); err != nil {
			return err
		}
		return fillMap(nm, x)
	case []any:
		nl := automerge.NewList()
		if err := m.Set(key, nl); err != nil {
			return err
		}
		return fillList(nl, x)
	default:
		return m.Set(key, x)
	}
}

// putInList writes a normalized value at index i: inserting before i
// (i == length appends) or replacing element i.
func putInList(l *automerge.List, i int, insert bool, v any) error {
	put := func(x any) error {
		if insert {
			return l.Insert(i, x)
		}
		return l.Set(i, x)
	}
	switch x := v.(type) {
	case string:
		return put(automerge.NewText(x))
	case map[string]any:
		nm := automerge.NewMap()
		if err := put(nm); err != nil {
			return err
		}
		return fillMap(nm, x)
	case []any:
		nl := automerge.NewList()
		if err := put(nl); err != nil {
			return err
		}
		return fillList(nl, x)
	default:
		return put(x)
	}
}

func fillMap(m *automerge.Map, x map[string]any) error {
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := putInMap(m, k, x[k]); err != nil {
			return err
		}
	}
	return nil
}

func fillList(l *automerge.List, x []any) error {
	for i, e := range x {
		if err := putInList(l, i, true, e); err != nil {
			return err
		}
	}
	return nil
}
