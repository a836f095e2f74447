package apikey

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// keyEntry is the stored record of one issued key (keys/<key_id>). It holds the key's
// HMAC, never the key. Restrictions are copied from the role at issue time so that a key
// verifies and revokes without its role.
type keyEntry struct {
	KeyID    string            `json:"key_id"`
	Hash     []byte            `json:"hash"`
	Role     string            `json:"role"`
	Name     string            `json:"name"`
	Scopes   []string          `json:"scopes"`
	Metadata map[string]string `json:"metadata"`
	// IssueMetadata are the pairs the issuer (or later an operator) added to the role's;
	// a rotation merges them with the role's metadata of that time, the role's winning.
	// Always stored (empty when none), so nil marks a record from before it existed.
	IssueMetadata  map[string]string `json:"issue_metadata"`
	BoundCIDRs     []string          `json:"bound_cidrs,omitempty"`
	RateLimit      float64           `json:"rate_limit,omitempty"`
	RateLimitBurst int               `json:"rate_limit_burst,omitempty"`
	MaxUses        int64             `json:"max_uses,omitempty"`
	TTL            time.Duration     `json:"ttl"`
	MaxTTL         time.Duration     `json:"max_ttl"`
	CreatedAt      time.Time         `json:"created_at"`
	// ExpiresAt follows the lease: set on issue, moved by renewals.
	ExpiresAt time.Time `json:"expires_at"`
	// InvalidAfter is set when the key was rotated: the end of its grace period. The
	// lease may live longer; the key does not verify past this time.
	InvalidAfter time.Time `json:"invalid_after,omitempty"`
	// ReplacedBy is the key_id of the key that rotated this one out. RotationToken names
	// the rotation (and its WAL entry) that wrote this record, on the old key and on its
	// replacement alike, so that rolling back a rotation that died touches only its own
	// records (see rotation_wal.go).
	ReplacedBy    string `json:"replaced_by,omitempty"`
	RotationToken string `json:"rotation_token,omitempty"`
	Disabled      bool   `json:"disabled,omitempty"`
	// UseCount and LastUsedAt are flushed from memory in the background; see usage.
	UseCount   int64     `json:"use_count,omitempty"`
	LastUsedAt time.Time `json:"last_used_at,omitempty"`

	// Identity is who the key belongs to: the Vault entity of the issuing token, or the
	// identity an issuer gave where the role allows it; empty for none (role_limits.go).
	Identity string `json:"identity,omitempty"`
	// SharedLimits: the key's rate limits and credits are its identity's (when it has one).
	SharedLimits bool `json:"shared_limits,omitempty"`
	// RateLimits are the role's named limits, checked with RateLimit (named "default").
	RateLimits []namedLimit `json:"rate_limits,omitempty"`
	// Refill resets the key's remaining uses every period (keys with MaxUses only).
	Refill *refill `json:"refill,omitempty"`
	// Credits is the key's credit state as last flushed (with UseCount): nil on records
	// from before credits, whose limit is MaxUses. Keys whose credits are their
	// identity's keep theirs under identities/ instead.
	Credits *creditState `json:"credits,omitempty"`

	// boundPrefixes is BoundCIDRs parsed once when the record is loaded, and limits the
	// rate limits and accounts, so verify never parses on its hot path.
	boundPrefixes []netip.Prefix
	limits        keyLimits
}

// prepare computes what verify reads from the record's fields.
func (k *keyEntry) prepare() error {
	prefixes, err := parseCIDRs(k.BoundCIDRs)
	if err != nil {
		return err
	}
	k.boundPrefixes = prefixes
	k.prepareLimits()
	return nil
}

