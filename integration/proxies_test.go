//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// proxiesDir holds the configs the proxies run with: the shipped ones.
const proxiesDir = "../docs/proxies"

// Loopback addresses: the proxies (and the Envoy stand-in) connect from
// trustedLoopback, the only network the gateway trusts; otherLoopback is a client, and
// a stranger when it calls the gateway itself.
const (
	trustedLoopback = "127.0.0.1"
	otherLoopback   = "127.0.0.2"
)

// proxyKeys are the keys one proxy's tests use (rate limits are per key, so each
// proxy gets its own).
type proxyKeys struct {
	orders  issued // orders:read, orders:write
	limited issued // orders:read, 1 request per 100 s
	bound   issued // orders:read, only from otherLoopback
	plain   issued // no scopes
}

// TestProxies runs Debian's nginx and Caddy with the configs of docs/proxies (only
// their addresses changed) in front of a recording upstream, asking the gateway binary
// in forward-auth mode, against a real Vault with the plugin, and asks the gateway's
// Envoy ext_authz endpoints (gRPC and HTTP) as Envoy would, with Go clients: Envoy,
// like Traefik, is not packaged here. A missing nginx or caddy fails the test.
func TestProxies(t *testing.T) {
	t.Parallel()
	nginxBin, err := vaulttest.ProxyBinary("nginx", "NGINX_BIN")
	require.NoError(t, err, "the proxy tests need nginx")
	caddyBin, err := vaulttest.ProxyBinary("caddy", "CADDY_BIN")
	require.NoError(t, err, "the proxy tests need caddy")

	s := Setup(t)
	root := s.RootToken
	verifierToken := s.VerifierToken(t)
	s.MustCLI(t, root, "write", "apikey/roles/orders", "scopes=orders:read,orders:write", "ttl=1h")
	s.MustCLI(t, root, "write", "apikey/roles/limited", "scopes=orders:read", "ttl=1h", "rate_limit=0.01", "rate_limit_burst=1")
	s.MustCLI(t, root, "write", "apikey/roles/bound", "scopes=orders:read", "ttl=1h", "bound_cidrs="+otherLoopback+"/32")
	s.MustCLI(t, root, "write", "apikey/roles/plain", "ttl=1h")
	newKeys := func() proxyKeys {
		return proxyKeys{
			orders:  issueAPI(t, s.Client, "apikey", "orders", nil),
			limited: issueAPI(t, s.Client, "apikey", "limited", nil),
			bound:   issueAPI(t, s.Client, "apikey", "bound", nil),
			plain:   issueAPI(t, s.Client, "apikey", "plain", nil),
		}
	}
	nginxKeys, caddyKeys, envoyKeys := newKeys(), newKeys(), newKeys()
	var allKeys []string
	for _, k := range []proxyKeys{nginxKeys, caddyKeys, envoyKeys} {
		allKeys = append(allKeys, k.orders.Key, k.limited.Key, k.bound.Key, k.plain.Key)
	}

	up := newRecordingUpstream(t)
	routes := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(routes, []byte(`{"routes": [
		{"path_prefix": "/orders", "methods": ["GET"], "scopes": ["orders:read"]},
		{"path_prefix": "/orders", "methods": ["POST"], "scopes": ["orders:write"]},
		{"path_prefix": "/admin", "scopes": ["admin:all"]},
		{"path_prefix": "/public"}
	]}`), 0o600))
	gw, grpcAddr := startForwardAuthGateway(t, s.Addr, verifierToken,
		"-config", routes, "-trusted-proxies", trustedLoopback+"/32", "-log-level", "debug")

	render := func(file string) func(listen string) (string, error) {
		b, err := os.ReadFile(filepath.Join(proxiesDir, file))
		require.NoError(t, err)
		return func(listen string) (string, error) {
			return vaulttest.RenderDocsConfig(string(b), map[string]string{
				vaulttest.DocsProxyAddr:    listen,
				vaulttest.DocsGatewayAddr:  strings.TrimPrefix(gw.Addr, "http://"),
				vaulttest.DocsUpstreamAddr: strings.TrimPrefix(up.srv.URL, "http://"),
			})
		}
	}
	ctx := context.Background()
	nginx, err := vaulttest.StartNginx(ctx, vaulttest.ProxyOptions{Bin: nginxBin, Dir: t.TempDir(), Config: render("nginx.conf"), AccessLog: true, Cleaner: t})
	require.NoError(t, err)
	caddy, err := vaulttest.StartCaddy(ctx, vaulttest.ProxyOptions{Bin: caddyBin, Dir: t.TempDir(), Config: render("Caddyfile"), Cleaner: t})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*vaulttest.Proxy{nginx, caddy} {
				t.Logf("---- %s log %s ----\n%s---- end of %s log ----", p.Name, p.LogPath, p.LogTail(60), p.Name)
			}
		}
	})

	t.Run("nginx", func(t *testing.T) { testThroughProxy(t, nginx, up, nginxKeys, false) })
	t.Run("caddy", func(t *testing.T) { testThroughProxy(t, caddy, up, caddyKeys, true) })
	t.Run("envoy ext_authz gRPC", func(t *testing.T) { testEnvoyGRPC(t, grpcAddr, envoyKeys) })
	t.Run("envoy ext_authz HTTP", func(t *testing.T) { testEnvoyHTTP(t, gw.Addr, envoyKeys) })

	t.Run("a stranger asking the gateway itself is refused", func(t *testing.T) {
		resp := proxyRequest(t, clientFrom(otherLoopback), http.MethodGet, gw.Addr+"/forward-auth", http.Header{
			"X-Forwarded-Method": {"GET"},
			"X-Forwarded-Uri":    {"/orders/1"},
			"X-Forwarded-For":    {otherLoopback},
			"X-Api-Key":          {nginxKeys.bound.Key},
		})
		require.Equal(t, http.StatusForbidden, resp.status, resp.body)
		require.Equal(t, "UNTRUSTED_PROXY", resp.header.Get("X-Api-Key-Code"))
		require.Empty(t, resp.header.Get("X-Api-Key-Id"))

		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(otherLoopback)}}
				return d.DialContext(ctx, "tcp", addr)
			}))
		require.NoError(t, err)
		defer conn.Close()
		cr := envoyCheck(t, authv3.NewAuthorizationClient(conn), "GET", "/orders/1", otherLoopback, map[string]string{"x-api-key": nginxKeys.bound.Key})
		require.Equal(t, int32(codes.PermissionDenied), cr.GetStatus().GetCode())
		require.Equal(t, http.StatusForbidden, int(cr.GetDeniedResponse().GetStatus().GetCode()))
		require.Equal(t, "UNTRUSTED_PROXY", cr.GetStatus().GetMessage())
	})

	t.Run("Vault stopped: 503 through every proxy", func(t *testing.T) {
		s.Stop(t)
		for _, p := range []*vaulttest.Proxy{nginx, caddy} {
			// A key the gateway has not cached needs Vault: fail closed.
			resp := proxyRequest(t, clientFrom(trustedLoopback), http.MethodGet, p.Addr+"/orders/1", http.Header{"X-API-Key": {forgeKey(t, "vk", "")}})
			require.Equal(t, http.StatusServiceUnavailable, resp.status, "%s: %s", p.Name, resp.body)
			require.Equal(t, "VERIFY_UNAVAILABLE", resp.header.Get("X-Api-Key-Code"), p.Name)
		}
	})

	t.Run("no key in the logs", func(t *testing.T) {
		for _, text := range []string{gw.LogText(), nginx.LogText(), caddy.LogText(), readFile(t, filepath.Join(filepath.Dir(nginx.LogPath), "logs", "access.log"))} {
			requireNoGatewayKeyLeak(t, text, allKeys)
		}
		require.Contains(t, gw.LogText(), nginxKeys.orders.KeyID, "the gateway's log names key_ids")
	})
}

