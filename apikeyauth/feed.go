package apikeyauth

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Backoff of the feed loop after a failed poll.
const (
	feedRetryMin = 250 * time.Millisecond
	feedRetryMax = 5 * time.Second
	// feedMinInterval spaces polls when the wait is under a second (tests), so that a
	// feed answering at once is not polled in a tight loop.
	feedMinInterval = 100 * time.Millisecond
)

// feedLoop long-polls the change feed until the fleet is closed.
func (f *fleet) feedLoop() {
	defer f.wg.Done()
	cursor := ""
	backoff := feedRetryMin
	failing := false
	for f.ctx.Err() == nil {
		start := time.Now()
		next, err := f.pollFeed(f.ctx, cursor)
		if f.ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failing {
				// Once per outage: VALID results fall back to CacheTTL until it ends.
				f.warn("change feed unavailable: cached results are kept for CacheTTL only", slog.String("error", err.Error()))
				failing = true
			}
			if !f.sleep(backoff) {
				return
			}
			backoff = min(backoff*2, feedRetryMax)
			continue
		}
		if failing {
			f.m.log.LogAttrs(context.Background(), slog.LevelInfo, "change feed available again")
			failing = false
		}
		backoff = feedRetryMin
		cursor = next
		if time.Since(start) < feedMinInterval && f.feedWait < time.Second {
			if !f.sleep(feedMinInterval) {
				return
			}
		}
	}
}

// pollFeed makes one feed call after cursor, applies what it answered, and returns
// the cursor to ask with next.
func (f *fleet) pollFeed(ctx context.Context, cursor string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.feedTimeout)
	defer cancel()
	query := map[string][]string{verifyapi.FieldWait: {strconv.Itoa(int(f.feedWait / time.Second))}}
	if cursor != "" {
		query[verifyapi.FieldCursor] = []string{cursor}
	}
	start := time.Now()
	secret, err := f.client.Logical().ReadWithDataWithContext(ctx, f.feedPath, query)
	var resp verifyapi.FeedResponse
	switch {
	case err != nil:
		err = fleetError(callFeed, err)
	case secret == nil || secret.Data == nil:
		err = errors.New("feed: no answer (is the engine too old for Fleet?)")
	default:
		resp, err = verifyapi.DecodeFeedResponse(secret.Data)
	}
	f.observe(callFeed, start, err)
	if err != nil {
		f.feedOK.Store(false)
		return "", err
	}
	f.apply(resp, cursor == "")
	return resp.Cursor, nil
}

// apply acts on one feed answer, then marks the feed healthy. first: the answer to the
// first poll (no cursor yet), which always resets.
func (f *fleet) apply(resp verifyapi.FeedResponse, first bool) {
	now := f.m.now()
	if resp.Reset {
		// The engine restarted, another node took over, or the cursor is too old:
		// any cached answer may be wrong, and the engine may not know our grants. On the
		// first poll only the cache is in doubt (answers stored before the feed had a
		// cursor); the grants were given by the engine that answers now.
		f.resetCache()
		if !first {
			f.pool.DropAll()
		}
	}
	for _, e := range resp.Events {
		f.invalidate(e, now)
	}
	f.prune(now)
	f.lastAnswer.Store(now.UnixNano())
	f.feedOK.Store(true)
}

// invalidate makes every cached answer about e's key stale, and drops its grant when the
// event cancels grants.
func (f *fleet) invalidate(e verifyapi.FeedEvent, now time.Time) {
	f.invMu.Lock()
	if len(f.invalid) >= maxInvalidations {
		f.invMu.Unlock()
		f.resetCache()
	} else {
		gen := f.gen.Add(1)
		f.invalid[e.KeyID] = invalidation{gen: gen, at: now}
		f.lastEventGen.Store(gen)
		f.invMu.Unlock()
	}
	switch e.Kind {
	case verifyapi.EventEnabled, verifyapi.EventExpiryChanged, verifyapi.EventUpdated:
		// The key's grants still stand. (Keeping one is safe in any case: a grant is
		// spent only through a cached answer stored after the event, so after a fresh
		// verify, whose grant id replaces one the engine cancelled.)
	default:
		// revoked, disabled, rotated, limits_changed, grant_cancelled and any kind this
		// version does not know: the engine has cancelled (or may have) the grant.
		f.pool.Drop(e.KeyID)
	}
}

// resetCache makes every cached answer stale and empties the caches.
func (f *fleet) resetCache() {
	f.invMu.Lock()
	gen := f.gen.Add(1)
	f.resetGen.Store(gen)
	f.lastEventGen.Store(gen)
	clear(f.invalid) // older than the reset: covered by resetGen
	f.invMu.Unlock()
	f.m.cache.Purge()
	if f.m.negCache != nil {
		f.m.negCache.Purge()
	}
}

// prune forgets invalidations no cache entry can predate any more: an entry is stored
// at most VerifyTimeout after its generation was taken and lives at most FleetCacheTTL.
func (f *fleet) prune(now time.Time) {
	if now.Sub(f.lastPrune) < time.Second {
		return
	}
	f.lastPrune = now
	horizon := now.Add(-(f.cacheTTL + f.m.verifyTimeout + 5*time.Second))
	f.invMu.Lock()
	defer f.invMu.Unlock()
	for k, inv := range f.invalid {
		if inv.at.Before(horizon) {
			delete(f.invalid, k)
		}
	}
}
