package apikeyauth

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCacheLifetimes: for each kind of answer, how long it is reused. Each case sends a
// request, advances the clock, and checks whether the next request asks Vault again.
func TestCacheLifetimes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		// data builds the verify answer at time now.
		data func(now time.Time) map[string]any
		// reusedUntil: the answer is reused for less than this, asked again from then on.
		// 0: never reused.
		reusedUntil time.Duration
	}{
		{name: "valid: positive ttl (default 5s)", data: func(now time.Time) map[string]any { return validData(now, time.Hour) }, reusedUntil: 5 * time.Second},
		{name: "valid: configured ttl", cfg: Config{CacheTTL: 30 * time.Second}, data: func(now time.Time) map[string]any { return validData(now, time.Hour) }, reusedUntil: 30 * time.Second},
		{name: "valid: never past expires_at", cfg: Config{CacheTTL: time.Hour}, data: func(now time.Time) map[string]any {
			d := validData(now, 2*time.Second)
			d["ttl"] = 3600 // expires_at is the tighter bound here
			return d
		}, reusedUntil: 2 * time.Second},
		{name: "valid: never past ttl (clock skew)", cfg: Config{CacheTTL: time.Hour}, data: func(now time.Time) map[string]any {
			d := validData(now, time.Hour)
			d["ttl"] = 3
			return d
		}, reusedUntil: 3 * time.Second},
		{name: "valid: key already past expires_at by our clock", data: func(now time.Time) map[string]any {
			d := validData(now, -time.Second)
			d["ttl"] = 1
			return d
		}},
		{name: "valid with remaining_uses: never cached", data: func(now time.Time) map[string]any {
			d := validData(now, time.Hour)
			d["remaining_uses"] = 10
			return d
		}},
		{name: "valid with rate_limit: never cached", data: func(now time.Time) map[string]any {
			d := validData(now, time.Hour)
			d["rate_limit"] = 5.0
			return d
		}},
		{name: "valid without ttl: not cached", data: func(now time.Time) map[string]any {
			d := validData(now, time.Hour)
			delete(d, "ttl")
			return d
		}},
		{name: "valid: positive caching off", cfg: Config{CacheTTL: -1}, data: func(now time.Time) map[string]any { return validData(now, time.Hour) }},
		{name: "valid: cache off", cfg: Config{CacheSize: -1}, data: func(now time.Time) map[string]any { return validData(now, time.Hour) }},
		{name: "not found: negative ttl (default 1s)", data: func(now time.Time) map[string]any { return answer(CodeNotFound, now, 0) }, reusedUntil: time.Second},
		{name: "disabled", data: func(now time.Time) map[string]any { return answer(CodeDisabled, now, time.Hour) }, reusedUntil: time.Second},
		{name: "expired", data: func(now time.Time) map[string]any { return answer(CodeExpired, now, -time.Hour) }, reusedUntil: time.Second},
		{name: "forbidden ip", data: func(now time.Time) map[string]any { return answer(CodeForbiddenIP, now, time.Hour) }, reusedUntil: time.Second},
		{name: "insufficient scope", data: func(now time.Time) map[string]any { return answer(CodeInsufficientScope, now, time.Hour) }, reusedUntil: time.Second},
		{name: "usage exceeded", data: func(now time.Time) map[string]any { return answer(CodeUsageExceeded, now, time.Hour) }, reusedUntil: time.Second},
		{name: "negative: configured ttl", cfg: Config{NegativeCacheTTL: 10 * time.Second}, data: func(now time.Time) map[string]any { return answer(CodeNotFound, now, 0) }, reusedUntil: 10 * time.Second},
		{name: "negative caching off", cfg: Config{NegativeCacheTTL: -1}, data: func(now time.Time) map[string]any { return answer(CodeNotFound, now, 0) }},
		{name: "rate limited: until retry_after when sooner", cfg: Config{NegativeCacheTTL: 10 * time.Second}, data: func(now time.Time) map[string]any {
			d := answer(CodeRateLimited, now, time.Hour)
			d["retry_after"] = 2
			return d
		}, reusedUntil: 2 * time.Second},
		{name: "rate limited: negative ttl when sooner", data: func(now time.Time) map[string]any {
			d := answer(CodeRateLimited, now, time.Hour)
			d["retry_after"] = 60
			return d
		}, reusedUntil: time.Second},
		{name: "unknown code: not cached", data: func(now time.Time) map[string]any { return answer("SOMETHING_NEW", now, time.Hour) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.vault.set(func(fv *fakeVault) { fv.respond = func(verifyRequest) map[string]any { return tc.data(h.clock.Now()) } })
			key := newKey(t)
			first := h.do(key)
			require.EqualValues(t, 1, h.vault.calls.Load())

			if tc.reusedUntil > 0 {
				h.clock.Advance(tc.reusedUntil - time.Millisecond)
				again := h.do(key)
				require.EqualValues(t, 1, h.vault.calls.Load(), "reused just before the bound")
				require.Equal(t, first.Code, again.Code)
				h.clock.Advance(time.Millisecond)
			}
			h.do(key)
			require.EqualValues(t, 2, h.vault.calls.Load(), "asked again at the bound")
		})
	}
}

