package apikeyauth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDecisionTable(t *testing.T) {
	const invalidToken = `Bearer realm="api", error="invalid_token"`
	validKey := newKey(t)
	for _, tc := range []struct {
		name string
		// key to send ("" = none); malformed keys are sent as they are.
		key    string
		scopes []string
		// vault answer: data built from code, or an HTTP status, or unreachable.
		code        string
		retryAfter  any
		vaultStatus int
		unreachable bool

		wantStatus     int
		wantCode       string
		wantAuthn      string // WWW-Authenticate
		wantRetryAfter string
		wantCalls      int64
	}{
		{name: "no key", wantStatus: 401, wantCode: CodeMissing, wantAuthn: `Bearer realm="api"`},
		{name: "malformed locally", key: "vk_nope", wantStatus: 401, wantCode: CodeMalformed, wantAuthn: invalidToken},
		{name: "bad checksum locally", key: validKey[:len(validKey)-1] + flip(validKey[len(validKey)-1]), wantStatus: 401, wantCode: CodeMalformed, wantAuthn: invalidToken},
		{name: "malformed from vault", key: validKey, code: CodeMalformed, wantStatus: 401, wantCode: CodeMalformed, wantAuthn: invalidToken, wantCalls: 1},
		{name: "not found", key: validKey, code: CodeNotFound, wantStatus: 401, wantCode: CodeNotFound, wantAuthn: invalidToken, wantCalls: 1},
		{name: "disabled", key: validKey, code: CodeDisabled, wantStatus: 401, wantCode: CodeDisabled, wantAuthn: invalidToken, wantCalls: 1},
		{name: "expired", key: validKey, code: CodeExpired, wantStatus: 401, wantCode: CodeExpired, wantAuthn: invalidToken, wantCalls: 1},
		{name: "forbidden ip", key: validKey, code: CodeForbiddenIP, wantStatus: 403, wantCode: CodeForbiddenIP, wantCalls: 1},
		{name: "insufficient scope", key: validKey, scopes: []string{"orders:write", "orders:read"}, code: CodeInsufficientScope, wantStatus: 403, wantCode: CodeInsufficientScope,
			wantAuthn: `Bearer realm="api", error="insufficient_scope", scope="orders:read orders:write"`, wantCalls: 1},
		{name: "rate limited", key: validKey, code: CodeRateLimited, retryAfter: 7, wantStatus: 429, wantCode: CodeRateLimited, wantRetryAfter: "7", wantCalls: 1},
		{name: "rate limited, fractional retry", key: validKey, code: CodeRateLimited, retryAfter: 0.2, wantStatus: 429, wantCode: CodeRateLimited, wantRetryAfter: "1", wantCalls: 1},
		{name: "rate limited, no retry_after", key: validKey, code: CodeRateLimited, wantStatus: 429, wantCode: CodeRateLimited, wantRetryAfter: "1", wantCalls: 1},
		{name: "usage exceeded", key: validKey, code: CodeUsageExceeded, wantStatus: 429, wantCode: CodeUsageExceeded, wantCalls: 1},
		{name: "usage exceeded with retry_after", key: validKey, code: CodeUsageExceeded, retryAfter: 30, wantStatus: 429, wantCode: CodeUsageExceeded, wantRetryAfter: "30", wantCalls: 1},
		{name: "unknown code", key: validKey, code: "SOMETHING_NEW", wantStatus: 403, wantCode: CodeRefused, wantCalls: 1},
		{name: "vault 500", key: validKey, vaultStatus: 500, wantStatus: 503, wantCode: CodeUnavailable, wantCalls: 1},
		{name: "vault sealed", key: validKey, vaultStatus: 503, wantStatus: 503, wantCode: CodeUnavailable, wantCalls: 1},
		{name: "vault permission denied", key: validKey, vaultStatus: 403, wantStatus: 503, wantCode: CodeUnavailable, wantCalls: 1},
		{name: "vault unreachable", key: validKey, unreachable: true, wantStatus: 503, wantCode: CodeUnavailable},
		{name: "valid", key: validKey, scopes: []string{"orders:read"}, code: CodeValid, wantStatus: 200, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			var h *harness
			if tc.unreachable {
				closed := httptest.NewServer(http.NotFoundHandler())
				closed.Close()
				cfg.Client = testClient(t, closed.URL)
			}
			h = newHarness(t, cfg)
			h.vault.set(func(fv *fakeVault) {
				fv.status = tc.vaultStatus
				fv.errors = []string{"internal error"}
				if tc.code != "" {
					fv.data = answer(tc.code, h.clock.Now(), time.Hour)
					if tc.retryAfter != nil {
						fv.data["retry_after"] = tc.retryAfter
					}
				}
			})

			rec := h.do(tc.key, tc.scopes...)
			require.Equal(t, tc.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, tc.wantCalls, h.vault.calls.Load(), "vault calls")
			require.NotContains(t, rec.Body.String(), validKey)
			require.NotContains(t, h.logs.String(), validKey)
			require.Equal(t, tc.wantAuthn, rec.Header().Get("WWW-Authenticate"))
			require.Equal(t, tc.wantRetryAfter, rec.Header().Get("Retry-After"))
			if tc.wantStatus == 200 {
				var id Identity
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &id))
				require.Equal(t, "AbCdEfGhIjKlMnOp", id.KeyID)
				require.Equal(t, 1, h.obs.decisions[CodeValid])
				return
			}
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			var body errorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
			require.Equal(t, tc.wantCode, body.Code)
			require.NotEmpty(t, body.Error)
			require.Equal(t, 1, h.obs.decisions[tc.wantCode], "observer decisions %v", h.obs.decisions)
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestIdentityReachesHandlerAndIsPerRequest(t *testing.T) {
	h := newHarness(t, Config{})
	expires := h.clock.Now().Add(time.Hour)
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })

	var seen []*Identity
	handler := h.mw.Require("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		require.True(t, ok)
		seen = append(seen, id.clone())
		// A handler scribbling on its identity must not affect later requests (cached).
		id.Scopes[0] = "changed"
		id.Metadata["team"] = "changed"
	}))
	key := newKey(t)
	for i := 0; i < 2; i++ {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		require.Equal(t, 200, rec.Code)
	}
	require.Len(t, seen, 2)
	require.EqualValues(t, 1, h.vault.calls.Load(), "second request served from the cache")
	second := seen[1]
	require.Equal(t, "AbCdEfGhIjKlMnOp", second.KeyID)
	require.Equal(t, "orders-svc", second.Role)
	require.Equal(t, "checkout", second.Name)
	require.Equal(t, []string{"orders:read", "orders:write"}, second.Scopes)
	require.Equal(t, map[string]string{"team": "payments"}, second.Metadata)
	require.True(t, expires.Equal(second.ExpiresAt))

	_, ok := IdentityFrom(httptest.NewRequest(http.MethodGet, "/", nil).Context())
	require.False(t, ok)
}

