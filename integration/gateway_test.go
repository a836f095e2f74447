//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// gatewayCacheTTL is the gateway's -cache-ttl in this test: the bound on how long a
// revoked key may still pass.
const gatewayCacheTTL = 2 * time.Second

// TestGateway runs the gateway binary ($GATEWAY_BIN) between a client and an upstream
// service, verifying keys against a real Vault with the plugin, with a token that only
// has the verifier policy.
func TestGateway(t *testing.T) {
	t.Parallel()

	s := Setup(t)
	root := s.RootToken
	verifierToken := s.VerifierToken(t)
	s.MustCLI(t, root, "write", "apikey/roles/orders", "scopes=orders:read,orders:write", "ttl=1h", "max_ttl=24h")
	key := issueAPI(t, s.Client, "apikey", "orders", map[string]interface{}{"name": "checkout"})
	toRevoke := issueAPI(t, s.Client, "apikey", "orders", nil)
	neverVerified := issueAPI(t, s.Client, "apikey", "orders", nil)
	s.MustCLI(t, root, "write", "apikey/roles/metered", "scopes=orders:read", "ttl=1h", "max_uses=2")
	metered := issueAPI(t, s.Client, "apikey", "metered", nil)
	allKeys := []string{key.Key, toRevoke.Key, neverVerified.Key, metered.Key}

	up := newRecordingUpstream(t)
	config := filepath.Join(t.TempDir(), "routes.json")
	require.NoError(t, os.WriteFile(config, []byte(`{"routes": [
		{"path_prefix": "/orders", "methods": ["GET"], "scopes": ["orders:read"]},
		{"path_prefix": "/orders", "methods": ["POST"], "scopes": ["orders:write"]},
		{"path_prefix": "/admin", "scopes": ["admin:all"]}
	]}`), 0o600))
	gw := startGateway(t, gatewayBin, s.Addr, verifierToken,
		"-upstream", up.srv.URL+"/api",
		"-config", config,
		"-cache-ttl", gatewayCacheTTL.String(),
		"-log-level", "debug",
	)

	t.Run("valid key passes with identity headers and without the credential", func(t *testing.T) {
		resp := gw.get(t, "/orders/42", http.Header{
			"Authorization":  {"Bearer " + key.Key},
			"X-Api-Key-Id":   {"forged-by-client"},
			"X_Api_Key_Role": {"admin"},
		})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		require.Equal(t, "upstream saw /api/orders/42", resp.body)
		got := up.last()
		require.Equal(t, key.KeyID, got.Get("X-Api-Key-Id"))
		require.Equal(t, []string{key.KeyID}, got.Values("X-Api-Key-Id"), "the forged value is gone")
		require.Equal(t, "orders", got.Get("X-Api-Key-Role"))
		require.Equal(t, "orders:read,orders:write", got.Get("X-Api-Key-Scopes"))
		require.Empty(t, got.Values("X_Api_Key_Role"))
		require.Empty(t, got.Values("Authorization"))
		require.Empty(t, got.Values("X-Api-Key"))
		requireNoGatewayKeyLeak(t, fmt.Sprint(got), allKeys)

		// The same through X-API-Key, on another route.
		resp = gw.do(t, http.MethodPost, "/orders", http.Header{"X-API-Key": {key.Key}})
		require.Equal(t, http.StatusOK, resp.status, resp.body)
		require.Empty(t, up.last().Values("X-Api-Key"))
	})

	t.Run("wrong scope is 403", func(t *testing.T) {
		before := up.count()
		resp := gw.get(t, "/admin/users", http.Header{"Authorization": {"Bearer " + key.Key}})
		require.Equal(t, http.StatusForbidden, resp.status, resp.body)
		require.Equal(t, codeInsufficientScope, resp.code(t))
		require.Contains(t, resp.header.Get("WWW-Authenticate"), `error="insufficient_scope"`)
		require.Equal(t, before, up.count(), "nothing reached the upstream")
	})

	t.Run("missing, malformed and unknown keys are 401", func(t *testing.T) {
		for name, h := range map[string]http.Header{
			"missing":   nil,
			"malformed": {"X-API-Key": {"vk_definitely-not-a-key"}},
			"unknown":   {"X-API-Key": {forgeKey(t, "vk", "")}},
		} {
			resp := gw.get(t, "/orders/1", h)
			require.Equal(t, http.StatusUnauthorized, resp.status, "%s: %s", name, resp.body)
			require.True(t, strings.HasPrefix(resp.header.Get("WWW-Authenticate"), `Bearer realm="api"`), name)
		}
	})

	t.Run("revoked key is refused within the cache bound", func(t *testing.T) {
		auth := http.Header{"Authorization": {"Bearer " + toRevoke.Key}}
		require.Equal(t, http.StatusOK, gw.get(t, "/orders/1", auth).status) // now cached as VALID
		require.NoError(t, s.Client.Sys().Revoke(toRevoke.LeaseID))
		revokedAt := time.Now()
		var last gatewayResponse
		eventually(t, gatewayCacheTTL+5*time.Second, func() error {
			last = gw.get(t, "/orders/1", auth)
			if last.status != http.StatusUnauthorized {
				return fmt.Errorf("gateway still answers %d", last.status)
			}
			return nil
		})
		took := time.Since(revokedAt)
		t.Logf("revoked key refused %s after revocation (cache ttl %s)", took.Round(time.Millisecond), gatewayCacheTTL)
		// Poll interval and request time on a loaded machine on top of the cache bound.
		require.Less(t, took, gatewayCacheTTL+1500*time.Millisecond)
		require.Equal(t, codeNotFound, last.code(t))
	})

	// A VALID answer with remaining_uses is never cached: every request is counted by Vault.
	t.Run("max_uses is counted per request", func(t *testing.T) {
		auth := http.Header{"X-API-Key": {metered.Key}}
		require.Equal(t, http.StatusOK, gw.get(t, "/orders/1", auth).status)
		require.Equal(t, http.StatusOK, gw.get(t, "/orders/1", auth).status)
		resp := gw.get(t, "/orders/1", auth)
		require.Equal(t, http.StatusTooManyRequests, resp.status, resp.body)
		require.Equal(t, "USAGE_EXCEEDED", resp.code(t))
	})

	t.Run("metrics count outcomes", func(t *testing.T) {
		resp := gw.metrics(t)
		require.Equal(t, http.StatusOK, resp.status)
		require.Contains(t, resp.body, `apikey_gateway_requests_total{outcome="VALID"}`)
		require.Contains(t, resp.body, `apikey_gateway_requests_total{outcome="INSUFFICIENT_SCOPE"} 1`)
		require.Contains(t, resp.body, `apikey_gateway_verify_duration_seconds_count{result="ok"}`)
		require.Contains(t, resp.body, `apikey_gateway_cache_lookups_total{result="hit"}`)
		requireNoGatewayKeyLeak(t, resp.body, allKeys)
	})

	t.Run("Vault stopped: 503", func(t *testing.T) {
		s.Stop(t)
		// A key the gateway has never seen cannot be served from its cache.
		resp := gw.get(t, "/orders/1", http.Header{"X-API-Key": {neverVerified.Key}})
		require.Equal(t, http.StatusServiceUnavailable, resp.status, resp.body)
		require.Equal(t, "VERIFY_UNAVAILABLE", resp.code(t))
		// And a cached VALID result runs out: fail closed.
		time.Sleep(gatewayCacheTTL)
		resp = gw.get(t, "/orders/1", http.Header{"Authorization": {"Bearer " + key.Key}})
		require.Equal(t, http.StatusServiceUnavailable, resp.status, resp.body)
		// Liveness does not depend on Vault.
		require.Equal(t, http.StatusOK, gw.get(t, "/healthz", nil).status)
	})

	t.Run("SIGTERM shuts down cleanly", func(t *testing.T) {
		require.NoError(t, gw.Signal(syscall.SIGTERM))
		select {
		case <-gw.Exited():
		case <-time.After(20 * time.Second):
			t.Fatal("gateway did not exit within 20s of SIGTERM")
		}
		require.Equal(t, 0, gw.ExitCode(), "exit status")
	})

	t.Run("the gateway log never contains a key", func(t *testing.T) {
		b, err := os.ReadFile(gw.LogPath)
		require.NoError(t, err)
		log := string(b)
		require.Contains(t, log, key.KeyID, "the access log names key_ids")
		requireNoGatewayKeyLeak(t, log, allKeys)
	})
}

