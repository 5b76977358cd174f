package crdt

import (
	"fmt"
	"strconv"

	"github.com/automerge/automerge-go"
)

// This file reads and writes the document at JSON Pointer paths.

// lookup returns the value at tokens, or ErrPathNotFound.
func (d *Doc) lookup(tokens []string) (*automerge.Value, error) {
	noteForeign(resultCost * (len(tokens) + 1))
	if err := d.materialize(); err != nil {
		return nil, err
	}
	cur := d.am.Root()
	for i, tok := range tokens {
		next, err := child(cur, tok)
		if err != nil {
			return nil, fmt.Errorf("%w (at %q)", err, FormatPointer(tokens[:i+1]))
		}
		cur = next
	}
	return cur, nil
}

// child returns the element tok of the container v.
func child(v *automerge.Value, tok string) (*automerge.Value, error) {
	switch v.Kind() {
	case automerge.KindMap:
		if tok == "" {
			return nil, fmt.Errorf("%w: no key \"\" (Automerge map keys cannot be empty)", ErrPathNotFound)
		}
		c, err := v.Map().Get(tok)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if c.IsVoid() {
			return nil, fmt.Errorf("%w: no key %q", ErrPathNotFound, tok)
		}
		return c, nil
	case automerge.KindList:
		l := v.List()
		i, err := parseIndex("", tok, l.Len(), idxExisting)
		if err != nil {
			return nil, err
		}
		c, err := l.Get(i)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if c.IsVoid() {
			return nil, fmt.Errorf("%w: no index %d", ErrPathNotFound, i)
		}
		return c, nil
	default:
		return nil, fmt.Errorf("%w: %q: a %s has no children", ErrPathNotFound, tok, kindName(v.Kind()))
	}
}

func kindName(k automerge.Kind) string {
	switch k {
	case automerge.KindMap:
		return "map"
	case automerge.KindList:
		return "list"
	case automerge.KindText, automerge.KindStr:
		return "string"
	case automerge.KindNull:
		return "null"
	case automerge.KindBool:
		return "boolean"
	case automerge.KindInt64, automerge.KindUint64, automerge.KindFloat64, automerge.KindCounter:
		return "number"
	default:
		return k.String()
	}
}

// Get returns the JSON view of the value at ptr: map[string]any, []any,
// string, int64, uint64, float64, bool or nil. Text objects and scalar
// strings both read as string, counters as int64, timestamps as RFC 3339
// strings (UTC, milliseconds), bytes as standard base64 strings, and
// non-finite floats as nil (as JSON.stringify does).
func (d *Doc) Get(ptr string) (any, error) {
	tokens, err := ParsePointer(ptr)
	if err != nil {
		return nil, err
	}
	var out any
	err = guardPass(func() error {
		v, err := d.lookup(tokens)
		if err != nil {
			return err
		}
		out, err = viewOf(v)
		return err
	})
	return out, err
}

// guardPass runs f, passing its error through and turning a panic into
// ErrCorrupt.
func guardPass(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return f()
}

// JSON returns the JSON encoding of Get(ptr), as JSON.stringify would
// write it but with map keys sorted. An integral float64 prints like an
// integer (2.0 as 2), so the int/float distinction of Get does not survive
// a round trip through JSON text.
func (d *Doc) JSON(ptr string) ([]byte, error) {
	v, err := d.Get(ptr)
	if err != nil {
		return nil, err
	}
	return encodeJSON(v)
}

// Set writes v at ptr. v is a JSON-compatible Go value (see Get; also
// json.Number, json.RawMessage, any Go integer or float, or anything
// encoding/json can marshal). Maps and slices become new Automerge Map and
// List objects, strings Text objects; integers become int64 and other
// numbers float64.
//
// An existing map key or list element is replaced; a new map key is
// created; "-" as the last token appends to a list. Every container above
// the last token must exist (ErrPathNotFound otherwise). Setting "" (the
// root) takes a map and replaces all root keys.
func (d *Doc) Set(ptr string, v any) error {
	return d.write(ptr, v, idxAppend)
}

// SetJSON is Set with a JSON-encoded value (numbers decoded as by
// UseNumber).
func (d *Doc) SetJSON(ptr string, raw []byte) error {
	v, err := decodeJSON(raw)
	if err != nil {
		return err
	}
	return d.Set(ptr, v)
}

