package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ParsePatch decodes an RFC 6902 JSON Patch: a JSON array of operation
// objects. It checks the op names, that "path" (and "from" for move and
// copy) are present and valid JSON Pointers, and that "value" is present
// for add, replace and test (null counts as present). Values are decoded
// with UseNumber semantics. Errors wrap ErrInvalidPatch.
func ParsePatch(data []byte) ([]PatchOp, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("%w: not a JSON array of operations: %v", ErrInvalidPatch, err)
	}
	if raws == nil {
		return nil, fmt.Errorf("%w: not a JSON array of operations", ErrInvalidPatch)
	}
	ops := make([]PatchOp, len(raws))
	for i, raw := range raws {
		op, err := decodeOp(raw)
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		ops[i] = op
	}
	return ops, nil
}

func decodeOp(raw []byte) (PatchOp, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return PatchOp{}, fmt.Errorf("%w: an operation must be a JSON object", ErrInvalidPatch)
	}
	str := func(name string) (string, bool, error) {
		r, ok := fields[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return "", true, fmt.Errorf("%w: %q must be a string", ErrInvalidPatch, name)
		}
		return s, true, nil
	}
	var op PatchOp
	var ok bool
	var err error
	if op.Op, ok, err = str("op"); err != nil {
		return PatchOp{}, err
	} else if !ok {
		return PatchOp{}, fmt.Errorf("%w: missing \"op\"", ErrInvalidPatch)
	}
	if op.Path, ok, err = str("path"); err != nil {
		return PatchOp{}, err
	} else if !ok {
		return PatchOp{}, fmt.Errorf("%w: %s: missing \"path\"", ErrInvalidPatch, op.Op)
	}
	var hasFrom bool
	if op.From, hasFrom, err = str("from"); err != nil {
		return PatchOp{}, err
	}
	if r, ok := fields["value"]; ok {
		v, err := decodeJSON(r)
		if err != nil {
			return PatchOp{}, fmt.Errorf("%w: value: %w", ErrInvalidPatch, err)
		}
		op.Value, op.HasValue = v, true
	}
	switch op.Op {
	case "add", "replace", "test":
		if !op.HasValue {
			return PatchOp{}, fmt.Errorf("%w: %s: missing \"value\"", ErrInvalidPatch, op.Op)
		}
	case "move", "copy":
		if !hasFrom {
			return PatchOp{}, fmt.Errorf("%w: %s: missing \"from\"", ErrInvalidPatch, op.Op)
		}
		if _, err := ParsePointer(op.From); err != nil {
			return PatchOp{}, fmt.Errorf("%w: from: %w", ErrInvalidPatch, err)
		}
	case "remove":
	default:
		return PatchOp{}, fmt.Errorf("%w: unknown op %q", ErrInvalidPatch, op.Op)
	}
	if _, err := ParsePointer(op.Path); err != nil {
		return PatchOp{}, fmt.Errorf("%w: path: %w", ErrInvalidPatch, err)
	}
	return op, nil
}

// UnmarshalJSON decodes and checks one operation as ParsePatch does.
func (p *PatchOp) UnmarshalJSON(data []byte) error {
	op, err := decodeOp(data)
	if err != nil {
		return err
	}
	*p = op
	return nil
}

// MarshalJSON encodes the operation, writing "value" when HasValue is set
// or Value is not nil, and "from" for move and copy.
func (p PatchOp) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"op":`)
	b.Write(appendString(nil, p.Op))
	b.WriteString(`,"path":`)
	b.Write(appendString(nil, p.Path))
	if p.From != "" || p.Op == "move" || p.Op == "copy" {
		b.WriteString(`,"from":`)
		b.Write(appendString(nil, p.From))
	}
	if p.HasValue || p.Value != nil {
		v, err := encodeJSON(p.Value)
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"value":`)
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// patchStep is one write to the Automerge document that a patch needs.
type patchStep struct {
	del    bool
	insert bool // add semantics (list insert) rather than set
	tokens []string
	value  any // normalized
}

