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
	// RemainingUses is set when the key has max_uses.
	RemainingUses *int64
	// RetryAfter is set with RATE_LIMITED (and USAGE_EXCEEDED, if Vault sends it).
	RetryAfter time.Duration
	// Metered is set when Vault counts every use of the key (it has max_uses or a
	// rate_limit): such a VALID result is never cached nor shared between requests.
	Metered bool

	ttlKnown bool
}

// cacheKey is SHA-256 over the key and everything else verify is asked, so the key
// itself is never kept as a map key.
type cacheKey [sha256.Size]byte

type cacheEntry struct {
	result  Result
	expires time.Time
	retryAt time.Time // RATE_LIMITED: when the client may retry
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
	if res, ok := m.cached(ck); ok {
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
		if res, ok := m.cachedQuiet(ck); ok {
			return res, nil
		}
		// The call serves every collapsed request: one caller giving up must not cancel it.
		res, err := m.callVault(context.WithoutCancel(ctx), key, required, clientIP, cost, tags)
		if err == nil {
			m.store(ck, res)
		}
		return res, err
	})
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case out := <-flight:
		if out.Err != nil {
			return Result{}, out.Err
		}
		res := out.Val.(Result)
		if !led && res.Valid && res.Metered {
			// Vault counted one use, for the request that led the call. This request is
			// another use and must be counted (and possibly refused) by Vault itself.
			return m.callVault(ctx, key, required, clientIP, cost, tags)
		}
		return res, nil
	}
}

func (m *Middleware) cached(ck cacheKey) (Result, bool) {
	if m.cache == nil {
		return Result{}, false
	}
	res, ok := m.cachedQuiet(ck)
	m.observer.CacheLookup(ok)
	return res, ok
}

func (m *Middleware) cachedQuiet(ck cacheKey) (Result, bool) {
	if res, ok := m.cachedIn(m.cache, ck); ok {
		return res, true
	}
	return m.cachedIn(m.negCache, ck)
}

func (m *Middleware) cachedIn(cache *lru.Cache[cacheKey, cacheEntry], ck cacheKey) (Result, bool) {
	if cache == nil {
		return Result{}, false
	}
	e, ok := cache.Get(ck)
	if !ok {
		return Result{}, false
	}
	now := m.now()
	if !now.Before(e.expires) {
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
// at will, never evict a VALID result.
func (m *Middleware) store(ck cacheKey, res Result) {
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
	e := cacheEntry{result: res, expires: now.Add(ttl)}
	if res.RetryAfter > 0 {
		e.retryAt = now.Add(res.RetryAfter)
	}
	cache.Add(ck, e)
}

func (m *Middleware) cacheTTL(res Result, now time.Time) time.Duration {
	if res.Valid {
		// Vault counts uses only when asked; a cached VALID would skip the counting.
		if res.Metered || res.Identity == nil || res.Identity.ExpiresAt.IsZero() || !res.ttlKnown {
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
func (m *Middleware) callVault(ctx context.Context, key string, required []string, clientIP netip.Addr, cost int, tags []string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, m.verifyTimeout)
	defer cancel()
	// One request_id per call: the API client resends the same body when it retries
	// after a 5xx, and verify answers a repeated request_id from its memory instead of
	// charging the key a second time.
	data := verifyapi.Request{APIKey: key, Scopes: required, ClientIP: clientIP, Cost: cost, RequestID: newRequestID(), Tags: tags}.Data()
	start := time.Now()
	secret, err := m.client.Logical().WriteWithContext(ctx, m.verifyPath, data)
	if err == nil {
		var res Result
		res, err = parseVerify(secret)
		if err == nil {
			m.observer.VerifyCall(time.Since(start), nil)
			return res, nil
		}
	}
	err = fmt.Errorf("%w: %s", ErrUnavailable, describeVaultError(err, key))
	m.observer.VerifyCall(time.Since(start), err)
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

// parseVerify reads verify's response data into a Result.
func parseVerify(secret *api.Secret) (Result, error) {
	if secret == nil || secret.Data == nil {
		return Result{}, errors.New("verify returned no data (is the secrets engine mounted there?)")
	}
	answer, err := verifyapi.DecodeResponse(secret.Data)
	if err != nil {
		return Result{}, err
	}
	res := Result{
		Valid:         answer.Valid,
		Code:          answer.Code,
		RemainingUses: answer.RemainingUses,
		RetryAfter:    answer.RetryAfter,
		// Vault counts every use of a key with max_uses or a rate limit.
		Metered: answer.RemainingUses != nil || answer.RateLimit > 0,
	}
	if k := answer.Key; k != nil {
		res.Identity = &Identity{KeyID: k.KeyID, Role: k.Role, Name: k.Name, Scopes: k.Scopes, Metadata: k.Metadata, ExpiresAt: k.ExpiresAt}
		res.TTL, res.ttlKnown = k.TTL, k.TTLKnown
	}
	return res, nil
}