// testThroughProxy sends clients' requests through a proxy configured as in
// docs/proxies and checks what the client gets and what reaches the upstream.
// unknownIdentityRemoved: the proxy also removes X-Api-Key-* names the gateway does
// not set (Caddy's wildcard; nginx cannot without a module).
func testThroughProxy(t *testing.T, p *vaulttest.Proxy, up *recordingUpstream, keys proxyKeys, unknownIdentityRemoved bool) {
	client := clientFrom(trustedLoopback)
	get := func(path string, h http.Header) proxiedResponse {
		return proxyRequest(t, client, http.MethodGet, p.Addr+path, h)
	}

	t.Run("allowed: identity headers at the upstream, credential and forged headers gone", func(t *testing.T) {
		before := up.count()
		resp := get("/orders/42?expand=items", http.Header{
			"Authorization":    {"Bearer " + keys.orders.Key},
			"X-Api-Key-Id":     {"forged-id"},
			"X-Api-Key-Role":   {"forged-admin"},
			"X-Api-Key-Scopes": {"forged:*"},
			"X_Api_Key_Role":   {"forged-admin"},
			"X-Api-Key-Tenant": {"forged-tenant"},
			"X-Forwarded-For":  {"6.6.6.6"},
			"X_Forwarded_For":  {"6.6.6.6"},
			"X-Real-IP":        {"6.6.6.6"},
			"Forwarded":        {"for=6.6.6.6"},
		})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		require.Equal(t, "upstream saw /orders/42", resp.body)
		require.Equal(t, before+1, up.count())
		got := up.last()
		require.Equal(t, []string{keys.orders.KeyID}, got.Values("X-Api-Key-Id"))
		require.Equal(t, []string{"orders"}, got.Values("X-Api-Key-Role"))
		require.Equal(t, []string{"orders:read,orders:write"}, got.Values("X-Api-Key-Scopes"))
		require.Empty(t, got.Values("Authorization"), "credential removed")
		require.Empty(t, got.Values("X-Api-Key"))
		require.Equal(t, []string{trustedLoopback}, got.Values("X-Forwarded-For"), "the proxy's view of the client")
		for name, values := range got {
			v := strings.Join(values, " ")
			require.NotContains(t, v, keys.orders.Key, "header %s carries the key", name)
			require.NotContains(t, v, "6.6.6.6", "header %s reaches the upstream", name)
			if unknownIdentityRemoved || !strings.EqualFold(name, "X-Api-Key-Tenant") {
				require.NotContains(t, v, "forged", "header %s reaches the upstream", name)
			}
		}

		// The key in X-API-Key, on a route that needs another scope.
		resp = proxyRequest(t, client, http.MethodPost, p.Addr+"/orders", http.Header{"X-API-Key": {keys.orders.Key}})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		require.Empty(t, up.last().Values("X-Api-Key"))

		// A key without scopes: the answer's X-Api-Key-Scopes is empty, and the client's
		// copy still never arrives.
		resp = get("/public/x", http.Header{"X-API-Key": {keys.plain.Key}, "X-Api-Key-Scopes": {"forged:*"}})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		got = up.last()
		require.Equal(t, []string{keys.plain.KeyID}, got.Values("X-Api-Key-Id"))
		require.Equal(t, []string{"plain"}, got.Values("X-Api-Key-Role"))
		for _, v := range got.Values("X-Api-Key-Scopes") {
			require.Empty(t, v, "X-Api-Key-Scopes of a key without scopes")
		}
	})

	t.Run("401 without a key or with an unknown key", func(t *testing.T) {
		before := up.count()
		resp := get("/orders/1", nil)
		require.Equal(t, http.StatusUnauthorized, resp.status, resp.body)
		require.Len(t, resp.header.Values("WWW-Authenticate"), 1, "%v", resp.header)
		require.True(t, strings.HasPrefix(resp.header.Get("WWW-Authenticate"), `Bearer realm="api"`), resp.header.Get("WWW-Authenticate"))
		resp = get("/orders/1", http.Header{"X-API-Key": {forgeKey(t, "vk", "")}})
		require.Equal(t, http.StatusUnauthorized, resp.status, resp.body)
		require.Equal(t, codeNotFound, resp.header.Get("X-Api-Key-Code"))
		require.Contains(t, resp.header.Get("WWW-Authenticate"), `error="invalid_token"`)
		require.Equal(t, before, up.count(), "nothing reached the upstream")
	})

	t.Run("403 for a wrong scope", func(t *testing.T) {
		before := up.count()
		resp := get("/admin/users", http.Header{"Authorization": {"Bearer " + keys.orders.Key}})
		require.Equal(t, http.StatusForbidden, resp.status, resp.body)
		require.Equal(t, codeInsufficientScope, resp.header.Get("X-Api-Key-Code"))
		require.Equal(t, codeInsufficientScope, resp.code(t))
		require.Equal(t, []string{`Bearer realm="api", error="insufficient_scope", scope="admin:all"`}, resp.header.Values("WWW-Authenticate"))
		require.Equal(t, before, up.count())
	})

	t.Run("429 with Retry-After over the rate limit", func(t *testing.T) {
		auth := http.Header{"X-API-Key": {keys.limited.Key}}
		require.Equal(t, http.StatusOK, get("/orders/1", auth).status)
		before := up.count()
		resp := get("/orders/1", auth)
		require.Equal(t, http.StatusTooManyRequests, resp.status, resp.body)
		require.Equal(t, codeRateLimited, resp.header.Get("X-Api-Key-Code"))
		require.Equal(t, codeRateLimited, resp.code(t))
		require.Len(t, resp.header.Values("Retry-After"), 1)
		retry, err := strconv.Atoi(resp.header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After %q", resp.header.Get("Retry-After"))
		require.True(t, retry >= 1 && retry <= 100, "Retry-After %d", retry)
		require.Equal(t, before, up.count())
	})

	t.Run("the client address is the one the proxy saw", func(t *testing.T) {
		auth := http.Header{"X-API-Key": {keys.bound.Key}, "X-Forwarded-For": {otherLoopback}}
		resp := get("/orders/1", auth)
		require.Equal(t, http.StatusForbidden, resp.status, "bound to %s, sent from %s: %s", otherLoopback, trustedLoopback, resp.body)
		require.Equal(t, codeForbiddenIP, resp.header.Get("X-Api-Key-Code"))
		resp = proxyRequest(t, clientFrom(otherLoopback), http.MethodGet, p.Addr+"/orders/1", auth)
		require.Equal(t, http.StatusOK, resp.status, resp.body)
	})

	t.Run("path and method confusion is refused", func(t *testing.T) {
		before := up.count()
		auth := http.Header{"X-API-Key": {keys.orders.Key}}
		for _, target := range []string{"/public/..;/admin/users", "/public%2F..%2Fadmin", "/public/%252e%252e/admin", "/ADMIN/users"} {
			resp := get(target, auth)
			require.Equal(t, http.StatusBadRequest, resp.status, "%s: %s", target, resp.body)
			require.Equal(t, "BAD_PATH", resp.header.Get("X-Api-Key-Code"), target)
		}
		resp := proxyRequest(t, client, http.MethodPost, p.Addr+"/public/x", http.Header{"X-API-Key": {keys.orders.Key}, "X-HTTP-Method-Override": {"DELETE"}})
		require.Equal(t, http.StatusBadRequest, resp.status, resp.body)
		require.Equal(t, "OVERRIDE_REFUSED", resp.header.Get("X-Api-Key-Code"))
		resp = get("/nowhere", auth)
		require.Equal(t, http.StatusNotFound, resp.status, resp.body)
		require.Equal(t, before, up.count(), "nothing reached the upstream")
	})
}

// testEnvoyGRPC asks envoy.service.auth.v3.Authorization/Check as Envoy would.
func testEnvoyGRPC(t *testing.T, grpcAddr string, keys proxyKeys) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)

	resp := envoyCheck(t, c, "GET", "/orders/42?expand=items", "192.0.2.44", map[string]string{
		"authorization":    "Bearer " + keys.orders.Key,
		"x-api-key-id":     "forged-id",
		"x_api_key_role":   "forged-admin",
		"x-api-key-tenant": "forged-tenant",
	})
	require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode(), resp.String())
	ok := resp.GetOkResponse()
	require.NotNil(t, ok)
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		require.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h.GetAppendAction())
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	require.Equal(t, map[string]string{"x-api-key-id": keys.orders.KeyID, "x-api-key-role": "orders", "x-api-key-scopes": "orders:read,orders:write"}, set)
	require.Equal(t, []string{"authorization", "x-api-key", "x-api-key-tenant", "x_api_key_role"}, ok.GetHeadersToRemove())
	require.NotContains(t, resp.String(), keys.orders.Key)

	for _, tc := range []struct {
		name, method, path, source string
		headers                    map[string]string
		wantStatus                 int
		wantCode                   string
	}{
		{name: "no key", method: "GET", path: "/orders/1", source: "192.0.2.44", wantStatus: 401, wantCode: "MISSING"},
		{name: "wrong scope", method: "GET", path: "/admin/x", source: "192.0.2.44", headers: map[string]string{"x-api-key": keys.orders.Key}, wantStatus: 403, wantCode: codeInsufficientScope},
		{name: "bound elsewhere", method: "GET", path: "/orders/1", source: "192.0.2.44", headers: map[string]string{"x-api-key": keys.bound.Key}, wantStatus: 403, wantCode: codeForbiddenIP},
		{name: "path confusion", method: "GET", path: "/public/..;/admin/x", source: "192.0.2.44", headers: map[string]string{"x-api-key": keys.orders.Key}, wantStatus: 400, wantCode: "BAD_PATH"},
	} {
		resp := envoyCheck(t, c, tc.method, tc.path, tc.source, tc.headers)
		require.NotEqual(t, int32(codes.OK), resp.GetStatus().GetCode(), tc.name)
		denied := resp.GetDeniedResponse()
		require.NotNil(t, denied, tc.name)
		require.Equal(t, tc.wantStatus, int(denied.GetStatus().GetCode()), tc.name)
		require.Contains(t, denied.GetBody(), `"code":"`+tc.wantCode+`"`, tc.name)
	}
	require.Equal(t, int32(codes.OK), envoyCheck(t, c, "GET", "/orders/1", otherLoopback, map[string]string{"x-api-key": keys.bound.Key}).GetStatus().GetCode(),
		"the source address Envoy saw is the client")

	require.Equal(t, int32(codes.OK), envoyCheck(t, c, "GET", "/orders/1", "192.0.2.44", map[string]string{"x-api-key": keys.limited.Key}).GetStatus().GetCode())
	resp = envoyCheck(t, c, "GET", "/orders/1", "192.0.2.44", map[string]string{"x-api-key": keys.limited.Key})
	require.Equal(t, int32(codes.ResourceExhausted), resp.GetStatus().GetCode())
	require.Equal(t, http.StatusTooManyRequests, int(resp.GetDeniedResponse().GetStatus().GetCode()))
	var retryAfter string
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "retry-after" {
			retryAfter = h.GetHeader().GetValue()
		}
	}
	require.NotEmpty(t, retryAfter)
}