func TestVerifyRequestFields(t *testing.T) {
	h := newHarness(t, Config{})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	key := newKey(t)

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "[2001:db8::5]:1234"
	r.Header.Set("X-API-Key", key)
	rec := httptest.NewRecorder()
	h.mw.RequireCost(3, "b:write", "a:read", "b:write")(identityHandler()).ServeHTTP(rec, r)
	require.Equal(t, 200, rec.Code)
	got := h.vault.lastRequest()
	require.Equal(t, key, got.APIKey)
	require.Equal(t, []string{"a:read", "b:write"}, got.Scopes, "sorted and deduplicated")
	require.Equal(t, "2001:db8::5", got.ClientIP)
	require.NotNil(t, got.Cost)
	require.Equal(t, 3, *got.Cost)
	require.Equal(t, "test-token", got.Token)

	// No scopes: the field is left out; default cost 1; unknown client address: no client_ip.
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "@"
	r.Header.Set("X-API-Key", key)
	rec = h.serve(r)
	require.Equal(t, 200, rec.Code)
	got = h.vault.lastRequest()
	require.Nil(t, got.Scopes)
	require.Empty(t, got.ClientIP)
	require.Equal(t, 1, *got.Cost)
}

func TestRequirePanicsOnBadSetup(t *testing.T) {
	h := newHarness(t, Config{})
	require.Panics(t, func() { h.mw.Require("has space") })
	require.Panics(t, func() { h.mw.Require("") })
	require.Panics(t, func() { h.mw.RequireCost(-1) })
}

func TestMountIsConfigurable(t *testing.T) {
	h := newHarness(t, Config{Mount: "/keys/prod/"})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	require.Equal(t, 200, h.do(newKey(t)).Code)
	require.EqualValues(t, 1, h.vault.calls.Load())
}

