package apikeyauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// requestIDPattern is what verify accepts as request_id.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// TestVerifySendsARequestIDPerCall: each verify call carries a fresh request_id.
func TestVerifySendsARequestIDPerCall(t *testing.T) {
	h := newHarness(t, Config{CacheSize: -1})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	key := newKey(t)

	require.Equal(t, 200, h.do(key).Code)
	first := h.vault.lastRequest().RequestID
	require.Regexp(t, requestIDPattern, first)
	require.Len(t, first, 32, "16 random bytes in hex")

	require.Equal(t, 200, h.do(key).Code)
	second := h.vault.lastRequest().RequestID
	require.Regexp(t, requestIDPattern, second)
	require.NotEqual(t, first, second, "another call, another id")
}

// TestVerifyRetriesKeepTheRequestID: the API client's own retry after a 5xx resends the
// same request_id, so that Vault can answer it without charging the key again.
func TestVerifyRetriesKeepTheRequestID(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req verifyRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		ids = append(ids, req.RequestID)
		n := len(ids)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"try again"}})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": validData(time.Now(), time.Hour)})
	}))
	t.Cleanup(srv.Close)

	cfg := api.DefaultConfig()
	require.NoError(t, cfg.Error)
	cfg.Address = srv.URL
	cfg.MaxRetries = 1
	cfg.MinRetryWait = time.Millisecond
	cfg.MaxRetryWait = 5 * time.Millisecond
	client, err := api.NewClient(cfg)
	require.NoError(t, err)
	client.SetToken("test-token")
	mw, err := New(Config{Client: client})
	require.NoError(t, err)

	res, err := mw.Verify(context.Background(), newKey(t), nil, netip.Addr{}, 1)
	require.NoError(t, err)
	require.True(t, res.Valid)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, ids, 2, "one retry")
	require.Regexp(t, requestIDPattern, ids[0])
	require.Equal(t, ids[0], ids[1])
}