// envoyCheck sends Envoy's description of a request from source.
func envoyCheck(t *testing.T, c authv3.AuthorizationClient, method, path, source string, headers map[string]string) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example.com", Scheme: "http", Protocol: "HTTP/1.1", Headers: headers,
		}},
	}})
	require.NoError(t, err)
	return resp
}

// testEnvoyHTTP asks the ext_authz HTTP endpoint as Envoy's http_service with
// path_prefix /ext-authz would: the original method, the prefix before the original
// path, the allowed headers, x-forwarded-for with the client appended.
func testEnvoyHTTP(t *testing.T, gatewayAddr string, keys proxyKeys) {
	client := clientFrom(trustedLoopback)
	resp := proxyRequest(t, client, http.MethodPost, gatewayAddr+"/ext-authz/orders", http.Header{
		"Authorization":   {"Bearer " + keys.orders.Key},
		"X-Api-Key-Id":    {"forged-id"},
		"X-Forwarded-For": {"6.6.6.6, 192.0.2.44"},
	})
	require.Equal(t, http.StatusOK, resp.status, resp.body)
	require.Equal(t, keys.orders.KeyID, resp.header.Get("X-Api-Key-Id"))
	require.Equal(t, "orders", resp.header.Get("X-Api-Key-Role"))
	require.Equal(t, "orders:read,orders:write", resp.header.Get("X-Api-Key-Scopes"))
	require.Equal(t, "authorization, x-api-key", resp.header.Get("X-Envoy-Auth-Headers-To-Remove"))

	resp = proxyRequest(t, client, http.MethodGet, gatewayAddr+"/ext-authz/admin/x", http.Header{"Authorization": {"Bearer " + keys.orders.Key}, "X-Forwarded-For": {"192.0.2.44"}})
	require.Equal(t, http.StatusForbidden, resp.status, resp.body)
	require.Equal(t, codeInsufficientScope, resp.code(t))
	resp = proxyRequest(t, client, http.MethodGet, gatewayAddr+"/ext-authz/orders/1", http.Header{"X-Forwarded-For": {"192.0.2.44"}})
	require.Equal(t, http.StatusUnauthorized, resp.status, resp.body)
	resp = proxyRequest(t, client, http.MethodGet, gatewayAddr+"/ext-authz/orders/1", http.Header{"X-Api-Key": {keys.bound.Key}, "X-Forwarded-For": {"6.6.6.6, " + otherLoopback}})
	require.Equal(t, http.StatusOK, resp.status, "the right-most untrusted hop is the client: %s", resp.body)
}

