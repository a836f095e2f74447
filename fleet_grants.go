package apikey

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/grants"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/ratelimit"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Quota grants: how callers that serve many requests per verify call (the apikeyauth
// middleware with Fleet on, and so the gateway) admit requests for metered keys
// without asking verify each time, while the total admitted across all of them never
// exceeds the key's max_uses and rate limits (the contract: internal/verifyapi/fleet.go;
// the guarantees: docs/gateway.md#fleet).
//
//   - A verify with grant_holder that answers VALID for a metered key carries a grant
//     for (holder, key_id): uses debited at once from the key's credits and persisted
//     before the answer (a plugin killed after answering has them as spent), and the
//     holder's share f of each of the key's rate limits. Asking again tops up the same
//     grant. The shares of an account's holders sum to at most 1, and verify answers
//     the requests it sees itself from the key's buckets scaled by 1 - (sum of shares).
//   - grants/renew returns unused uses (refunded while in the same refill period) and
//     tops up, or releases the grant.
//   - The book (internal/grants) is in memory: a restart or failover forgets it, and the
//     uses of the grants it held stay spent (under-admission, never over-admission).
//   - Grants of a key are cancelled when it is revoked, deleted, disabled, rotated, or
//     its credits are set or added (key_entry.go, path_credits.go).

const (
	// maxGrants bounds the grants and registrations held (about 300 bytes each);
	// maxGrantHolders those of one limiter account. Beyond them a holder gets no grant
	// and asks verify for each request, as without grants.
	maxGrants       = 100_000
	maxGrantHolders = 256
	// maxFeedEvents bounds the change feed (about 64 bytes an event): a reader more
	// than that many events behind is told to reset.
	maxFeedEvents = 65_536
	// maxGrantWindow: a key with a rate limit whose bucket takes longer than this to
	// refill (a daily quota as a rate limit, say) gets no grant at all. A share of a
	// long window would strand tokens at holders that do not need them for hours.
	maxGrantWindow = time.Minute
)

// grantAsk is a parsed grant_holder, grant_uses and grant_rate.
type grantAsk struct {
	holder string
	uses   int64
	rate   float64
}

// grantFields are the request fields that ask for a grant, on verify and grants/renew.
func grantFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		verifyapi.FieldGrantHolder: {
			Type:        framework.TypeString,
			Description: "The caller process asking for quota grants (1-64 of A-Z a-z 0-9 _ -), random per process. With it, verify answers report_token for every code after NOT_FOUND, and a grant with VALID for a metered key.",
		},
		verifyapi.FieldGrantUses: {
			Type:        framework.TypeInt64,
			Description: fmt.Sprintf("Uses the holder asks for (keys with max_uses): 0 (default) asks for %d; at most %d. The engine grants at most its share of half of what remains.", grants.DefaultWant, verifyapi.MaxGrantUses),
		},
		verifyapi.FieldGrantRate: {
			Type:        framework.TypeFloat,
			Description: "Requests per second the holder expects for the key (rate-limited keys): its share of the rate follows it. 0 (default): as much as it may get.",
		},
	}
}

// parseGrantAsk reads the grant fields; nil when grant_holder is absent and not
// required. Bad values are 400s naming the field.
func parseGrantAsk(d *framework.FieldData, required bool) (*grantAsk, *logical.Response) {
	// Each field is decoded once (GetOk): verify's hot path pays for every decode.
	rawHolder, _ := d.GetOk(verifyapi.FieldGrantHolder)
	rawUses, hasUses := d.GetOk(verifyapi.FieldGrantUses)
	rawRate, hasRate := d.GetOk(verifyapi.FieldGrantRate)
	holder, _ := rawHolder.(string)
	if holder == "" {
		switch {
		case required:
			return nil, logical.ErrorResponse("%s is required", verifyapi.FieldGrantHolder)
		case hasUses:
			return nil, logical.ErrorResponse("%s: needs %s", verifyapi.FieldGrantUses, verifyapi.FieldGrantHolder)
		case hasRate:
			return nil, logical.ErrorResponse("%s: needs %s", verifyapi.FieldGrantRate, verifyapi.FieldGrantHolder)
		}
		return nil, nil
	}
	if !verifyapi.ValidHolder(holder) {
		return nil, logical.ErrorResponse("%s must be 1-%d characters of A-Z, a-z, 0-9, _ and -", verifyapi.FieldGrantHolder, verifyapi.MaxHolderLen)
	}
	ask := &grantAsk{holder: holder}
	if hasUses {
		ask.uses = rawUses.(int64)
	}
	if hasRate {
		ask.rate = rawRate.(float64)
	}
	if ask.uses < 0 || ask.uses > verifyapi.MaxGrantUses {
		return nil, logical.ErrorResponse("%s must be between 0 and %d", verifyapi.FieldGrantUses, int64(verifyapi.MaxGrantUses))
	}
	if !(ask.rate >= 0 && ask.rate <= verifyapi.MaxGrantRate) { // NaN too
		return nil, logical.ErrorResponse("%s must be between 0 and %g requests per second", verifyapi.FieldGrantRate, verifyapi.MaxGrantRate)
	}
	return ask, nil
}