// ApplyPatch applies an RFC 6902 patch (add, remove, replace, move, copy,
// test) atomically. The whole patch is first run on the JSON view of the
// document: a failed test gives ErrTestFailed, a missing path
// ErrPathNotFound, a malformed one ErrInvalidPointer, and then nothing is
// written. Only then are the writes made to the Automerge document; if one
// still fails, Rollback is called, which also discards writes that were
// pending before ApplyPatch.
//
// Test compares JSON values, numbers by numeric value. Move and copy copy
// the JSON view of the source, so a counter moves as a plain integer. A nil
// Value is JSON null. The dry run reads the whole document (Get("")).
func (d *Doc) ApplyPatch(ops []PatchOp) error {
	if len(ops) == 0 {
		return nil
	}
	steps, err := d.planPatch(ops)
	if err != nil {
		return err
	}
	for i, st := range steps {
		ptr := FormatPointer(st.tokens)
		var err error
		if patchStepHook != nil {
			err = patchStepHook(i)
		}
		switch {
		case err != nil:
		case st.del:
			err = d.remove(ptr, st.tokens)
		case st.insert:
			err = d.writeNormalized(ptr, st.tokens, st.value, idxInsert)
		default:
			err = d.writeNormalized(ptr, st.tokens, st.value, idxAppend)
		}
		if err != nil {
			if rerr := d.Rollback(); rerr != nil {
				return fmt.Errorf("apply patch: %w (and rollback failed: %v)", err, rerr)
			}
			return fmt.Errorf("apply patch: %w", err)
		}
	}
	return nil
}

// patchStepHook lets tests make a step of ApplyPatch fail after the dry
// run succeeded.
var patchStepHook func(step int) error

// planPatch runs the patch on the JSON view and returns the writes it
// makes.
func (d *Doc) planPatch(ops []PatchOp) ([]patchStep, error) {
	root, err := d.Get("")
	if err != nil {
		return nil, err
	}
	var steps []patchStep
	for i, op := range ops {
		fail := func(err error) error {
			return fmt.Errorf("op %d (%s %q): %w", i, op.Op, op.Path, err)
		}
		path, err := ParsePointer(op.Path)
		if err != nil {
			return nil, fail(err)
		}
		var value any
		switch op.Op {
		case "add", "replace", "test":
			if value, err = normalize(op.Value); err != nil {
				return nil, fail(err)
			}
		}
		switch op.Op {
		case "add":
			if root, err = treeAdd(root, path, value); err != nil {
				return nil, fail(err)
			}
			steps = append(steps, patchStep{insert: true, tokens: path, value: deepCopy(value)})
		case "remove":
			if root, err = treeRemove(root, path); err != nil {
				return nil, fail(err)
			}
			steps = append(steps, patchStep{del: true, tokens: path})
		case "replace":
			if root, err = treeReplace(root, path, value); err != nil {
				return nil, fail(err)
			}
			steps = append(steps, patchStep{tokens: path, value: deepCopy(value)})
		case "move", "copy":
			from, err := ParsePointer(op.From)
			if err != nil {
				return nil, fail(err)
			}
			v, err := treeGet(root, from)
			if err != nil {
				return nil, fail(fmt.Errorf("from: %w", err))
			}
			if op.Op == "move" {
				if isPrefix(from, path) {
					if len(from) == len(path) {
						continue // moving a value onto itself changes nothing
					}
					return nil, fail(fmt.Errorf("%w: cannot move a value into itself", ErrInvalidPatch))
				}
				if root, err = treeRemove(root, from); err != nil {
					return nil, fail(err)
				}
				steps = append(steps, patchStep{del: true, tokens: from})
			}
			v = deepCopy(v)
			if root, err = treeAdd(root, path, v); err != nil {
				return nil, fail(err)
			}
			steps = append(steps, patchStep{insert: true, tokens: path, value: deepCopy(v)})
		case "test":
			cur, err := treeGet(root, path)
			if err != nil {
				return nil, fail(err)
			}
			if !jsonEqual(cur, value) {
				return nil, fail(ErrTestFailed)
			}
		default:
			return nil, fail(fmt.Errorf("%w: unknown op %q", ErrInvalidPatch, op.Op))
		}
	}
	return steps, nil
}

func isPrefix(prefix, tokens []string) bool {
	if len(prefix) > len(tokens) {
		return false
	}
	for i := range prefix {
		if prefix[i] != tokens[i] {
			return false
		}
	}
	return true
}

// The tree functions below edit a JSON view (maps are changed in place,
// lists are replaced, so each returns the new root).

