package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// engineServer serves the real engine (in this process) over Vault's HTTP API shape at
// /v1/apikey/, as apikeyauth's fleetengine_test.go does, and counts calls per path.
type engineServer struct {
	t       *testing.T
	b       logical.Backend
	storage logical.Storage
	srv     *httptest.Server
	mu      sync.Mutex
	calls   map[string]int
}

func newEngineServer(t *testing.T) *engineServer {
	t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.System = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour, PluginEnvironment: &logical.PluginEnvironment{VaultVersion: "1.21.0"}}
	b, err := apikey.Factory(context.Background(), config)
	require.NoError(t, err)
	es := &engineServer{t: t, b: b, storage: config.StorageView, calls: map[string]int{}}
	es.srv = httptest.NewServer(http.HandlerFunc(es.serve))
	t.Cleanup(es.srv.Close)
	return es
}

func (es *engineServer) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/apikey/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	req := &logical.Request{Path: path, Storage: es.storage, Data: map[string]any{}, Operation: logical.UpdateOperation}
	es.mu.Lock()
	es.calls[path]++
	es.mu.Unlock()
	if r.Method == http.MethodGet {
		req.Operation = logical.ReadOperation
		for k, v := range r.URL.Query() {
			req.Data[k] = v[0]
		}
	} else {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		_ = dec.Decode(&req.Data)
	}
	resp, err := es.b.HandleRequest(r.Context(), req)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case resp != nil && resp.IsError():
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{resp.Error().Error()}})
	case errors.Is(err, logical.ErrPermissionDenied):
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"permission denied"}})
	case err != nil:
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{err.Error()}})
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"data": resp.Data})
	}
}

func (es *engineServer) do(op logical.Operation, path string, data map[string]any) *logical.Response {
	es.t.Helper()
	resp, err := es.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: es.storage})
	require.NoError(es.t, err)
	require.False(es.t, resp != nil && resp.IsError(), "%s %s: %v", op, path, resp)
	return resp
}

func (es *engineServer) count(path string) int {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.calls[path]
}

// TestRunFleet runs the gateway with -fleet (from the environment) against the real
// engine: a metered key is served from grants with a handful of Vault calls, the calls
// are counted by kind in the metrics, and shutdown returns the unused uses and sends
// the last usage report.
func TestRunFleet(t *testing.T) {
	es := newEngineServer(t)
	es.do(logical.CreateOperation, "roles/quota", map[string]any{"max_uses": 1000, "ttl": "1h"})
	creds := es.do(logical.ReadOperation, "creds/quota", nil)
	key := creds.Data["api_key"].(string)
	up := newUpstream(t)
	t.Setenv("VAULT_ADDR", es.srv.URL)
	t.Setenv("VAULT_TOKEN", "test-token")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	addr, stop, logs := startRun(t, []string{"-upstream", up.srv.URL, "-metrics-listen", "127.0.0.1:0"},
		map[string]string{"APIKEY_GATEWAY_FLEET": "true", "APIKEY_GATEWAY_FEED_TIMEOUT": "3s"})
	maddr := metricsAddr(t, logs)

	const n = 100
	for i := range n {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/orders", nil)
		require.NoError(t, err)
		req.Header.Set("X-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "request %d", i)
	}
	_, body := get(t, "http://"+maddr+"/metrics")
	metrics := metricLines(body)
	verifies, _ := strconv.Atoi(metrics[`apikey_gateway_vault_calls_total{call="verify"}`])
	require.Positive(t, verifies)
	require.Less(t, verifies, 10, "served from grants")
	require.Equal(t, strconv.Itoa(es.count("verify")), metrics[`apikey_gateway_vault_calls_total{call="verify"}`])
	require.Contains(t, metrics, `apikey_gateway_vault_calls_total{call="renew"}`)
	require.Contains(t, metrics, `apikey_gateway_vault_calls_total{call="report"}`)
	require.NotEqual(t, "0", metrics[`apikey_gateway_vault_calls_total{call="feed"}`])

	require.NoError(t, stop())
	require.Positive(t, es.count("grants/renew"), "the grant was returned at shutdown")
	require.Positive(t, es.count("usage/report"), "the last report was sent at shutdown")
	answer := es.do(logical.UpdateOperation, "verify", map[string]any{"api_key": key, "cost": 0})
	res, err := verifyapi.DecodeResponse(answer.Data)
	require.NoError(t, err)
	require.EqualValues(t, 1000-n, *res.RemainingUses, "exactly the uses admitted are spent")
	require.NotContains(t, logs.String(), key)
	require.NotContains(t, logs.String(), "failed")
}
