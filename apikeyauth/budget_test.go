package apikeyauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// doFrom sends one request with key from remoteAddr through Require().
func (h *harness) doFrom(remoteAddr, key string) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.RemoteAddr = remoteAddr
	r.Header.Set("X-API-Key", key)
	return h.serve(r)
}

func requireBodyCode(t *testing.T, rec *httptest.ResponseRecorder, want string) {
	t.Helper()
	var body errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.Equal(t, want, body.Code)
}

// TestFailureBudgetStopsUnknownKeyFloods: a client minting well-formed keys gets its
// refusals from Vault only up to its budget; then 429 without a Vault call until the
// window ends. Other clients and cached answers are unaffected.
func TestFailureBudgetStopsUnknownKeyFloods(t *testing.T) {
	const attacker, neighbour = "203.0.113.9:4000", "203.0.113.10:4000"
	h := newHarness(t, Config{FailureBudget: 3, FailureWindow: time.Minute, CacheTTL: time.Hour})
	valid := newKey(t)
	h.vault.set(func(fv *fakeVault) {
		fv.respond = func(req verifyRequest) map[string]any {
			if req.APIKey == valid {
				return validData(h.clock.Now(), time.Hour)
			}
			return answer(CodeNotFound, h.clock.Now(), 0)
		}
	})
	require.Equal(t, 200, h.doFrom(attacker, valid).Code, "cached as VALID")

	for i := 0; i < 3; i++ {
		rec := h.doFrom(attacker, newKey(t))
		require.Equal(t, 401, rec.Code)
		requireBodyCode(t, rec, CodeNotFound)
	}
	require.EqualValues(t, 4, h.vault.calls.Load())

	h.clock.Advance(10 * time.Second)
	rec := h.doFrom(attacker, newKey(t))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	requireBodyCode(t, rec, CodeTooManyFailures)
	require.Equal(t, "50", rec.Header().Get("Retry-After"), "until the window that began with the first refusal ends")
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.EqualValues(t, 4, h.vault.calls.Load(), "Vault was not asked")
	require.Equal(t, 1, h.obs.decisions[CodeTooManyFailures])

	require.Equal(t, 200, h.doFrom(attacker, valid).Code, "a cached VALID result is still served")
	require.Equal(t, 401, h.doFrom(neighbour, newKey(t)).Code, "another address has its own budget")

	res, err := h.mw.Verify(context.Background(), newKey(t), nil, netip.MustParseAddr("203.0.113.9"), 1)
	require.NoError(t, err)
	require.Equal(t, CodeTooManyFailures, res.Code)
	require.False(t, res.Valid)
	require.Equal(t, 50*time.Second, res.RetryAfter)

	h.clock.Advance(50 * time.Second)
	calls := h.vault.calls.Load()
	require.Equal(t, 401, h.doFrom(attacker, newKey(t)).Code, "a new window")
	require.Equal(t, calls+1, h.vault.calls.Load())
}

// TestFailureBudgetCountsOnlyUnusableKeys: which refusals are charged to the client.
func TestFailureBudgetCountsOnlyUnusableKeys(t *testing.T) {
	for _, tc := range []struct {
		code      string // the answer to the first two requests; "local": a malformed key
		vaultFail bool
		counts    bool
	}{
		{code: "local", counts: true},
		{code: CodeMalformed, counts: true},
		{code: CodeNotFound, counts: true},
		{code: CodeDisabled, counts: true},
		{code: CodeExpired, counts: true},
		{code: CodeForbiddenIP},
		{code: CodeInsufficientScope},
		{code: CodeRateLimited},
		{code: CodeUsageExceeded},
		{code: CodeValid},
		{code: "SOMETHING_NEW"},
		{code: "vault down", vaultFail: true},
	} {
		t.Run(tc.code, func(t *testing.T) {
			h := newHarness(t, Config{FailureBudget: 2})
			h.vault.set(func(fv *fakeVault) {
				if tc.vaultFail {
					fv.status = 500
					return
				}
				if tc.code != "local" {
					fv.data = answer(tc.code, h.clock.Now(), time.Hour)
				}
			})
			for i := 0; i < 2; i++ {
				key := newKey(t)
				if tc.code == "local" {
					key = "vk_malformed"
				}
				h.do(key)
			}
			h.vault.set(func(fv *fakeVault) {
				fv.status = 0
				fv.data = validData(h.clock.Now(), time.Hour)
			})
			calls := h.vault.calls.Load()
			rec := h.do(newKey(t))
			if tc.counts {
				require.Equal(t, http.StatusTooManyRequests, rec.Code)
				require.Equal(t, calls, h.vault.calls.Load())
				return
			}
			require.Equal(t, 200, rec.Code)
			require.Equal(t, calls+1, h.vault.calls.Load())
		})
	}
}

