package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// smuggledForwardingHeaders are a client's claims about its address, host and scheme, in
// spellings that Go keeps apart from the canonical names but many upstreams do not.
func smuggledForwardingHeaders() http.Header {
	return http.Header{
		"X_Forwarded_For":   {"6.6.6.6"},
		"X_forwarded_for":   {"6.6.6.6"},
		"x-forwarded-for":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X_Forwarded_Host":  {"evil.example"},
		"X-Forwarded-Port":  {"6666"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=6.6.6.6;host=evil.example"},
		"X-Real-Ip":         {"6.6.6.6"},
		"X_Real_IP":         {"6.6.6.6"},
		"x-real-ip":         {"6.6.6.6"},
		"True-Client-Ip":    {"6.6.6.6"},
		// Names other frameworks and CDNs read the client's address from.
		"Client-Ip":                {"6.6.6.6"},
		"X-Cluster-Client-Ip":      {"6.6.6.6"},
		"Cf-Connecting-Ip":         {"6.6.6.6"},
		"Fastly-Client-Ip":         {"6.6.6.6"},
		"X-Original-Forwarded-For": {"6.6.6.6"},
		"X-Original-Uri":           {"/evil.example"},
		// An identity header the gateway does not set today.
		"X-Api-Key-Tenant": {"evil.example"},
	}
}

func requireNoSmuggledValue(t *testing.T, got http.Header) {
	t.Helper()
	for name, values := range got {
		v := strings.Join(values, " ")
		require.NotContains(t, v, "6.6.6.6", "header %s reaches the upstream", name)
		require.NotContains(t, v, "evil.example", "header %s reaches the upstream", name)
		require.NotContains(t, v, "6666", "header %s reaches the upstream", name)
	}
}

// TestGatewayForwardingHeadersCannotBeSmuggled: the upstream sees only the gateway's
// own account of the client, with X-Real-IP set to the address verify checked.
func TestGatewayForwardingHeadersCannotBeSmuggled(t *testing.T) {
	for _, tc := range []struct {
		name       string
		auth       bool
		trusted    []netip.Prefix
		chain      string // X-Forwarded-For from the peer
		wantRealIP string
		wantXFF    string
	}{
		{name: "untrusted peer", auth: true, wantRealIP: "198.51.100.20", wantXFF: "198.51.100.20"},
		{name: "auth off", auth: false, wantRealIP: "198.51.100.20", wantXFF: "198.51.100.20"},
		{name: "trusted proxy", auth: true, trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, chain: "203.0.113.1",
			wantRealIP: "203.0.113.1", wantXFF: "203.0.113.1, 198.51.100.20"},
		{name: "trusted proxy, auth off", auth: false, trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, chain: "203.0.113.1",
			wantRealIP: "203.0.113.1", wantXFF: "203.0.113.1, 198.51.100.20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTestGateway(t, options{stripCredentials: true, trustedProxies: tc.trusted}, tc.auth)
			h := smuggledForwardingHeaders()
			if tc.auth {
				h["X-Api-Key"] = []string{tg.vault.issue(t, "AbCdEfGhIjKlMnOp")}
			}
			if tc.chain != "" {
				h["X-Forwarded-For"] = []string{tc.chain}
			}
			rec := tg.do(http.MethodGet, "/orders", h)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			got := tg.upstream.lastRequest().Header
			requireNoSmuggledValue(t, got)
			require.Equal(t, []string{tc.wantRealIP}, got.Values("X-Real-Ip"))
			require.Equal(t, []string{tc.wantXFF}, got.Values("X-Forwarded-For"))
			require.Empty(t, got.Values("Forwarded"))
			require.Equal(t, []string{"http"}, got.Values("X-Forwarded-Proto"))
		})
	}
}

