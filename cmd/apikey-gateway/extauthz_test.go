package main

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// startExtAuthz serves tf's forward auth as the ext_authz gRPC service on a loopback
// port and returns a client of it.
func startExtAuthz(t *testing.T, tf *testForwardAuth) authv3.AuthorizationClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := newGRPCServer(tf.fa, nil)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest is what Envoy sends about a client at clientAddr asking method path
// with headers (lower-case names, as Envoy sends them).
func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: clientAddr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50123}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method:   method,
			Path:     path,
			Host:     "api.example.com",
			Scheme:   "https",
			Protocol: "HTTP/1.1",
			Headers:  headers,
		}},
	}}
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	require.NoError(t, err)
	return resp
}

// okHeaders are the headers an OK response sets, by name; every one must overwrite.
func okHeaders(t *testing.T, resp *authv3.CheckResponse) map[string]string {
	t.Helper()
	ok := resp.GetOkResponse()
	require.NotNil(t, ok, "want an OK response, got %v", resp)
	out := map[string]string{}
	for _, h := range ok.GetHeaders() {
		require.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h.GetAppendAction(), h.GetHeader().GetKey())
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

// deniedHeaders are the headers of a denied response, by name.
func deniedHeaders(resp *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

// TestExtAuthzGRPC: Check allows with the identity headers to set and the credentials
// (and stray identity headers) to remove, and denies with the HTTP status, headers and
// body the reverse proxy would answer.
func TestExtAuthzGRPC(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true, trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c := startExtAuthz(t, tf)
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	wrongScope := tf.vault.issue(t, "WrOnGsCoPeKeY123", "orders:read")
	limited := tf.vault.issue(t, "RaTeLiMiTeDkEy12", "orders:read")
	tf.vault.mu.Lock()
	tf.vault.answers[wrongScope]["valid"] = false
	tf.vault.answers[wrongScope]["code"] = "INSUFFICIENT_SCOPE"
	tf.vault.answers[limited]["valid"] = false
	tf.vault.answers[limited]["code"] = "RATE_LIMITED"
	tf.vault.answers[limited]["retry_after"] = 7
	tf.vault.mu.Unlock()

	t.Run("allowed", func(t *testing.T) {
		resp := check(t, c, checkRequest("GET", "/orders/1?page=2", map[string]string{
			":authority":       "api.example.com",
			":path":            "/admin",
			"authorization":    "Bearer " + key,
			"x-api-key-id":     "forged",
			"x_api_key_scopes": "*",
			"x-api-key-tenant": "evil",
			"x-forwarded-for":  "10.9.9.9, 198.18.0.1",
		}))
		require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
		require.Equal(t, map[string]string{"x-api-key-id": "AbCdEfGhIjKlMnOp", "x-api-key-role": "orders-svc", "x-api-key-scopes": "orders:read"}, okHeaders(t, resp))
		require.Equal(t, []string{"authorization", "x-api-key", "x-api-key-tenant", "x_api_key_scopes"}, resp.GetOkResponse().GetHeadersToRemove())
		require.Equal(t, []string{"orders:read"}, tf.vault.lastScopes(), "the route of the original path, not of :path")
		tf.vault.mu.Lock()
		require.Equal(t, clientAddr, tf.vault.clientIP, "the source address Envoy saw, not its x-forwarded-for")
		tf.vault.mu.Unlock()
	})

	t.Run("raw header map", func(t *testing.T) {
		req := checkRequest("GET", "/orders/1", nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-api-key", RawValue: []byte(key)}}}
		resp := check(t, c, req)
		require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode(), resp.String())
	})

	for _, tc := range []struct {
		name       string
		method     string
		path       string
		headers    map[string]string
		wantStatus int
		wantGRPC   codes.Code
		wantCode   string
		wantHeader map[string]string
	}{
		{name: "no key", method: "GET", path: "/orders/1", wantStatus: 401, wantGRPC: codes.Unauthenticated, wantCode: "MISSING",
			wantHeader: map[string]string{"www-authenticate": `Bearer realm="api"`}},
		{name: "wrong scope", method: "GET", path: "/reports/q1", headers: map[string]string{"x-api-key": wrongScope}, wantStatus: 403, wantGRPC: codes.PermissionDenied, wantCode: "INSUFFICIENT_SCOPE"},
		{name: "rate limited", method: "GET", path: "/orders/1", headers: map[string]string{"x-api-key": limited}, wantStatus: 429, wantGRPC: codes.ResourceExhausted, wantCode: "RATE_LIMITED",
			wantHeader: map[string]string{"retry-after": "7"}},
		{name: "path confusion", method: "GET", path: "/public/..;/reports/q1", headers: map[string]string{"x-api-key": key}, wantStatus: 400, wantGRPC: codes.InvalidArgument, wantCode: outcomeBadPath},
		{name: "encoded slash", method: "GET", path: "/public%2Freports", headers: map[string]string{"x-api-key": key}, wantStatus: 400, wantGRPC: codes.InvalidArgument, wantCode: outcomeBadPath},
		{name: "lower-case method", method: "get", path: "/public/x", headers: map[string]string{"x-api-key": key}, wantStatus: 400, wantGRPC: codes.InvalidArgument, wantCode: outcomeBadMethod},
		{name: "method override", method: "POST", path: "/public/x", headers: map[string]string{"x-api-key": key, "x-http-method-override": "DELETE"}, wantStatus: 400, wantGRPC: codes.InvalidArgument, wantCode: outcomeOverrideRefused},
		{name: "no path", method: "GET", path: "", headers: map[string]string{"x-api-key": key}, wantStatus: 400, wantGRPC: codes.InvalidArgument, wantCode: outcomeBadForwardAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := tf.vault.calls.Load()
			resp := check(t, c, checkRequest(tc.method, tc.path, tc.headers))
			require.Equal(t, int32(tc.wantGRPC), resp.GetStatus().GetCode())
			require.Equal(t, tc.wantCode, resp.GetStatus().GetMessage())
			denied := resp.GetDeniedResponse()
			require.NotNil(t, denied, "want a denied response, got %v", resp)
			require.Equal(t, tc.wantStatus, int(denied.GetStatus().GetCode()))
			require.Contains(t, denied.GetBody(), `"code":"`+tc.wantCode+`"`)
			h := deniedHeaders(resp)
			require.Equal(t, tc.wantCode, h["x-api-key-code"])
			require.Equal(t, "application/json", h["content-type"])
			for k, v := range tc.wantHeader {
				require.Contains(t, h[k], v, k)
			}
			if tc.wantStatus == 400 {
				require.Equal(t, calls, tf.vault.calls.Load(), "refused before verify")
			}
		})
	}

	t.Run("no source address", func(t *testing.T) {
		req := checkRequest("GET", "/orders/1", map[string]string{"x-api-key": key, "x-forwarded-for": "203.0.113.50"})
		req.Attributes.Source = nil
		resp := check(t, c, req)
		require.Equal(t, http.StatusBadRequest, int(resp.GetDeniedResponse().GetStatus().GetCode()))
		require.Equal(t, outcomeBadForwardAuth, resp.GetStatus().GetMessage())
	})
	require.NotContains(t, tf.logs.String(), key)
	require.Contains(t, tf.logs.String(), `"endpoint":"ext-authz-grpc"`)
}

// TestExtAuthzGRPCUntrustedPeer: a gRPC caller outside -trusted-proxies is denied,
// whatever it claims about the client, before any Vault call.
func TestExtAuthzGRPCUntrustedPeer(t *testing.T) {
	tf := newTestForwardAuth(t, options{stripCredentials: true}) // trusts 10.0.0.0/24, not 127.0.0.1
	c := startExtAuthz(t, tf)
	key := tf.vault.issue(t, "AbCdEfGhIjKlMnOp", "orders:read")
	resp := check(t, c, checkRequest("GET", "/orders/1", map[string]string{"x-api-key": key, "x-forwarded-for": "10.0.0.7"}))
	require.Equal(t, int32(codes.PermissionDenied), resp.GetStatus().GetCode())
	require.Equal(t, http.StatusForbidden, int(resp.GetDeniedResponse().GetStatus().GetCode()))
	require.Equal(t, outcomeUntrustedProxy, deniedHeaders(resp)["x-api-key-code"])
	require.Zero(t, tf.vault.calls.Load())
}
