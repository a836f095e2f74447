package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/lru"
)

// Imported keys (path_import.go) are keys this engine did not make, so verify cannot find
// them by the key_id a key of its own format carries. A separate index finds them:
//
//	imported/<hex(HMAC-SHA256(mount secret, SHA-256(key)))>  -> {key_id, hash_origin}
//	imported/ids/<key_id>                                    -> {index, hash_origin, request}
//	imported/present                                         the mount holds imported keys
//
// One index serves both kinds of import: a plaintext key and the SHA-256 digest of one
// (from a system that kept only hashes) give the same entry, and nothing unsalted is
// stored. A record imported from a key of another format holds the same HMAC as its
// index entry (importedKeyHash); a key in this engine's own format keeps its key_id and
// its usual hash, and verify finds it the usual way. imported/ids/ maps a key_id back to
// its entry, so that keys/<key_id> can show the hash's origin and tidy can find the
// entries of revoked keys: a revoked key's entry stays for the usage retention, so that
// verify answers NOT_FOUND for it (as for any revoked key) rather than MALFORMED.
//
// Verify reads the index only for keys keyformat.Parse refuses, only when the mount holds
// imported keys (a flag kept in memory, loaded once and invalidated like every cache),
// and at most once per presented key: entries found and entries missing are cached
// (bounded), kept exact against writes here and Invalidate for writes elsewhere.
//
// Like keys/, imported/ is LocalStorage: the index goes with the records it points to.
const (
	importedPrefix    = "imported/"
	importedFlagKey   = importedPrefix + "present"
	importedRefPrefix = importedPrefix + "ids/"

	// maxImportedKeyLen bounds what verify hashes to look a key up: no key longer than
	// this can be imported in plaintext, and a SHA-256 imported from elsewhere of a
	// longer key never verifies (docs/import.md).
	maxImportedKeyLen = 512
	// maxImportedCache bounds each of the index caches (about 150 bytes an entry).
	maxImportedCache = 100_000
)

// Where an imported key's stored hash came from (hash_origin).
const (
	hashOriginPlaintext = "plaintext"
	// hashOriginSHA256 marks keys imported from an unsalted SHA-256: their strength was
	// never checked, and the system they came from held a hash anyone can test guesses
	// against. Weaker: rotate them when clients can.
	hashOriginSHA256 = "sha256"
)

// importedIndexEntry is the value of imported/<index>.
type importedIndexEntry struct {
	KeyID      string `json:"key_id"`
	HashOrigin string `json:"hash_origin"`
}

// importedKeyRef is the value of imported/ids/<key_id>.
type importedKeyRef struct {
	Index      string `json:"index"`
	HashOrigin string `json:"hash_origin"`
	// Request marks the import request that wrote the key (an HMAC of Vault's request
	// id), so that Vault replaying that request rewrites its own keys instead of refusing
	// them as already present.
	Request string `json:"request,omitempty"`
	// Revoked is when the key was revoked; its index entry stays until tidyImported
	// removes it, so that verify answers NOT_FOUND meanwhile.
	Revoked time.Time `json:"revoked,omitempty"`
}

// What the mount is known to hold (importedIndex.present).
const (
	importedUnknown int32 = iota
	importedNone
	importedSome
)

// importedIndex is one mount's in-memory state of the index.
type importedIndex struct {
	// writeMu serialises writes of the index (import, drop, tidy): the duplicate check
	// and the write of one import must not interleave with another's. Taken after a key
	// lock, never before one.
	writeMu sync.Mutex

	// present is read lock-free by verify; stateMu orders loads against invalidations
	// (generation), so a load that read storage before a write elsewhere never stores
	// its stale answer.
	present    atomic.Int32
	stateMu    sync.Mutex
	generation uint64

	// hits maps index names to key_ids; misses holds index names storage does not hold.
	hits   *lru.Cache[string, string]
	misses *lru.Cache[string, struct{}]
}

func newImportedIndex() *importedIndex {
	return &importedIndex{
		hits:   lru.New[string, string](maxImportedCache),
		misses: lru.New[string, struct{}](maxImportedCache),
	}
}

// importedState returns the mount's index state.
func (b *backend) importedState() *importedIndex { return b.imported }

// importedDigestIndex is the index name of a key whose SHA-256 is digest.
func importedDigestIndex(secret []byte, digest [sha256.Size]byte) string {
	return hex.EncodeToString(importedDigestHash(secret, digest))
}

func importedDigestHash(secret []byte, digest [sha256.Size]byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write(digest[:])
	return mac.Sum(nil)
}

// importedKeyHash is what the record of a key imported from another format holds:
// HMAC-SHA256(mount secret, SHA-256(key)). Verify compares it, in constant time, for
// keys it found through importedKeyID.
func importedKeyHash(secret []byte, key string) []byte {
	return importedDigestHash(secret, sha256.Sum256([]byte(key)))
}