// TestGatewayPathAndMethodConfusion: requests that an upstream could route differently
// from the gateway are refused before any Vault call; "/x/" routes cover "/x".
func TestGatewayPathAndMethodConfusion(t *testing.T) {
	routes, err := parseRoutes([]byte(`{"routes": [
		{"path_prefix": "/reports/", "scopes": ["reports:read"]},
		{"path_prefix": "/public"},
		{"path_prefix": "/"}
	]}`))
	require.NoError(t, err)
	tg := newTestGateway(t, options{stripCredentials: true, routes: routes, cacheSize: -1}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "reports:read")
	for _, tc := range []struct {
		method, target string
		header         http.Header
		wantStatus     int
		wantCode       string   // error body code
		wantScopes     []string // sent to verify, for 200
	}{
		{method: "GET", target: "/reports/q1", wantStatus: 200, wantScopes: []string{"reports:read"}},
		{method: "GET", target: "/reports/", wantStatus: 200, wantScopes: []string{"reports:read"}},
		{method: "GET", target: "/reports", wantStatus: 200, wantScopes: []string{"reports:read"}},
		{method: "GET", target: "/reportsX", wantStatus: 200, wantScopes: nil},
		// A case-insensitive upstream would serve /reports for these.
		{method: "GET", target: "/REPORTS/q1", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/Reports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/PUBLIC/x", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/x", wantStatus: 200, wantScopes: nil},
		// Path parameters: Tomcat and Spring read "/public/..;/reports" as "/reports".
		{method: "GET", target: "/public/..;/reports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public;jsessionid=1/x", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/%3b/x", wantStatus: 400, wantCode: outcomeBadPath},
		// Double encoding: decoded twice, "%252e%252e" is "..".
		{method: "GET", target: "/public/%252e%252e/reports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/100%25", wantStatus: 400, wantCode: outcomeBadPath},
		// Backslashes are slashes to some servers.
		{method: "GET", target: `/public/..%5creports`, wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: `/public/..\reports`, wantStatus: 400, wantCode: outcomeBadPath},
		// Encoded slashes: one segment to the gateway, two to a server that decodes first.
		{method: "GET", target: "/public%2Freports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public%2freports", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/reports%2F..%2Fpublic", wantStatus: 400, wantCode: outcomeBadPath},
		{method: "GET", target: "/public/a%00.json", wantStatus: 400, wantCode: outcomeBadPath},
		// Methods: exact, upper-case, known.
		{method: "get", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		{method: "Get", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		{method: "PROPFIND", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		{method: "TRACE", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		{method: "CONNECT", target: "/public/x", wantStatus: 400, wantCode: outcomeBadMethod},
		// Override headers are stripped: the upstream sees the method the gateway checked.
		{method: "POST", target: "/public/x", header: http.Header{"X-Http-Method-Override": {"DELETE"}, "X_HTTP_Method_Override": {"DELETE"},
			"X-Method-Override": {"DELETE"}, "X-Http-Method": {"DELETE"}, "X-Original-Url": {"/reports/q1"}}, wantStatus: 200},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			calls := tg.vault.calls.Load()
			before := tg.upstream.lastRequest()
			h := http.Header{"X-Api-Key": {key}}
			for k, v := range tc.header {
				h[k] = v
			}
			rec := tg.do(tc.method, tc.target, h)
			require.Equal(t, tc.wantStatus, rec.Code, rec.Body.String())
			if tc.wantStatus != 200 {
				var body map[string]string
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
				require.Equal(t, tc.wantCode, body["code"])
				require.NotEmpty(t, body["error"])
				require.Equal(t, calls, tg.vault.calls.Load(), "refused before verify")
				require.Same(t, before, tg.upstream.lastRequest(), "nothing reached the upstream")
				return
			}
			require.Equal(t, calls+1, tg.vault.calls.Load())
			require.Equal(t, tc.wantScopes, tg.vault.lastScopes())
			got := tg.upstream.lastRequest()
			require.Equal(t, tc.method, got.Method)
			for name := range got.Header {
				norm := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
				require.NotContains(t, []string{"x-http-method-override", "x-method-override", "x-http-method", "x-original-url"}, norm)
			}
		})
	}
	metrics := metricLines(tg.scrape().Body.String())
	require.Equal(t, "14", metrics[`apikey_gateway_requests_total{outcome="BAD_PATH"}`]) // 11, and the 3 case-only ones
	require.Equal(t, "5", metrics[`apikey_gateway_requests_total{outcome="BAD_METHOD"}`])
}

// TestGatewayMethodsOption: -methods narrows (or widens) the accepted methods.
func TestGatewayMethodsOption(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true, methods: []string{"GET", "PROPFIND"}}, false)
	require.Equal(t, http.StatusOK, tg.do("PROPFIND", "/x", nil).Code)
	require.Equal(t, http.StatusOK, tg.do(http.MethodGet, "/x", nil).Code)
	require.Equal(t, http.StatusBadRequest, tg.do(http.MethodPost, "/x", nil).Code)
}

// TestGatewayFailureBudget: a client minting unknown keys gets 429 once its budget is
// spent, without a Vault call, and the gateway counts it.
func TestGatewayFailureBudget(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true, failureBudget: 2, failureWindow: time.Minute}, true)
	for i := 0; i < 2; i++ {
		require.Equal(t, http.StatusUnauthorized, tg.do(http.MethodGet, "/x", http.Header{"X-Api-Key": {tg.vault.issueUnknown(t)}}).Code)
	}
	calls := tg.vault.calls.Load()
	rec := tg.do(http.MethodGet, "/x", http.Header{"X-Api-Key": {tg.vault.issueUnknown(t)}})
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Contains(t, rec.Body.String(), `"TOO_MANY_FAILURES"`)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, calls, tg.vault.calls.Load(), "Vault was not asked")
	metrics := metricLines(tg.scrape().Body.String())
	require.Equal(t, "1", metrics[`apikey_gateway_requests_total{outcome="TOO_MANY_FAILURES"}`])
	require.Equal(t, "2", metrics[`apikey_gateway_requests_total{outcome="NOT_FOUND"}`])
}

