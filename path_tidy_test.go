package apikey

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func setExpiry(t *testing.T, e *testEnv, keyID string, expires time.Time) {
	t.Helper()
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, keyID)
	require.NoError(t, err)
	rec.ExpiresAt = expires
	require.NoError(t, e.b.putKeyEntry(e.ctx, e.storage, rec))
}

func TestTidyRemovesOnlyExpiredRecords(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	live := e.issue("svc", nil)
	recent := e.issue("svc", nil) // expired, but within the safety buffer
	old := e.issue("svc", nil)    // expired long ago: its lease is gone
	rotated := e.issue("svc", nil)
	setExpiry(t, e, recent.keyID, time.Now().Add(-90*time.Second))
	setExpiry(t, e, old.keyID, time.Now().Add(-2*time.Hour))
	// A rotated-out key stops verifying at once but its lease lives on: keep its record.
	e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": rotated.keyID})

	got := e.mustOK(logical.UpdateOperation, "tidy", nil).Data
	require.Equal(t, map[string]interface{}{"scanned": 5, "deleted": 1, "usage_deleted": 0, "anomalies_deleted": 0, "imported_deleted": 0}, got)

	list := e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"].([]string)
	require.NotContains(t, list, old.keyID)
	require.Contains(t, list, live.keyID)
	require.Contains(t, list, recent.keyID)
	require.Contains(t, list, rotated.keyID)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(live.key))
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(old.key))
	require.NoError(t, e.revoke(old), "the lease of a tidied key still revokes")

	// With the smallest buffer the recently expired record goes too, the live one stays.
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"tidy_safety_buffer": 0}, "at least 1m")
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"tidy_safety_buffer": "1m"})
	got = e.mustOK(logical.UpdateOperation, "tidy", nil).Data
	require.Equal(t, 1, got["deleted"])
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(live.key))
}

func TestPeriodicFlushesUsageAndTidies(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	k := e.issue("svc", nil)
	expired := e.issue("svc", nil)
	setExpiry(t, e, expired.keyID, time.Now().Add(-2*time.Hour))
	for i := 0; i < 3; i++ {
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))
	}
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, k.keyID)
	require.NoError(t, err)
	require.Zero(t, rec.UseCount, "verify itself writes nothing")

	require.NoError(t, e.b.periodic(e.ctx, &logical.Request{Storage: e.storage}))
	rec, err = e.b.storageKeyEntry(e.ctx, e.storage, k.keyID)
	require.NoError(t, err)
	require.Equal(t, int64(3), rec.UseCount)
	require.WithinDuration(t, time.Now(), rec.LastUsedAt, 2*time.Second)
	gone, err := e.b.storageKeyEntry(e.ctx, e.storage, expired.keyID)
	require.NoError(t, err)
	require.Nil(t, gone, "the first periodic run tidies")

	// The flushed counts show in list -detailed and survive a restart of the backend.
	info := e.mustOK(logical.ListOperation, "keys/", nil).Data["key_info"].(map[string]interface{})
	require.Equal(t, int64(3), info[k.keyID].(map[string]interface{})["use_count"])
	restarted := &testEnv{t: t, b: newBackend(), storage: e.storage, ctx: e.ctx}
	require.NoError(t, restarted.b.Setup(e.ctx, &logical.BackendConfig{StorageView: e.storage, System: e.b.System(), Logger: e.b.Logger()}))
	require.Equal(t, int64(3), restarted.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data["use_count"])
}
