package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/apikeyauth"
)

// The forward-auth tests ask as a proxy at proxyAddr (in trustedNet) about a client at
// clientAddr; strangerAddr is outside trustedNet.
const (
	proxyAddr    = "10.0.0.5:41000"
	clientAddr   = "203.0.113.7"
	strangerAddr = "198.51.100.66:5555"
)

var trustedNet = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}

// testRoutes: GET /orders needs orders:read, POST /orders orders:write at cost 2,
// /reports/ reports:read, /public any valid key.
const testRoutes = `{"routes": [
	{"path_prefix": "/orders", "methods": ["GET", "HEAD"], "scopes": ["orders:read"]},
	{"path_prefix": "/orders", "methods": ["POST"], "scopes": ["orders:write"], "cost": 2},
	{"path_prefix": "/reports/", "scopes": ["reports:read"]},
	{"path_prefix": "/public"}
]}`

type testForwardAuth struct {
	fa      *forwardAuth
	vault   *fakeVault
	metrics *metrics
	logs    *syncBuffer
}

// newTestForwardAuth is forward-auth mode with testRoutes, -trusted-proxies trustedNet,
// the cache off (every request reaches the fake Vault) unless o says otherwise.
func newTestForwardAuth(t testing.TB, o options) *testForwardAuth {
	t.Helper()
	routes, err := parseRoutes([]byte(testRoutes))
	require.NoError(t, err)
	if o.routes == nil {
		o.routes = routes
	}
	if o.trustedProxies == nil {
		o.trustedProxies = trustedNet
	}
	if o.cacheSize == 0 {
		o.cacheSize = -1
	}
	o.mode = modeForwardAuth
	o.auth = true
	o.apiKeyHeader = apikeyauth.DefaultAPIKeyHeader
	o.originalMethodHeader = defaultOriginalMethodHeader
	o.originalURIHeader = defaultOriginalURIHeader
	tf := &testForwardAuth{vault: newFakeVault(t), metrics: newMetrics(), logs: &syncBuffer{}}
	cfg := api.DefaultConfig()
	cfg.Address = tf.vault.srv.URL
	cfg.MaxRetries = 0
	client, err := api.NewClient(cfg)
	require.NoError(t, err)
	client.SetToken("test-token")
	logger := slog.New(slog.NewJSONHandler(tf.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mw, err := apikeyauth.New(apikeyauth.Config{Client: client, TrustedProxies: o.trustedProxies, Logger: logger, Observer: tf.metrics,
		CacheSize: o.cacheSize, FailureBudget: o.failureBudget, FailureWindow: o.failureWindow})
	require.NoError(t, err)
	tf.fa = newForwardAuth(o, mw, tf.metrics, logger)
	return tf
}

// ask sends the proxy's forward-auth request for method and target (the original
// request) in shape s, from peer, with the original request's headers h.
func (tf *testForwardAuth) ask(s shape, peer, method, target string, h http.Header) *httptest.ResponseRecorder {
	r := forwardAuthRequest(s, method, target, h)
	r.RemoteAddr = peer
	rec := httptest.NewRecorder()
	tf.fa.ServeHTTP(rec, r)
	return rec
}

// forwardAuthRequest is the request a proxy sends in shape s about method and target,
// as the shipped configs (docs/proxies) make them send it: the client's headers h, the
// original method and URI, and X-Forwarded-For with the client's address (unless h
// has one already).
func forwardAuthRequest(s shape, method, target string, h http.Header) *http.Request {
	var r *http.Request
	switch s {
	case shapeNginx:
		r = httptest.NewRequest(http.MethodGet, pathAuthRequest, nil)
		r.Header.Set("X-Original-Method", method)
		r.Header.Set("X-Original-Uri", target)
	case shapeForward:
		r = httptest.NewRequest(http.MethodGet, pathForwardAuth, nil)
		r.Header.Set("X-Forwarded-Method", method)
		r.Header.Set("X-Forwarded-Uri", target)
		r.Header.Set("X-Forwarded-Host", "api.example.com")
		r.Header.Set("X-Forwarded-Proto", "https")
	case shapeEnvoyHTTP:
		// httptest.NewRequest parses target; the raw request line is what Envoy sends.
		r = httptest.NewRequest(method, "/", nil)
		r.RequestURI = pathExtAuthz + target
		u, err := r.URL.Parse(pathExtAuthz + target)
		if err == nil {
			r.URL = u
		}
	}
	for k, v := range h {
		r.Header[k] = v
	}
	if len(r.Header.Values("X-Forwarded-For")) == 0 {
		r.Header.Set("X-Forwarded-For", clientAddr)
	}
	return r
}

var httpShapes = []shape{shapeNginx, shapeForward, shapeEnvoyHTTP}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var b struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	require.NoError(t, json.Unmarshal(body, &b), "body %q", body)
	require.NotEmpty(t, b.Error)
	return b.Code
}

// TestForwardAuthAllows: each shape answers 200 with the identity headers for a valid
// key, and verify is asked for the ORIGINAL method's and path's route (scopes, cost)
// with the client's address from the proxy's X-Forwarded-For.
func TestForwardAuthAllows(t *testing.T) {
	for _, s := range httpShapes {
		t.Run(s.String(), func(t *testing.T) {
			tf := newTestForwardAuth(t, options{stripCredentials: true})
			key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read", "orders:write")
			for _, tc := range []struct {
				method, target string
				header         http.Header
				wantScopes     []string
				wantCost       int
			}{
				{method: "GET", target: "/orders/7?expand=items", header: http.Header{"Authorization": {"Bearer " + key}}, wantScopes: []string{"orders:read"}, wantCost: 1},
				{method: "POST", target: "/orders", header: http.Header{"X-Api-Key": {key}}, wantScopes: []string{"orders:write"}, wantCost: 2},
			} {
				rec := tf.ask(s, proxyAddr, tc.method, tc.target, tc.header)
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
				require.Empty(t, rec.Body.String())
				h := rec.Header()
				require.Equal(t, "AbCdEfGhIjKlMnOp", h.Get("X-Api-Key-Id"))
				require.Equal(t, "orders-svc", h.Get("X-Api-Key-Role"))
				require.Equal(t, "orders:read,orders:write", h.Get("X-Api-Key-Scopes"))
				require.Equal(t, "VALID", h.Get("X-Api-Key-Code"))
				require.Empty(t, h.Get("X-Api-Key-Status"))
				require.Equal(t, tc.wantScopes, tf.vault.lastScopes())
				tf.vault.mu.Lock()
				require.Equal(t, clientAddr, tf.vault.clientIP, "the client's address, not the proxy's")
				require.NotNil(t, tf.vault.cost)
				require.Equal(t, tc.wantCost, *tf.vault.cost)
				tf.vault.mu.Unlock()
			}
			require.NotContains(t, tf.logs.String(), key)
			require.Contains(t, tf.logs.String(), `"endpoint":"`+s.String()+`"`)
			require.Contains(t, tf.logs.String(), `"key_id":"AbCdEfGhIjKlMnOp"`)
		})
	}
}

// TestForwardAuthRefusals: 401 and 403 as the reverse proxy answers them; 429 and 503
// go to Traefik, Caddy and Envoy as they are, and to nginx as 403 with the real status
// and code in headers (nginx turns any other status into 500).
func TestForwardAuthRefusals(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true})
	valid := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	wrongScope := tf.vault.issue(t, "WrOnGsCoPeKeY123", "orders:read")
	limited := tf.vault.issue(t, "RaTeLiMiTeDkEy12", "orders:read")
	tf.vault.mu.Lock()
	tf.vault.answers[wrongScope]["valid"] = false
	tf.vault.answers[wrongScope]["code"] = "INSUFFICIENT_SCOPE"
	tf.vault.answers[limited]["valid"] = false
	tf.vault.answers[limited]["code"] = "RATE_LIMITED"
	tf.vault.answers[limited]["retry_after"] = 41
	tf.vault.mu.Unlock()

	for _, tc := range []struct {
		name            string
		target          string
		header          http.Header
		wantStatus      int
		wantCode        string
		wantRetryAfter  string
		wantWWWContains string
	}{
		{name: "no key", target: "/orders/1", wantStatus: 401, wantCode: "MISSING", wantWWWContains: `Bearer realm="api"`},
		{name: "unknown key", target: "/orders/1", header: http.Header{"X-Api-Key": {tf.vault.issueUnknown(t)}}, wantStatus: 401, wantCode: "NOT_FOUND", wantWWWContains: `error="invalid_token"`},
		{name: "wrong scope", target: "/reports/q1", header: http.Header{"X-Api-Key": {wrongScope}}, wantStatus: 403, wantCode: "INSUFFICIENT_SCOPE", wantWWWContains: `scope="reports:read"`},
		{name: "rate limited", target: "/orders/1", header: http.Header{"X-Api-Key": {limited}}, wantStatus: 429, wantCode: "RATE_LIMITED", wantRetryAfter: "41"},
		{name: "no route", target: "/elsewhere", header: http.Header{"X-Api-Key": {valid}}, wantStatus: 404, wantCode: "NO_ROUTE"},
	} {
		for _, s := range httpShapes {
			t.Run(tc.name+"/"+s.String(), func(t *testing.T) {
				rec := tf.ask(s, proxyAddr, http.MethodGet, tc.target, tc.header)
				h := rec.Header()
				wire := tc.wantStatus
				if s == shapeNginx && wire != 401 {
					wire = 403
				}
				require.Equal(t, wire, rec.Code, rec.Body.String())
				require.Equal(t, tc.wantCode, h.Get("X-Api-Key-Code"))
				require.Equal(t, tc.wantCode, errorCode(t, rec.Body.Bytes()))
				require.Equal(t, strconv.Itoa(tc.wantStatus), h.Get("X-Api-Key-Status"))
				require.Equal(t, tc.wantRetryAfter, h.Get("Retry-After"))
				if tc.wantWWWContains != "" {
					require.Contains(t, h.Get("WWW-Authenticate"), tc.wantWWWContains)
				}
				require.Empty(t, h.Get("X-Api-Key-Id"), "no identity on a refusal")
				require.Empty(t, h.Get(headerEnvoyRemove))
			})
		}
	}

	// Vault down: 503, fail closed (nginx: 403 with X-Api-Key-Status 503).
	tf.vault.srv.Close()
	for _, s := range httpShapes {
		rec := tf.ask(s, proxyAddr, http.MethodGet, "/orders/1", http.Header{"X-Api-Key": {valid}})
		wire := 503
		if s == shapeNginx {
			wire = 403
		}
		require.Equal(t, wire, rec.Code, "%s: %s", s, rec.Body.String())
		require.Equal(t, "VERIFY_UNAVAILABLE", rec.Header().Get("X-Api-Key-Code"))
		require.Equal(t, "503", rec.Header().Get("X-Api-Key-Status"))
	}
}