func TestCacheNeverKeepsErrors(t *testing.T) {
	h := newHarness(t, Config{})
	key := newKey(t)
	h.vault.set(func(fv *fakeVault) { fv.status = 500 })
	require.Equal(t, 503, h.do(key).Code)
	h.vault.set(func(fv *fakeVault) {
		fv.status = 0
		fv.data = validData(h.clock.Now(), time.Hour)
	})
	require.Equal(t, 200, h.do(key).Code, "the failure was not cached")
	require.EqualValues(t, 2, h.vault.calls.Load())
}

// TestCacheKeyCoversEverythingVerifyIsAsked: a result for one key, scope set or client
// address never answers for another.
func TestCacheKeyCoversEverythingVerifyIsAsked(t *testing.T) {
	h := newHarness(t, Config{})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	keyA, keyB := newKey(t), newKey(t)

	send := func(key, remoteAddr string, scopes ...string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remoteAddr
		r.Header.Set("X-API-Key", key)
		require.Equal(t, 200, h.serve(r, scopes...).Code)
	}
	send(keyA, "192.0.2.1:1", "orders:read")
	send(keyA, "192.0.2.1:2", "orders:read") // another port, same client: cached
	require.EqualValues(t, 1, h.vault.calls.Load())
	send(keyA, "192.0.2.1:1", "orders:read", "orders:write")
	require.EqualValues(t, 2, h.vault.calls.Load(), "other scopes")
	send(keyA, "192.0.2.2:1", "orders:read")
	require.EqualValues(t, 3, h.vault.calls.Load(), "other client address")
	send(keyB, "192.0.2.1:1", "orders:read")
	require.EqualValues(t, 4, h.vault.calls.Load(), "other key")
	send(keyA, "192.0.2.1:1", "orders:read")
	require.EqualValues(t, 4, h.vault.calls.Load())

	// Same scopes written in another order share the entry.
	send(keyA, "192.0.2.1:1", "orders:write", "orders:read")
	require.EqualValues(t, 4, h.vault.calls.Load())

	// And cost is part of it.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "192.0.2.1:1"
	r.Header.Set("X-API-Key", keyA)
	rec := httptest.NewRecorder()
	h.mw.RequireCost(0, "orders:read")(identityHandler()).ServeHTTP(rec, r)
	require.Equal(t, 200, rec.Code)
	require.EqualValues(t, 5, h.vault.calls.Load(), "other cost")

	require.NotEqual(t, newCacheKey("ab", []string{"c"}, ipv4("192.0.2.1"), 1), newCacheKey("a", []string{"bc"}, ipv4("192.0.2.1"), 1))
	require.NotEqual(t, newCacheKey("a", []string{"b", "c"}, ipv4("192.0.2.1"), 1), newCacheKey("a", []string{"bc"}, ipv4("192.0.2.1"), 1))
}

