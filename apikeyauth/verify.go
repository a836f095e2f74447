package apikeyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/lru"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Verify codes, as answered by <mount>/verify, in the order verify checks them. The
// contract's own home is internal/verifyapi; these re-export it for the package's users.
const (
	CodeMalformed         = verifyapi.CodeMalformed
	CodeNotFound          = verifyapi.CodeNotFound
	CodeDisabled          = verifyapi.CodeDisabled
	CodeExpired           = verifyapi.CodeExpired
	CodeForbiddenIP       = verifyapi.CodeForbiddenIP
	CodeInsufficientScope = verifyapi.CodeInsufficientScope
	CodeRateLimited       = verifyapi.CodeRateLimited
	CodeUsageExceeded     = verifyapi.CodeUsageExceeded
	CodeValid             = verifyapi.CodeValid
)

// VerifyCodes returns every code verify answers, in the order it checks them.
func VerifyCodes() []string { return verifyapi.Codes() }

// Codes of the middleware's own, never answered by verify.
const (
	// CodeMissing: the request carried no key.
	CodeMissing = "MISSING"
	// CodeUnavailable: Vault could not be asked or did not answer with a verify result.
	CodeUnavailable = "VERIFY_UNAVAILABLE"
	// CodeRefused: verify refused the key with a code this version does not know.
	CodeRefused = "REFUSED"
	// CodeCanceled: the client went away while the key was being verified (Observer only).
	CodeCanceled = "CANCELED"
	// CodeTooManyFailures: the client address has spent its failure budget (see
	// Config.FailureBudget); Vault was not asked.
	CodeTooManyFailures = "TOO_MANY_FAILURES"
)

// ErrUnavailable is wrapped by every error Verify returns for a failed Vault call.
var ErrUnavailable = errors.New("api key verification unavailable")

// Result is a verify answer.
type Result struct {
	Valid bool
	Code  string
	// Identity is set for every code after NOT_FOUND.
	Identity *Identity
	// TTL is what was left of the key's lifetime when Vault answered.
	TTL time.Duration
	// RemainingUses is set when the key has max_uses (with Config.Fleet, a result
	// served from the cache has what Vault said when it was cached).
	RemainingUses *int64
	// RetryAfter is set with RATE_LIMITED (and USAGE_EXCEEDED, if Vault sends it).
	RetryAfter time.Duration
	// Metered is set when Vault counts every use of the key (it has max_uses or a
	// rate_limit): such a VALID result is never cached nor shared between requests,
	// except with Config.Fleet, where requests served from the cache spend the
	// middleware's grant for the key instead.
	Metered bool

	ttlKnown bool
	// reportToken lets the middleware report the uses of the key it served itself
	// (Config.Fleet; set for codes after NOT_FOUND).
	reportToken string
	// granted: a VALID answer for a metered key that this middleware holds a grant for
	// (Config.Fleet): cached, and every request it serves spends the grant.
	granted bool
}

// cacheKey is SHA-256 over the key and everything else verify is asked, so the key
// itself is never kept as a map key.
type cacheKey [sha256.Size]byte

type cacheEntry struct {
	result  Result
	expires time.Time
	retryAt time.Time // RATE_LIMITED: when the client may retry
	// With Config.Fleet: short is when the entry expires while the change feed is not
	// healthy (Config.CacheTTL after it was stored), and gen the feed generation seen
	// before the Vault call that produced it began, so that an event that arrives
	// during the call still invalidates it.
	short time.Time
	gen   uint64
}

