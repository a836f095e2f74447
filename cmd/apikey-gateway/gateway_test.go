package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

func TestApplyHeaderRules(t *testing.T) {
	id := &apikeyauth.Identity{KeyID: "AbCdEfGhIjKlMnOp", Role: "orders", Scopes: []string{"orders:read", "orders:write"}}
	creds := []string{"Authorization", "X-API-Key"}
	for _, tc := range []struct {
		name  string
		in    http.Header
		id    *apikeyauth.Identity
		strip bool
		want  http.Header
	}{
		{
			name:  "identity added, credentials stripped",
			in:    http.Header{"Authorization": {"Bearer vk_x"}, "X-Api-Key": {"vk_x"}, "Accept": {"*/*"}},
			id:    id,
			strip: true,
			want: http.Header{"Accept": {"*/*"}, "X-Api-Key-Id": {"AbCdEfGhIjKlMnOp"}, "X-Api-Key-Role": {"orders"},
				"X-Api-Key-Scopes": {"orders:read,orders:write"}},
		},
		{
			name:  "client-sent identity headers are replaced, every spelling",
			in:    http.Header{"X-Api-Key-Id": {"forged", "forged2"}, "X-Api-Key-Role": {"admin"}, "x-api-key-scopes": {"*"}, "X_Api_Key_Id": {"forged"}, "X_API_KEY_ROLE": {"admin"}},
			id:    id,
			strip: true,
			want: http.Header{"X-Api-Key-Id": {"AbCdEfGhIjKlMnOp"}, "X-Api-Key-Role": {"orders"},
				"X-Api-Key-Scopes": {"orders:read,orders:write"}},
		},
		{
			name:  "credentials under underscore spellings are stripped too",
			in:    http.Header{"X_api_key": {"vk_x"}, "Accept": {"*/*"}},
			id:    id,
			strip: true,
			want: http.Header{"Accept": {"*/*"}, "X-Api-Key-Id": {"AbCdEfGhIjKlMnOp"}, "X-Api-Key-Role": {"orders"},
				"X-Api-Key-Scopes": {"orders:read,orders:write"}},
		},
		{
			name:  "strip off keeps credentials",
			in:    http.Header{"Authorization": {"Bearer vk_x"}, "X-Api-Key": {"vk_x"}},
			id:    id,
			strip: false,
			want: http.Header{"Authorization": {"Bearer vk_x"}, "X-Api-Key": {"vk_x"}, "X-Api-Key-Id": {"AbCdEfGhIjKlMnOp"},
				"X-Api-Key-Role": {"orders"}, "X-Api-Key-Scopes": {"orders:read,orders:write"}},
		},
		{
			name: "forwarding headers in every spelling are removed",
			in: http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X_Forwarded_For": {"6.6.6.6"}, "x_forwarded_for": {"6.6.6.6"},
				"X-Forwarded-Host": {"evil"}, "X_forwarded_proto": {"https"}, "X-Forwarded-Port": {"1"}, "X-Forwarded-Prefix": {"/admin"},
				"X-Forwarded": {"for=6.6.6.6"}, "Forwarded": {"for=6.6.6.6"}, "forwarded": {"for=6.6.6.6"},
				"X-Real-Ip": {"6.6.6.6"}, "X_Real_IP": {"6.6.6.6"}, "x-real-ip": {"6.6.6.6"},
				"X-Client-Ip": {"6.6.6.6"}, "True-Client-Ip": {"6.6.6.6"}, "Accept": {"*/*"}},
			strip: true,
			want:  http.Header{"Accept": {"*/*"}},
		},
		{
			name: "method and URL override headers in every spelling are removed",
			in: http.Header{"X-Http-Method-Override": {"DELETE"}, "X_HTTP_Method_Override": {"DELETE"}, "X-Method-Override": {"DELETE"},
				"x-http-method": {"DELETE"}, "X-Original-Url": {"/admin"}, "X_Rewrite_Url": {"/admin"}, "Accept": {"*/*"}},
			strip: true,
			want:  http.Header{"Accept": {"*/*"}},
		},
		{
			name:  "no identity (auth off): forged identity still removed, none added",
			in:    http.Header{"X-Api-Key-Id": {"forged"}, "Authorization": {"Bearer vk_x"}},
			strip: true,
			want:  http.Header{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			applyHeaderRules(h, tc.id, tc.strip, creds)
			require.Equal(t, tc.want, h)
		})
	}
}

