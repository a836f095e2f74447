package apikeyauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	apikey "github.com/vault-apikey/vault-plugin-secrets-apikey"
)

// engineVault serves the real engine (the root package's backend, in this process) over
// Vault's HTTP API shape: /v1/<mount>/<path>, JSON bodies decoded with numbers as
// json.Number, query parameters as the data of reads, {"data": ...} answers and
// {"errors": [...]} refusals, as Vault's HTTP layer does. The root package does not
// import apikeyauth, so there is no cycle.
type engineVault struct {
	t       *testing.T
	b       logical.Backend
	storage logical.Storage
	srv     *httptest.Server
	calls   sync.Map // path -> *atomic.Int64
}

func newEngineVault(t *testing.T) *engineVault {
	t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.System = &logical.StaticSystemView{
		DefaultLeaseTTLVal: time.Hour,
		MaxLeaseTTLVal:     24 * time.Hour,
		PluginEnvironment:  &logical.PluginEnvironment{VaultVersion: "1.21.0"},
	}
	b, err := apikey.Factory(context.Background(), config)
	require.NoError(t, err)
	ev := &engineVault{t: t, b: b, storage: config.StorageView}
	ev.srv = httptest.NewServer(http.HandlerFunc(ev.serve))
	t.Cleanup(ev.srv.Close)
	return ev
}

func (ev *engineVault) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/"+DefaultMount+"/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	n, _ := ev.calls.LoadOrStore(path, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	req := &logical.Request{Path: path, Storage: ev.storage, Data: map[string]any{}}
	switch r.Method {
	case http.MethodGet:
		req.Operation = logical.ReadOperation
		for k, v := range r.URL.Query() {
			req.Data[k] = v[0]
		}
	case http.MethodPut, http.MethodPost:
		req.Operation = logical.UpdateOperation
		body, _ := io.ReadAll(r.Body)
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if err := dec.Decode(&req.Data); err != nil {
			writeErrors(w, http.StatusBadRequest, err.Error())
			return
		}
	default:
		writeErrors(w, http.StatusMethodNotAllowed, "method")
		return
	}
	resp, err := ev.b.HandleRequest(r.Context(), req)
	switch {
	case resp != nil && resp.IsError():
		writeErrors(w, http.StatusBadRequest, resp.Error().Error())
	case errors.Is(err, logical.ErrPermissionDenied):
		writeErrors(w, http.StatusForbidden, err.Error())
	case err != nil:
		writeErrors(w, http.StatusInternalServerError, err.Error())
	case resp == nil:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": resp.Data})
	}
}

func writeErrors(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
}

// do calls the backend directly (set-up: roles, keys), failing on any error.
func (ev *engineVault) do(op logical.Operation, path string, data map[string]any) *logical.Response {
	ev.t.Helper()
	resp, err := ev.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: ev.storage})
	require.NoError(ev.t, err, "%s %s", op, path)
	if resp != nil {
		require.False(ev.t, resp.IsError(), "%s %s: %v", op, path, resp.Error())
	}
	return resp
}

// issue creates role with data and returns a key of it and its key_id.
func (ev *engineVault) issue(role string, data map[string]any) (string, string) {
	ev.t.Helper()
	ev.do(logical.CreateOperation, "roles/"+role, data)
	resp := ev.do(logical.ReadOperation, "creds/"+role, nil)
	return resp.Data["api_key"].(string), resp.Data["key_id"].(string)
}

func (ev *engineVault) callCount(path string) int64 {
	if n, ok := ev.calls.Load(path); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// holders starts n middlewares with Fleet on against ev, with their loops running on
// the real clock, each with its own client (as separate processes would have).
func (ev *engineVault) holders(n int, cfg Config) []*Middleware {
	ev.t.Helper()
	cfg.Fleet = true
	out := make([]*Middleware, n)
	for i := range out {
		c := cfg
		c.Client = testClient(ev.t, ev.srv.URL)
		m, err := New(c)
		require.NoError(ev.t, err)
		ev.t.Cleanup(func() { _ = m.Close(context.Background()) })
		out[i] = m
	}
	for _, m := range out {
		require.Eventually(ev.t, func() bool { return m.fleet.healthy(time.Now()) }, 10*time.Second, 10*time.Millisecond, "the feed answers")
	}
	return out
}

// send makes one request with key through m; it returns the status and the code of a
// refusal ("" for 200).
func send(m *Middleware, key string) (int, string) {
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.RemoteAddr = peer
	r.Header.Set("X-API-Key", key)
	rec := httptest.NewRecorder()
	m.Require()(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})).ServeHTTP(rec, r)
	if rec.Code == 200 {
		return 200, ""
	}
	var body errorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body.Code
}