// TestGatewayRefusesUpgrades: an upgraded connection would outlive the verify of its
// handshake, so upgrades are refused unless -allow-upgrade.
func TestGatewayRefusesUpgrades(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp")
	for name, h := range map[string]http.Header{
		"websocket":          {"Connection": {"Upgrade"}, "Upgrade": {"websocket"}},
		"token among others": {"Connection": {"keep-alive, upgrade"}, "Upgrade": {"websocket"}},
		"upgrade alone":      {"Upgrade": {"h2c"}},
	} {
		t.Run(name, func(t *testing.T) {
			h["X-Api-Key"] = []string{key}
			before := tg.upstream.lastRequest()
			calls := tg.vault.calls.Load()
			rec := tg.do(http.MethodGet, "/ws", h)
			require.Equal(t, http.StatusBadRequest, rec.Code)
			require.Contains(t, rec.Body.String(), outcomeUpgradeRefused)
			require.Equal(t, calls, tg.vault.calls.Load())
			require.Same(t, before, tg.upstream.lastRequest())
		})
	}

	tg = newTestGateway(t, options{stripCredentials: true, allowUpgrade: true}, true)
	key = tg.vault.issue(t, "AbCdEfGhIjKlMnOp")
	rec := tg.do(http.MethodGet, "/ws", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "X-Api-Key": {key}})
	require.Equal(t, http.StatusOK, rec.Code, "-allow-upgrade forwards it (this upstream declines to switch)")
}

// TestGatewayBodyLimit: bodies over -max-body-bytes get 413, whether announced by
// Content-Length (refused before verify) or streamed.
func TestGatewayBodyLimit(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true, maxBodyBytes: 16}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp")
	send := func(body string, chunked bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/upload", strings.NewReader(body))
		r.RemoteAddr = "198.51.100.20:5555"
		r.Header.Set("X-Api-Key", key)
		if chunked {
			r.ContentLength = -1
			r.Body = io.NopCloser(strings.NewReader(body))
		}
		rec := httptest.NewRecorder()
		tg.handler.ServeHTTP(rec, r)
		return rec
	}
	require.Equal(t, http.StatusOK, send(strings.Repeat("a", 16), false).Code)
	require.Equal(t, http.StatusOK, send(strings.Repeat("a", 16), true).Code)

	calls := tg.vault.calls.Load()
	rec := send(strings.Repeat("a", 17), false)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	require.Contains(t, rec.Body.String(), outcomeBodyTooLarge)
	require.Equal(t, calls, tg.vault.calls.Load(), "refused before verify")

	before := tg.upstream.lastRequest()
	rec = send(strings.Repeat("a", 4096), true)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Same(t, before, tg.upstream.lastRequest(), "the upstream got no complete request")
}