// fakeVault answers verify per key, like Vault's HTTP API does.
type fakeVault struct {
	srv     *httptest.Server
	calls   atomic.Int64
	mu      sync.Mutex
	answers map[string]map[string]any // by api_key
	scopes  []string                  // of the last call
	tags    []string                  // of the last call; nil: no tags field
	// clientIP and cost of the last call ("" and nil when not sent).
	clientIP string
	cost     *int
}

func newFakeVault(t testing.TB) *fakeVault {
	fv := &fakeVault{answers: map[string]map[string]any{}}
	fv.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/apikey/verify" {
			http.NotFound(w, r)
			return
		}
		fv.calls.Add(1)
		var req struct {
			APIKey   string   `json:"api_key"`
			Scopes   []string `json:"scopes"`
			Tags     []string `json:"tags"`
			ClientIP string   `json:"client_ip"`
			Cost     *int     `json:"cost"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		fv.mu.Lock()
		data, ok := fv.answers[req.APIKey]
		fv.scopes = req.Scopes
		fv.tags = req.Tags
		fv.clientIP = req.ClientIP
		fv.cost = req.Cost
		fv.mu.Unlock()
		// Like the engine: a bad tag is a 400, which the gateway answers with 503.
		if _, err := usagestats.ParseTags(req.Tags); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{err.Error()}})
			return
		}
		if !ok {
			data = map[string]any{"valid": false, "code": "NOT_FOUND"}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	t.Cleanup(fv.srv.Close)
	return fv
}

func (fv *fakeVault) lastScopes() []string {
	fv.mu.Lock()
	defer fv.mu.Unlock()
	return fv.scopes
}

func (fv *fakeVault) lastTags() []string {
	fv.mu.Lock()
	defer fv.mu.Unlock()
	return fv.tags
}

// issue makes the fake Vault answer for a new key: VALID when the requested scopes are
// among granted, INSUFFICIENT_SCOPE otherwise.
func (fv *fakeVault) issue(t testing.TB, keyID string, granted ...string) string {
	key, _, err := keyformat.Generate("vk")
	require.NoError(t, err)
	fv.mu.Lock()
	defer fv.mu.Unlock()
	fv.answers[key] = map[string]any{
		"valid": true, "code": "VALID", "key_id": keyID, "role": "orders-svc", "name": "test",
		"scopes": granted, "metadata": map[string]string{},
		"expires_at": time.Now().Add(time.Hour).Format(time.RFC3339), "ttl": 3600,
	}
	return key
}

// upstream records what reached it.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	last *http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the whole body first, as a real service would, so that a body the gateway
		// cuts off shows as a failed request rather than racing with the response.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		u.mu.Lock()
		u.last = r.Clone(context.Background())
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, "upstream:"+r.URL.Path)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) lastRequest() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

type testGateway struct {
	handler  http.Handler
	metrics  *metrics
	vault    *fakeVault
	upstream *upstream
	logs     *bytes.Buffer
	logMu    *sync.Mutex
}

func newTestGateway(t *testing.T, o options, withAuth bool) *testGateway {
	t.Helper()
	tg := &testGateway{vault: newFakeVault(t), upstream: newUpstream(t), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	u, err := url.Parse(tg.upstream.srv.URL)
	require.NoError(t, err)
	o.upstream = u
	if o.apiKeyHeader == "" {
		o.apiKeyHeader = apikeyauth.DefaultAPIKeyHeader
	}
	logger := slog.New(slog.NewJSONHandler(lockedWriter{tg.logMu, tg.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := newMetrics()
	var mw *apikeyauth.Middleware
	if withAuth {
		cfg := api.DefaultConfig()
		cfg.Address = tg.vault.srv.URL
		cfg.MaxRetries = 0
		client, err := api.NewClient(cfg)
		require.NoError(t, err)
		client.SetToken("test-token")
		mw, err = apikeyauth.New(apikeyauth.Config{Client: client, TrustedProxies: o.trustedProxies, Logger: logger, Observer: m, APIKeyHeader: o.apiKeyHeader,
			FailureBudget: o.failureBudget, FailureWindow: o.failureWindow, CacheSize: o.cacheSize})
		require.NoError(t, err)
	}
	tg.handler = newGateway(o, mw, m, logger)
	tg.metrics = m
	return tg
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (tg *testGateway) logText() string {
	tg.logMu.Lock()
	defer tg.logMu.Unlock()
	return tg.logs.String()
}

func (tg *testGateway) do(method, target string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "198.51.100.20:5555"
	for k, v := range header {
		r.Header[k] = v
	}
	rec := httptest.NewRecorder()
	tg.handler.ServeHTTP(rec, r)
	return rec
}

func TestGatewayForwardsVerifiedRequests(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")

	rec := tg.do(http.MethodGet, "/orders/7?x=1", http.Header{
		"Authorization":    {"Bearer " + key},
		"X-Api-Key-Id":     {"forged"},
		"X-Api-Key-Scopes": {"*"},
		"X-Forwarded-For":  {"6.6.6.6"},
	})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "upstream:/orders/7", rec.Body.String())
	require.Equal(t, "yes", rec.Header().Get("X-Upstream"))

	got := tg.upstream.lastRequest()
	require.NotNil(t, got)
	require.Equal(t, "x=1", got.URL.RawQuery)
	require.Empty(t, got.Header.Values("Authorization"), "credential stripped")
	require.Empty(t, got.Header.Values("X-Api-Key"))
	require.Equal(t, []string{"AbCdEfGhIjKlMnOp"}, got.Header.Values("X-Api-Key-Id"))
	require.Equal(t, []string{"orders-svc"}, got.Header.Values("X-Api-Key-Role"))
	require.Equal(t, []string{"orders:read"}, got.Header.Values("X-Api-Key-Scopes"))
	require.Equal(t, "198.51.100.20", got.Header.Get("X-Forwarded-For"), "an untrusted client's X-Forwarded-For is not passed on")
	for name, values := range got.Header {
		require.NotContains(t, strings.Join(values, " "), key, "header %s reaches the upstream with the key", name)
	}
	require.NotContains(t, tg.logText(), key)
	require.Contains(t, tg.logText(), `"key_id":"AbCdEfGhIjKlMnOp"`, "access log names the key_id")

	// X-API-Key works the same and is stripped the same.
	rec = tg.do(http.MethodGet, "/orders", http.Header{"X-Api-Key": {key}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, tg.upstream.lastRequest().Header.Values("X-Api-Key"))
}

func TestGatewayTrustedProxyChain(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true, trustedProxies: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp")
	rec := tg.do(http.MethodGet, "/x", http.Header{"X-Api-Key": {key}, "X-Forwarded-For": {"203.0.113.1"}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "203.0.113.1, 198.51.100.20", tg.upstream.lastRequest().Header.Get("X-Forwarded-For"))
}

func TestGatewayRefusals(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	for _, tc := range []struct {
		name     string
		header   http.Header
		wantCode int
	}{
		{name: "no key", wantCode: 401},
		{name: "malformed", header: http.Header{"X-Api-Key": {"vk_short"}}, wantCode: 401},
		{name: "unknown", header: http.Header{"X-Api-Key": {tg.vault.issueUnknown(t)}}, wantCode: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tg.upstream.lastRequest()
			rec := tg.do(http.MethodGet, "/orders", tc.header)
			require.Equal(t, tc.wantCode, rec.Code)
			require.Equal(t, `Bearer realm="api"`, strings.SplitN(rec.Header().Get("WWW-Authenticate"), ",", 2)[0])
			require.Same(t, before, tg.upstream.lastRequest(), "nothing reached the upstream")
		})
	}
	require.NotContains(t, tg.logText(), key)
}

func (fv *fakeVault) issueUnknown(t *testing.T) string {
	key, _, err := keyformat.Generate("vk")
	require.NoError(t, err)
	return key
}

func TestGatewayRoutes(t *testing.T) {
	routes, err := parseRoutes([]byte(`{"routes": [
		{"path_prefix": "/orders", "methods": ["GET", "HEAD"], "scopes": ["orders:read"]},
		{"path_prefix": "/orders", "methods": ["POST"], "scopes": ["orders:write"]},
		{"path_prefix": "/orders/reports/", "scopes": ["reports:read"]},
		{"path_prefix": "/public"}
	]}`))
	require.NoError(t, err)
	tg := newTestGateway(t, options{stripCredentials: true, routes: routes}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read", "orders:write", "reports:read")
	hdr := http.Header{"X-Api-Key": {key}}
	for _, tc := range []struct {
		method, path string
		wantStatus   int
		wantScopes   []string // sent to verify
		wantAllow    string
	}{
		{method: "GET", path: "/orders", wantStatus: 200, wantScopes: []string{"orders:read"}},
		{method: "GET", path: "/orders/1", wantStatus: 200, wantScopes: []string{"orders:read"}},
		{method: "HEAD", path: "/orders/1", wantStatus: 200, wantScopes: []string{"orders:read"}},
		{method: "POST", path: "/orders", wantStatus: 200, wantScopes: []string{"orders:write"}},
		{method: "GET", path: "/orders/reports/q1", wantStatus: 200, wantScopes: []string{"reports:read"}},
		{method: "DELETE", path: "/orders/reports/q1", wantStatus: 200, wantScopes: []string{"reports:read"}},
		{method: "GET", path: "/public/x", wantStatus: 200, wantScopes: nil},
		// The most specific prefix decides; DELETE is not allowed under /orders.
		{method: "DELETE", path: "/orders/1", wantStatus: 405, wantAllow: "GET, HEAD, POST"},
		// Whole segments only.
		{method: "GET", path: "/ordersX", wantStatus: 404},
		{method: "GET", path: "/elsewhere", wantStatus: 404},
		// Paths the upstream could read differently.
		{method: "GET", path: "/public/../orders/1", wantStatus: 400},
		{method: "GET", path: "/public/%2e%2e/orders", wantStatus: 400},
		{method: "GET", path: "//orders", wantStatus: 400},
		{method: "GET", path: "/public/./x", wantStatus: 400},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			calls := tg.vault.calls.Load()
			rec := tg.do(tc.method, tc.path, hdr)
			require.Equal(t, tc.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, tc.wantAllow, rec.Header().Get("Allow"))
			if tc.wantStatus == 200 {
				if calls != tg.vault.calls.Load() { // not served from the cache
					require.Equal(t, tc.wantScopes, tg.vault.lastScopes())
				}
				return
			}
			require.Equal(t, calls, tg.vault.calls.Load(), "refused before verify")
		})
	}
}

// TestGatewayRouteTag: with -route-tag, each verify body carries NAME=<the route's tag>
// (its "tag", else its path_prefix); without it, or without a config file, no tags. The
// cache is off so that every request reaches the fake Vault, which refuses bad tags
// with a 400 as the engine does.
func TestGatewayRouteTag(t *testing.T) {
	routes, err := parseRoutes([]byte(`{"routes": [
		{"path_prefix": "/orders", "methods": ["GET"], "scopes": ["orders:read"], "tag": "orders-read"},
		{"path_prefix": "/orders", "methods": ["POST"], "scopes": ["orders:write"]},
		{"path_prefix": "/reports/", "tag": "{reports}"}
	]}`))
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		routes   []routeConfig
		routeTag string
		method   string
		path     string
		// wantStatus 404: no route, so no verify call at all.
		wantStatus int
		wantTags   []string // nil: no tags field
	}{
		{name: "explicit tag", routes: routes, routeTag: "route", method: "GET", path: "/orders/7", wantStatus: 200, wantTags: []string{"route=orders-read"}},
		{name: "path_prefix by default", routes: routes, routeTag: "route", method: "POST", path: "/orders", wantStatus: 200, wantTags: []string{"route=/orders"}},
		{name: "another name, not the request path", routes: routes, routeTag: "endpoint", method: "GET", path: "/reports/q1", wantStatus: 200, wantTags: []string{"endpoint={reports}"}},
		{name: "no route: no verify, no tag", routes: routes, routeTag: "route", method: "GET", path: "/elsewhere", wantStatus: 404},
		{name: "-route-tag off", routes: routes, method: "GET", path: "/orders/7", wantStatus: 200},
		{name: "no config file: no route to tag", routeTag: "route", method: "GET", path: "/orders/7", wantStatus: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTestGateway(t, options{stripCredentials: true, routes: tc.routes, routeTag: tc.routeTag, cacheSize: -1}, true)
			key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read", "orders:write")
			rec := tg.do(tc.method, tc.path, http.Header{"X-Api-Key": {key}})
			require.Equal(t, tc.wantStatus, rec.Code, rec.Body.String())
			if tc.wantStatus == http.StatusNotFound {
				require.Zero(t, tg.vault.calls.Load(), "refused before verify")
				return
			}
			require.EqualValues(t, 1, tg.vault.calls.Load())
			require.Equal(t, tc.wantTags, tg.vault.lastTags())
		})
	}
}

func TestGatewayWrongScopeIsForbidden(t *testing.T) {
	routes, err := parseRoutes([]byte(`{"routes": [{"path_prefix": "/admin", "scopes": ["admin:all"]}]}`))
	require.NoError(t, err)
	tg := newTestGateway(t, options{stripCredentials: true, routes: routes}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	tg.vault.mu.Lock()
	tg.vault.answers[key]["valid"] = false
	tg.vault.answers[key]["code"] = "INSUFFICIENT_SCOPE"
	tg.vault.mu.Unlock()
	rec := tg.do(http.MethodGet, "/admin", http.Header{"X-Api-Key": {key}})
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), `scope="admin:all"`)
}

func TestGatewayAuthDisabled(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true}, false)
	rec := tg.do(http.MethodGet, "/anything", http.Header{"X-Api-Key-Id": {"forged"}, "Authorization": {"Bearer whatever"}})
	require.Equal(t, http.StatusOK, rec.Code)
	got := tg.upstream.lastRequest()
	require.Empty(t, got.Header.Values("X-Api-Key-Id"), "forged identity removed even without auth")
	require.Empty(t, got.Header.Values("Authorization"))
	require.EqualValues(t, 0, tg.vault.calls.Load())
}

func TestGatewayHealthAndMetrics(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true}, true)
	rec := tg.do(http.MethodGet, "/healthz", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "ok\n", rec.Body.String())

	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp")
	require.Equal(t, 200, tg.do(http.MethodGet, "/a", http.Header{"X-Api-Key": {key}}).Code)
	require.Equal(t, 200, tg.do(http.MethodGet, "/a", http.Header{"X-Api-Key": {key}}).Code)
	require.Equal(t, 401, tg.do(http.MethodGet, "/a", nil).Code)

	// The public listener does not serve metrics: /metrics is a path like any other.
	rec = tg.do(http.MethodGet, "/metrics", nil)
	require.Equal(t, http.StatusUnauthorized, rec.Code)

	rec = tg.scrape()
	require.Equal(t, http.StatusOK, rec.Code)
	metrics := metricLines(rec.Body.String())
	require.Equal(t, "2", metrics[`apikey_gateway_requests_total{outcome="VALID"}`])
	require.Equal(t, "2", metrics[`apikey_gateway_requests_total{outcome="MISSING"}`])
	require.Equal(t, "0", metrics[`apikey_gateway_requests_total{outcome="NOT_FOUND"}`])
	require.Equal(t, "1", metrics[`apikey_gateway_cache_lookups_total{result="hit"}`])
	require.Equal(t, "1", metrics[`apikey_gateway_cache_lookups_total{result="miss"}`])
	require.Equal(t, "1", metrics[`apikey_gateway_verify_duration_seconds_count{result="ok"}`])
	require.Equal(t, "1", metrics[`apikey_gateway_vault_calls_total{call="verify"}`])
	require.Equal(t, "0", metrics[`apikey_gateway_vault_calls_total{call="feed"}`], "declared without -fleet too")
	require.Contains(t, metrics, "go_goroutines")
	require.NotContains(t, rec.Body.String(), key)
}

// scrape reads the metrics as the -metrics-listen listener serves them.
func (tg *testGateway) scrape() *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	tg.metrics.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec
}

func metricLines(text string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			out[line[:i]] = line[i+1:]
		}
	}
	return out
}

func TestGatewayUpstreamDown(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true}, false)
	tg.upstream.srv.Close()
	rec := tg.do(http.MethodGet, "/x", nil)
	require.Equal(t, http.StatusBadGateway, rec.Code)
	require.Contains(t, rec.Body.String(), "UPSTREAM_ERROR")
}

// startRun runs the command's run function with args and env until the test ends, and
// returns the address it listens on and a function that ends its context (as SIGTERM
// does) and returns run's result.
func startRun(t *testing.T, args []string, env map[string]string) (addr string, stop func() error, logs *syncBuffer) {
	t.Helper()
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), envFrom(env), logs) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("run did not return within 10s after its context ended")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				addr = entry.Addr
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	return addr, stop, logs
}

// TestRunServesAndShutsDown runs the command's run function: flags from the environment,
// a real listener, and a clean exit when its context ends (as on SIGTERM).
func TestRunServesAndShutsDown(t *testing.T) {
	up := newUpstream(t)
	addr, stop, logs := startRun(t, nil, map[string]string{"APIKEY_GATEWAY_UPSTREAM": up.srv.URL, "APIKEY_GATEWAY_AUTH": "false"})

	resp, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get("http://" + addr + "/hello")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, "upstream:/hello", string(body))

	require.NoError(t, stop())
	require.Contains(t, logs.String(), `"msg":"stopped"`)
}

func TestRunServesTLS(t *testing.T) {
	up := newUpstream(t)
	certFile, keyFile, pool := selfSignedCert(t)
	addr, stop, _ := startRun(t, []string{"-upstream", up.srv.URL, "-auth=false", "-tls-cert-file", certFile, "-tls-key-file", keyFile}, nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, stop())

	err = run(context.Background(), []string{"-upstream", up.srv.URL, "-auth=false", "-tls-cert-file", keyFile, "-tls-key-file", keyFile}, envFrom(nil), io.Discard)
	require.ErrorContains(t, err, "-tls-cert-file", "a bad certificate stops start-up")
}

// TestRunRefusesBadRouteTag: a tag verify would refuse stops start-up, naming the route,
// instead of turning every request on that route into a 503.
func TestRunRefusesBadRouteTag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"routes":[{"path_prefix":"/a"},{"path_prefix":"/b","tag":"b c"}]}`), 0o600))
	err := run(context.Background(), []string{"-upstream", "http://127.0.0.1:9", "-listen", "127.0.0.1:0", "-config", file, "-route-tag", "route"}, envFrom(nil), io.Discard)
	require.ErrorContains(t, err, `route 2 ("/b"): tag "b c"`)
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to PEM files.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "apikey-gateway test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
