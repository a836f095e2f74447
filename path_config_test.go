package apikey

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestConfig(t *testing.T) {
	e := newTestEnv(t)
	require.Equal(t, map[string]interface{}{"cache_size": defaultCacheSize, "tidy_safety_buffer": int64(3600), "tidy_interval": int64(3600), "usage_hours": 48, "usage_days": 90, "usage_counting": true, "leaked_action": "revoke", "grant_ttl": int64(5)},
		e.mustOK(logical.ReadOperation, "config", nil).Data)

	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": 2})
	require.Equal(t, 2, e.mustOK(logical.ReadOperation, "config", nil).Data["cache_size"])

	// The cache honours the new bound.
	e.writeRole("svc", nil)
	for i := 0; i < 5; i++ {
		k := e.issue("svc", nil)
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))
	}
	require.Equal(t, 2, e.b.keyCache.Len())

	for _, bad := range []interface{}{0, -1, maxCacheSize + 1, "lots"} {
		e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": bad}, "cache_size")
	}
	for _, field := range []string{"tidy_safety_buffer", "tidy_interval"} {
		e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{field: "-1s"}, field)
		e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{field: "never"}, field)
	}
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"tidy_safety_buffer": "10m", "tidy_interval": 0})
	cfg := e.mustOK(logical.ReadOperation, "config", nil).Data
	require.Equal(t, int64(600), cfg["tidy_safety_buffer"])
	require.Equal(t, int64(0), cfg["tidy_interval"])
	require.Equal(t, 2, e.mustOK(logical.ReadOperation, "config", nil).Data["cache_size"])

	// grant_ttl: 1s to 5m.
	for _, bad := range []interface{}{0, "500ms", 301, "1h", -1, "soon", 1 << 62} {
		e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"grant_ttl": bad}, "grant_ttl")
	}
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"grant_ttl": "30s"})
	require.Equal(t, int64(30), e.mustOK(logical.ReadOperation, "config", nil).Data["grant_ttl"])
	ttl, err := e.b.grantTTL(e.ctx, e.storage)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, ttl)

	// A fresh backend on the same storage (a restart) loads the stored settings.
	restarted := &testEnv{t: t, b: newBackend(), storage: e.storage, ctx: e.ctx}
	require.NoError(t, restarted.b.Setup(e.ctx, &logical.BackendConfig{StorageView: e.storage, System: e.b.System(), Logger: e.b.Logger()}))
	require.Equal(t, 2, restarted.mustOK(logical.ReadOperation, "config", nil).Data["cache_size"])
}