func TestServerTimeouts(t *testing.T) {
	o, err := parseOptions([]string{"-upstream", "http://127.0.0.1:9000"}, envFrom(nil), io.Discard)
	require.NoError(t, err)
	srv := o.newServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	require.Equal(t, 10*time.Second, srv.ReadHeaderTimeout)
	require.Equal(t, time.Minute, srv.ReadTimeout)
	require.Equal(t, 2*time.Minute, srv.IdleTimeout)
}

// TestRunDropsSlowHeaders: a client that never finishes its headers is cut off after
// -read-header-timeout.
func TestRunDropsSlowHeaders(t *testing.T) {
	up := newUpstream(t)
	addr, _, _ := startRun(t, []string{"-upstream", up.srv.URL, "-auth=false", "-read-header-timeout", "200ms"}, nil)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	start := time.Now()
	_, err = io.ReadAll(conn) // whatever the server says, it must end the connection
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "connection still open after 5s")
	require.Less(t, time.Since(start), 4*time.Second)
}

// metricsAddr finds the metrics listener's address in run's log.
func metricsAddr(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "metrics listening" {
				addr = entry.Addr
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	return addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestRunServesMetricsOnlyOnTheMetricsListener: /metrics on the public listener is a
// path like any other (here forwarded, as -auth=false); the metrics are served on
// -metrics-listen, and not at all without it.
func TestRunServesMetricsOnlyOnTheMetricsListener(t *testing.T) {
	up := newUpstream(t)
	addr, stop, logs := startRun(t, []string{"-upstream", up.srv.URL, "-auth=false", "-metrics-listen", "127.0.0.1:0"}, nil)
	maddr := metricsAddr(t, logs)
	require.NotEqual(t, addr, maddr)

	status, body := get(t, "http://"+addr+"/metrics")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "upstream:/metrics", body, "forwarded, not answered by the gateway")

	status, body = get(t, "http://"+maddr+"/metrics")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `apikey_gateway_requests_total{outcome="AUTH_DISABLED"} 1`)
	status, _ = get(t, "http://"+maddr+"/x")
	require.Equal(t, http.StatusNotFound, status, "the metrics listener serves nothing else")
	require.NoError(t, stop())

	addr, _, logs = startRun(t, []string{"-upstream", up.srv.URL, "-auth=false"}, nil)
	_, body = get(t, "http://"+addr+"/metrics")
	require.Equal(t, "upstream:/metrics", body)
	require.NotContains(t, logs.String(), "metrics listening", "no metrics listener by default")
}

// TestGatewayCaseOnlyRefusesWeakerRoutes: two routes that differ only in case are each
// matched exactly; a path is refused only when ignoring case would give it a more
// specific route than the one it gets.
func TestGatewayCaseOnlyRefusesWeakerRoutes(t *testing.T) {
	routes, err := parseRoutes([]byte(`{"routes": [
		{"path_prefix": "/Orders"},
		{"path_prefix": "/orders", "scopes": ["orders:read"]}
	]}`))
	require.NoError(t, err)
	tg := newTestGateway(t, options{stripCredentials: true, routes: routes, cacheSize: -1}, true)
	key := tg.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	for _, target := range []string{"/orders/1", "/Orders/1"} {
		rec := tg.do(http.MethodGet, target, http.Header{"X-Api-Key": {key}})
		require.Equal(t, http.StatusOK, rec.Code, "%s: %s", target, rec.Body.String())
	}
	rec := tg.do(http.MethodGet, "/ORDERS/1", http.Header{"X-Api-Key": {key}})
	require.Equal(t, http.StatusBadRequest, rec.Code, "only another case would route it: %s", rec.Body.String())
}

// TestGatewayZonedPeerIsJudgedLikeTheMiddleware: a trusted link-local peer with a zone
// keeps its X-Forwarded-For chain, as the middleware's client address assumes.
func TestGatewayZonedPeerIsJudgedLikeTheMiddleware(t *testing.T) {
	tg := newTestGateway(t, options{stripCredentials: true, trustedProxies: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}}, false)
	gw := tg.handler.(*gateway)
	require.True(t, gw.peerIsTrustedProxy("[fe80::1%eth0]:443"))
	require.False(t, gw.peerIsTrustedProxy("[::ffff:10.0.0.1]:443"))
}