func newCacheKey(key string, required []string, clientIP netip.Addr, cost int) cacheKey {
	h := sha256.New()
	// Length-prefixed fields: no two different inputs produce the same byte stream.
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(key)
	binary.BigEndian.PutUint64(n[:], uint64(len(required)))
	h.Write(n[:])
	for _, s := range required {
		field(s)
	}
	field(addrString(clientIP))
	field(strconv.Itoa(cost))
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// Verify asks Vault (or the cache) whether key may be used with required scopes from
// clientIP (the zero Addr when unknown) at cost uses: the middleware's decision without
// HTTP, for other protocols. A key that does not parse is MALFORMED without a Vault
// call; once clientIP has spent its failure budget, a result that is not cached is
// TOO_MANY_FAILURES without a Vault call (Result.RetryAfter says for how long). A non-nil error wraps ErrUnavailable, is ctx's error when ctx ended first, or
// reports invalid scopes or cost; it never contains the key. The call carries
// Config.Tags (no route tag: there is no request).
func (m *Middleware) Verify(ctx context.Context, key string, required []string, clientIP netip.Addr, cost int) (Result, error) {
	if _, err := keyformat.Parse(key); err != nil {
		m.noteRefusal(clientIP, CodeMalformed)
		return Result{Code: CodeMalformed}, nil
	}
	if cost < 0 {
		return Result{}, errors.New("apikeyauth: cost must be 0 or more")
	}
	required = normalizeScopes(required)
	if err := scopes.Validate(required); err != nil {
		return Result{}, fmt.Errorf("apikeyauth: %w", err)
	}
	return m.verify(ctx, key, required, clientIP, cost, m.tags)
}

// verify is Verify for checked, normalized arguments, with the tags a verify call carries.
func (m *Middleware) verify(ctx context.Context, key string, required []string, clientIP netip.Addr, cost int, tags []string) (Result, error) {
	res, err := m.lookup(ctx, key, required, clientIP, cost, tags)
	if err == nil {
		m.noteRefusal(clientIP, res.Code)
	}
	return res, err
}

// noteRefusal charges a refusal with code to clientIP's failure budget if it counts.
func (m *Middleware) noteRefusal(clientIP netip.Addr, code string) {
	if m.budget != nil && countsAgainstBudget(code) {
		m.budget.record(clientIP, m.now())
	}
}

// lookup answers from the cache, else (budget permitting) from Vault. tags are not part
// of the cache key: they label the call in Vault's counts but never change its answer,
// so a result serves requests with other tags, and collapsed requests share the call
// (and the tags) of the one that led it.
func (m *Middleware) lookup(ctx context.Context, key string, required []string, clientIP netip.Addr, cost int, tags []string) (Result, error) {
	ck := newCacheKey(key, required, clientIP, cost)
	if res, ok := m.cached(ck, cost); ok {
		m.served(res, clientIP, cost, tags)
		return res, nil
	}
	if m.budget != nil {
		if wait, over := m.budget.exhausted(clientIP, m.now()); over {
			return Result{Code: CodeTooManyFailures, RetryAfter: wait}, nil
		}
	}

	led := false
	flight := m.flights.DoChan(string(ck[:]), func() (any, error) {
		led = true
		// Someone may have stored a result between our cache miss and this flight.
		if res, ok := m.cachedQuiet(ck, cost); ok {
			return flightResult{res: res, fromCache: true}, nil
		}
		// The call serves every collapsed request: one caller giving up must not cancel it.
		res, err := m.ask(context.WithoutCancel(ctx), ck, key, required, clientIP, cost, tags, m.keyIDOf(ck), true)
		return flightResult{res: res}, err
	})
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case out := <-flight:
		if out.Err != nil {
			return Result{}, out.Err
		}
		fr := out.Val.(flightResult)
		res := fr.res
		switch {
		case !led && res.Valid && res.Metered:
			// Vault counted one use, for the request that led the call (or the leader
			// spent the grant for itself). This request is another use: it spends the
			// grant, or is counted (and possibly refused) by Vault itself.
			if mine, ok := m.spendGrant(res, cost); ok {
				m.served(mine, clientIP, cost, tags)
				return mine, nil
			}
			// Without Fleet its answer is not cached (as it always was); with Fleet it
			// may carry a grant, which later requests should find.
			return m.ask(ctx, ck, key, required, clientIP, cost, tags, res.Identity.KeyID, m.fleet != nil)
		case !led || fr.fromCache:
			// Answered without a Vault call of its own.
			m.served(res, clientIP, cost, tags)
		}
		return res, nil
	}
}

// flightResult is what a collapsed call gives every request it serves.
type flightResult struct {
	res Result
	// fromCache: the leader found the result in the cache after all.
	fromCache bool
}

// ask makes one verify call and, with store, caches what it answered. keyID, when
// known, is the key's id from an earlier answer (Config.Fleet sizes its grant request
// by that key's demand).
func (m *Middleware) ask(ctx context.Context, ck cacheKey, key string, required []string, clientIP netip.Addr, cost int, tags []string, keyID string, store bool) (Result, error) {
	gen := m.generation()
	res, err := m.callVault(ctx, key, required, clientIP, cost, tags, keyID)
	if err != nil {
		return Result{}, err
	}
	serve, keep := res, res
	if m.fleet != nil {
		serve, keep = m.fleet.afterCall(res, cost, gen)
		if serve.Code != res.Code {
			// Vault refused for the rate or uses it has left, and this request spent
			// (or was refused by) the middleware's grant: Vault did not count it.
			m.served(serve, clientIP, cost, tags)
		}
	}
	if store {
		m.store(ck, keep, gen)
	}
	return serve, nil
}

