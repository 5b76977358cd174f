package persistence

import (
	"fmt"
	"strings"
)

// MaxIDLen is the longest document id, in bytes, a Store accepts.
const MaxIDLen = 1024

// MaxKeyLen is the longest value key, in bytes, a Store accepts.
const MaxKeyLen = 1024

// CheckID reports whether id may name a document: it must be non-empty, at
// most MaxIDLen bytes long and must not contain a NUL byte (stores may use
// NUL as a separator). The error wraps ErrInvalid.
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty document id", ErrInvalid)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: document id of %d bytes exceeds %d", ErrInvalid, len(id), MaxIDLen)
	case strings.IndexByte(id, 0) >= 0:
		return fmt.Errorf("%w: document id contains a NUL byte", ErrInvalid)
	}
	return nil
}

// CheckKey reports whether key may name a value (Store.GetValue,
// Store.PutValue): it must be non-empty and at most MaxKeyLen bytes long.
// The error wraps ErrInvalid.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty value key", ErrInvalid)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: value key of %d bytes exceeds %d", ErrInvalid, len(key), MaxKeyLen)
	}
	return nil
}
