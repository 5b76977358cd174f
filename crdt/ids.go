package crdt

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// This file holds document ids, automerge URLs and the encodings they use,
// as automerge-repo defines them: base58check of the binary id or hash.

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var base58Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base58Alphabet); i++ {
		t[base58Alphabet[i]] = int8(i)
	}
	return t
}()

// base58Encode encodes b in Base58 with the Bitcoin alphabet; each leading
// zero byte becomes a leading '1'.
func base58Encode(b []byte) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	// Little-endian base-58 digits of the big number b[zeros:].
	digits := make([]byte, 0, (len(b)-zeros)*138/100+1)
	for _, c := range b[zeros:] {
		carry := int(c)
		for i := range digits {
			carry += int(digits[i]) << 8
			digits[i] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			digits = append(digits, byte(carry%58))
			carry /= 58
		}
	}
	out := make([]byte, zeros+len(digits))
	for i := 0; i < zeros; i++ {
		out[i] = '1'
	}
	for i, d := range digits {
		out[len(out)-1-i] = base58Alphabet[d]
	}
	return string(out)
}

var errBase58Char = errors.New("invalid base58 character")

// base58Decode is the inverse of base58Encode.
func base58Decode(s string) ([]byte, error) {
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	// Little-endian base-256 digits.
	digits := make([]byte, 0, (len(s)-zeros)*733/1000+1)
	for i := zeros; i < len(s); i++ {
		v := base58Index[s[i]]
		if v < 0 {
			return nil, fmt.Errorf("%w %q at offset %d", errBase58Char, s[i], i)
		}
		carry := int(v)
		for j := range digits {
			carry += int(digits[j]) * 58
			digits[j] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			digits = append(digits, byte(carry))
			carry >>= 8
		}
	}
	out := make([]byte, zeros+len(digits))
	for i, d := range digits {
		out[len(out)-1-i] = d
	}
	return out, nil
}

func checksum(payload []byte) []byte {
	h1 := sha256.Sum256(payload)
	h2 := sha256.Sum256(h1[:])
	return h2[:4]
}

// base58CheckEncode appends the first 4 bytes of SHA-256(SHA-256(payload))
// and Base58-encodes the result.
func base58CheckEncode(payload []byte) string {
	buf := make([]byte, 0, len(payload)+4)
	buf = append(buf, payload...)
	return base58Encode(append(buf, checksum(payload)...))
}

// base58CheckDecode decodes s and verifies its checksum. maxLen bounds the
// work done on hostile input.
func base58CheckDecode(s string, maxLen int) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	if len(s) > maxLen {
		return nil, fmt.Errorf("too long (%d characters)", len(s))
	}
	b, err := base58Decode(s)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, errors.New("too short for a checksum")
	}
	payload, sum := b[:len(b)-4], b[len(b)-4:]
	if !bytes.Equal(sum, checksum(payload)) {
		return nil, errors.New("checksum mismatch")
	}
	return payload, nil
}

// DocumentID identifies a document: base58check of 16 random bytes (a
// UUID v4), as automerge-repo makes them, e.g. "3ybZCR5J6TswAfXnMg85CH9kGuZB".
type DocumentID string

// NewDocumentID returns a new random document id.
func NewDocumentID() DocumentID {
	var b [16]byte
	_, _ = rand.Read(b[:])  // never fails (crypto/rand crashes the program instead)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return DocumentID(base58CheckEncode(b[:]))
}

// ParseDocumentID checks that s is the base58check encoding of exactly 16
// bytes (ErrInvalidDocumentID otherwise, with the reason).
func ParseDocumentID(s string) (DocumentID, error) {
	b, err := base58CheckDecode(s, 40)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalidDocumentID, s, err)
	}
	if len(b) != 16 {
		return "", fmt.Errorf("%w %q: %d bytes, want 16", ErrInvalidDocumentID, s, len(b))
	}
	return DocumentID(s), nil
}

// URL returns the automerge URL of the document: "automerge:" + id.
func (id DocumentID) URL() string { return urlPrefix + string(id) }

// String returns the id as text.
func (id DocumentID) String() string { return string(id) }

// Bytes returns the 16 binary bytes of the id, or nil if it is not valid.
func (id DocumentID) Bytes() []byte {
	b, err := base58CheckDecode(string(id), 40)
	if err != nil || len(b) != 16 {
		return nil
	}
	return b
}

const urlPrefix = "automerge:"

// ParseURL parses "automerge:<id>", optionally followed by "#" and
// base58check heads joined by "|" (a URL pinned to a version). A bare id is
// accepted too. Errors wrap ErrInvalidURL and the reason (for instance
// ErrInvalidDocumentID or ErrInvalidHash).
func ParseURL(s string) (DocumentID, []Hash, error) {
	rest := strings.TrimPrefix(s, urlPrefix)
	idPart, headsPart, hasHeads := strings.Cut(rest, "#")
	id, err := ParseDocumentID(idPart)
	if err != nil {
		return "", nil, fmt.Errorf("%w %q: %w", ErrInvalidURL, s, err)
	}
	if !hasHeads || headsPart == "" {
		return id, nil, nil
	}
	parts := strings.Split(headsPart, "|")
	heads := make([]Hash, len(parts))
	for i, p := range parts {
		if heads[i], err = ParseBase58Hash(p); err != nil {
			return "", nil, fmt.Errorf("%w %q: head %d: %w", ErrInvalidURL, s, i, err)
		}
	}
	return id, heads, nil
}

// FormatURL returns the automerge URL of id, pinned to heads if any.
func FormatURL(id DocumentID, heads []Hash) string {
	if len(heads) == 0 {
		return id.URL()
	}
	parts := make([]string, len(heads))
	for i, h := range heads {
		parts[i] = h.Base58()
	}
	return id.URL() + "#" + strings.Join(parts, "|")
}

// String returns the hash in hex, as Automerge prints it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Base58 returns the base58check encoding of the hash, as automerge-repo
// writes heads in URLs and messages.
func (h Hash) Base58() string { return base58CheckEncode(h[:]) }

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseHash decodes a hash from 64 hex digits (ErrInvalidHash otherwise).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("%w %q: want 64 hex digits", ErrInvalidHash, s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("%w %q: %v", ErrInvalidHash, s, err)
	}
	return h, nil
}

// ParseBase58Hash decodes a hash from its base58check encoding
// (ErrInvalidHash otherwise).
func ParseBase58Hash(s string) (Hash, error) {
	b, err := base58CheckDecode(s, 80)
	if err != nil {
		return Hash{}, fmt.Errorf("%w %q: %v", ErrInvalidHash, s, err)
	}
	if len(b) != 32 {
		return Hash{}, fmt.Errorf("%w %q: %d bytes, want 32", ErrInvalidHash, s, len(b))
	}
	return Hash(b), nil
}