func TestCacheIsBounded(t *testing.T) {
	h := newHarness(t, Config{CacheSize: 2})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	for _, k := range []string{k1, k2, k3} {
		require.Equal(t, 200, h.do(k).Code)
	}
	require.Equal(t, 2, h.mw.cache.Len())
	require.EqualValues(t, 3, h.vault.calls.Load())
	h.do(k3)
	h.do(k2)
	require.EqualValues(t, 3, h.vault.calls.Load(), "the two most recent are kept")
	h.do(k1)
	require.EqualValues(t, 4, h.vault.calls.Load(), "the least recently used was evicted")
}

func TestRateLimitedFromCacheCountsDownRetryAfter(t *testing.T) {
	h := newHarness(t, Config{NegativeCacheTTL: time.Minute})
	h.vault.set(func(fv *fakeVault) {
		fv.data = answer(CodeRateLimited, h.clock.Now(), time.Hour)
		fv.data["retry_after"] = 10
	})
	key := newKey(t)
	require.Equal(t, "10", h.do(key).Header().Get("Retry-After"))
	h.clock.Advance(6500 * time.Millisecond)
	rec := h.do(key)
	require.Equal(t, 429, rec.Code)
	require.Equal(t, "4", rec.Header().Get("Retry-After"), "3.5s left, rounded up")
	require.EqualValues(t, 1, h.vault.calls.Load())
}

// TestConcurrentMissesAreCollapsed: N concurrent requests with the same key make one
// Vault call. The fake Vault holds its answer until every request has missed the cache,
// so all of them are in flight together.
func TestConcurrentMissesAreCollapsed(t *testing.T) {
	const n = 50
	for _, tc := range []struct {
		name      string
		extra     map[string]any
		wantCalls int64
	}{
		{name: "valid", wantCalls: 1},
		// Each use must be counted by Vault: followers do not share the leader's answer.
		{name: "valid with remaining_uses", extra: map[string]any{"remaining_uses": 100}, wantCalls: n},
		{name: "valid with rate_limit", extra: map[string]any{"rate_limit": 2.5}, wantCalls: n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			hold := make(chan struct{})
			h.vault.set(func(fv *fakeVault) {
				fv.hold = hold
				fv.data = validData(h.clock.Now(), time.Hour)
				for k, v := range tc.extra {
					fv.data[k] = v
				}
			})
			key := newKey(t)
			var wg sync.WaitGroup
			codes := make([]int, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					codes[i] = h.do(key, "orders:read").Code
				}()
			}
			require.Eventually(t, func() bool { return h.obs.misses() == n }, 10*time.Second, time.Millisecond)
			time.Sleep(20 * time.Millisecond) // let them reach the flight
			close(hold)
			wg.Wait()
			for i, c := range codes {
				require.Equal(t, 200, c, "request %d", i)
			}
			require.Equal(t, tc.wantCalls, h.vault.calls.Load())
		})
	}
}

func TestConcurrentFailuresAreCollapsedAndNotCached(t *testing.T) {
	const n = 20
	h := newHarness(t, Config{})
	hold := make(chan struct{})
	h.vault.set(func(fv *fakeVault) {
		fv.hold = hold
		fv.status = 502
	})
	key := newKey(t)
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = h.do(key).Code
		}()
	}
	require.Eventually(t, func() bool { return h.obs.misses() == n }, 10*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	close(hold)
	wg.Wait()
	for _, c := range codes {
		require.Equal(t, 503, c)
	}
	calls := h.vault.calls.Load()
	// A straggler that missed the cache before the flight ended may start a second one.
	require.LessOrEqual(t, calls, int64(2))
	h.do(key)
	require.Equal(t, calls+1, h.vault.calls.Load(), "failures are not cached")
}
