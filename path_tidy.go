package apikey

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathTidy(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "tidy$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "tidy",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathTidy, Responses: okResponse(map[string]*framework.FieldSchema{
				"scanned":           {Type: framework.TypeInt, Description: "Key records looked at."},
				"deleted":           {Type: framework.TypeInt, Description: "Key records removed."},
				"usage_deleted":     {Type: framework.TypeInt, Description: "Usage records of gone keys and roles removed (nothing left within the retention)."},
				"anomalies_deleted": {Type: framework.TypeInt, Description: "Anomaly records older than usage_days removed."},
				"imported_deleted":  {Type: framework.TypeInt, Description: "Index entries of imported keys revoked more than usage_days ago removed."},
			})},
		},
		HelpSynopsis:    strings.TrimSpace(tidyHelpSyn),
		HelpDescription: strings.TrimSpace(tidyHelpDesc),
	}
}

var errTidyRunning = errors.New("a tidy is already running")

func (b *backend) pathTidy(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.getSettings(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	// Counts in memory go to storage first, so that a tidy leaves storage complete: an
	// operator can tidy before a planned restart or failover and lose no counts.
	if err := errors.Join(b.flushUsage(ctx, req.Storage), b.flushStats(ctx, req.Storage)); err != nil {
		return nil, err
	}
	scanned, deleted, err := b.tidy(ctx, req.Storage, cfg.TidySafetyBuffer, time.Now())
	if errors.Is(err, errTidyRunning) {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err != nil {
		return nil, err
	}
	usageDeleted, err := b.tidyUsage(ctx, req.Storage, cfg.usageConfig(), b.clock.now())
	if err != nil {
		return nil, err
	}
	anomaliesDeleted, err := b.tidyAnomalies(ctx, req.Storage, cfg.usageRetention(), b.clock.now())
	if err != nil {
		return nil, err
	}
	importedDeleted, err := b.tidyImported(ctx, req.Storage, cfg.usageRetention(), b.clock.now())
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{"scanned": scanned, "deleted": deleted, "usage_deleted": usageDeleted, "anomalies_deleted": anomaliesDeleted, "imported_deleted": importedDeleted}}, nil
}

// tidy deletes records of keys whose lease ended more than buffer ago. The lease end is
// ExpiresAt, which renewals move, so a live key is never touched; a rotated-out key is
// kept until its lease would have ended too, so its lease still finds the record.
func (b *backend) tidy(ctx context.Context, s logical.Storage, buffer time.Duration, now time.Time) (scanned, deleted int, err error) {
	if !b.tidyRunning.CompareAndSwap(false, true) {
		return 0, 0, errTidyRunning
	}
	defer b.tidyRunning.Store(false)

	ids, err := s.List(ctx, keyPrefix)
	if err != nil {
		return 0, 0, fmt.Errorf("listing keys: %w", err)
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return scanned, deleted, err
		}
		scanned++
		gone, err := b.tidyOne(ctx, s, id, now.Add(-buffer))
		if err != nil {
			return scanned, deleted, err
		}
		if gone {
			deleted++
		}
	}
	if deleted > 0 {
		b.Logger().Info("tidy removed expired key records", "deleted", deleted, "scanned", scanned)
	}
	return scanned, deleted, nil
}

func (b *backend) tidyOne(ctx context.Context, s logical.Storage, keyID string, expiredBefore time.Time) (bool, error) {
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, s, keyID)
	if err != nil || k == nil {
		return false, err
	}
	if !k.ExpiresAt.Before(expiredBefore) {
		return false, nil
	}
	return true, b.deleteKeyEntry(ctx, s, keyID)
}