func requireNoGatewayKeyLeak(t *testing.T, text string, keys []string) {
	t.Helper()
	for _, k := range keys {
		require.NotContains(t, text, k, "a key leaked")
	}
}

// gatewayProcess is a gateway started by a test, with a client for its listeners.
type gatewayProcess struct {
	*vaulttest.Gateway
	client *http.Client
}

// startGateway runs the gateway binary bin on a free port, with its metrics listener on
// another, against the Vault at vaultAddr with token (no client retries: the test sees
// the gateway's own handling of a failing Vault), and waits until /healthz answers. It
// is killed in t.Cleanup if still running; a failed test gets its log.
func startGateway(t *testing.T, bin, vaultAddr, token string, args ...string) *gatewayProcess {
	t.Helper()
	gw, err := vaulttest.StartGateway(context.Background(), vaulttest.GatewayOptions{
		Bin:             bin,
		Dir:             t.TempDir(),
		VaultAddr:       vaultAddr,
		VaultToken:      token,
		Env:             []string{"VAULT_MAX_RETRIES=0"},
		Args:            args,
		MetricsListener: true,
		Cleaner:         t,
	})
	require.NoError(t, err, "gateway did not start")
	// Registered after the gateway's kill, so it runs before it; a failed test no longer
	// sends requests, so the log is complete.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- gateway log %s ----\n%s---- end of gateway log ----", gw.LogPath, gw.LogText())
		}
	})
	return &gatewayProcess{Gateway: gw, client: &http.Client{Timeout: 30 * time.Second}}
}

type gatewayResponse struct {
	status int
	header http.Header
	body   string
}

func (r gatewayResponse) code(t *testing.T) string {
	t.Helper()
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &body), "error body: %s", r.body)
	require.NotEmpty(t, body.Error)
	return body.Code
}

func (g *gatewayProcess) get(t *testing.T, path string, h http.Header) gatewayResponse {
	t.Helper()
	return g.do(t, http.MethodGet, path, h)
}

// metrics reads /metrics from the metrics listener.
func (g *gatewayProcess) metrics(t *testing.T) gatewayResponse {
	t.Helper()
	return g.request(t, http.MethodGet, g.MetricsAddr+"/metrics", nil)
}

func (g *gatewayProcess) do(t *testing.T, method, path string, h http.Header) gatewayResponse {
	t.Helper()
	return g.request(t, method, g.Addr+path, h)
}

func (g *gatewayProcess) request(t *testing.T, method, url string, h http.Header) gatewayResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v // as given: the test sends non-canonical names on purpose
	}
	resp, err := g.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return gatewayResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// recordingUpstream is the service behind the gateway; it keeps the headers it saw.
type recordingUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		_, _ = io.WriteString(w, "upstream saw "+r.URL.Path)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *recordingUpstream) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return http.Header{}
	}
	return u.seen[len(u.seen)-1]
}

func (u *recordingUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}
