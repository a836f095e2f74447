package apikey

import (
	"context"
	"crypto/sha256"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// maxCost bounds verify's cost, so that no sum of costs can overflow a use count.
const maxCost = 1 << 31

func pathVerify(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "verify",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "verify",
		},
		Fields: withFields(grantFields(), map[string]*framework.FieldSchema{
			verifyapi.FieldAPIKey: {
				Type:        framework.TypeString,
				Description: "The key a client presented. Required. Audit devices HMAC it by default; keep it that way.",
				Required:    true,
			},
			verifyapi.FieldScopes: {
				Type:        framework.TypeCommaStringSlice,
				Description: "Scopes the request needs; every one must be granted to the key.",
			},
			verifyapi.FieldClientIP: {
				Type:        framework.TypeString,
				Description: "IP address the client connected from; required when the key's role has bound_cidrs.",
			},
			verifyapi.FieldCost: {
				Type:        framework.TypeInt,
				Description: "How many uses this request counts against the key's max_uses (default 1; 0 checks without counting).",
				Default:     1,
			},
			verifyapi.FieldTags: {
				Type:        framework.TypeStringSlice,
				Description: "Optional labels of this check for the usage counts, as name=value (for example route=/orders, region=eu): at most 8; names 1-64 of a-z 0-9 _ . -, values 1-128 printable ASCII without space or '='.",
			},
			verifyapi.FieldRequestID: {
				Type:        framework.TypeString,
				Description: "Optional id of this check (1-64 of A-Z a-z 0-9 _ -). A verify repeated with the same request_id and key within a minute is not counted again: it returns the first answer's count, so a client may retry after a 5xx.",
			},
		}),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:  b.pathVerify,
				Responses: okResponse(verifyResponseFields),
			},
		},
		HelpSynopsis:    strings.TrimSpace(verifyHelpSyn),
		HelpDescription: strings.TrimSpace(verifyHelpDesc),
	}
}

// verifyResponseFields: the key's public fields are returned for codes after NOT_FOUND.
var verifyResponseFields = withFields(keyPublicFields, map[string]*framework.FieldSchema{
	verifyapi.FieldValid:         {Type: framework.TypeBool, Description: "Whether the key may be used for this request."},
	verifyapi.FieldCode:          {Type: framework.TypeString, Description: "Why: MALFORMED, NOT_FOUND, DISABLED, EXPIRED, FORBIDDEN_IP, INSUFFICIENT_SCOPE, RATE_LIMITED, USAGE_EXCEEDED or VALID."},
	verifyapi.FieldRemainingUses: {Type: framework.TypeInt64, Description: "Uses left under max_uses, refills and top-ups included (only for keys with max_uses); the identity's shared credits for keys with shared_limits."},
	verifyapi.FieldRateLimit:     {Type: framework.TypeFloat, Description: "The key's rate limit in requests per second: rate_limit, or the slowest of rate_limits (only for rate-limited keys)."},
	verifyapi.FieldRetryAfter:    {Type: framework.TypeInt, Description: "Seconds until every rate limit of the key admits a request (RATE_LIMITED only)."},
	verifyapi.FieldRateLimitName: {Type: framework.TypeString, Description: "The limit that refused: a name of the role's rate_limits, or default for rate_limit (RATE_LIMITED only)."},
	verifyapi.FieldIdentity:      {Type: framework.TypeString, Description: "Who the key belongs to (keys with an identity only)."},
	verifyapi.FieldReportToken:   {Type: framework.TypeString, Description: "With grant_holder, for codes after NOT_FOUND: what usage/report asks with each entry for this key."},
	verifyapi.FieldGrantID:       {Type: framework.TypeString, Description: "The holder's grant for the key (VALID for a metered key, with grant_holder); the same id on every top-up."},
	verifyapi.FieldGrantedUses:   {Type: framework.TypeInt64, Description: "Uses added to the holder's grant by this answer, debited from the key's credits (keys with max_uses)."},
	verifyapi.FieldGrantedLimits: {Type: framework.TypeSlice, Description: "The holder's share of each of the key's rate limits: name, rate (per second), burst (rate-limited keys)."},
	verifyapi.FieldGrantTTL:      {Type: framework.TypeInt64, Description: "Milliseconds the grant lasts from this answer unless renewed (grants/renew)."},
})

// verifyResult is a refusal that says nothing about the key (MALFORMED, NOT_FOUND).
func verifyResult(code string) *logical.Response {
	return &logical.Response{Data: verifyapi.Response{Code: code}.Data()}
}