// TestForwardAuthUntrustedPeer: only the proxies in -trusted-proxies are answered; a
// client that reaches the endpoint itself, with forged X-Forwarded-* or X-Original-*
// headers, is refused before any Vault call.
func TestForwardAuthUntrustedPeer(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true})
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	forged := http.Header{"X-Api-Key": {key}, "X-Forwarded-For": {"10.0.0.9"}, "X-Real-Ip": {"10.0.0.9"}}
	for _, s := range httpShapes {
		rec := tf.ask(s, strangerAddr, http.MethodGet, "/orders/1", forged)
		require.Equal(t, http.StatusForbidden, rec.Code, "%s: %s", s, rec.Body.String())
		require.Equal(t, outcomeUntrustedProxy, rec.Header().Get("X-Api-Key-Code"))
		require.Equal(t, outcomeUntrustedProxy, errorCode(t, rec.Body.Bytes()))
		require.Empty(t, rec.Header().Get("X-Api-Key-Id"))
	}
	require.Zero(t, tf.vault.calls.Load(), "refused before verify")
	require.Equal(t, "3", metricLines(scrape(tf.metrics))[`apikey_gateway_requests_total{outcome="UNTRUSTED_PROXY"}`])
}

func scrape(m *metrics) string {
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// TestForwardAuthBadRequests: a trusted proxy's request that does not say (once) what
// the original request is, or without the client's address, is refused.
func TestForwardAuthBadRequests(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true})
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	for _, tc := range []struct {
		name   string
		s      shape
		mutate func(r *http.Request)
	}{
		{name: "nginx without X-Original-Uri", s: shapeNginx, mutate: func(r *http.Request) { r.Header.Del("X-Original-Uri") }},
		{name: "nginx without X-Original-Method", s: shapeNginx, mutate: func(r *http.Request) { r.Header.Del("X-Original-Method") }},
		{name: "nginx with X-Original-Uri twice", s: shapeNginx, mutate: func(r *http.Request) { r.Header.Add("X-Original-Uri", "/public") }},
		{name: "forward without X-Forwarded-Uri", s: shapeForward, mutate: func(r *http.Request) { r.Header.Del("X-Forwarded-Uri") }},
		{name: "forward with X-Forwarded-Method twice", s: shapeForward, mutate: func(r *http.Request) { r.Header.Add("X-Forwarded-Method", "DELETE") }},
		{name: "forward with an empty X-Forwarded-Uri", s: shapeForward, mutate: func(r *http.Request) { r.Header.Set("X-Forwarded-Uri", " ") }},
		{name: "no X-Forwarded-For", s: shapeForward, mutate: func(r *http.Request) { r.Header.Del("X-Forwarded-For") }},
		{name: "envoy without X-Forwarded-For", s: shapeEnvoyHTTP, mutate: func(r *http.Request) { r.Header.Del("X-Forwarded-For") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := forwardAuthRequest(tc.s, http.MethodGet, "/orders/1", http.Header{"X-Api-Key": {key}})
			r.RemoteAddr = proxyAddr
			tc.mutate(r)
			rec := httptest.NewRecorder()
			tf.fa.ServeHTTP(rec, r)
			require.Equal(t, outcomeBadForwardAuth, rec.Header().Get("X-Api-Key-Code"), rec.Body.String())
			require.Equal(t, "400", rec.Header().Get("X-Api-Key-Status"))
		})
	}
	require.Zero(t, tf.vault.calls.Load())
	// An absolute-form target is no path.
	rec := tf.ask(shapeForward, proxyAddr, http.MethodGet, "http://evil.example/orders", http.Header{"X-Api-Key": {key}})
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Equal(t, outcomeBadPath, rec.Header().Get("X-Api-Key-Code"))
	// Anything but the endpoints is not found.
	r := httptest.NewRequest(http.MethodGet, "/orders/1", nil)
	r.RemoteAddr = proxyAddr
	rec = httptest.NewRecorder()
	tf.fa.ServeHTTP(rec, r)
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// TestForwardAuthPathConfusion: the original method and URI obey the reverse proxy's
// rules (docs/gateway.md, "Requests the gateway refuses"), before any Vault call; method
// and URL override headers, which the reverse proxy removes, are refused.
func TestForwardAuthPathConfusion(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true})
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "reports:read")
	for _, tc := range []struct {
		method, target string
		header         http.Header
		wantStatus     int
		wantCode       string
	}{
		{method: "GET", target: "/public/..;/reports/q1", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/../orders/1", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/%2e%2e/orders/1", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public%2Freports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/%252e%252e/reports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: `/public/..%5creports`, wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/a%00.json", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "//orders/1", wantStatus: 400, wantCode: outcomeBadPath},
		// Only another letter case would give a more specific route.
		{method: "GET", target: "/PUBLIC/x", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/Reports/q1", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "get", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		{method: "PROPFIND", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		// The most specific prefix decides.
		{method: "DELETE", target: "/orders/1", wantStatus: 405, wantCode: outcomeMethodNotAllowed},
		{method: "POST", target: "/public/x", header: http.Header{"X-Http-Method-Override": {"DELETE"}}, wantStatus: 400, wantCode: outcomeOverrideRefused},
		{method: "POST", target: "/public/x", header: http.Header{"X_HTTP_Method_Override": {"DELETE"}}, wantStatus: 400, wantCode: outcomeOverrideRefused},
		{method: "GET", target: "/public/x", header: http.Header{"X-Original-Url": {"/reports/q1"}}, wantStatus: 400, wantCode: outcomeOverrideRefused},
		{method: "GET", target: "/public/x", header: http.Header{"X-Rewrite-Url": {"/reports/q1"}}, wantStatus: 400, wantCode: outcomeOverrideRefused},
		{method: "GET", target: "/public/x", header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, wantStatus: 400, wantCode: outcomeUpgradeRefused},
	} {
		for _, s := range httpShapes {
			if s == shapeEnvoyHTTP && (tc.method == "get" || strings.ContainsAny(tc.target, `\`)) {
				continue // not a request line Go's client or server would carry
			}
			t.Run(s.String()+" "+tc.method+" "+tc.target, func(t *testing.T) {
				calls := tf.vault.calls.Load()
				h := http.Header{"X-Api-Key": {key}}
				for k, v := range tc.header {
					h[k] = v
				}
				rec := tf.ask(s, proxyAddr, tc.method, tc.target, h)
				wire := tc.wantStatus
				if s == shapeNginx {
					wire = 403
				}
				require.Equal(t, wire, rec.Code, rec.Body.String())
				require.Equal(t, tc.wantCode, rec.Header().Get("X-Api-Key-Code"))
				require.Equal(t, tc.wantCode, errorCode(t, rec.Body.Bytes()))
				require.Equal(t, calls, tf.vault.calls.Load(), "refused before verify")
			})
		}
	}
	// nginx's own X-Original-Uri is no override; the client's copy never reaches the
	// gateway (nginx replaces it), and under another name it is refused.
	rec := tf.ask(shapeNginx, proxyAddr, "GET", "/reports/q1", http.Header{"X-Api-Key": {key}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = tf.ask(shapeForward, proxyAddr, "GET", "/public/x", http.Header{"X-Api-Key": {key}, "X-Original-Uri": {"/reports/q1"}})
	require.Equal(t, outcomeOverrideRefused, rec.Header().Get("X-Api-Key-Code"))
}

// TestForwardAuthEnvoyHTTPRemovesCredentials: an allowed Envoy HTTP answer lists the
// credentials and the identity headers it does not set in
// x-envoy-auth-headers-to-remove; the identity headers it sets overwrite the client's.
func TestForwardAuthEnvoyHTTPRemovesCredentials(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true})
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	rec := tf.ask(shapeEnvoyHTTP, proxyAddr, "GET", "/orders/1", http.Header{
		"Authorization":    {"Bearer " + key},
		"X-Api-Key-Id":     {"forged"},
		"X_api_key_role":   {"admin"},
		"X-Api-Key-Tenant": {"evil"},
		"X_forwarded_for":  {"6.6.6.6"},
	})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "authorization, x-api-key, x-api-key-tenant, x_api_key_role, x_forwarded_for", rec.Header().Get(headerEnvoyRemove))
	require.Equal(t, "AbCdEfGhIjKlMnOp", rec.Header().Get("X-Api-Key-Id"))

	// -strip-credentials=false keeps the credentials, not the forged identity.
	tf = newTestForwardAuth(t, options{stripCredentials: false})
	key = tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	rec = tf.ask(shapeEnvoyHTTP, proxyAddr, "GET", "/orders/1", http.Header{"Authorization": {"Bearer " + key}, "X-Api-Key-Tenant": {"evil"}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "x-api-key-tenant", rec.Header().Get(headerEnvoyRemove))

	// A key without scopes: the empty header is removed, not sent empty.
	tf = newTestForwardAuth(t, options{stripCredentials: true})
	key = tf.vault.issue(t, "NoScOpEsKeY12345")
	rec = tf.ask(shapeEnvoyHTTP, proxyAddr, "GET", "/public/x", http.Header{"X-Api-Key": {key}, "X-Api-Key-Scopes": {"*"}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, rec.Header().Values("X-Api-Key-Scopes"))
	require.Equal(t, "authorization, x-api-key, x-api-key-scopes", rec.Header().Get(headerEnvoyRemove))
	// The other shapes send it empty: nginx, Traefik and Caddy set (overwrite) it.
	rec = tf.ask(shapeForward, proxyAddr, "GET", "/public/x", http.Header{"X-Api-Key": {key}})
	require.Equal(t, []string{""}, rec.Header().Values("X-Api-Key-Scopes"))
	require.Empty(t, rec.Header().Get(headerEnvoyRemove))
}

// TestForwardAuthSharesTheFailureBudget: refusals are counted per client address (from
// the proxy's X-Forwarded-For), whichever endpoint asks; the cache serves all of them.
func TestForwardAuthSharesTheFailureBudget(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true, failureBudget: 2, failureWindow: time.Minute, cacheSize: 100})
	for _, s := range []shape{shapeNginx, shapeForward} {
		rec := tf.ask(s, proxyAddr, "GET", "/orders/1", http.Header{"X-Api-Key": {tf.vault.issueUnknown(t)}})
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	calls := tf.vault.calls.Load()
	rec := tf.ask(shapeEnvoyHTTP, proxyAddr, "GET", "/orders/1", http.Header{"X-Api-Key": {tf.vault.issueUnknown(t)}})
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "TOO_MANY_FAILURES", rec.Header().Get("X-Api-Key-Code"))
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	rec = tf.ask(shapeNginx, proxyAddr, "GET", "/orders/1", http.Header{"X-Api-Key": {tf.vault.issueUnknown(t)}})
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Equal(t, "429", rec.Header().Get("X-Api-Key-Status"))
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, calls, tf.vault.calls.Load())
	// Another client behind the same proxy has its own budget.
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	rec = tf.ask(shapeNginx, proxyAddr, "GET", "/orders/1", http.Header{"X-Api-Key": {key}, "X-Forwarded-For": {"203.0.113.99"}})
	require.Equal(t, http.StatusOK, rec.Code)
	// The cache: the same question again is no Vault call.
	calls = tf.vault.calls.Load()
	rec = tf.ask(shapeForward, proxyAddr, "GET", "/orders/2", http.Header{"X-Api-Key": {key}, "X-Forwarded-For": {"203.0.113.99"}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, calls, tf.vault.calls.Load())
}

// TestForwardAuthRouteTag: the route tag is the original path's route.
func TestForwardAuthRouteTag(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true, routeTag: "route"})
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	rec := tf.ask(shapeForward, proxyAddr, "GET", "/orders/1", http.Header{"X-Api-Key": {key}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, []string{"route=/orders"}, tf.vault.lastTags())
}

// TestRunForwardAuth runs the command in forward-auth mode: the HTTP endpoints and the
// gRPC listener serve, and both stop cleanly.
func TestRunForwardAuth(t *testing.T) {
	fv := newFakeVault(t)
	key := fv.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	// The Vault client reads the process environment (api.DefaultConfig).
	t.Setenv("VAULT_ADDR", fv.srv.URL)
	t.Setenv("VAULT_TOKEN", "test-token")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	addr, stop, logs := startRun(t, []string{"-mode", "forward-auth", "-trusted-proxies", "127.0.0.1", "-grpc-listen", "127.0.0.1:0"}, nil)
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+pathForwardAuth, nil)
	require.NoError(t, err)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/orders/1")
	req.Header.Set("X-Forwarded-For", clientAddr)
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "AbCdEfGhIjKlMnOp", resp.Header.Get("X-Api-Key-Id"))

	grpcAddr := logAddr(t, logs, "ext_authz gRPC listening")
	conn, err := net.Dial("tcp", grpcAddr)
	require.NoError(t, err)
	_ = conn.Close()
	require.NoError(t, stop())
	require.Contains(t, logs.String(), `"msg":"stopped"`)
	require.Contains(t, logs.String(), `"mode":"forward-auth"`)
	require.NotContains(t, logs.String(), key)
}

// logAddr is the addr of the first log line with message msg.
func logAddr(t *testing.T, logs *syncBuffer, msg string) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == msg {
				addr = entry.Addr
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	return addr
}

func TestOptionsForwardAuth(t *testing.T) {
	o, err := parseOptions([]string{"-mode", "forward-auth", "-trusted-proxies", "10.0.0.0/8", "-grpc-listen", "127.0.0.1:9191",
		"-original-uri-header", "x-request-uri"}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	require.Equal(t, modeForwardAuth, o.mode)
	require.Nil(t, o.upstream)
	require.Equal(t, "127.0.0.1:9191", o.grpcListen)
	require.Equal(t, "X-Original-Method", o.originalMethodHeader)
	require.Equal(t, "X-Request-Uri", o.originalURIHeader, "canonical")

	fa := []string{"-mode", "forward-auth", "-trusted-proxies", "10.0.0.0/8"}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown mode", args: []string{"-mode", "sidecar"}, wantErr: "must be proxy or forward-auth"},
		{name: "no trusted proxies", args: []string{"-mode", "forward-auth"}, wantErr: "needs -trusted-proxies"},
		{name: "with an upstream", args: append(fa, "-upstream", "http://127.0.0.1:9000"), wantErr: "-upstream has no use"},
		{name: "auth off", args: append(fa, "-auth=false"), wantErr: "-auth=false has no use"},
		{name: "grpc in proxy mode", args: []string{"-upstream", "http://127.0.0.1:9000", "-grpc-listen", "127.0.0.1:1"}, wantErr: "-grpc-listen needs -mode forward-auth"},
		{name: "bad header name", args: append(fa, "-original-uri-header", "X Uri"), wantErr: "must be header names"},
		{name: "credential as header", args: append(fa, "-original-uri-header", "authorization"), wantErr: "must not be a credential"},
		{name: "forwarding header", args: append(fa, "-original-method-header", "X-Forwarded-Method"), wantErr: "must not be a credential, identity or forwarding header"},
		{name: "same header twice", args: append(fa, "-original-method-header", "X-Original-Uri"), wantErr: "must differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(tc.args, envFrom(nil), io.Discard)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// BenchmarkForwardAuthAllowed: one allowed forward-auth answer from a warm cache, per
// shape (the gateway's own cost; the proxy's round trip is ratio 9 of bench/load).
func BenchmarkForwardAuthAllowed(b *testing.B) {
	tf := newTestForwardAuth(b, options{stripCredentials: true, cacheSize: 1000})
	key := tf.vault.issue(b, "AbCdEfGhIjKlMnOp", "orders:read")
	tf.fa.g.log = slog.New(slog.DiscardHandler)
	for _, s := range httpShapes {
		b.Run(s.String(), func(b *testing.B) {
			r := forwardAuthRequest(s, http.MethodGet, "/orders/1?x=1", http.Header{"Authorization": {"Bearer " + key}, "Accept": {"*/*"}, "User-Agent": {"bench"}})
			r.RemoteAddr = proxyAddr
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				tf.fa.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
