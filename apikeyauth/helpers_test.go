package apikeyauth

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
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
	Tags  []string `json:"tags"`
	Token string   `json:"-"`
}

// fakeVault stands in for Vault's HTTP API: PUT /v1/<mount>/verify answers
// {"data": respond(request)}.
type fakeVault struct {
	t       *testing.T
	srv     *httptest.Server
	calls   atomic.Int64
	mu      sync.Mutex
	last    verifyRequest
	status  int            // 0: 200
	errors  []string       // with a non-200 status
	data    map[string]any // the verify response data
	respond func(verifyRequest) map[string]any
	// hold, when set, blocks every call until it is closed.
	hold chan struct{}
}

func newFakeVault(t *testing.T, mount string) *fakeVault {
	t.Helper()
	fv := &fakeVault{t: t}
	mux := http.NewServeMux()
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

func (fv *fakeVault) client(t *testing.T) *api.Client {
	t.Helper()
	return testClient(t, fv.srv.URL)
}

func testClient(t *testing.T, addr string) *api.Client {
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
func newKey(t *testing.T) string {
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
	t     *testing.T
	vault *fakeVault
	clock *fakeClock
	mw    *Middleware
	logs  *syncBuffer
	obs   *countingObserver
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, vault: newFakeVault(t, orDefault(strings.Trim(cfg.Mount, "/"), DefaultMount)), clock: newFakeClock(), logs: &syncBuffer{}, obs: newCountingObserver()}
	if cfg.Client == nil {
		cfg.Client = h.vault.client(t)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Observer = h.obs
	mw, err := New(cfg)
	require.NoError(t, err)
	mw.now = h.clock.Now
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
	decisions   map[string]int
	hits, miss  int
	verifyCalls int
	verifyErrs  int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{decisions: map[string]int{}}
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