func TestFailureBudgetConfig(t *testing.T) {
	t.Run("default applies", func(t *testing.T) {
		h := newHarness(t, Config{})
		require.NotNil(t, h.mw.budget)
		require.Equal(t, DefaultFailureBudget, h.mw.budget.limit)
		require.Equal(t, DefaultFailureWindow, h.mw.budget.window)
	})
	t.Run("negative turns it off", func(t *testing.T) {
		h := newHarness(t, Config{FailureBudget: -1})
		h.vault.set(func(fv *fakeVault) { fv.data = answer(CodeNotFound, h.clock.Now(), 0) })
		for i := 0; i < DefaultFailureBudget+5; i++ {
			require.Equal(t, 401, h.do(newKey(t)).Code)
		}
		require.EqualValues(t, DefaultFailureBudget+5, h.vault.calls.Load())
	})
	t.Run("bad values", func(t *testing.T) {
		_, err := New(Config{Client: testClient(t, "http://127.0.0.1:1"), FailureWindow: -time.Second})
		require.Error(t, err)
		_, err = New(Config{Client: testClient(t, "http://127.0.0.1:1"), FailureBudgetSize: -1})
		require.Error(t, err)
	})
}

// TestFailureBudgetIsBoundedAndPerNetwork: memory is bounded by FailureBudgetSize, and an
// IPv6 client cannot get a fresh budget from every address of its /64.
func TestFailureBudgetIsBoundedAndPerNetwork(t *testing.T) {
	h := newHarness(t, Config{FailureBudget: 2, FailureBudgetSize: 3})
	h.vault.set(func(fv *fakeVault) { fv.data = answer(CodeNotFound, h.clock.Now(), 0) })
	for _, addr := range []string{"192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1", "192.0.2.4:1", "192.0.2.5:1"} {
		h.doFrom(addr, newKey(t))
	}
	require.Equal(t, 3, h.mw.budget.clients.Len())

	h.doFrom("[2001:db8:1:2::1]:1", newKey(t))
	h.doFrom("[2001:db8:1:2::2]:1", newKey(t))
	rec := h.doFrom("[2001:db8:1:2:ffff::3]:1", newKey(t))
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "same /64")
	require.Equal(t, 401, h.doFrom("[2001:db8:1:3::1]:1", newKey(t)).Code, "another /64")
}

// TestRefusalsNeverEvictValidResults: refusals, which any client can cause at will, are
// cached apart from VALID results and cannot push them out.
func TestRefusalsNeverEvictValidResults(t *testing.T) {
	h := newHarness(t, Config{CacheSize: 2, FailureBudget: -1})
	valid := newKey(t)
	h.vault.set(func(fv *fakeVault) {
		fv.respond = func(req verifyRequest) map[string]any {
			if req.APIKey == valid {
				return validData(h.clock.Now(), time.Hour)
			}
			return answer(CodeNotFound, h.clock.Now(), 0)
		}
	})
	require.Equal(t, 200, h.do(valid).Code)
	for i := 0; i < 10; i++ {
		require.Equal(t, 401, h.do(newKey(t)).Code)
	}
	calls := h.vault.calls.Load()
	require.Equal(t, 200, h.do(valid).Code)
	require.Equal(t, calls, h.vault.calls.Load(), "the VALID result is still cached")
}

func TestNegativeCacheIsBoundedAndConfigurable(t *testing.T) {
	h := newHarness(t, Config{NegativeCacheSize: 3, FailureBudget: -1})
	h.vault.set(func(fv *fakeVault) { fv.data = answer(CodeNotFound, h.clock.Now(), 0) })
	keys := []string{newKey(t), newKey(t), newKey(t), newKey(t)}
	for _, k := range keys {
		h.do(k)
	}
	require.Equal(t, 3, h.mw.negCache.Len())
	require.Equal(t, 0, h.mw.cache.Len())
	h.do(keys[3])
	require.EqualValues(t, 4, h.vault.calls.Load(), "a recent refusal is served from the cache")
	h.do(keys[0])
	require.EqualValues(t, 5, h.vault.calls.Load(), "the oldest refusal was evicted")

	h = newHarness(t, Config{NegativeCacheSize: -1, FailureBudget: -1})
	h.vault.set(func(fv *fakeVault) { fv.data = answer(CodeNotFound, h.clock.Now(), 0) })
	key := newKey(t)
	h.do(key)
	h.do(key)
	require.EqualValues(t, 2, h.vault.calls.Load(), "refusals are not cached")
	require.Nil(t, h.mw.negCache)
}
