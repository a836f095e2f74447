package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// The mount secret is the HMAC key under which key records store their keys: storage
// holds HMAC-SHA256(secret, key), never the key. It is made on the first issue, stored at
// configSecretKey (marked for seal wrapping, which Vault Enterprise applies; on OSS the
// barrier encryption protects it like all plugin storage) and never returned.

// hmacKeyLen is the mount secret's length in bytes.
const hmacKeyLen = 32

// secretEntry is the stored form of the mount secret.
type secretEntry struct {
	HMACKey []byte `json:"hmac_key"`
}

// getMountSecret returns the mount's HMAC secret, or nil if none was generated yet (then
// no key can exist either).
func (b *backend) getMountSecret(ctx context.Context, s logical.Storage) ([]byte, error) {
	b.stateMu.RLock()
	secret := b.mountSecret
	b.stateMu.RUnlock()
	if secret != nil {
		return secret, nil
	}
	secret, err := loadMountSecret(ctx, s)
	if err != nil || secret == nil {
		return nil, err
	}
	b.stateMu.Lock()
	b.mountSecret = secret
	b.stateMu.Unlock()
	return secret, nil
}

// ensureMountSecret returns the mount secret, generating and storing it on first use.
// Only write paths call it: generation needs a writable storage.
func (b *backend) ensureMountSecret(ctx context.Context, s logical.Storage) ([]byte, error) {
	if secret, err := b.getMountSecret(ctx, s); err != nil || secret != nil {
		return secret, err
	}
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.mountSecret != nil {
		return b.mountSecret, nil
	}
	// Another request may have stored it since our read.
	secret, err := loadMountSecret(ctx, s)
	if err != nil {
		return nil, err
	}
	if secret == nil {
		if secret, err = newHMACKey(); err != nil {
			return nil, err
		}
		entry, err := logical.StorageEntryJSON(configSecretKey, secretEntry{HMACKey: secret})
		if err != nil {
			return nil, err
		}
		if err := s.Put(ctx, entry); err != nil {
			return nil, fmt.Errorf("storing mount secret: %w", err)
		}
	}
	b.mountSecret = secret
	return secret, nil
}

// loadMountSecret reads the stored secret; nil if there is none.
func loadMountSecret(ctx context.Context, s logical.Storage) ([]byte, error) {
	entry, err := s.Get(ctx, configSecretKey)
	if err != nil {
		return nil, fmt.Errorf("reading mount secret: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	var stored secretEntry
	if err := entry.DecodeJSON(&stored); err != nil || len(stored.HMACKey) != hmacKeyLen {
		return nil, errors.New("stored mount secret is corrupt")
	}
	return stored.HMACKey, nil
}

// keyHash is what storage holds instead of the key.
func keyHash(secret []byte, key string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(key))
	return mac.Sum(nil)
}

func newHMACKey() ([]byte, error) {
	key := make([]byte, hmacKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating mount secret: %w", err)
	}
	return key, nil
}

// reportTokenDomain separates report tokens from key hashes made with the same secret:
// no key hashes to a report token.
const reportTokenDomain = "apikey report token v1\x00"

// reportToken is what verify gives a grant holder for a key it found, and what
// usage/report asks back with each entry: proof that the reporter was told about the
// key by verify, so that nobody can pour made-up counts into the usage of a key_id
// they merely know. HMAC-SHA256(mount secret, domain || key_id), in hex.
func reportToken(secret []byte, keyID string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(reportTokenDomain))
	mac.Write([]byte(keyID))
	return hex.EncodeToString(mac.Sum(nil))
}

// reportTokenValid checks a report token in constant time.
func reportTokenValid(secret []byte, keyID, token string) bool {
	if secret == nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(reportToken(secret, keyID)), []byte(token)) == 1
}

// hashesEqual compares two HMACs in constant time.
func hashesEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