func (b *backend) storageKeyEntry(ctx context.Context, s logical.Storage, keyID string) (*keyEntry, error) {
	entry, err := s.Get(ctx, keyPrefix+keyID)
	if err != nil {
		return nil, fmt.Errorf("reading key record: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	var k keyEntry
	if err := entry.DecodeJSON(&k); err != nil {
		return nil, fmt.Errorf("decoding key record: %w", err)
	}
	if err := k.prepare(); err != nil {
		return nil, fmt.Errorf("key record has invalid bound_cidrs: %w", err)
	}
	return &k, nil
}

// cachedKeyEntry returns the record for keyID from the verify cache or storage. Records
// in the cache are never modified in place: writers store a new record, then replace or
// drop the cache entry.
func (b *backend) cachedKeyEntry(ctx context.Context, s logical.Storage, keyID string) (*keyEntry, error) {
	if k, ok := b.keyCache.Get(keyID); ok {
		b.counters.cacheHits.Add(1)
		return k, nil
	}
	if _, unknown := b.unknownKeys.Get(keyID); unknown {
		b.counters.cacheHits.Add(1)
		return nil, nil
	}
	b.counters.cacheMisses.Add(1)
	generation := b.keyCache.Generation()
	unknownGeneration := b.unknownKeys.Generation()
	k, err := b.storageKeyEntry(ctx, s, keyID)
	if err != nil {
		return nil, err
	}
	if k == nil {
		b.unknownKeys.AddIfUnchanged(keyID, struct{}{}, unknownGeneration)
		return nil, nil
	}
	b.keyCache.AddIfUnchanged(keyID, k, generation)
	return k, nil
}

// inventoryKeyEntry reads a record for listings: from the cache when it is there, else
// from storage without caching it, so that listing thousands of keys does not evict the
// records verify keeps hot.
func (b *backend) inventoryKeyEntry(ctx context.Context, s logical.Storage, keyID string) (*keyEntry, error) {
	if k, ok := b.keyCache.Peek(keyID); ok {
		return k, nil
	}
	return b.storageKeyEntry(ctx, s, keyID)
}

// putKeyEntry stores k and makes the cache agree with it. What the write changes for
// verify's answers goes to the change feed (keyChanged).
func (b *backend) putKeyEntry(ctx context.Context, s logical.Storage, k *keyEntry) error {
	entry, err := logical.StorageEntryJSON(keyPrefix+k.KeyID, k)
	if err != nil {
		return err
	}
	old, oldErr := b.previousKeyEntry(ctx, s, k.KeyID)
	// Before and after the write: a lookup that started in between must not cache the
	// id as unknown.
	b.unknownKeys.Remove(k.KeyID)
	err = s.Put(ctx, entry)
	b.unknownKeys.Remove(k.KeyID)
	if err != nil {
		// The write may or may not have landed: drop the cache entry so the next read goes
		// to storage, and tell the feed as if it landed (an event too many costs callers
		// a cache miss).
		b.keyCache.Remove(k.KeyID)
		b.keyChanged(old, oldErr == nil, k)
		return fmt.Errorf("storing key record: %w", err)
	}
	if err := k.prepare(); err != nil {
		b.keyCache.Remove(k.KeyID)
		b.keyChanged(old, oldErr == nil, k)
		return err
	}
	// The feed hears of the write only once the cache has it: a caller that reacts to
	// the event at once must get the new answer.
	b.keyCache.Remove(k.KeyID) // invalidates loads that started before this write
	b.keyCache.Add(k.KeyID, k)
	b.keyChanged(old, oldErr == nil, k)
	return nil
}

// previousKeyEntry is the record a write of keyID replaces: the cached one (kept exact
// by every write and by Invalidate) or, when it is not cached, the stored one.
func (b *backend) previousKeyEntry(ctx context.Context, s logical.Storage, keyID string) (*keyEntry, error) {
	if k, ok := b.keyCache.Peek(keyID); ok {
		return k, nil
	}
	return b.storageKeyEntry(ctx, s, keyID)
}

// keyChanged appends to the change feed what a write from old to k changes in verify's
// answers, and cancels the key's quota grants when it stops verifying for them
// (disabled, rotated out). Use counts and credits flushed from memory change nothing a
// cached answer shows, so flushes emit nothing; nor does a new key (old nil), which
// nobody can have cached. known is false when old could not be read: then every event
// k's state implies is emitted (a needless event costs a cache miss; a missing one, a
// stale answer).
func (b *backend) keyChanged(old *keyEntry, known bool, k *keyEntry) {
	if known && old == nil {
		return
	}
	if !known {
		old = &keyEntry{ExpiresAt: k.ExpiresAt.Add(time.Nanosecond)}
	}
	switch {
	case k.Disabled && !old.Disabled:
		b.grants.CancelKey(k.KeyID)
		b.feed.Append(verifyapi.EventDisabled, k.KeyID)
	case !k.Disabled && old.Disabled:
		b.feed.Append(verifyapi.EventEnabled, k.KeyID)
	}
	switch {
	case k.ReplacedBy != "" && k.ReplacedBy != old.ReplacedBy:
		// Its uses are charged to the replacement from now on: grants on the old
		// account would be spent beside the new one's.
		b.grants.CancelKey(k.KeyID)
		b.feed.Append(verifyapi.EventRotated, k.KeyID)
	case !k.validUntil().Equal(old.validUntil()):
		b.feed.Append(verifyapi.EventExpiryChanged, k.KeyID)
	}
	if k.Name != old.Name || !maps.Equal(k.Metadata, old.Metadata) {
		b.feed.Append(verifyapi.EventUpdated, k.KeyID)
	}
}

// deleteKeyEntry removes the record and everything kept in memory for it; deleting a
// record that is gone is a success. The caller holds the key's lock.
func (b *backend) deleteKeyEntry(ctx context.Context, s logical.Storage, keyID string) error {
	// An imported key's index entry is marked revoked first (no read when the mount
	// holds no imported keys): verify then answers NOT_FOUND for it, and tidy removes it.
	if err := b.retireImportedKey(ctx, s, keyID); err != nil {
		return err
	}
	// The identity index entry goes after the record: an entry left behind (a failed
	// delete) is skipped by readers, a record without its entry would hide the key from
	// identities/<id>/revoke.
	existed := true // unless a read proved otherwise: a needless event is harmless
	identity := ""
	if k, ok := b.keyCache.Peek(keyID); ok {
		identity = k.Identity
	} else if k, err := b.storageKeyEntry(ctx, s, keyID); err != nil {
		// Revocation must not depend on reading the record: the stale index entry is
		// harmless.
		b.Logger().Warn("deleting a key record that could not be read: its identity index entry may remain", "key_id", keyID, "error", err)
	} else if k != nil {
		identity = k.Identity
	} else {
		existed = false
	}
	b.keyCache.Remove(keyID)
	if err := s.Delete(ctx, keyPrefix+keyID); err != nil {
		return fmt.Errorf("deleting key record: %w", err)
	}
	b.keyCache.Remove(keyID)
	b.grants.CancelKey(keyID)
	if existed {
		b.feed.Append(verifyapi.EventRevoked, keyID)
	}
	if identity != "" {
		if err := s.Delete(ctx, identityKeyPath(identity, keyID)); err != nil {
			b.Logger().Warn("could not delete a key's identity index entry", "key_id", keyID, "error", err)
		}
	}
	b.usage.Forget(keyID)
	b.rateLimiter.Forget(keyID)
	b.detector.Forget(keyID)
	return nil
}

// validUntil is when the key stops verifying: its lease's end, or its rotation grace's.
func (k *keyEntry) validUntil() time.Time {
	if !k.InvalidAfter.IsZero() && k.InvalidAfter.Before(k.ExpiresAt) {
		return k.InvalidAfter
	}
	return k.ExpiresAt
}

// publicKey is what reads and verify may show about a key: never the key or its hash.
func (k *keyEntry) publicKey(now time.Time) verifyapi.Key {
	until := k.validUntil()
	return verifyapi.Key{
		KeyID:     k.KeyID,
		Role:      k.Role,
		Name:      k.Name,
		Scopes:    k.Scopes,
		Metadata:  k.Metadata,
		ExpiresAt: until,
		TTL:       until.Sub(now),
		Identity:  k.Identity,
	}
}

// publicData is publicKey as response data.
func (k *keyEntry) publicData(now time.Time) map[string]interface{} { return k.publicKey(now).Data() }