// TestEngineFleetMaxUses: four holders hammer one max_uses=2000 key through the real
// engine. They never admit more than 2000 in total, and admit at least 99% of it before
// the first USAGE_EXCEEDED.
func TestEngineFleetMaxUses(t *testing.T) {
	ev := newEngineVault(t)
	const maxUses = 2000
	key, _ := ev.issue("quota", map[string]any{"max_uses": maxUses, "ttl": "1h"})
	ms := ev.holders(4, Config{})

	var admitted atomic.Int64
	var atFirstRefusal atomic.Int64
	atFirstRefusal.Store(-1)
	var firstRefusal sync.Once
	var refusedAt atomic.Int64 // Unix nanoseconds of the first refusal
	var wg sync.WaitGroup
	for _, m := range ms {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if at := refusedAt.Load(); at != 0 && time.Since(time.Unix(0, at)) > 3*time.Second {
						return // long enough for the other holders' pools and returns to drain
					}
					status, code := send(m, key)
					switch {
					case status == 200:
						admitted.Add(1)
					case code == CodeUsageExceeded:
						firstRefusal.Do(func() {
							atFirstRefusal.Store(admitted.Load())
							refusedAt.Store(time.Now().UnixNano())
						})
						time.Sleep(5 * time.Millisecond)
					default:
						t.Errorf("unexpected refusal %d %s", status, code)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, m := range ms {
		require.NoError(t, m.Close(context.Background()))
	}
	total, before := admitted.Load(), atFirstRefusal.Load()
	t.Logf("max_uses=%d across 4 holders: admitted %d in total, %d (%.2f%%) before the first USAGE_EXCEEDED; Vault calls: verify %d, grants/renew %d, usage/report %d",
		maxUses, total, before, 100*float64(before)/maxUses, ev.callCount("verify"), ev.callCount("grants/renew"), ev.callCount("usage/report"))
	require.LessOrEqual(t, total, int64(maxUses), "never over-admitted")
	require.GreaterOrEqual(t, before, int64(maxUses*99/100), "at least 99% usable before the first refusal")
}

// TestEngineFleetRateShare: four holders hammer one rate-limited key through the real
// engine for a few seconds. What they admit together never exceeds the limit (its burst
// plus its rate over the run) by more than 10%; the figures are logged.
func TestEngineFleetRateShare(t *testing.T) {
	ev := newEngineVault(t)
	const rate, burst = 100.0, 10.0
	key, _ := ev.issue("rated", map[string]any{"rate_limit": rate, "rate_limit_burst": int(burst), "ttl": "1h"})
	// Shares converge within a few renewals (at half the grant TTL): short grants make
	// that happen early in a short run.
	ev.do(logical.UpdateOperation, "config", map[string]any{"grant_ttl": "1s"})
	ms := ev.holders(4, Config{})

	perHolder := make([]atomic.Int64, len(ms))
	var refused atomic.Int64
	const run = 3 * time.Second
	start := time.Now()
	deadline := start.Add(run)
	var wg sync.WaitGroup
	for i, m := range ms {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					status, code := send(m, key)
					switch {
					case status == 200:
						perHolder[i].Add(1)
					case code == CodeRateLimited:
						refused.Add(1)
						time.Sleep(time.Millisecond)
					default:
						t.Errorf("unexpected refusal %d %s", status, code)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var total int64
	var split []int64
	for i := range perHolder {
		total += perHolder[i].Load()
		split = append(split, perHolder[i].Load())
	}
	limit := burst + rate*elapsed
	t.Logf("rate %.0f/s burst %.0f across 4 holders for %.2fs: admitted %d = %.3f of the limit (%.0f), per holder %v, refused %d; Vault calls: verify %d, grants/renew %d",
		rate, burst, elapsed, total, float64(total)/limit, limit, split, refused.Load(), ev.callCount("verify"), ev.callCount("grants/renew"))
	require.LessOrEqual(t, float64(total), 1.1*limit)
}

// TestEngineFleetRevocationReachesEveryHolder: a key cached VALID for up to a minute in
// four holders is refused by every one of them soon after it is revoked, through the
// change feed; so is a disabled one.
func TestEngineFleetRevocationReachesEveryHolder(t *testing.T) {
	ev := newEngineVault(t)
	revoked, revokedID := ev.issue("svc", map[string]any{"ttl": "1h"})
	disabled, disabledID := ev.issue("svc2", map[string]any{"ttl": "1h"})
	ms := ev.holders(4, Config{})
	for _, m := range ms {
		for _, k := range []string{revoked, disabled} {
			status, _ := send(m, k)
			require.Equal(t, 200, status)
		}
	}
	verifies := ev.callCount("verify")
	for _, m := range ms {
		send(m, revoked)
		send(m, disabled)
	}
	require.Equal(t, verifies, ev.callCount("verify"), "cached")

	for _, tc := range []struct {
		name   string
		key    string
		change func()
		status int
	}{
		{name: "revoked", key: revoked, change: func() { ev.do(logical.DeleteOperation, "keys/"+revokedID, nil) }, status: 401},
		{name: "disabled", key: disabled, change: func() { ev.do(logical.UpdateOperation, "keys/"+disabledID, map[string]any{"disabled": true}) }, status: 401},
	} {
		start := time.Now()
		tc.change()
		var slowest time.Duration
		for i, m := range ms {
			require.Eventually(t, func() bool { s, _ := send(m, tc.key); return s == tc.status }, 10*time.Second, time.Millisecond, "%s: holder %d", tc.name, i)
			slowest = max(slowest, time.Since(start))
		}
		t.Logf("%s: refused by all 4 holders within %v", tc.name, slowest.Round(time.Millisecond))
	}
}