// grantable reports whether verify may give a holder a grant for account's limits:
// the key is metered (max_uses, rate limits) and no rate limit has a long window.
func grantable(account *keyEntry) bool {
	if account.MaxUses <= 0 && len(account.limits.buckets) == 0 {
		return false
	}
	for _, l := range account.limits.buckets {
		if l.Rate > 0 && l.Burst/l.Rate > maxGrantWindow.Seconds() {
			return false
		}
	}
	return true
}

// grantRequest is what the book needs to know of a grant of k (charged to account).
func (b *backend) grantRequest(ask *grantAsk, k, account *keyEntry, ttl time.Duration) grants.Request {
	r := grants.Request{Holder: ask.holder, KeyID: k.KeyID, Account: account.limiterAccount(), TTL: ttl}
	if rate := account.limits.meteredRate; len(account.limits.buckets) > 0 && rate > 0 {
		r.Rated = true
		if ask.rate > 0 {
			r.Demand = ask.rate / rate
		}
	}
	return r
}

// refillCappedTTL is ttl, cut so that a grant of a key whose credits refill ends at the
// next refill: uses debited in one period must never be spent in the next, on top of
// its new credits (and a return after the refill refunds nothing). Holders expire a
// grant at the time they asked + TTL, which is never later than here.
func refillCappedTTL(account *keyEntry, ttl time.Duration, now time.Time) time.Duration {
	if account.MaxUses <= 0 || account.Refill == nil || !account.Refill.enabled() {
		return ttl
	}
	return min(ttl, account.Refill.next(now).Sub(now))
}

// grantTTL is the mount's grant_ttl.
func (b *backend) grantTTL(ctx context.Context, s logical.Storage) (time.Duration, error) {
	cfg, err := b.getSettings(ctx, s)
	if err != nil {
		return 0, err
	}
	return cfg.grantTTL(), nil
}