// pathVerify answers whether a presented key may be used. A well-formed request always
// gets 200 with valid and code; only bad request fields get 400. A warm verify (key record
// in cache) touches no storage.
func (b *backend) pathVerify(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	key := d.Get(verifyapi.FieldAPIKey).(string)
	if key == "" {
		return logical.ErrorResponse("api_key is required"), nil
	}
	var requested []string
	if v, ok := d.GetOk(verifyapi.FieldScopes); ok {
		requested = v.([]string)
		if err := scopes.Validate(requested); err != nil {
			return logical.ErrorResponse("scopes: %s", err), nil
		}
	}
	var clientIP netip.Addr
	if raw := d.Get(verifyapi.FieldClientIP).(string); raw != "" {
		ip, err := clientaddr.ParseAddr(raw)
		if err != nil {
			return logical.ErrorResponse("client_ip: %s", err), nil
		}
		clientIP = ip
	}
	cost := int64(d.Get(verifyapi.FieldCost).(int))
	if cost < 0 || cost > maxCost {
		return logical.ErrorResponse("cost must be between 0 and %d", maxCost), nil
	}

	requestID := d.Get(verifyapi.FieldRequestID).(string)
	if requestID != "" && !validRequestID(requestID) {
		return logical.ErrorResponse("request_id must be 1-%d characters of A-Z, a-z, 0-9, _ and -", maxRequestIDLen), nil
	}

	var tags []usagestats.Tag
	if raw := d.Get(verifyapi.FieldTags).([]string); len(raw) > 0 {
		var err error
		if tags, err = usagestats.ParseTags(raw); err != nil {
			return logical.ErrorResponse("tags: %s", err), nil
		}
	}
	ask, errResp := parseGrantAsk(d, false)
	if errResp != nil {
		return errResp, nil
	}

	now := b.clock.now()
	parsed, err := keyformat.Parse(key)
	keyID, imported := parsed.KeyID, false
	if err != nil {
		// Not this engine's format: an imported key, or MALFORMED (no storage read when
		// the mount holds no imported keys, at most one lookup when it does).
		if keyID, err = b.importedKeyID(ctx, req.Storage, key); err != nil {
			return nil, err
		}
		if keyID == "" {
			b.countVerify("", "", verifyapi.CodeMalformed, tags, clientIP, now)
			return verifyResult(verifyapi.CodeMalformed), nil
		}
		imported = true
	}
	k, err := b.cachedKeyEntry(ctx, req.Storage, keyID)
	if err != nil {
		return nil, err
	}
	if k == nil {
		b.countVerify("", "", verifyapi.CodeNotFound, tags, clientIP, now)
		return verifyResult(verifyapi.CodeNotFound), nil
	}
	secret, err := b.getMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	hash := keyHash(secret, key)
	if imported {
		hash = importedKeyHash(secret, key)
	}
	if secret == nil || !hashesEqual(hash, k.Hash) {
		// Counted for the key whose id was presented: a run of these is someone
		// guessing the secret of a known key_id (the caller still learns nothing).
		b.countVerify(k.KeyID, k.Role, verifyapi.CodeNotFound, tags, clientIP, now)
		b.detect(ctx, req.Storage, k, verifyapi.CodeNotFound, clientIP, now)
		return verifyResult(verifyapi.CodeNotFound), nil
	}

	account, err := b.accountKey(ctx, req.Storage, k)
	if err != nil {
		return nil, err
	}
	seed, err := b.creditSeed(ctx, req.Storage, account, now)
	if err != nil {
		return nil, err
	}
	var c charge
	if c.code = b.checkKeyState(k, requested, clientIP, now); c.code == "" {
		c = b.chargeKeyOnce(account, seed, requestID, requested, clientIP, cost, now)
	} else {
		c.remaining = b.usage.Remaining(account.creditAccount(), account.quota(now), seed)
	}
	b.countVerify(k.KeyID, k.Role, c.code, tags, clientIP, now)
	b.detect(ctx, req.Storage, k, c.code, clientIP, now)
	publicKey := k.publicKey(now)
	resp := verifyapi.Response{
		Valid:         c.code == verifyapi.CodeValid,
		Code:          c.code,
		Key:           &publicKey,
		RetryAfter:    c.retryAfter,
		RateLimitName: c.limitName,
		// Tells callers that cache results (apikeyauth) to ask for every use.
		RateLimit: account.limits.meteredRate,
	}
	if ask != nil {
		// A grant holder (fleet_grants.go) may report what it serves for this key.
		resp.ReportToken = reportToken(secret, k.KeyID)
		switch c.code {
		case verifyapi.CodeValid:
			g, remaining, err := b.topUp(ctx, req.Storage, ask, k, account, seed, now)
			if err != nil {
				return nil, err
			}
			if resp.Grant = g; g != nil && remaining >= 0 {
				c.remaining = remaining
			}
			if g == nil && account.MaxUses > 0 && cost > 0 && grantable(account) {
				// No grant (the credits are spent, or no share is free): this answer's
				// own use is stored now, like a grant's, so that a plugin killed right
				// at the end of a quota does not admit it again. Best effort: the use
				// is counted in memory either way.
				if err := b.persistCredits(ctx, req.Storage, account); err != nil {
					b.Logger().Warn("a verified use could not be stored at once; the periodic flush retries", "key_id", k.KeyID, "error", err)
				}
			}
		case verifyapi.CodeRateLimited:
			if err := b.registerHolder(ctx, req.Storage, ask, k, account, now); err != nil {
				return nil, err
			}
		}
	}
	if account.MaxUses > 0 {
		remaining := c.remaining // escapes: only keys with max_uses pay for it
		resp.RemainingUses = &remaining
	}
	return &logical.Response{Data: resp.Data()}, nil
}