// hasImported reports whether the mount holds imported keys: from memory, or from one
// read of the flag the first time (and after an Invalidate of it).
func (st *importedIndex) hasImported(ctx context.Context, s logical.Storage) (bool, error) {
	switch st.present.Load() {
	case importedNone:
		return false, nil
	case importedSome:
		return true, nil
	}
	st.stateMu.Lock()
	generation := st.generation
	st.stateMu.Unlock()
	entry, err := s.Get(ctx, importedFlagKey)
	if err != nil {
		return false, fmt.Errorf("reading the imported keys flag: %w", err)
	}
	state := importedNone
	if entry != nil {
		state = importedSome
	}
	st.stateMu.Lock()
	if st.generation == generation {
		st.present.CompareAndSwap(importedUnknown, state)
	}
	st.stateMu.Unlock()
	return state == importedSome, nil
}

// markImported stores the flag (once) before the first index entry is written.
// Callers hold writeMu.
func (st *importedIndex) markImported(ctx context.Context, s logical.Storage) error {
	if st.present.Load() == importedSome {
		return nil
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: importedFlagKey, Value: []byte("true")}); err != nil {
		return fmt.Errorf("storing the imported keys flag: %w", err)
	}
	st.stateMu.Lock()
	st.generation++
	st.present.Store(importedSome)
	st.stateMu.Unlock()
	return nil
}

// importedKeyID returns the key_id of the imported key key, or "" when there is none.
// Verify calls it for keys keyformat.Parse refused. It reads no storage when the mount
// holds no imported keys (once the flag is known) and at most one index entry otherwise;
// the caller then reads the record as for any key and compares importedKeyHash.
func (b *backend) importedKeyID(ctx context.Context, s logical.Storage, key string) (string, error) {
	if key == "" || len(key) > maxImportedKeyLen {
		return "", nil
	}
	st := b.importedState()
	if has, err := st.hasImported(ctx, s); err != nil || !has {
		return "", err
	}
	secret, err := b.getMountSecret(ctx, s)
	if err != nil || secret == nil {
		return "", err
	}
	index := importedDigestIndex(secret, sha256.Sum256([]byte(key)))
	return st.lookup(ctx, s, index)
}

// lookup returns the key_id index names, through the caches.
func (st *importedIndex) lookup(ctx context.Context, s logical.Storage, index string) (string, error) {
	if id, ok := st.hits.Get(index); ok {
		return id, nil
	}
	if _, ok := st.misses.Get(index); ok {
		return "", nil
	}
	hitsGeneration, missesGeneration := st.hits.Generation(), st.misses.Generation()
	e, err := readImportedIndex(ctx, s, index)
	if err != nil {
		return "", err
	}
	if e == nil {
		st.misses.AddIfUnchanged(index, struct{}{}, missesGeneration)
		return "", nil
	}
	st.hits.AddIfUnchanged(index, e.KeyID, hitsGeneration)
	return e.KeyID, nil
}

// forget drops an index name from both caches (before and after each write of it).
func (st *importedIndex) forget(index string) {
	st.hits.Remove(index)
	st.misses.Remove(index)
}