// Add writes v at ptr with RFC 6902 "add" semantics: in a list the index
// may also be the length, or "-", and the value is inserted there
// (shifting later elements); in a map the key is set.
func (d *Doc) Add(ptr string, v any) error {
	return d.write(ptr, v, idxInsert)
}

func (d *Doc) write(ptr string, v any, mode int) error {
	tokens, err := ParsePointer(ptr)
	if err != nil {
		return err
	}
	n, err := normalize(v)
	if err != nil {
		return err
	}
	return d.writeNormalized(ptr, tokens, n, mode)
}

func (d *Doc) writeNormalized(ptr string, tokens []string, n any, mode int) error {
	if len(tokens) == 0 {
		obj, ok := n.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: the document root must be an object", ErrTypeMismatch)
		}
		return guardPass(func() error { return d.setRoot(obj) })
	}
	return guardPass(func() error {
		parent, err := d.lookup(tokens[:len(tokens)-1])
		if err != nil {
			return err
		}
		last := tokens[len(tokens)-1]
		switch parent.Kind() {
		case automerge.KindMap:
			if last == "" {
				return fmt.Errorf("%w: %q: Automerge map keys cannot be empty", ErrInvalidPointer, ptr)
			}
			d.beginWrite(ptr)
			return wrapWrite(putInMap(parent.Map(), last, n))
		case automerge.KindList:
			l := parent.List()
			i, err := parseIndex(ptr, last, l.Len(), mode)
			if err != nil {
				return err
			}
			d.beginWrite(appendToken(FormatPointer(tokens[:len(tokens)-1]), itoa(i)))
			return wrapWrite(putInList(l, i, mode == idxInsert || last == "-", n))
		default:
			return fmt.Errorf("%w: %q: parent is a %s", ErrPathNotFound, ptr, kindName(parent.Kind()))
		}
	})
}

func wrapWrite(err error) error {
	if err != nil {
		return fmt.Errorf("%w: write failed: %v", ErrCorrupt, err)
	}
	return nil
}

// setRoot replaces all root keys by those of obj.
func (d *Doc) setRoot(obj map[string]any) error {
	if err := d.materialize(); err != nil {
		return err
	}
	root := d.am.RootMap()
	keys, err := root.Keys()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	d.beginWrite("")
	for _, k := range keys {
		if _, keep := obj[k]; !keep {
			if err := root.Delete(k); err != nil {
				return wrapWrite(err)
			}
		}
	}
	return wrapWrite(fillMap(root, obj))
}

// Delete removes the map key or list element at ptr (ErrPathNotFound if
// absent). The root cannot be deleted (ErrInvalidPointer).
func (d *Doc) Delete(ptr string) error {
	tokens, err := ParsePointer(ptr)
	if err != nil {
		return err
	}
	return d.remove(ptr, tokens)
}

func (d *Doc) remove(ptr string, tokens []string) error {
	if len(tokens) == 0 {
		return fmt.Errorf("%w: cannot delete the document root", ErrInvalidPointer)
	}
	return guardPass(func() error {
		parent, err := d.lookup(tokens[:len(tokens)-1])
		if err != nil {
			return err
		}
		last := tokens[len(tokens)-1]
		switch parent.Kind() {
		case automerge.KindMap:
			if last == "" {
				return fmt.Errorf("%w: %q", ErrPathNotFound, ptr)
			}
			m := parent.Map()
			v, err := m.Get(last)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			if v.IsVoid() {
				return fmt.Errorf("%w: %q", ErrPathNotFound, ptr)
			}
			d.beginWrite(ptr)
			return wrapWrite(m.Delete(last))
		case automerge.KindList:
			l := parent.List()
			i, err := parseIndex(ptr, last, l.Len(), idxExisting)
			if err != nil {
				return err
			}
			d.beginWrite(appendToken(FormatPointer(tokens[:len(tokens)-1]), itoa(i)))
			return wrapWrite(l.Delete(i))
		default:
			return fmt.Errorf("%w: %q: parent is a %s", ErrPathNotFound, ptr, kindName(parent.Kind()))
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
