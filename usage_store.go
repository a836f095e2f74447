package apikey

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// Usage storage layout (LocalStorage, see backend.go):
//
//	usage/mount          the mount's record
//	usage/roles/<role>   one record per role
//	usage/keys/<key_id>  one record per key, prefixed with the key's role
//
// A key's record outlives the key (revocation keeps it, so that "which key was used
// yesterday" still has an answer after the key is gone) until tidy finds that nothing in
// it is within the retention any more.
const (
	usageMountKey   = usagePrefix + "mount"
	usageRolePrefix = usagePrefix + "roles/"
	usageKeyPrefix  = usagePrefix + "keys/"
)

// newRecorder returns the in-memory counter. It counts with the package's default bounds;
// the mount's retention (config usage_hours, usage_days) applies when counts are merged
// into storage, so a change of config never needs a new recorder.
func newRecorder() *usagestats.Recorder {
	r, err := usagestats.NewRecorder(usagestats.Config{})
	if err != nil {
		panic("usagestats: the zero Config is valid: " + err.Error())
	}
	return r
}

// usageRetention is how long daily counts, and anomalies, are kept.
func (s *settings) usageRetention() time.Duration {
	return time.Duration(s.usageConfig().Days) * 24 * time.Hour
}

// usageConfig is the retention the mount's settings ask for.
func (s *settings) usageConfig() usagestats.Config {
	return usagestats.Config{Hours: s.UsageHours, Days: s.UsageDays}.WithDefaults()
}

func usageStorageKey(scope usagestats.Scope, name string) string {
	switch scope {
	case usagestats.ScopeKey:
		return usageKeyPrefix + name
	case usagestats.ScopeRole:
		return usageRolePrefix + name
	}
	return usageMountKey
}

// storedUsage is one decoded usage record; Role is set for keys.
type storedUsage struct {
	Role   string
	Record usagestats.Record
}

// encodeUsage stores a key's role before its record: per-role queries need the role of
// keys that are gone.
func encodeUsage(u *storedUsage) ([]byte, error) {
	b := binary.AppendUvarint(nil, uint64(len(u.Role)))
	b = append(b, u.Role...)
	return u.Record.AppendBinary(b)
}

func decodeUsage(b []byte) (*storedUsage, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, errors.New("decoding usage record: bad role length")
	}
	u := &storedUsage{Role: string(b[w : w+int(n)])}
	if err := u.Record.UnmarshalBinary(b[w+int(n):]); err != nil {
		return nil, fmt.Errorf("decoding usage record: %w", err)
	}
	return u, nil
}

func readUsage(ctx context.Context, s logical.Storage, storageKey string) (*storedUsage, error) {
	entry, err := s.Get(ctx, storageKey)
	if err != nil {
		return nil, fmt.Errorf("reading usage record: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	return decodeUsage(entry.Value)
}

// currentUsage is what storage holds for scope and name, plus what this node counted
// since its last flush; nil when neither holds anything.
func (b *backend) currentUsage(ctx context.Context, s logical.Storage, scope usagestats.Scope, name string, cfg usagestats.Config, now time.Time) (*storedUsage, error) {
	u, err := readUsage(ctx, s, usageStorageKey(scope, name))
	if err != nil {
		return nil, err
	}
	if delta, ok := b.stats.Peek(scope, name); ok {
		if u == nil {
			u = &storedUsage{}
		}
		if scope == usagestats.ScopeKey {
			if role := b.stats.KeyRole(name); role != "" {
				u.Role = role
			}
		}
		usagestats.Merge(&u.Record, &delta, cfg, now)
	} else if u != nil {
		u.Record.Prune(cfg, now)
	}
	return u, nil
}

// flushStats merges what the recorder counted into storage. Verify never waits for it;
// a delta whose write fails stays in memory for the next flush.
func (b *backend) flushStats(ctx context.Context, s logical.Storage) error {
	b.statsFlushMu.Lock()
	defer b.statsFlushMu.Unlock()
	cfg, err := b.getSettings(ctx, s)
	if err != nil {
		return err
	}
	ucfg := cfg.usageConfig()
	var errs []error
	for _, d := range b.stats.Dirty() {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := b.flushDelta(ctx, s, &d, ucfg); err != nil {
			errs = append(errs, err)
			continue
		}
		b.stats.Flushed(d)
	}
	if err := b.flushAnomalyStates(ctx, s); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		b.counters.flushErrors.Add(1)
		return err
	}
	b.counters.lastFlush.Store(b.clock.now().Unix())
	return nil
}

func (b *backend) flushDelta(ctx context.Context, s logical.Storage, d *usagestats.Delta, cfg usagestats.Config) error {
	key := usageStorageKey(d.Scope, d.Name)
	u, err := readUsage(ctx, s, key)
	if err != nil {
		return err
	}
	if u == nil {
		u = &storedUsage{}
	}
	if d.Scope == usagestats.ScopeKey && d.Role != "" {
		// Verify names the role of the key it found, so a key revoked before this flush
		// keeps its role too.
		u.Role = d.Role
	}
	usagestats.Merge(&u.Record, &d.Record, cfg, b.clock.now())
	value, err := encodeUsage(u)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: key, Value: value}); err != nil {
		return fmt.Errorf("storing usage record: %w", err)
	}
	return nil
}

