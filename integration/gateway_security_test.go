//go:build integration

package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGatewaySecurity runs the gateway binary ($GATEWAY_BIN) against a real Vault with the plugin and
// tries, as a client, what the gateway must not let through: smuggled forwarding
// headers, paths and methods an upstream could route elsewhere, upgrades, a flood of
// unknown keys, and metrics on the public listener.
func TestGatewaySecurity(t *testing.T) {
	t.Parallel()

	s := Setup(t)
	verifierToken := s.VerifierToken(t)
	s.MustCLI(t, s.RootToken, "write", "apikey/roles/orders", "scopes=orders:read", "ttl=1h")
	key := issueAPI(t, s.Client, "apikey", "orders", nil)

	up := newRecordingUpstream(t)
	config := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(config, []byte(`{"routes": [
		{"path_prefix": "/reports/", "scopes": ["reports:read"]},
		{"path_prefix": "/orders", "scopes": ["orders:read"]},
		{"path_prefix": "/"}
	]}`), 0o600))
	gw := startGateway(t, gatewayBin, s.Addr, verifierToken,
		"-upstream", up.srv.URL,
		"-config", config,
		"-failure-budget", "3",
	)
	auth := http.Header{"X-API-Key": {key.Key}}
	withKey := func(h http.Header) http.Header {
		h["X-API-Key"] = []string{key.Key}
		return h
	}

	t.Run("smuggled forwarding headers do not reach the upstream", func(t *testing.T) {
		resp := gw.get(t, "/orders/1", withKey(http.Header{
			"X_Forwarded_For":  {"6.6.6.6"},
			"x_forwarded_for":  {"6.6.6.6"},
			"X-Forwarded-Host": {"evil.example"},
			"X_Forwarded_Host": {"evil.example"},
			"Forwarded":        {"for=6.6.6.6"},
			"X-Real-IP":        {"6.6.6.6"},
			"X_Real_IP":        {"6.6.6.6"},
			"True-Client-IP":   {"6.6.6.6"},
		}))
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		got := up.last()
		for name, values := range got {
			v := strings.Join(values, " ")
			require.NotContains(t, v, "6.6.6.6", "header %s reached the upstream", name)
			require.NotContains(t, v, "evil.example", "header %s reached the upstream", name)
		}
		require.Equal(t, []string{"127.0.0.1"}, got.Values("X-Real-Ip"), "set by the gateway")
		require.Equal(t, []string{"127.0.0.1"}, got.Values("X-Forwarded-For"))
	})

	t.Run("method override headers do not reach the upstream", func(t *testing.T) {
		resp := gw.do(t, http.MethodPost, "/orders/1", withKey(http.Header{
			"X-HTTP-Method-Override": {"DELETE"},
			"X_HTTP_Method_Override": {"DELETE"},
			"X-Method-Override":      {"DELETE"},
			"X-HTTP-Method":          {"DELETE"},
		}))
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		for name := range up.last() {
			require.NotContains(t, strings.ToLower(strings.ReplaceAll(name, "_", "-")), "method")
		}
	})

	t.Run("a /x/ route covers /x", func(t *testing.T) {
		before := up.count()
		resp := gw.get(t, "/reports", auth)
		require.Equal(t, http.StatusForbidden, resp.status, "the key lacks reports:read: %s", resp.body)
		require.Equal(t, codeInsufficientScope, resp.code(t))
		require.Equal(t, before, up.count())
	})

	t.Run("ambiguous paths and methods are refused", func(t *testing.T) {
		before := up.count()
		for _, tc := range []struct{ method, path, code string }{
			{http.MethodGet, "/public/..;/reports/q1", "BAD_PATH"},
			{http.MethodGet, "/public%2Freports", "BAD_PATH"},
			{http.MethodGet, "/public/%252e%252e/reports/q1", "BAD_PATH"},
			{http.MethodGet, "/public/..%5Creports", "BAD_PATH"},
			{"get", "/orders/1", "BAD_METHOD"},
			{"PROPFIND", "/orders/1", "BAD_METHOD"},
		} {
			resp := gw.do(t, tc.method, tc.path, auth)
			require.Equal(t, http.StatusBadRequest, resp.status, "%s %s: %s", tc.method, tc.path, resp.body)
			require.Equal(t, tc.code, resp.code(t), "%s %s", tc.method, tc.path)
		}
		require.Equal(t, before, up.count(), "nothing reached the upstream")
	})

	t.Run("upgrades are refused", func(t *testing.T) {
		resp := gw.get(t, "/orders/ws", withKey(http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-WebSocket-Version": {"13"}, "Sec-WebSocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}))
		require.Equal(t, http.StatusBadRequest, resp.status, resp.body)
		require.Equal(t, "UPGRADE_REFUSED", resp.code(t))
	})

	t.Run("metrics only on the metrics listener", func(t *testing.T) {
		resp := gw.get(t, "/metrics", nil)
		require.Equal(t, http.StatusUnauthorized, resp.status, "a protected path like any other")
		resp = gw.metrics(t)
		require.Equal(t, http.StatusOK, resp.status)
		require.Contains(t, resp.body, `apikey_gateway_requests_total{outcome="BAD_PATH"} 4`)
		require.Contains(t, resp.body, `apikey_gateway_requests_total{outcome="BAD_METHOD"} 2`)
		require.Contains(t, resp.body, `apikey_gateway_requests_total{outcome="UPGRADE_REFUSED"} 1`)
		requireNoGatewayKeyLeak(t, resp.body, []string{key.Key})
	})

	t.Run("a flood of unknown keys stops at the failure budget", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			resp := gw.get(t, "/orders/1", http.Header{"X-API-Key": {forgeKey(t, "vk", "")}})
			require.Equal(t, http.StatusUnauthorized, resp.status, resp.body)
		}
		resp := gw.get(t, "/orders/1", http.Header{"X-API-Key": {forgeKey(t, "vk", "")}})
		require.Equal(t, http.StatusTooManyRequests, resp.status, resp.body)
		require.Equal(t, "TOO_MANY_FAILURES", resp.code(t))
		require.NotEmpty(t, resp.header.Get("Retry-After"))
		require.Contains(t, gw.metrics(t).body, `apikey_gateway_requests_total{outcome="TOO_MANY_FAILURES"} 1`)
	})
}