// countVerify counts one verify outcome in memory for the usage series and the metrics
// path; the periodic function writes the counts to storage. keyID and role are empty
// when no key was found.
func (b *backend) countVerify(keyID, role, code string, tags []usagestats.Tag, clientIP netip.Addr, now time.Time) {
	if b.countingOff.Load() {
		return
	}
	if idx, ok := usagestats.CodeIndex(code); ok {
		b.counters.verified(role, idx)
	}
	// Record refuses only unknown codes and invalid tags, and both were checked.
	_ = b.stats.Record(keyID, role, code, tags, clientIP, now)
}

// maxRotationChain bounds how many replacements accountKey follows.
const maxRotationChain = 8

// accountKey returns the record whose uses and rate limit k's use is charged to: k
// itself, or for a key rotated out and still in its grace period, the live end of its
// chain of replacements. Otherwise every rotation with a grace period would add the
// old key's remaining uses and rate to the new key's. A replacement that is gone
// (revoked) leaves the charge on k.
func (b *backend) accountKey(ctx context.Context, s logical.Storage, k *keyEntry) (*keyEntry, error) {
	account := k
	for range maxRotationChain {
		if account.ReplacedBy == "" {
			break
		}
		next, err := b.cachedKeyEntry(ctx, s, account.ReplacedBy)
		if err != nil {
			return nil, err
		}
		if next == nil {
			break
		}
		account = next
	}
	return account, nil
}

// checkKeyState applies the checks after NOT_FOUND that charge nothing, in the
// contract's order; it returns "" when all pass.
func (b *backend) checkKeyState(k *keyEntry, requested []string, clientIP netip.Addr, now time.Time) string {
	switch {
	case k.Disabled:
		return verifyapi.CodeDisabled
	case !now.Before(k.validUntil()):
		return verifyapi.CodeExpired
	case len(k.boundPrefixes) > 0 && !clientaddr.Contains(k.boundPrefixes, clientIP):
		return verifyapi.CodeForbiddenIP
	}
	if _, missing := scopes.Missing(k.Scopes, requested); missing {
		return verifyapi.CodeInsufficientScope
	}
	return ""
}

// charge is the charging part of a verify answer.
type charge struct {
	code       string
	remaining  int64
	retryAfter time.Duration
	// limitName names the rate limit that refused (RATE_LIMITED only).
	limitName string
}

// chargeKey applies the rate limits, then max_uses, to a request that passed every
// earlier check: only such a request takes rate-limit tokens (one from each of the
// key's limits, and only when all of them admit it), and only a VALID one is counted
// as a use. seed is the stored state of the credits k spends (creditSeed). Keys whose
// limits are their identity's take tokens and credits from the identity's account and
// still count their own uses.
func (b *backend) chargeKey(k *keyEntry, seed usage.State, cost int64, now time.Time) charge {
	q := k.quota(now)
	credits := k.creditAccount()
	if len(k.limits.buckets) > 0 {
		// The buckets admit what the grant holders' shares of the rate leave
		// (fleet_grants.go): all of it while there are none.
		account := k.limiterAccount()
		scale, until := b.directScale(account, now)
		if ok, refused, wait := b.rateLimiter.AllowAllScaled(account, k.limits.buckets, scale, now); !ok {
			if scale <= 0 {
				wait = max(wait, until.Sub(now)) // when a share may come free
			}
			return charge{code: verifyapi.CodeRateLimited, remaining: b.usage.Remaining(credits, q, seed), retryAfter: wait, limitName: k.limits.buckets[refused].Name}
		}
	}
	ok, remaining := b.usage.Use(credits, cost, q, seed, now)
	if !ok {
		return charge{code: verifyapi.CodeUsageExceeded, remaining: remaining}
	}
	if credits != k.KeyID && cost > 0 {
		b.usage.Use(k.KeyID, cost, usage.Quota{}, usage.State{Count: k.UseCount, LastUsed: k.LastUsedAt}, now)
	}
	return charge{code: verifyapi.CodeValid, remaining: remaining}
}

