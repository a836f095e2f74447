package apikey

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

func TestRotate(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "a:*", "ttl": "1h", "max_ttl": "2h", "max_uses": 50})
	old := e.issue("svc", map[string]interface{}{"scopes": "a:read", "name": "worker", "metadata": map[string]interface{}{"host": "w1"}})

	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID, "grace_period": "10m"})
	require.NotNil(t, resp.Secret, "the new key is a new lease")
	newKey := resp.Data["api_key"].(string)
	newID := resp.Data["key_id"].(string)
	require.NotEqual(t, old.keyID, newID)
	require.Equal(t, []string{"a:read"}, resp.Data["scopes"])
	require.Equal(t, "worker", resp.Data["name"])
	require.Equal(t, map[string]string{"host": "w1"}, resp.Data["metadata"])
	require.Equal(t, old.keyID, resp.Data["old_key_id"])
	oldExpires, err := time.Parse(time.RFC3339, resp.Data["old_expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), oldExpires, 2*time.Second)
	require.Contains(t, resp.Data, "expires_at")

	// Both verify during the grace; the old one shows its shortened expiry.
	require.Equal(t, codeValid, e.verifyCode(newKey, "a:read"))
	oldVerify := e.verify(map[string]interface{}{"api_key": old.key})
	require.Equal(t, codeValid, oldVerify["code"])
	require.Equal(t, resp.Data["old_expires_at"], oldVerify["expires_at"])
	require.Equal(t, newID, e.mustOK(logical.ReadOperation, "keys/"+old.keyID, nil).Data["replaced_by"])

	// After the grace the old key is EXPIRED; a renewal does not bring it back.
	e.b.keyCache.Purge()
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, old.keyID)
	require.NoError(t, err)
	rec.InvalidAfter = time.Now().Add(-time.Second)
	require.NoError(t, e.b.putKeyEntry(e.ctx, e.storage, rec))
	require.Equal(t, codeExpired, e.verifyCode(old.key))
	renewed := e.renew(old, time.Hour)
	require.NotEmpty(t, renewed.Warnings)
	require.Equal(t, codeExpired, e.verifyCode(old.key))
	require.Equal(t, codeValid, e.verifyCode(newKey))

	// A key can be rotated once; an expired one cannot be rotated.
	e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID}, "already rotated")
}

func TestRotateEdgeCases(t *testing.T) {
	t.Run("grace zero stops the old key at once", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		require.Equal(t, codeValid, e.verifyCode(old.key))
		resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID})
		require.Equal(t, codeExpired, e.verifyCode(old.key))
		require.Equal(t, codeValid, e.verifyCode(resp.Data["api_key"].(string)))
	})
	t.Run("grace beyond the old key's life does not extend it", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", map[string]interface{}{"ttl": "5m"})
		old := e.issue("svc", nil)
		resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID, "grace_period": "1h"})
		require.Equal(t, old.data["expires_at"], resp.Data["old_expires_at"])
	})
	t.Run("a write that landed despite an error keeps the new key", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		flaky := &failingStorage{Storage: e.storage, putLandsButFails: keyPrefix + old.keyID}
		resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
			Operation: logical.UpdateOperation, Path: "creds/svc/rotate", Storage: flaky,
			Data: map[string]interface{}{"key_id": old.keyID},
		})
		require.NoError(t, err)
		require.False(t, resp.IsError(), "%v", resp.Data)
		require.Equal(t, codeValid, e.verifyCode(resp.Data["api_key"].(string)))
		require.Equal(t, codeExpired, e.verifyCode(old.key))
	})
	t.Run("disabled key cannot be rotated", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		e.mustOK(logical.UpdateOperation, "keys/"+old.keyID, map[string]interface{}{"disabled": true})
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID}, "is disabled")
		require.Equal(t, []string{old.keyID}, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"])
	})
	t.Run("role deleted", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		e.mustOK(logical.DeleteOperation, "roles/svc", nil)
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID}, "no longer exists")
		require.Equal(t, codeValid, e.verifyCode(old.key), "a refused rotation changes nothing")
	})
	t.Run("role no longer grants the scopes", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", map[string]interface{}{"scopes": "a,b"})
		old := e.issue("svc", nil)
		e.mustOK(logical.UpdateOperation, "roles/svc", map[string]interface{}{"scopes": "a"})
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID}, `no longer grants scope "b"`)
	})
	t.Run("bad input", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID, "grace_period": "-1m"}, "grace_period")
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID, "grace_period": "later"}, "grace_period")
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": "0000000000000000"}, `role "svc" has no key 0000000000000000`)
		e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": "bad"}, "key_id must be")
		list := e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"]
		require.Equal(t, []string{old.keyID}, list, "no key issued by a refused rotation")
	})
}