// keyUsageRecords yields the stored usage of every key (of role, when not empty), one
// record at a time, merged with this node's unflushed counts; it stops at the first
// error, which it stores in *errp.
func (b *backend) keyUsageRecords(ctx context.Context, s logical.Storage, role string, cfg usagestats.Config, now time.Time, errp *error) iter.Seq2[string, *usagestats.Record] {
	return func(yield func(string, *usagestats.Record) bool) {
		ids, err := s.List(ctx, usageKeyPrefix)
		if err != nil {
			*errp = fmt.Errorf("listing usage records: %w", err)
			return
		}
		// Keys counted on this node but never flushed have no record yet.
		stored := make(map[string]bool, len(ids))
		for _, id := range ids {
			stored[id] = true
		}
		for _, id := range b.stats.Names(usagestats.ScopeKey) {
			if !stored[id] {
				ids = append(ids, id)
			}
		}
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				*errp = err
				return
			}
			u, err := b.currentUsage(ctx, s, usagestats.ScopeKey, id, cfg, now)
			if err != nil {
				*errp = err
				return
			}
			if u == nil || (role != "" && u.Role != role) {
				continue
			}
			if !yield(id, &u.Record) {
				return
			}
		}
	}
}

// tidyUsage deletes the usage records of keys that are gone once nothing in them is
// within the retention, and the records of roles that are gone likewise.
func (b *backend) tidyUsage(ctx context.Context, s logical.Storage, cfg usagestats.Config, now time.Time) (deleted int, err error) {
	// A flush must not write a record back between the check and the delete.
	b.statsFlushMu.Lock()
	defer b.statsFlushMu.Unlock()
	for _, prefix := range []string{usageKeyPrefix, usageRolePrefix} {
		names, err := s.List(ctx, prefix)
		if err != nil {
			return deleted, fmt.Errorf("listing usage records: %w", err)
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return deleted, err
			}
			gone, err := b.usageOwnerGone(ctx, s, prefix, name)
			if err != nil {
				return deleted, err
			}
			if !gone {
				continue
			}
			u, err := readUsage(ctx, s, prefix+name)
			if err != nil {
				return deleted, err
			}
			if u == nil {
				continue
			}
			u.Record.Prune(cfg, now)
			if len(u.Record.Hours) > 0 || len(u.Record.Days) > 0 {
				continue
			}
			if err := s.Delete(ctx, prefix+name); err != nil {
				return deleted, fmt.Errorf("deleting usage record: %w", err)
			}
			deleted++
		}
	}
	return deleted, nil
}

func (b *backend) usageOwnerGone(ctx context.Context, s logical.Storage, prefix, name string) (bool, error) {
	if strings.HasPrefix(prefix, usageKeyPrefix) {
		k, err := b.inventoryKeyEntry(ctx, s, name)
		return k == nil, err
	}
	r, err := s.Get(ctx, rolePrefix+name)
	return r == nil, err
}