// generation is the change feed's generation (Config.Fleet), taken before a Vault call.
func (m *Middleware) generation() uint64 {
	if m.fleet == nil {
		return 0
	}
	return m.fleet.gen.Load()
}

// keyIDOf returns the key_id of a cached VALID result for ck, if any, without making it
// more recently used (Config.Fleet only: it sizes grant requests).
func (m *Middleware) keyIDOf(ck cacheKey) string {
	if m.fleet == nil || m.cache == nil {
		return ""
	}
	if e, ok := m.cache.Peek(ck); ok && e.result.Identity != nil {
		return e.result.Identity.KeyID
	}
	return ""
}

// spendGrant serves a request from the grant for a cached (or shared) VALID result of a
// metered key; false when there is none to spend (Config.Fleet off, no grant, or its
// uses are gone): then Vault must be asked.
func (m *Middleware) spendGrant(res Result, cost int) (Result, bool) {
	if m.fleet == nil || !res.granted {
		return Result{}, false
	}
	return m.fleet.spend(res, cost, m.now())
}

// served tells the usage reports (Config.Fleet) about an answer given without a Vault
// call of its own.
func (m *Middleware) served(res Result, clientIP netip.Addr, cost int, tags []string) {
	if m.fleet != nil {
		m.fleet.served(res, clientIP, cost, tags)
	}
}

func (m *Middleware) cached(ck cacheKey, cost int) (Result, bool) {
	if m.cache == nil {
		return Result{}, false
	}
	res, ok := m.cachedQuiet(ck, cost)
	m.observer.CacheLookup(ok)
	return res, ok
}

// cachedQuiet answers from the caches. A cached VALID of a metered key (Config.Fleet)
// answers only if the grant admits the request: then it has spent it.
func (m *Middleware) cachedQuiet(ck cacheKey, cost int) (Result, bool) {
	now := m.now()
	if res, ok := m.cachedIn(m.cache, ck, now); ok {
		if !res.granted {
			return res, true
		}
		if res, ok := m.fleet.spend(res, cost, now); ok {
			return res, true
		}
		// No grant to spend: a refusal Vault gave since (USAGE_EXCEEDED) may answer.
	}
	return m.cachedIn(m.negCache, ck, now)
}

func (m *Middleware) cachedIn(cache *lru.Cache[cacheKey, cacheEntry], ck cacheKey, now time.Time) (Result, bool) {
	if cache == nil {
		return Result{}, false
	}
	e, ok := cache.Get(ck)
	if !ok {
		return Result{}, false
	}
	expires := e.expires
	if m.fleet != nil {
		var keyID string
		if e.result.Identity != nil {
			keyID = e.result.Identity.KeyID
		}
		if !m.fleet.fresh(keyID, e.gen) {
			cache.Remove(ck)
			return Result{}, false
		}
		if !m.fleet.healthy(now) {
			expires = e.short
		}
	}
	if !now.Before(expires) {
		cache.Remove(ck)
		return Result{}, false
	}
	res := e.result
	if !e.retryAt.IsZero() {
		res.RetryAfter = e.retryAt.Sub(now)
	}
	return res, true
}

// store caches res for as long as the rules in the package documentation allow: VALID
// results and refusals in caches of their own, so that refusals, which anyone can cause
// at will, never evict a VALID result. gen is the feed generation taken before the call.
func (m *Middleware) store(ck cacheKey, res Result, gen uint64) {
	cache := m.cache
	if !res.Valid {
		cache = m.negCache
	}
	if cache == nil {
		return
	}
	now := m.now()
	ttl := m.cacheTTL(res, now)
	if ttl <= 0 {
		return
	}
	e := cacheEntry{result: res, expires: now.Add(ttl), gen: gen}
	if m.fleet != nil {
		e.short = e.expires
		if res.Valid {
			// While the feed is healthy a VALID result lives up to FleetCacheTTL: the
			// feed tells of every change that would make it wrong.
			e.expires = now.Add(min(m.fleet.cacheTTL, res.Identity.ExpiresAt.Sub(now), res.TTL))
			e.short = now.Add(min(ttl, e.expires.Sub(now)))
		}
	}
	if res.RetryAfter > 0 {
		e.retryAt = now.Add(res.RetryAfter)
	}
	if m.fleet != nil && !res.Valid {
		// A granted VALID for the same request is now known to be wrong (its key's
		// uses are spent, say): the refusal must not sit behind it.
		m.cache.Remove(ck)
	}
	cache.Add(ck, e)
}