// topUp gives ask's holder a grant of k (whose uses and rates are account's), or tops
// up the one it has: uses debited from the credits and persisted, a share of each rate
// limit, and a fresh TTL. It returns nil when the holder gets none: the key is not
// grantable, the book is full, no share of its rate is free (the holder is registered
// and the others make room as they renew), or the debit could not be persisted (the
// uses are given back). remaining is what the credits have left after the debit (-1
// for keys without max_uses).
func (b *backend) topUp(ctx context.Context, s logical.Storage, ask *grantAsk, k, account *keyEntry, seed usage.State, now time.Time) (g *verifyapi.Grant, remaining int64, err error) {
	remaining = -1
	if !grantable(account) {
		return nil, remaining, nil
	}
	ttl, err := b.grantTTL(ctx, s)
	if err != nil {
		return nil, remaining, err
	}
	if ttl = refillCappedTTL(account, ttl, now); ttl < minGrantTTL {
		// A refill is due in a moment (less than the shortest grant_ttl): this request
		// was charged, the next ones ask verify until the new period starts.
		return nil, remaining, nil
	}
	req := b.grantRequest(ask, k, account, ttl)
	tk, ok := b.grants.Reserve(req, now)
	if !ok || (req.Rated && tk.Share <= 0) {
		return nil, remaining, nil
	}
	var taken int64
	q := account.quota(now)
	if account.MaxUses > 0 {
		credits := account.creditAccount()
		taken, remaining = b.usage.TakeUpTo(credits, func(left int64) int64 {
			return grants.Uses(ask.uses, left, tk.Holders, verifyapi.MaxGrantUses)
		}, q, seed, now)
		if taken > 0 {
			// Persisted before the answer: a plugin killed after it must not forget the
			// debit, or the uses would be admitted twice.
			if err := b.persistCredits(ctx, s, account); err != nil {
				// The uses go back, and so does the share: the holder asks again.
				b.usage.Refund(credits, taken, q, q.Period)
				b.grants.Release(tk.ID, ask.holder, now)
				b.Logger().Warn("quota grant not given: its debit could not be stored", "key_id", k.KeyID, "error", err)
				return nil, remaining + taken, nil
			}
		}
	}
	if !b.grants.Commit(tk, taken, q.Period) {
		// Cancelled meanwhile (the key was disabled, rotated, its credits changed): the
		// uses stay spent.
		return nil, remaining, nil
	}
	g = &verifyapi.Grant{ID: tk.ID, TTL: ttl}
	if account.MaxUses > 0 {
		g.Uses = &taken
	}
	if req.Rated {
		// The holder's bucket gets what the account's own buckets no longer hold at
		// the scale this grant leaves them: tokens move, they are never created (a
		// new grant is not a fresh full burst).
		scale, _ := b.directScale(account.limiterAccount(), now)
		given := b.rateLimiter.Handover(account.limiterAccount(), account.limits.buckets, scale, now)
		g.Limits = shareLimits(account.limits.buckets, tk.Share, given)
	}
	return g, remaining, nil
}

// shareLimits are a holder's share of each of a key's limits, with the tokens handed
// over to its bucket of each (given, per limit, from ratelimit's Handover).
func shareLimits(buckets []ratelimit.Limit, share float64, given []float64) []verifyapi.GrantLimit {
	out := make([]verifyapi.GrantLimit, len(buckets))
	for i, l := range buckets {
		rate, burst := grants.Scale(l.Rate, l.Burst, share)
		out[i] = verifyapi.GrantLimit{Name: l.Name, Rate: rate, Burst: burst}
		if i < len(given) {
			out[i].Tokens = given[i]
		}
	}
	return out
}

// persistCredits writes account's credits from memory to storage now (what the
// periodic flush would write later).
func (b *backend) persistCredits(ctx context.Context, s logical.Storage, account *keyEntry) error {
	if account.sharedCredits() {
		return b.flushIdentity(ctx, s, account.Identity)
	}
	return b.flushOne(ctx, s, account.KeyID)
}

// registerHolder records a holder refused RATE_LIMITED with its demand, so that the
// holders of the key's rate make room for it as they renew.
func (b *backend) registerHolder(ctx context.Context, s logical.Storage, ask *grantAsk, k, account *keyEntry, now time.Time) error {
	if !grantable(account) || len(account.limits.buckets) == 0 {
		return nil
	}
	ttl, err := b.grantTTL(ctx, s)
	if err != nil {
		return err
	}
	b.grants.Register(b.grantRequest(ask, k, account, ttl), now)
	return nil
}

// directScale is the part of account's rate that verify's own buckets admit: what the
// grant holders' shares leave. until is when the first share expires, for a
// retry_after when nothing is left.
func (b *backend) directScale(account string, now time.Time) (scale float64, until time.Time) {
	held, until := b.grants.Shares(account, now)
	if held <= 0 {
		return 1, until
	}
	if free := 1 - held; free > minDirectScale {
		return free, until
	}
	// Next to nothing left: refused outright, rather than a bucket so slow that its
	// retry_after would be days.
	return 0, until
}

// minDirectScale: less than this of a key's rate left for verify's own answers is none.
const minDirectScale = 1e-6

// fleetLargeField: usage/report carries up to MaxReportEntries entries, far more than
// HandleRequest's per-field bound (the handler bounds them itself).
func fleetLargeField(path, field string) bool {
	return path == usageReportPath && field == verifyapi.FieldEntries
}