func readImportedIndex(ctx context.Context, s logical.Storage, index string) (*importedIndexEntry, error) {
	entry, err := s.Get(ctx, importedPrefix+index)
	if err != nil {
		return nil, fmt.Errorf("reading the imported keys index: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	var e importedIndexEntry
	if err := entry.DecodeJSON(&e); err != nil {
		return nil, fmt.Errorf("decoding the imported keys index: %w", err)
	}
	return &e, nil
}

func readImportedRef(ctx context.Context, s logical.Storage, keyID string) (*importedKeyRef, error) {
	entry, err := s.Get(ctx, importedRefPrefix+keyID)
	if err != nil {
		return nil, fmt.Errorf("reading imported key %s: %w", keyID, err)
	}
	if entry == nil {
		return nil, nil
	}
	var ref importedKeyRef
	if err := entry.DecodeJSON(&ref); err != nil {
		return nil, fmt.Errorf("decoding imported key %s: %w", keyID, err)
	}
	return &ref, nil
}

// importedHashOrigin returns hash_origin for keys/<key_id>: "plaintext" or "sha256" for
// an imported key, "" for a key this engine issued. No read when the mount holds no
// imported keys, one otherwise.
func (b *backend) importedHashOrigin(ctx context.Context, s logical.Storage, keyID string) (string, error) {
	st := b.importedState()
	if has, err := st.hasImported(ctx, s); err != nil || !has {
		return "", err
	}
	ref, err := readImportedRef(ctx, s, keyID)
	if err != nil || ref == nil {
		return "", err
	}
	return ref.HashOrigin, nil
}

// retireImportedKey marks keyID's index entries revoked, when it is an imported key;
// callers delete the record after it (deleteImportedKey). The index entry stays (a
// tombstone), so that verify answers NOT_FOUND for a revoked imported key, as for any
// revoked key, instead of MALFORMED; tidyImported removes it once retention has passed.
// No read when the mount holds no imported keys, one for a key that was not imported.
func (b *backend) retireImportedKey(ctx context.Context, s logical.Storage, keyID string) error {
	st := b.importedState()
	if has, err := st.hasImported(ctx, s); err != nil || !has {
		return err
	}
	ref, err := readImportedRef(ctx, s, keyID)
	if err != nil || ref == nil || !ref.Revoked.IsZero() {
		return err
	}
	ref.Revoked = time.Now().UTC()
	entry, err := logical.StorageEntryJSON(importedRefPrefix+keyID, ref)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing imported key %s: %w", keyID, err)
	}
	return nil
}

// removeImportedEntries deletes keyID's entries: the index entry unless another key
// took it over since, then the ref. Callers hold writeMu.
func (st *importedIndex) removeImportedEntries(ctx context.Context, s logical.Storage, keyID string, ref *importedKeyRef) error {
	e, err := readImportedIndex(ctx, s, ref.Index)
	if err != nil {
		return err
	}
	if e != nil && e.KeyID == keyID {
		st.forget(ref.Index)
		err := s.Delete(ctx, importedPrefix+ref.Index)
		st.forget(ref.Index)
		if err != nil {
			return fmt.Errorf("deleting the imported keys index: %w", err)
		}
	}
	if err := s.Delete(ctx, importedRefPrefix+keyID); err != nil {
		return fmt.Errorf("deleting imported key %s: %w", keyID, err)
	}
	return nil
}

// deleteImportedKey is deleteKeyEntry for any key, imported or not: the index entry is
// marked revoked first. Callers hold the key's lock. (Once deleteKeyEntry calls
// retireImportedKey itself, this is deleteKeyEntry plus one read.)
func (b *backend) deleteImportedKey(ctx context.Context, s logical.Storage, keyID string) error {
	if err := b.retireImportedKey(ctx, s, keyID); err != nil {
		return err
	}
	return b.deleteKeyEntry(ctx, s, keyID)
}

// invalidateImported handles Invalidate for imported/ keys (written by another node);
// it reports whether key was one.
func (b *backend) invalidateImported(key string) bool {
	if !strings.HasPrefix(key, importedPrefix) {
		return false
	}
	st := b.importedState()
	switch {
	case key == importedFlagKey:
		st.stateMu.Lock()
		st.generation++
		st.present.Store(importedUnknown)
		st.stateMu.Unlock()
	case strings.HasPrefix(key, importedRefPrefix):
		// Not cached.
	default:
		st.forget(strings.TrimPrefix(key, importedPrefix))
	}
	return true
}

// tidyImported removes the entries of imported keys revoked more than retention
// before now (verify answers MALFORMED for them from then on, NOT_FOUND before), marks
// revoked the entries whose record went without them (a revocation that failed
// half-way), and removes the flag when no imported key is left, so that verify of
// malformed keys reads nothing again. It returns how many keys' entries it removed.
func (b *backend) tidyImported(ctx context.Context, s logical.Storage, retention time.Duration, now time.Time) (int, error) {
	st := b.importedState()
	if has, err := st.hasImported(ctx, s); err != nil || !has {
		return 0, err
	}
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	ids, err := s.List(ctx, importedRefPrefix)
	if err != nil {
		return 0, fmt.Errorf("listing imported keys: %w", err)
	}
	removed, left := 0, 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		ref, err := readImportedRef(ctx, s, id)
		if err != nil {
			return removed, err
		}
		if ref == nil {
			continue
		}
		if ref.Revoked.IsZero() {
			entry, err := s.Get(ctx, keyPrefix+id)
			if err != nil {
				return removed, fmt.Errorf("reading key record: %w", err)
			}
			left++
			if entry != nil {
				continue
			}
			ref.Revoked = now.UTC()
			stored, err := logical.StorageEntryJSON(importedRefPrefix+id, ref)
			if err != nil {
				return removed, err
			}
			if err := s.Put(ctx, stored); err != nil {
				return removed, fmt.Errorf("storing imported key %s: %w", id, err)
			}
			continue
		}
		if now.Sub(ref.Revoked) < retention {
			left++
			continue
		}
		if err := st.removeImportedEntries(ctx, s, id, ref); err != nil {
			return removed, err
		}
		removed++
	}
	if left == 0 {
		if err := s.Delete(ctx, importedFlagKey); err != nil {
			return removed, fmt.Errorf("deleting the imported keys flag: %w", err)
		}
		st.stateMu.Lock()
		st.generation++
		st.present.Store(importedNone)
		st.stateMu.Unlock()
		st.hits.Purge()
		st.misses.Purge()
	}
	if removed > 0 {
		b.Logger().Info("tidy removed the index entries of imported keys revoked before the retention", "removed", removed)
	}
	return removed, nil
}