// startForwardAuthGateway runs the gateway binary in forward-auth mode with its
// ext_authz gRPC listener, against the Vault at vaultAddr with token; a failed test
// gets its log.
func startForwardAuthGateway(t *testing.T, vaultAddr, token string, args ...string) (*vaulttest.Gateway, string) {
	t.Helper()
	gw, grpcAddr, err := vaulttest.StartGatewayWithGRPC(context.Background(), vaulttest.GatewayOptions{
		Bin:        gatewayBin,
		Name:       "gateway-forward-auth",
		Dir:        t.TempDir(),
		VaultAddr:  vaultAddr,
		VaultToken: token,
		Env:        []string{"VAULT_MAX_RETRIES=0"},
		Args:       append([]string{"-mode", "forward-auth"}, args...),
		Cleaner:    t,
	})
	require.NoError(t, err, "gateway did not start")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- gateway log %s ----\n%s---- end of gateway log ----", gw.LogPath, gw.LogTail(80))
		}
	})
	return gw, grpcAddr
}

// clientFrom is an HTTP client whose connections come from the loopback address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
	}
}

type proxiedResponse = gatewayResponse

// proxyRequest sends one request with the headers h exactly as given (non-canonical
// names included) and reads the whole answer.
func proxyRequest(t *testing.T, client *http.Client, method, url string, h http.Header) proxiedResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	require.NoError(t, err, "%s %s", method, url)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return proxiedResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err, fmt.Sprintf("reading %s", path))
	return string(b)
}