// chargeKeyOnce is chargeKey, except that a repeat of a request_id answers what the
// first attempt did without charging again. Only the charging checks are replayed: a
// key revoked, disabled or expired since the first attempt was refused before this.
func (b *backend) chargeKeyOnce(k *keyEntry, seed usage.State, requestID string, requested []string, clientIP netip.Addr, cost int64, now time.Time) charge {
	if requestID == "" {
		return b.chargeKey(k, seed, cost, now)
	}
	replayKey := verifyReplayKey{requestID: requestID, keyID: k.KeyID, scopes: sha256.Sum256([]byte(strings.Join(requested, " "))), clientIP: clientIP, cost: cost}
	if replay, ok := b.verifyReplays.Get(replayKey); ok && now.Sub(replay.at) < verifyReplayWindow {
		return replay.charge
	}
	c := b.chargeKey(k, seed, cost, now)
	b.verifyReplays.Add(replayKey, verifyReplay{at: now, charge: c})
	return c
}

// Replayed verify answers: how long and how many are kept.
const (
	verifyReplayWindow = time.Minute
	maxVerifyReplays   = 10_000
	maxRequestIDLen    = 64
)

// verifyReplayKey is everything a repeated verify must share with the first one to get
// its answer: the same request_id for another key, scope or cost is a new check.
type verifyReplayKey struct {
	requestID string
	keyID     string
	scopes    [sha256.Size]byte // a digest: the list may be kilobytes long
	clientIP  netip.Addr
	cost      int64
}

// verifyReplay is the charging part of a verify answer and when it was given.
type verifyReplay struct {
	at time.Time
	charge
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

const verifyHelpSyn = `Check an API key a client presented.`

const verifyHelpDesc = `
Services call verify with the key a client presented (api_key), the scopes the request
needs (scopes), the client's address (client_ip, needed when the role has bound_cidrs) and
how many uses it counts (cost, default 1).

A well-formed request always answers 200 with valid (bool) and code, checked in this
order: MALFORMED (not a key of this engine: prefix, charset, length or checksum; no storage
is read), NOT_FOUND (unknown, revoked or wrong key; nothing else is returned), DISABLED,
EXPIRED, FORBIDDEN_IP (client_ip missing or outside bound_cidrs), INSUFFICIENT_SCOPE,
RATE_LIMITED (with retry_after in seconds and rate_limit_name, the limit that refused:
a name of the role's rate_limits, or default for rate_limit; a request is admitted only
when every limit admits it, and then takes a token from each; limits are per key, or
per identity for keys with shared_limits, and per Vault node), USAGE_EXCEEDED (max_uses
spent, or what a refill or top-up left), VALID (the use is counted). With request_id, a repeat
of the same check within a minute (a client's retry after a 5xx) is not counted again.
Every outcome is counted over time per key, role and mount, with the optional tags
(name=value labels, at most 8) and the client's network; keys/<key_id>/usage, usage and
metrics read the counts. For every code after
NOT_FOUND the response also has key_id, role, name, scopes, metadata, expires_at, ttl,
identity (keys that belong to one), remaining_uses (keys with max_uses: refills and
top-ups included, the identity's shared credits for keys with shared_limits) and
rate_limit (rate-limited keys). It never contains the key. A missing or empty api_key, or a malformed scope, client_ip or tag, is a 400.

Callers that serve many requests per verify (a gateway fleet) add grant_holder (and
optionally grant_uses, grant_rate): the answer then has report_token for every code
after NOT_FOUND (for usage/report), and with VALID for a metered key a quota grant:
grant_id, granted_uses (debited at once from the key's credits), granted_limits (the
holder's share of each rate limit; the shares of all holders sum to at most the key's
rate, and verify's own answers get what they leave) and grant_ttl_ms. Renew or return
it with grants/renew; follow changes on feed. Keys with a rate limit whose window is
longer than a minute get no grant.

To keep key_id and code readable in audit logs while api_key stays HMAC'd:
  vault secrets tune -audit-non-hmac-response-keys=key_id -audit-non-hmac-response-keys=code \
    -audit-non-hmac-response-keys=valid -audit-non-hmac-response-keys=role apikey/
`
