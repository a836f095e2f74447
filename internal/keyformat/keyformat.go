// Package keyformat generates and parses API keys of the form
//
//	<prefix>_<key_id><secret><checksum>
//
// The body is base62 only, so a key is safe in headers, URLs and shells and selects with
// one double click. The key_id is the key's public handle (storage key, audit, inventory);
// the secret part carries at least 256 bits from crypto/rand (the key_id is random too,
// or derived from a secret seed, see KeyIDFromSeed); the checksum is a CRC32 of
// everything before it (GitHub-token style) so typos and truncated keys are rejected
// without any storage access.
package keyformat

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

const (
	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

	// KeyIDLen base62 characters give ~95 bits: among a billion keys the chance that any
	// two share a key_id is about 1e-11, so issue does not check for one.
	KeyIDLen = 16
	// SecretLen base62 characters give 43*log2(62) ≈ 256.03 bits.
	SecretLen = 43
	// ChecksumLen base62 characters hold any uint32 (62^6 > 2^32).
	ChecksumLen = 6
	// BodyLen is the length of everything after "<prefix>_".
	BodyLen = KeyIDLen + SecretLen + ChecksumLen

	// DefaultPrefix is used when a role sets none.
	DefaultPrefix = "vk"
	// MaxKeyLen bounds the input Parse looks at: the longest prefix plus separator plus body.
	MaxKeyLen = 10 + 1 + BodyLen
)

// Errors returned by Parse. They never contain the key itself.
var (
	ErrBadPrefix   = errors.New("key prefix is missing or invalid")
	ErrBadLength   = errors.New("key has the wrong length")
	ErrBadCharset  = errors.New("key contains characters outside base62")
	ErrBadChecksum = errors.New("key checksum does not match")
)

// ValidPrefix reports whether p may be used as a key prefix: ^[a-z][a-z0-9]{1,9}$,
// checked by hand because it runs on every verify.
func ValidPrefix(p string) bool {
	if len(p) < 2 || len(p) > 10 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidKeyID reports whether id has the shape of a key_id (it may still be unknown).
func ValidKeyID(id string) bool { return len(id) == KeyIDLen && isBase62(id) }

// Generate returns a new key with the given prefix and its key_id, using crypto/rand.
func Generate(prefix string) (key, keyID string, err error) {
	return generate(rand.Reader, prefix)
}

func generate(random io.Reader, prefix string) (key, keyID string, err error) {
	if !ValidPrefix(prefix) {
		return "", "", ErrBadPrefix
	}
	random62, err := randomBase62(random, KeyIDLen+SecretLen)
	if err != nil {
		return "", "", fmt.Errorf("reading randomness: %w", err)
	}
	return assemble(prefix, random62), string(random62[:KeyIDLen]), nil
}

// GenerateWithKeyID returns a new key with the given prefix and key_id; the secret part
// comes from crypto/rand. It is for callers that derive the key_id (see KeyIDFromSeed),
// so that a request replayed after a crash lands on the same key record.
func GenerateWithKeyID(prefix, keyID string) (string, error) {
	if !ValidPrefix(prefix) {
		return "", ErrBadPrefix
	}
	if !ValidKeyID(keyID) {
		return "", errors.New("key_id must be 16 base62 characters")
	}
	secret62, err := randomBase62(rand.Reader, SecretLen)
	if err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return assemble(prefix, append([]byte(keyID), secret62...)), nil
}

// KeyIDFromSeed derives a key_id, uniform over base62, from seed (which must itself be
// unpredictable to others, e.g. an HMAC under a secret).
func KeyIDFromSeed(seed []byte) string {
	id, _ := randomBase62(&seedStream{seed: seed}, KeyIDLen) // a seedStream never fails
	return string(id)
}

// seedStream is SHA-256 in counter mode over a seed: an endless deterministic stream.
type seedStream struct {
	seed    []byte
	counter uint64
	buf     []byte
}

func (s *seedStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(s.buf) == 0 {
			block := sha256.Sum256(binary.BigEndian.AppendUint64(append([]byte(nil), s.seed...), s.counter))
			s.counter++
			s.buf = block[:]
		}
		c := copy(p[n:], s.buf)
		s.buf = s.buf[c:]
		n += c
	}
	return n, nil
}

// assemble writes "<prefix>_<body62><checksum>".
func assemble(prefix string, body62 []byte) string {
	var b strings.Builder
	b.Grow(len(prefix) + 1 + BodyLen)
	b.WriteString(prefix)
	b.WriteByte('_')
	b.Write(body62)
	b.Write(encodeChecksum(crc32.ChecksumIEEE([]byte(b.String()))))
	return b.String()
}

// Parsed is what Parse learns from a key without storage.
type Parsed struct {
	Prefix string
	KeyID  string
}

// Parse checks a presented key's prefix, length, charset and checksum and returns its
// prefix and key_id. It allocates only for the returned strings' headers.
func Parse(key string) (Parsed, error) {
	if len(key) > MaxKeyLen {
		return Parsed{}, ErrBadLength
	}
	sep := strings.IndexByte(key, '_')
	if sep < 0 {
		return Parsed{}, ErrBadPrefix
	}
	prefix, body := key[:sep], key[sep+1:]
	if !ValidPrefix(prefix) {
		return Parsed{}, ErrBadPrefix
	}
	if len(body) != BodyLen {
		return Parsed{}, ErrBadLength
	}
	if !isBase62(body) {
		return Parsed{}, ErrBadCharset
	}
	split := len(key) - ChecksumLen
	want := encodeChecksum(crc32.ChecksumIEEE([]byte(key[:split])))
	if string(want) != key[split:] {
		return Parsed{}, ErrBadChecksum
	}
	return Parsed{Prefix: prefix, KeyID: body[:KeyIDLen]}, nil
}

// randomBase62 draws n uniformly distributed base62 characters. Bytes >= 248 are
// rejected so that byte % 62 has no modulo bias (248 = 4*62).
func randomBase62(random io.Reader, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := io.ReadFull(random, buf); err != nil {
			return nil, err
		}
		for _, c := range buf {
			if c >= 248 {
				continue
			}
			out = append(out, alphabet[c%62])
			if len(out) == n {
				break
			}
		}
	}
	return out, nil
}

// Checksum returns the checksum characters for everything before them ("<prefix>_<key_id><secret>").
func Checksum(head string) string { return string(encodeChecksum(crc32.ChecksumIEEE([]byte(head)))) }

func encodeChecksum(sum uint32) []byte {
	out := make([]byte, ChecksumLen)
	v := uint64(sum)
	for i := ChecksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return out
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