func (m *Middleware) cacheTTL(res Result, now time.Time) time.Duration {
	if res.Valid {
		// Vault counts uses only when asked; a cached VALID would skip the counting,
		// unless the middleware spends a grant for it (Config.Fleet).
		if res.Metered && !res.granted || res.Identity == nil || res.Identity.ExpiresAt.IsZero() || !res.ttlKnown {
			return 0
		}
		return min(m.positiveTTL, res.Identity.ExpiresAt.Sub(now), res.TTL)
	}
	switch res.Code {
	case CodeRateLimited:
		if res.RetryAfter > 0 {
			return min(m.negativeTTL, res.RetryAfter)
		}
		return m.negativeTTL
	case CodeMalformed, CodeNotFound, CodeDisabled, CodeExpired, CodeForbiddenIP,
		CodeInsufficientScope, CodeUsageExceeded:
		return m.negativeTTL
	}
	return 0 // unknown codes: ask again
}

// callVault makes one verify call. Errors are built from scratch, never wrapped, and the
// key is cut out of their text, so that nothing Vault or the transport might echo leaks.
// With Config.Fleet the call asks for a grant (sized by keyID's demand when known), and
// a grant in the answer is added to the pool.
func (m *Middleware) callVault(ctx context.Context, key string, required []string, clientIP netip.Addr, cost int, tags []string, keyID string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, m.verifyTimeout)
	defer cancel()
	// One request_id per call: the API client resends the same body when it retries
	// after a 5xx, and verify answers a repeated request_id from its memory instead of
	// charging the key a second time.
	req := verifyapi.Request{APIKey: key, Scopes: required, ClientIP: clientIP, Cost: cost, RequestID: newRequestID(), Tags: tags}
	var sent time.Time
	if m.fleet != nil {
		sent = m.now()
		req.Grant = m.fleet.grantRequest(keyID, sent)
	}
	start := time.Now()
	secret, err := m.client.Logical().WriteWithContext(ctx, m.verifyPath, req.Data())
	if err == nil {
		var res Result
		var grant *verifyapi.Grant
		res, grant, err = parseVerify(secret)
		if err == nil {
			elapsed := time.Since(start)
			m.observer.VerifyCall(elapsed, nil)
			m.fleetCall(callVerify, elapsed, nil)
			if m.fleet != nil && grant != nil {
				res.granted = m.fleet.applyGrant(res, grant, sent)
			}
			return res, nil
		}
	}
	err = fmt.Errorf("%w: %s", ErrUnavailable, describeVaultError(err, key))
	elapsed := time.Since(start)
	m.observer.VerifyCall(elapsed, err)
	m.fleetCall(callVerify, elapsed, err)
	return Result{}, err
}

// newRequestID returns 16 random bytes in hex: 32 characters of [0-9a-f], within what
// verify accepts as request_id (1 to 64 of [A-Za-z0-9_-]).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b[:])
}

func describeVaultError(err error, key string) string {
	var msg string
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg = fmt.Sprintf("vault answered HTTP %d to %s %s: %s", re.StatusCode, re.HTTPMethod, re.URL, strings.Join(re.Errors, "; "))
	} else {
		msg = err.Error()
	}
	return redact(msg, key)
}

func redact(s, key string) string {
	if key == "" {
		return s
	}
	return strings.ReplaceAll(s, key, "[redacted]")
}

// parseVerify reads verify's response data into a Result, and the grant it carries.
func parseVerify(secret *api.Secret) (Result, *verifyapi.Grant, error) {
	if secret == nil || secret.Data == nil {
		return Result{}, nil, errors.New("verify returned no data (is the secrets engine mounted there?)")
	}
	answer, err := verifyapi.DecodeResponse(secret.Data)
	if err != nil {
		return Result{}, nil, err
	}
	res := Result{
		Valid:         answer.Valid,
		Code:          answer.Code,
		RemainingUses: answer.RemainingUses,
		RetryAfter:    answer.RetryAfter,
		// Vault counts every use of a key with max_uses or a rate limit.
		Metered:     answer.RemainingUses != nil || answer.RateLimit > 0,
		reportToken: answer.ReportToken,
	}
	if k := answer.Key; k != nil {
		res.Identity = &Identity{KeyID: k.KeyID, Role: k.Role, Name: k.Name, Scopes: k.Scopes, Metadata: k.Metadata, ExpiresAt: k.ExpiresAt}
		res.TTL, res.ttlKnown = k.TTL, k.TTLKnown
	}
	return res, answer.Grant, nil
}
