package crdt

import "sort"

// ChangedPaths returns the JSON Pointers at which two JSON views (as Get
// returns them) differ, sorted. A value that appears or disappears, or
// whose type changes, is reported once at its own pointer (not for each of
// its children); a changed scalar at its pointer; lists are compared
// element by element by index, so an insertion in the middle reports every
// later index. Numbers compare by numeric value. Equal views give nil.
//
// The engine uses it to tell subscribers which paths a remote change
// touched: diff the views before and after applying it.
func ChangedPaths(before, after any) []string {
	var out []string
	diffInto(&out, "", before, after)
	sort.Strings(out)
	return out
}

func diffInto(out *[]string, ptr string, a, b any) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, ptr)
			return
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok {
				*out = append(*out, appendToken(ptr, k))
				continue
			}
			diffInto(out, appendToken(ptr, k), xv, yv)
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				*out = append(*out, appendToken(ptr, k))
			}
		}
	case []any:
		y, ok := b.([]any)
		if !ok {
			*out = append(*out, ptr)
			return
		}
		for i := 0; i < len(x) || i < len(y); i++ {
			p := appendToken(ptr, itoa(i))
			if i >= len(x) || i >= len(y) {
				*out = append(*out, p)
				continue
			}
			diffInto(out, p, x[i], y[i])
		}
	default:
		if _, isMap := b.(map[string]any); isMap {
			*out = append(*out, ptr)
			return
		}
		if _, isList := b.([]any); isList {
			*out = append(*out, ptr)
			return
		}
		if !jsonEqual(a, b) {
			*out = append(*out, ptr)
		}
	}
}