func treeGet(node any, tokens []string) (any, error) {
	for i, tok := range tokens {
		switch x := node.(type) {
		case map[string]any:
			v, ok := x[tok]
			if !ok {
				return nil, fmt.Errorf("%w: %q", ErrPathNotFound, FormatPointer(tokens[:i+1]))
			}
			node = v
		case []any:
			idx, err := parseIndex(FormatPointer(tokens[:i+1]), tok, len(x), idxExisting)
			if err != nil {
				return nil, err
			}
			node = x[idx]
		default:
			return nil, fmt.Errorf("%w: %q: not a container", ErrPathNotFound, FormatPointer(tokens[:i]))
		}
	}
	return node, nil
}

// treeEdit calls f on the container that holds the last token and returns
// the new root.
func treeEdit(node any, tokens []string, depth int, f func(container any, last string) (any, error)) (any, error) {
	if len(tokens)-depth == 1 {
		return f(node, tokens[depth])
	}
	tok := tokens[depth]
	switch x := node.(type) {
	case map[string]any:
		c, ok := x[tok]
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrPathNotFound, FormatPointer(tokens[:depth+1]))
		}
		nc, err := treeEdit(c, tokens, depth+1, f)
		if err != nil {
			return nil, err
		}
		x[tok] = nc
		return x, nil
	case []any:
		i, err := parseIndex(FormatPointer(tokens[:depth+1]), tok, len(x), idxExisting)
		if err != nil {
			return nil, err
		}
		nc, err := treeEdit(x[i], tokens, depth+1, f)
		if err != nil {
			return nil, err
		}
		x[i] = nc
		return x, nil
	default:
		return nil, fmt.Errorf("%w: %q: not a container", ErrPathNotFound, FormatPointer(tokens[:depth]))
	}
}

func rootValue(v any) (any, error) {
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("%w: the document root must be an object", ErrTypeMismatch)
	}
	return v, nil
}

func treeAdd(root any, tokens []string, v any) (any, error) {
	if len(tokens) == 0 {
		return rootValue(deepCopy(v))
	}
	ptr := FormatPointer(tokens)
	return treeEdit(root, tokens, 0, func(c any, last string) (any, error) {
		switch x := c.(type) {
		case map[string]any:
			if last == "" {
				return nil, fmt.Errorf("%w: %q: Automerge map keys cannot be empty", ErrInvalidPointer, ptr)
			}
			x[last] = deepCopy(v)
			return x, nil
		case []any:
			i, err := parseIndex(ptr, last, len(x), idxInsert)
			if err != nil {
				return nil, err
			}
			x = append(x, nil)
			copy(x[i+1:], x[i:])
			x[i] = deepCopy(v)
			return x, nil
		default:
			return nil, fmt.Errorf("%w: %q: parent is not a container", ErrPathNotFound, ptr)
		}
	})
}

func treeRemove(root any, tokens []string) (any, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: cannot remove the document root", ErrInvalidPointer)
	}
	ptr := FormatPointer(tokens)
	return treeEdit(root, tokens, 0, func(c any, last string) (any, error) {
		switch x := c.(type) {
		case map[string]any:
			if _, ok := x[last]; !ok {
				return nil, fmt.Errorf("%w: %q", ErrPathNotFound, ptr)
			}
			delete(x, last)
			return x, nil
		case []any:
			i, err := parseIndex(ptr, last, len(x), idxExisting)
			if err != nil {
				return nil, err
			}
			return append(x[:i], x[i+1:]...), nil
		default:
			return nil, fmt.Errorf("%w: %q: parent is not a container", ErrPathNotFound, ptr)
		}
	})
}

func treeReplace(root any, tokens []string, v any) (any, error) {
	if len(tokens) == 0 {
		return rootValue(deepCopy(v))
	}
	ptr := FormatPointer(tokens)
	return treeEdit(root, tokens, 0, func(c any, last string) (any, error) {
		switch x := c.(type) {
		case map[string]any:
			if _, ok := x[last]; !ok {
				return nil, fmt.Errorf("%w: %q", ErrPathNotFound, ptr)
			}
			x[last] = deepCopy(v)
			return x, nil
		case []any:
			i, err := parseIndex(ptr, last, len(x), idxExisting)
			if err != nil {
				return nil, err
			}
			x[i] = deepCopy(v)
			return x, nil
		default:
			return nil, fmt.Errorf("%w: %q: parent is not a container", ErrPathNotFound, ptr)
		}
	})
}
