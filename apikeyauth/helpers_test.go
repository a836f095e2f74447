package apikeyauth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// verifyRequest is what the fake Vault received on /v1/<mount>/verify.
type verifyRequest struct {
	APIKey   string   `json:"api_key"`
	Scopes   []string `json:"scopes"`
	ClientIP string   `json:"client_ip"`
	Cost     *int     `json:"cost"`
	// RequestID is the same for every retry of one verify call.
	RequestID string `json:"request_id"`
	// Tags is nil when the request had no tags field.
	Tags []string `json:"tags"`
	// The grant request (Config.Fleet).
	GrantHolder string   `json:"grant_holder"`
	GrantUses   *int64   `json:"grant_uses"`
	GrantRate   *float64 `json:"grant_rate"`
	Token       string   `json:"-"`
	// Fields are the names of every field of the request body.
	Fields []string `json:"-"`
}

// fakeVault stands in for Vault's HTTP API: PUT /v1/<mount>/verify answers
// {"data": respond(request)}.
type fakeVault struct {
	t       testing.TB
	srv     *httptest.Server
	mux     *http.ServeMux
	calls   atomic.Int64
	mu      sync.Mutex
	last    verifyRequest
	status  int            // 0: 200
	errors  []string       // with a non-200 status
	data    map[string]any // the verify response data
	respond func(verifyRequest) map[string]any
	// hold, when set, blocks every call until it is closed.
	hold chan struct{}
	// clock, when set, is the fake engine's clock (fleetfake_test.go).
	clock *fakeClock
}

func (fv *fakeVault) clockNow() time.Time {
	fv.mu.Lock()
	c := fv.clock
	fv.mu.Unlock()
	if c == nil {
		return time.Now()
	}
	return c.Now()
}

func newFakeVault(t testing.TB, mount string) *fakeVault {
	t.Helper()
	mux := http.NewServeMux()
	fv := &fakeVault{t: t, mux: mux}
	mux.HandleFunc("/v1/"+mount+"/verify", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		fv.calls.Add(1)
		var req verifyRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, `{"errors":["bad json"]}`, http.StatusBadRequest)
			return
		}
		req.Token = r.Header.Get("X-Vault-Token")
		var raw map[string]any
		_ = json.Unmarshal(body, &raw)
		for f := range raw {
			req.Fields = append(req.Fields, f)
		}
		fv.mu.Lock()
		fv.last = req
		status, errs, data, respond, hold := fv.status, fv.errors, fv.data, fv.respond, fv.hold
		fv.mu.Unlock()
		// Like the engine: a bad tag is a 400 (which the middleware turns into 503).
		if _, err := usagestats.ParseTags(req.Tags); err != nil {
			status, errs = http.StatusBadRequest, []string{err.Error()}
		}
		if hold != nil {
			<-hold
		}
		w.Header().Set("Content-Type", "application/json")
		if status != 0 && status != http.StatusOK {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": errs})
			return
		}
		if respond != nil {
			data = respond(req)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
	})
	fv.srv = httptest.NewServer(mux)
	t.Cleanup(fv.srv.Close)
	return fv
}

func (fv *fakeVault) set(f func(fv *fakeVault)) {
	fv.mu.Lock()
	defer fv.mu.Unlock()
	f(fv)
}

func (fv *fakeVault) lastRequest() verifyRequest {
	fv.mu.Lock()
	defer fv.mu.Unlock()
	return fv.last
}

func (fv *fakeVault) client(t testing.TB) *api.Client {
	t.Helper()
	return testClient(t, fv.srv.URL)
}

func testClient(t testing.TB, addr string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	require.NoError(t, cfg.Error)
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Second
	c, err := api.NewClient(cfg)
	require.NoError(t, err)
	c.SetToken("test-token")
	return c
}

// fakeClock is the middleware's clock in tests, so that cache expiry is exact.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newKey returns a well-formed key (it parses locally; the fake Vault decides the rest).
func newKey(t testing.TB) string {
	t.Helper()
	key, _, err := keyformat.Generate("vk")
	require.NoError(t, err)
	return key
}

// validData is a VALID verify answer for a key expiring in expiresIn.
func validData(now time.Time, expiresIn time.Duration) map[string]any {
	return answer(CodeValid, now, expiresIn)
}

func answer(code string, now time.Time, expiresIn time.Duration) map[string]any {
	if code == CodeMalformed || code == CodeNotFound {
		return map[string]any{"valid": false, "code": code}
	}
	return map[string]any{
		"valid":      code == CodeValid,
		"code":       code,
		"key_id":     "AbCdEfGhIjKlMnOp",
		"role":       "orders-svc",
		"name":       "checkout",
		"scopes":     []string{"orders:read", "orders:write"},
		"metadata":   map[string]string{"team": "payments"},
		"expires_at": now.Add(expiresIn).Format(time.RFC3339),
		"ttl":        int64(expiresIn / time.Second),
	}
}

// harness is a Middleware against a fake Vault with a fake clock, a captured log and an
// observer counting events.
type harness struct {
	t     testing.TB
	vault *fakeVault
	clock *fakeClock
	mw    *Middleware
	logs  *syncBuffer
	obs   *countingObserver
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, hooks{noLoops: true})
}

// newHarnessWith is newHarness with hooks (the clock is always the harness's).
func newHarnessWith(t testing.TB, cfg Config, hk hooks) *harness {
	t.Helper()
	h := &harness{t: t, vault: newFakeVault(t, orDefault(strings.Trim(cfg.Mount, "/"), DefaultMount)), clock: newFakeClock(), logs: &syncBuffer{}, obs: newCountingObserver()}
	if cfg.Client == nil {
		cfg.Client = h.vault.client(t)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Observer = h.obs
	hk.now = h.clock.Now
	mw, err := newMiddleware(cfg, hk)
	require.NoError(t, err)
	t.Cleanup(func() { _ = mw.Close(context.Background()) })
	h.mw = mw
	return h
}

// identityHandler answers 200 with the request's identity as JSON.
func identityHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		if !ok {
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(id)
	})
}

// do sends one request with the key in X-API-Key through Require(scopes...).
func (h *harness) do(key string, scopes ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.RemoteAddr = "198.51.100.7:40000"
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	return h.serve(r, scopes...)
}

func (h *harness) serve(r *http.Request, scopes ...string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.mw.Require(scopes...)(identityHandler()).ServeHTTP(rec, r)
	return rec
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

type countingObserver struct {
	mu          sync.Mutex
	calls       map[string]int // FleetCall, by kind
	decisions   map[string]int
	hits, miss  int
	verifyCalls int
	verifyErrs  int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{decisions: map[string]int{}, calls: map[string]int{}}
}

func (o *countingObserver) FleetCall(call string, _ time.Duration, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[call]++
}

func (o *countingObserver) fleetCalls() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.calls)
}

func (o *countingObserver) decided(code string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.decisions[code]
}

func (o *countingObserver) Decision(code string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decisions[code]++
}

func (o *countingObserver) CacheLookup(hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hit {
		o.hits++
	} else {
		o.miss++
	}
}

func (o *countingObserver) VerifyCall(_ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.verifyCalls++
	if err != nil {
		o.verifyErrs++
	}
}

func (o *countingObserver) misses() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.miss
}