// periodic runs about once a minute on every node Vault runs the plugin on. It writes
// storage only where that is safe: not on performance standbys, whose storage is read-only.
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	if b.System().ReplicationState().HasState(consts.ReplicationPerformanceStandby) {
		return nil
	}
	flushErr := errors.Join(b.flushUsage(ctx, req.Storage), b.flushStats(ctx, req.Storage))

	cfg, err := b.getSettings(ctx, req.Storage)
	if err != nil {
		return errors.Join(flushErr, err)
	}
	now := time.Now()
	b.stateMu.Lock()
	due := cfg.TidyInterval > 0 && now.Sub(b.lastTidy) >= cfg.TidyInterval
	if due {
		b.lastTidy = now
	}
	b.stateMu.Unlock()
	if due {
		if _, _, err := b.tidy(ctx, req.Storage, cfg.TidySafetyBuffer, now); err != nil && !errors.Is(err, errTidyRunning) {
			return errors.Join(flushErr, err)
		}
		if _, err := b.tidyUsage(ctx, req.Storage, cfg.usageConfig(), b.clock.now()); err != nil {
			return errors.Join(flushErr, err)
		}
		if _, err := b.tidyAnomalies(ctx, req.Storage, cfg.usageRetention(), b.clock.now()); err != nil {
			return errors.Join(flushErr, err)
		}
		if _, err := b.tidyImported(ctx, req.Storage, cfg.usageRetention(), b.clock.now()); err != nil {
			return errors.Join(flushErr, err)
		}
	}
	return flushErr
}

// flushUsage writes in-memory use counts and credits to the key records, and shared
// credits to their identities' (path_identities.go). Verify never waits for it.
func (b *backend) flushUsage(ctx context.Context, s logical.Storage) error {
	var errs []error
	for _, p := range b.usage.Dirty() {
		var err error
		if identity, shared := strings.CutPrefix(p.Key, identityAccountPrefix); shared {
			err = b.flushIdentity(ctx, s, identity)
		} else {
			err = b.flushOne(ctx, s, p.Key)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// flushOne writes keyID's state from memory to its record. Under the key's lock it
// takes the newest state, so it never writes one older than what a credits change
// wrote under the same lock. The state is reconciled with the record read under that
// lock: a counter made after an idle one was dropped may be seeded from a record a
// verify loaded before the dropped counter's flush, and the uses it missed are in this
// record (usage.Counter's anchored); writing only the counter's count would lose them,
// since counts are only written upwards.
func (b *backend) flushOne(ctx context.Context, s logical.Storage, keyID string) error {
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, s, keyID)
	if err != nil {
		return err
	}
	if k == nil { // revoked meanwhile
		b.usage.Forget(keyID)
		return nil
	}
	stored := k.storedState()
	p, ok := b.usage.Reconcile(keyID, stored)
	if !ok {
		return nil
	}
	sameCredits := !p.Quota || (p.Limit == stored.Limit && p.Period == stored.Period)
	if p.Count < k.UseCount || (p.Count == k.UseCount && sameCredits) {
		// Already stored, or a newer count is (counts only grow).
		b.usage.Flushed(p)
		return nil
	}
	next := *k
	next.UseCount = p.Count
	next.LastUsedAt = p.LastUsed.UTC()
	if p.Quota && !k.sharedCredits() {
		next.Credits = &creditState{Limit: p.Limit, Period: p.Period}
	}
	if err := b.putKeyEntry(ctx, s, &next); err != nil {
		return err
	}
	b.usage.Flushed(p)
	return nil
}

const tidyHelpSyn = `Remove records of keys that expired.`

const tidyHelpDesc = `
Deletes key records whose lease ended more than tidy_safety_buffer ago (see config) and
reports how many records were scanned and deleted. Vault's lease revocation normally
deletes records itself; tidy cleans up what revocation could not reach (for example
records left by a failed revocation). It never removes a key that can still verify.
It also runs by itself every tidy_interval. A tidy first writes the use and usage counts
held in memory to storage (the periodic function does so about once a minute), then
removes usage records of revoked keys and deleted roles once nothing in them is within
usage_days, anomalies older than usage_days, and the learned baselines of gone keys.
`
