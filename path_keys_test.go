package apikey

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

func TestKeysListReadUpdateDelete(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "a,b", "max_uses": 10, "bound_cidrs": "10.0.0.0/8"})
	k1 := e.issue("svc", map[string]interface{}{"name": "first"})
	k2 := e.issue("svc", nil)

	list := e.mustOK(logical.ListOperation, "keys/", nil).Data
	require.ElementsMatch(t, []string{k1.keyID, k2.keyID}, list["keys"])
	info := list["key_info"].(map[string]interface{})
	first := info[k1.keyID].(map[string]interface{})
	require.Equal(t, "svc", first["role"])
	require.Equal(t, "first", first["name"])
	require.Equal(t, k1.data["expires_at"], first["expires_at"])
	require.Equal(t, false, first["disabled"])

	read := e.mustOK(logical.ReadOperation, "keys/"+k1.keyID, nil).Data
	require.Equal(t, k1.keyID, read["key_id"])
	require.Equal(t, []string{"a", "b"}, read["scopes"])
	require.Equal(t, int64(10), read["max_uses"])
	require.Equal(t, []string{"10.0.0.0/8"}, read["bound_cidrs"])
	require.NotContains(t, read, "hash")
	require.NotContains(t, read, "api_key")

	updated := e.mustOK(logical.UpdateOperation, "keys/"+k1.keyID, map[string]interface{}{
		"disabled": true, "name": "renamed", "metadata": map[string]interface{}{"owner": "ops"},
	}).Data
	require.Equal(t, true, updated["disabled"])
	read = e.mustOK(logical.ReadOperation, "keys/"+k1.keyID, nil).Data
	require.Equal(t, "renamed", read["name"])
	require.Equal(t, map[string]string{"owner": "ops"}, read["metadata"])
	require.Equal(t, true, read["disabled"])

	e.mustOK(logical.DeleteOperation, "keys/"+k1.keyID, nil)
	require.Nil(t, e.do(logical.ReadOperation, "keys/"+k1.keyID, nil))
	require.Equal(t, codeNotFound, e.verifyCode(k1.key))
	require.Equal(t, codeValid, e.verify(map[string]interface{}{"api_key": k2.key, "client_ip": "10.0.0.1"})["code"])
	list = e.mustOK(logical.ListOperation, "keys/", nil).Data
	require.Equal(t, []string{k2.keyID}, list["keys"])

	// Deleting again is fine; the lease's later revoke is a no-op.
	e.mustOK(logical.DeleteOperation, "keys/"+k1.keyID, nil)
	require.NoError(t, e.revoke(k1))
}

func TestKeysRejects(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	k := e.issue("svc", nil)
	before := e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data

	cases := []struct {
		name string
		op   logical.Operation
		path string
		data map[string]interface{}
		want string
	}{
		{"bad key_id read", logical.ReadOperation, "keys/short", nil, "key_id must be"},
		{"bad key_id delete", logical.DeleteOperation, "keys/a..b", nil, "key_id must be"},
		{"unknown key update", logical.UpdateOperation, "keys/0000000000000000", map[string]interface{}{"disabled": true}, "does not exist"},
		{"disabled not bool", logical.UpdateOperation, "keys/" + k.keyID, map[string]interface{}{"disabled": "maybe"}, "disabled"},
		{"name control char", logical.UpdateOperation, "keys/" + k.keyID, map[string]interface{}{"name": "a\tb"}, "name"},
		{"name too long", logical.UpdateOperation, "keys/" + k.keyID, map[string]interface{}{"name": strings.Repeat("x", 500)}, "name"},
		{"metadata empty key", logical.UpdateOperation, "keys/" + k.keyID, map[string]interface{}{"metadata": map[string]interface{}{"": "v"}}, "metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.mustFail(tc.op, tc.path, tc.data, tc.want)
			require.Equal(t, before, e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data)
		})
	}
}

func TestRotate(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "a:*", "ttl": "1h", "max_ttl": "2h", "max_uses": 50})
	old := e.issue("svc", map[string]interface{}{"scopes": "a:read", "name": "worker", "metadata": map[string]interface{}{"host": "w1"}})

	resp := e.mustOK(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", map[string]interface{}{"grace_period": "10m"})
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
	e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", nil, "already rotated")
}

func TestRotateEdgeCases(t *testing.T) {
	t.Run("grace zero stops the old key at once", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		require.Equal(t, codeValid, e.verifyCode(old.key))
		resp := e.mustOK(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", nil)
		require.Equal(t, codeExpired, e.verifyCode(old.key))
		require.Equal(t, codeValid, e.verifyCode(resp.Data["api_key"].(string)))
	})
	t.Run("grace beyond the old key's life does not extend it", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", map[string]interface{}{"ttl": "5m"})
		old := e.issue("svc", nil)
		resp := e.mustOK(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", map[string]interface{}{"grace_period": "1h"})
		require.Equal(t, old.data["expires_at"], resp.Data["old_expires_at"])
	})
	t.Run("a write that landed despite an error keeps the new key", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		flaky := &failingStorage{Storage: e.storage, putLandsButFails: keyPrefix + old.keyID}
		resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
			Operation: logical.UpdateOperation, Path: "keys/" + old.keyID + "/rotate", Storage: flaky,
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
		e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", nil, "is disabled")
		require.Equal(t, []string{old.keyID}, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"])
	})
	t.Run("role deleted", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		e.mustOK(logical.DeleteOperation, "roles/svc", nil)
		e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", nil, "no longer exists")
		require.Equal(t, codeValid, e.verifyCode(old.key), "a refused rotation changes nothing")
	})
	t.Run("role no longer grants the scopes", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", map[string]interface{}{"scopes": "a,b"})
		old := e.issue("svc", nil)
		e.mustOK(logical.UpdateOperation, "roles/svc", map[string]interface{}{"scopes": "a"})
		e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", nil, `no longer grants scope "b"`)
	})
	t.Run("bad input", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", map[string]interface{}{"grace_period": "-1m"}, "grace_period")
		e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", map[string]interface{}{"grace_period": "later"}, "grace_period")
		e.mustFail(logical.UpdateOperation, "keys/0000000000000000/rotate", nil, "does not exist")
		e.mustFail(logical.UpdateOperation, "keys/bad/rotate", nil, "key_id must be")
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
			ID: requestID, Operation: logical.UpdateOperation, Path: "keys/" + old.keyID + "/rotate",
			Data: map[string]interface{}{"grace_period": "1m"}, Storage: e.storage,
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
	e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/rotate", nil, "already rotated")
	retry, err := rotate("req-2")
	require.NoError(t, err)
	require.True(t, retry.IsError())
}