// TestRotateReplayAfterPluginCrash: Vault replays a request, same ID, when the plugin
// died while handling it. The replay must hand out a working replacement, and the first
// attempt's replacement (which reached nobody) must be withdrawn.
func TestRotateReplayAfterPluginCrash(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	rotate := func(requestID string) (*logical.Response, error) {
		return e.b.HandleRequest(e.ctx, &logical.Request{
			ID: requestID, Operation: logical.UpdateOperation, Path: "creds/svc/rotate",
			Data: map[string]interface{}{"key_id": old.keyID, "grace_period": "1m"}, Storage: e.storage,
		})
	}
	first, err := rotate("req-1")
	require.NoError(t, err)
	lost := first.Data["key_id"].(string)

	replay, err := rotate("req-1")
	require.NoError(t, err)
	require.False(t, replay.IsError(), "%v", replay.Data)
	delivered := replay.Data["api_key"].(string)
	require.NotEqual(t, lost, replay.Data["key_id"])
	require.Equal(t, first.Data["old_expires_at"], replay.Data["old_expires_at"], "the grace is not restarted")
	require.Equal(t, codeValid, e.verifyCode(delivered))
	require.Equal(t, codeNotFound, e.verifyCode(first.Data["api_key"].(string)), "the undelivered key is withdrawn")
	require.Nil(t, e.do(logical.ReadOperation, "keys/"+lost, nil))

	// Another request (a client retry) is refused as before.
	e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID}, "already rotated")
	retry, err := rotate("req-2")
	require.NoError(t, err)
	require.True(t, retry.IsError())
}

// TestRotateStaysInsideTheRole: key ids are not secret, so rotation must never reach a
// key of another role through a role the caller may use.
func TestRotateStaysInsideTheRole(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("demo", map[string]interface{}{"scopes": "read"})
	e.writeRole("admin", map[string]interface{}{"scopes": "*"})
	victim := e.issue("admin", nil)
	own := e.issue("demo", nil)

	cases := []struct {
		name string
		data map[string]interface{}
		want string
	}{
		{"another role's key by key_id", map[string]interface{}{"key_id": victim.keyID, "grace_period": "0"}, `key_id: role "demo" has no key ` + victim.keyID},
		{"another role's key by api_key", map[string]interface{}{"api_key": victim.key}, `api_key: not a key of role "demo"`},
		{"a key that does not parse", map[string]interface{}{"api_key": "vk_nope"}, `api_key: not a key of role "demo"`},
		{"both key_id and api_key", map[string]interface{}{"key_id": own.keyID, "api_key": own.key}, "exactly one of key_id and api_key"},
		{"neither", map[string]interface{}{}, "exactly one of key_id and api_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.mustFail(logical.UpdateOperation, "creds/demo/rotate", tc.data, tc.want)
			require.Equal(t, codeValid, e.verifyCode(victim.key), "the victim's key still works")
			require.Equal(t, codeValid, e.verifyCode(own.key))
			require.Len(t, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], 2, "no key was issued")
		})
	}
	// The refusal for another role's key reads the same as for a key that does not exist.
	resp := e.do(logical.UpdateOperation, "creds/demo/rotate", map[string]interface{}{"key_id": victim.keyID})
	require.NotContains(t, resp.Data["error"], "admin")

	// The old path is gone.
	_, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "keys/" + victim.keyID + "/rotate", Storage: e.storage})
	require.ErrorIs(t, err, logical.ErrUnsupportedPath)
	require.Equal(t, codeValid, e.verifyCode(victim.key))
}

func TestRotateByProofOfPossession(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"api_key": old.key})
	require.Equal(t, old.keyID, resp.Data["old_key_id"])
	require.Equal(t, codeExpired, e.verifyCode(old.key))
	require.Equal(t, codeValid, e.verifyCode(resp.Data["api_key"].(string)))
	requireNoKeyInResponse(t, resp, old.key)
}

// TestRotateKeepsSpentUses: rotation must not be a way to restart max_uses.
func TestRotateKeepsSpentUses(t *testing.T) {
	for _, flushed := range []bool{false, true} {
		t.Run(map[bool]string{false: "counted in memory", true: "flushed to storage"}[flushed], func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("svc", map[string]interface{}{"max_uses": 5})
			old := e.issue("svc", nil)
			for range 3 {
				require.Equal(t, codeValid, e.verifyCode(old.key))
			}
			if flushed {
				require.NoError(t, e.b.periodic(e.ctx, &logical.Request{Storage: e.storage}))
			}
			resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID})
			newKey := resp.Data["api_key"].(string)
			read := e.mustOK(logical.ReadOperation, "keys/"+resp.Data["key_id"].(string), nil).Data
			require.Equal(t, int64(3), read["use_count"])
			require.Equal(t, int64(2), read["remaining_uses"])
			require.Equal(t, codeValid, e.verifyCode(newKey))
			require.Equal(t, codeValid, e.verifyCode(newKey))
			require.Equal(t, codeUsageExceeded, e.verifyCode(newKey))
		})
	}
}

func requireNoKeyInResponse(t *testing.T, resp *logical.Response, key string) {
	t.Helper()
	for field, v := range resp.Data {
		s, _ := v.(string)
		require.NotContains(t, s, key, "field %s", field)
	}
}