func TestKeyHeaders(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		name       string
		cfg        Config
		headers    [][2]string
		wantStatus int
		wantCode   string
	}{
		{name: "bearer", headers: [][2]string{{"Authorization", "Bearer " + key}}, wantStatus: 200},
		{name: "bearer scheme is case-insensitive", headers: [][2]string{{"Authorization", "bearer  " + key + " "}}, wantStatus: 200},
		{name: "x-api-key", headers: [][2]string{{"X-Api-Key", key}}, wantStatus: 200},
		{name: "other scheme falls back to x-api-key", headers: [][2]string{{"Authorization", "Basic dXNlcjpwdw=="}, {"X-API-Key", key}}, wantStatus: 200},
		{name: "other scheme alone is no key", headers: [][2]string{{"Authorization", "Basic dXNlcjpwdw=="}}, wantStatus: 401, wantCode: CodeMissing},
		{name: "bearer wins over x-api-key", headers: [][2]string{{"Authorization", "Bearer " + key}, {"X-API-Key", "garbage"}}, wantStatus: 200},
		{name: "empty bearer", headers: [][2]string{{"Authorization", "Bearer"}}, wantStatus: 401, wantCode: CodeMalformed},
		{name: "two authorization headers", headers: [][2]string{{"Authorization", "Bearer " + key}, {"Authorization", "Bearer " + key}}, wantStatus: 401, wantCode: CodeMalformed},
		{name: "two x-api-key headers", headers: [][2]string{{"X-API-Key", key}, {"X-API-Key", key}}, wantStatus: 401, wantCode: CodeMalformed},
		{name: "custom header", cfg: Config{APIKeyHeader: "X-Token"}, headers: [][2]string{{"X-Token", key}}, wantStatus: 200},
		{name: "default header not read when renamed", cfg: Config{APIKeyHeader: "X-Token"}, headers: [][2]string{{"X-API-Key", key}}, wantStatus: 401, wantCode: CodeMissing},
		{name: "authorization disabled", cfg: Config{AuthorizationHeader: "-"}, headers: [][2]string{{"Authorization", "Bearer " + key}}, wantStatus: 401, wantCode: CodeMissing},
		{name: "custom bearer header", cfg: Config{AuthorizationHeader: "Proxy-Authorization"}, headers: [][2]string{{"Proxy-Authorization", "Bearer " + key}}, wantStatus: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, kv := range tc.headers {
				r.Header.Add(kv[0], kv[1])
			}
			rec := h.serve(r)
			require.Equal(t, tc.wantStatus, rec.Code, rec.Body.String())
			if tc.wantStatus == 200 {
				require.Equal(t, key, h.vault.lastRequest().APIKey)
				return
			}
			var body errorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			require.Equal(t, tc.wantCode, body.Code)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := testClient(t, "http://127.0.0.1:1")
	_, err := New(Config{Client: c, AuthorizationHeader: "-", APIKeyHeader: "-"})
	require.Error(t, err)
	_, err = New(Config{Client: c, Realm: `a"b`})
	require.Error(t, err)
	_, err = New(Config{Client: c, TrustedProxies: []netip.Prefix{{}}})
	require.Error(t, err)
}

// TestKeyNeverLeaks sends a key through every path that logs or answers an error, with
// a Vault that echoes the key in its error messages, and looks for it everywhere.
func TestKeyNeverLeaks(t *testing.T) {
	key := newKey(t)
	h := newHarness(t, Config{})
	h.vault.set(func(fv *fakeVault) {
		fv.status = 500
		fv.errors = []string{"cannot verify " + key}
	})
	rec := h.do(key)
	require.Equal(t, 503, rec.Code)
	require.NotContains(t, rec.Body.String(), key)
	require.Contains(t, h.logs.String(), "[redacted]", "the Vault error is logged, redacted")
	require.NotContains(t, h.logs.String(), key)

	_, err := h.mw.Verify(t.Context(), key, nil, netip.Addr{}, 1)
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotContains(t, err.Error(), key)

	for _, code := range []string{CodeNotFound, CodeDisabled, CodeForbiddenIP, CodeRateLimited, CodeValid} {
		h.vault.set(func(fv *fakeVault) {
			fv.status = 0
			fv.data = answer(code, h.clock.Now(), time.Hour)
		})
		h.clock.Advance(time.Minute) // past every cache entry
		rec := h.do(key, "orders:read")
		require.NotContains(t, rec.Body.String(), key, code)
		for name, values := range rec.Header() {
			require.NotContains(t, strings.Join(values, " "), key, "header %s", name)
		}
	}
	require.NotContains(t, h.logs.String(), key)
}

func TestClientGoneIsNotAVaultFailure(t *testing.T) {
	h := newHarness(t, Config{})
	hold := make(chan struct{})
	h.vault.set(func(fv *fakeVault) {
		fv.hold = hold
		fv.data = validData(h.clock.Now(), time.Hour)
	})
	defer close(hold)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", newKey(t))
	ctx, cancel := context.WithCancel(context.Background())
	r = r.WithContext(ctx)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- h.serve(r) }()
	require.Eventually(t, func() bool { return h.vault.calls.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	rec := <-done
	require.False(t, rec.Flushed)
	require.Empty(t, rec.Body.String(), "nothing is written for a client that is gone")
	require.Equal(t, 1, h.obs.decisions[CodeCanceled])
	require.NotContains(t, h.logs.String(), "verification failed")
}

func TestVerifyWithoutHTTP(t *testing.T) {
	h := newHarness(t, Config{})
	h.vault.set(func(fv *fakeVault) {
		fv.data = validData(h.clock.Now(), time.Hour)
		fv.data["remaining_uses"] = 4
	})
	ctx := context.Background()

	res, err := h.mw.Verify(ctx, "vk_not_a_key", nil, netip.Addr{}, 1)
	require.NoError(t, err)
	require.Equal(t, Result{Code: CodeMalformed}, res)
	require.EqualValues(t, 0, h.vault.calls.Load(), "malformed keys never reach Vault")

	key := newKey(t)
	_, err = h.mw.Verify(ctx, key, []string{"bad scope"}, netip.Addr{}, 1)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnavailable)
	_, err = h.mw.Verify(ctx, key, nil, netip.Addr{}, -1)
	require.Error(t, err)

	res, err = h.mw.Verify(ctx, key, []string{"orders:read"}, netip.MustParseAddr("192.0.2.1"), 2)
	require.NoError(t, err)
	require.True(t, res.Valid)
	require.Equal(t, CodeValid, res.Code)
	require.Equal(t, "AbCdEfGhIjKlMnOp", res.Identity.KeyID)
	require.Equal(t, time.Hour, res.TTL)
	require.NotNil(t, res.RemainingUses)
	require.EqualValues(t, 4, *res.RemainingUses)
	got := h.vault.lastRequest()
	require.Equal(t, "192.0.2.1", got.ClientIP)
	require.Equal(t, 2, *got.Cost)
}

// TestOddVaultAnswersFailClosed: a verify answer the middleware cannot trust is treated
// like no answer.
func TestOddVaultAnswersFailClosed(t *testing.T) {
	now := time.Now()
	for name, data := range map[string]map[string]any{
		"no data":               nil,
		"no valid":              {"code": "VALID", "key_id": "x"},
		"no code":               {"valid": true, "key_id": "x"},
		"valid with other code": {"valid": true, "code": "NOT_FOUND"},
		"VALID but not valid":   func() map[string]any { d := validData(now, time.Hour); d["valid"] = false; return d }(),
		"VALID without key_id":  {"valid": true, "code": "VALID"},
		"bad expires_at":        func() map[string]any { d := validData(now, time.Hour); d["expires_at"] = "tomorrow"; return d }(),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.vault.set(func(fv *fakeVault) { fv.data = data })
			rec := h.do(newKey(t))
			require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
		})
	}
}

// BenchmarkMiddlewareWarmCache is the per-request cost of the middleware when the verify
// result is cached: what a service pays on top of its handler.
func BenchmarkMiddlewareWarmCache(b *testing.B) {
	t := &testing.T{}
	fv := newFakeVault(t, DefaultMount)
	fv.set(func(fv *fakeVault) { fv.data = validData(time.Now(), time.Hour) })
	mw, err := New(Config{Client: fv.client(t), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	key := newKey(t)
	handler := mw.Require("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.RemoteAddr = "198.51.100.7:40000"
	r.Header.Set("X-API-Key", key)
	handler.ServeHTTP(httptest.NewRecorder(), r) // fill the cache
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
