package apikey

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
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
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(newKey, "a:read"))
	oldVerify := e.verify(map[string]interface{}{"api_key": old.key})
	require.Equal(t, verifyapi.CodeValid, oldVerify["code"])
	require.Equal(t, resp.Data["old_expires_at"], oldVerify["expires_at"])
	require.Equal(t, newID, e.mustOK(logical.ReadOperation, "keys/"+old.keyID, nil).Data["replaced_by"])

	// After the grace the old key is EXPIRED; a renewal does not bring it back.
	e.b.keyCache.Purge()
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, old.keyID)
	require.NoError(t, err)
	rec.InvalidAfter = time.Now().Add(-time.Second)
	require.NoError(t, e.b.putKeyEntry(e.ctx, e.storage, rec))
	require.Equal(t, verifyapi.CodeExpired, e.verifyCode(old.key))
	renewed := e.renew(old, time.Hour)
	require.NotEmpty(t, renewed.Warnings)
	require.Equal(t, verifyapi.CodeExpired, e.verifyCode(old.key))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(newKey))

	// A key can be rotated once; an expired one cannot be rotated.
	e.mustFail(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID}, "already rotated")
}

func TestRotateEdgeCases(t *testing.T) {
	t.Run("grace zero stops the old key at once", func(t *testing.T) {
		e := newTestEnv(t)
		e.writeRole("svc", nil)
		old := e.issue("svc", nil)
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(old.key))
		resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID})
		require.Equal(t, verifyapi.CodeExpired, e.verifyCode(old.key))
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(resp.Data["api_key"].(string)))
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
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(resp.Data["api_key"].(string)))
		require.Equal(t, verifyapi.CodeExpired, e.verifyCode(old.key))
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
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(old.key), "a refused rotation changes nothing")
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

// crashingStorage ends the calling goroutine (as a plugin crash ends the request) just
// before the first write that crashAt selects reaches storage.
type crashingStorage struct {
	logical.Storage
	crashAt func(op, key string) bool
	crashed atomic.Bool
}

func (s *crashingStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if !s.crashed.Load() && s.crashAt("put", entry.Key) {
		s.crashed.Store(true)
		runtime.Goexit()
	}
	return s.Storage.Put(ctx, entry)
}

func (s *crashingStorage) Delete(ctx context.Context, key string) error {
	if !s.crashed.Load() && s.crashAt("delete", key) {
		s.crashed.Store(true)
		runtime.Goexit()
	}
	return s.Storage.Delete(ctx, key)
}

// restart is a new plugin process on the same storage: nothing in memory survives.
func (e *testEnv) restart(t *testing.T) *testEnv {
	t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = e.storage
	config.System = testSystemView()
	raw, err := Factory(context.Background(), config)
	require.NoError(t, err)
	return &testEnv{t: t, b: raw.(*backend), storage: e.storage, ctx: context.Background()}
}

// rollBackNow runs Vault's periodic WAL rollback for entries of any age.
func (e *testEnv) rollBackNow(t *testing.T) {
	t.Helper()
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: logical.RollbackOperation, Storage: e.storage, Data: map[string]interface{}{"immediate": true},
	})
	require.NoError(t, err)
	require.False(t, resp != nil && resp.IsError(), "%v", resp)
}

// TestRotationThatDiesIsRolledBack kills a rotation between each of its writes, restarts
// the plugin, then either replays the request (as Vault does once after a plugin crash)
// or lets the WAL rollback run: the replay hands out a working key, the rollback restores
// the old key, and neither leaves a record whose key reached nobody.
func TestRotationThatDiesIsRolledBack(t *testing.T) {
	crashPoints := []struct {
		name    string
		crashAt func(oldID string) func(op, key string) bool
	}{
		{"after the WAL entry", func(oldID string) func(string, string) bool {
			return func(op, key string) bool {
				return op == "put" && strings.HasPrefix(key, keyPrefix) && key != keyPrefix+oldID
			}
		}},
		{"after the replacement", func(oldID string) func(string, string) bool {
			return func(op, key string) bool { return op == "put" && key == keyPrefix+oldID }
		}},
		{"after retiring the old key", func(string) func(string, string) bool {
			return func(op, key string) bool { return op == "delete" && strings.HasPrefix(key, "wal/") }
		}},
	}
	for _, cp := range crashPoints {
		for _, recovery := range []string{"replay", "rollback"} {
			t.Run(cp.name+" then "+recovery, func(t *testing.T) {
				e := newTestEnv(t)
				e.writeRole("svc", map[string]interface{}{"max_uses": 10})
				old := e.issue("svc", nil)
				require.Equal(t, verifyapi.CodeValid, e.verifyCode(old.key))
				require.NoError(t, e.b.periodic(e.ctx, &logical.Request{Storage: e.storage}))

				crashing := &crashingStorage{Storage: e.storage, crashAt: cp.crashAt(old.keyID)}
				request := func(s logical.Storage) *logical.Request {
					return &logical.Request{
						ID: "req-1", Operation: logical.UpdateOperation, Path: "creds/svc/rotate",
						Data: map[string]interface{}{"key_id": old.keyID}, Storage: s,
					}
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = e.b.HandleRequest(e.ctx, request(crashing))
				}()
				<-done
				require.True(t, crashing.crashed.Load(), "the rotation reached the crash point")

				restarted := e.restart(t)
				switch recovery {
				case "replay":
					resp, err := restarted.b.HandleRequest(e.ctx, request(e.storage))
					require.NoError(t, err)
					require.False(t, resp.IsError(), "%v", resp.Data)
					replacement := resp.Data["api_key"].(string)
					require.Equal(t, verifyapi.CodeValid, restarted.verifyCode(replacement))
					require.Equal(t, verifyapi.CodeExpired, restarted.verifyCode(old.key))
					require.ElementsMatch(t, []string{old.keyID, resp.Data["key_id"].(string)},
						restarted.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], "no orphaned record")
					read := restarted.mustOK(logical.ReadOperation, "keys/"+resp.Data["key_id"].(string), nil).Data
					require.Equal(t, int64(2), read["use_count"], "spent uses carried over (1 before, 1 since)")
					// A dead attempt's entry the replay did not need lingers until the
					// periodic rollback, which must leave the completed rotation alone.
					restarted.rollBackNow(t)
					require.Equal(t, verifyapi.CodeValid, restarted.verifyCode(replacement))
					require.Equal(t, verifyapi.CodeExpired, restarted.verifyCode(old.key))
				case "rollback":
					restarted.rollBackNow(t)
					require.Equal(t, verifyapi.CodeValid, restarted.verifyCode(old.key), "the old key is restored")
					require.Equal(t, []string{old.keyID}, restarted.mustOK(logical.ListOperation, "keys/", nil).Data["keys"])
					require.NotContains(t, restarted.mustOK(logical.ReadOperation, "keys/"+old.keyID, nil).Data, "replaced_by")
					// And the key can be rotated again.
					rotated := restarted.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID})
					require.Equal(t, verifyapi.CodeValid, restarted.verifyCode(rotated.Data["api_key"].(string)))
				}
				wal, err := framework.ListWAL(e.ctx, e.storage)
				require.NoError(t, err)
				require.Empty(t, wal, "no WAL entry is left")
			})
		}
	}
}

// TestRotationWALRollbackLeavesCompletedAttemptsAlone: a dead attempt's WAL entry must
// not undo a later attempt of the same request that completed, although both
// replacements share a key_id.
func TestRotationWALRollbackLeavesCompletedAttemptsAlone(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	crashing := &crashingStorage{Storage: e.storage, crashAt: func(op, key string) bool {
		return op == "put" && key == keyPrefix+old.keyID
	}}
	request := func(s logical.Storage) *logical.Request {
		return &logical.Request{ID: "req-1", Operation: logical.UpdateOperation, Path: "creds/svc/rotate",
			Data: map[string]interface{}{"key_id": old.keyID}, Storage: s}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.b.HandleRequest(e.ctx, request(crashing))
	}()
	<-done
	restarted := e.restart(t)
	resp, err := restarted.b.HandleRequest(e.ctx, request(e.storage))
	require.NoError(t, err)
	require.False(t, resp.IsError(), "%v", resp.Data)
	wal, err := framework.ListWAL(e.ctx, e.storage)
	require.NoError(t, err)
	require.Len(t, wal, 1, "the dead attempt's entry (its old key was never retired, so the replay did not find it)")

	restarted.rollBackNow(t)
	require.Equal(t, verifyapi.CodeValid, restarted.verifyCode(resp.Data["api_key"].(string)), "the delivered replacement survives")
	require.Equal(t, verifyapi.CodeExpired, restarted.verifyCode(old.key))
	wal, err = framework.ListWAL(e.ctx, e.storage)
	require.NoError(t, err)
	require.Empty(t, wal)
}

// TestRotationOfACompletedRotationIsRefused: a rotation that answered is never undone
// by another request (a client's retry has its own request id).
func TestRotationOfACompletedRotationIsRefused(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	rotate := func(id string) (*logical.Response, error) {
		return e.b.HandleRequest(e.ctx, &logical.Request{ID: id, Operation: logical.UpdateOperation,
			Path: "creds/svc/rotate", Data: map[string]interface{}{"key_id": old.keyID}, Storage: e.storage})
	}
	first, err := rotate("req-1")
	require.NoError(t, err)
	again, err := rotate("req-2")
	require.NoError(t, err)
	require.True(t, again.IsError())
	require.Contains(t, again.Data["error"], "already rotated")
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(first.Data["api_key"].(string)))
	e.rollBackNow(t)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(first.Data["api_key"].(string)))
}

// TestRotationReplayAfterAnsweredCrash: the plugin died after the rotation completed but
// before its answer left the process, and Vault sends the same request again. The
// replay recognises its own replacement (its key_id comes from the request id), undoes
// it and hands out a working key; the undelivered key is dead.
func TestRotationReplayAfterAnsweredCrash(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	rotate := func(b *backend) *logical.Response {
		resp, err := b.HandleRequest(e.ctx, &logical.Request{ID: "req-1", Operation: logical.UpdateOperation,
			Path: "creds/svc/rotate", Data: map[string]interface{}{"key_id": old.keyID}, Storage: e.storage})
		require.NoError(t, err)
		require.False(t, resp.IsError(), "%v", resp.Data)
		return resp
	}
	lost := rotate(e.b)
	restarted := e.restart(t)
	delivered := rotate(restarted.b)
	require.Equal(t, lost.Data["key_id"], delivered.Data["key_id"])
	require.Equal(t, verifyapi.CodeValid, restarted.verifyCode(delivered.Data["api_key"].(string)))
	require.Equal(t, verifyapi.CodeNotFound, restarted.verifyCode(lost.Data["api_key"].(string)))
	require.Equal(t, verifyapi.CodeExpired, restarted.verifyCode(old.key))
	require.Len(t, restarted.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], 2)
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
			require.Equal(t, verifyapi.CodeValid, e.verifyCode(victim.key), "the victim's key still works")
			require.Equal(t, verifyapi.CodeValid, e.verifyCode(own.key))
			require.Len(t, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], 2, "no key was issued")
		})
	}
	// The refusal for another role's key reads the same as for a key that does not exist.
	resp := e.do(logical.UpdateOperation, "creds/demo/rotate", map[string]interface{}{"key_id": victim.keyID})
	require.NotContains(t, resp.Data["error"], "admin")

	// The old path is gone.
	_, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "keys/" + victim.keyID + "/rotate", Storage: e.storage})
	require.ErrorIs(t, err, logical.ErrUnsupportedPath)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(victim.key))
}

func TestRotateByProofOfPossession(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"api_key": old.key})
	require.Equal(t, old.keyID, resp.Data["old_key_id"])
	require.Equal(t, verifyapi.CodeExpired, e.verifyCode(old.key))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(resp.Data["api_key"].(string)))
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
				require.Equal(t, verifyapi.CodeValid, e.verifyCode(old.key))
			}
			if flushed {
				require.NoError(t, e.b.periodic(e.ctx, &logical.Request{Storage: e.storage}))
			}
			resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID})
			newKey := resp.Data["api_key"].(string)
			read := e.mustOK(logical.ReadOperation, "keys/"+resp.Data["key_id"].(string), nil).Data
			require.Equal(t, int64(3), read["use_count"])
			require.Equal(t, int64(2), read["remaining_uses"])
			require.Equal(t, verifyapi.CodeValid, e.verifyCode(newKey))
			require.Equal(t, verifyapi.CodeValid, e.verifyCode(newKey))
			require.Equal(t, verifyapi.CodeUsageExceeded, e.verifyCode(newKey))
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

// TestGraceDoesNotMultiplyLimits: during a grace period the old key's uses and rate are
// charged to its replacement, so rotating with a grace never adds uses or rate.
func TestGraceDoesNotMultiplyLimits(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 10})
	old := e.issue("svc", nil)
	for range 9 {
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(old.key))
	}
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"api_key": old.key, "grace_period": "1h"})
	replacement := resp.Data["api_key"].(string)
	again := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"api_key": replacement, "grace_period": "1h"})
	third := again.Data["api_key"].(string)

	valid := 0
	for _, k := range []string{old.key, replacement, third, old.key, replacement, third} {
		if e.verifyCode(k) == verifyapi.CodeValid {
			valid++
		}
	}
	require.Equal(t, 1, valid, "10 uses in all, whichever key of the chain spends them")
	read := e.mustOK(logical.ReadOperation, "keys/"+again.Data["key_id"].(string), nil).Data
	require.Equal(t, int64(0), read["remaining_uses"])

	// A rate limit is shared the same way.
	e.writeRole("rated", map[string]interface{}{"rate_limit": 0.001, "rate_limit_burst": 1})
	r := e.issue("rated", nil)
	rotated := e.mustOK(logical.UpdateOperation, "creds/rated/rotate", map[string]interface{}{"api_key": r.key, "grace_period": "1h"})
	codes := []string{e.verifyCode(r.key), e.verifyCode(rotated.Data["api_key"].(string))}
	require.ElementsMatch(t, []string{verifyapi.CodeValid, verifyapi.CodeRateLimited}, codes, "one token between the two keys")
}

// TestRotationKeepsRoleMetadataAuthoritative: a rotation is an issue, so the role's
// metadata of now wins over pairs the old key was issued with.
func TestRotationKeepsRoleMetadataAuthoritative(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("tenant", nil)
	k := e.issue("tenant", map[string]interface{}{"metadata": map[string]interface{}{"tenant": "evil", "host": "h1"}})
	e.mustOK(logical.UpdateOperation, "roles/tenant", map[string]interface{}{"metadata": map[string]interface{}{"tenant": "acme"}})

	resp := e.mustOK(logical.UpdateOperation, "creds/tenant/rotate", map[string]interface{}{"api_key": k.key})
	require.Equal(t, map[string]string{"tenant": "acme", "host": "h1"}, resp.Data["metadata"])
	require.Len(t, resp.Warnings, 1)
	require.Contains(t, resp.Warnings[0], `"tenant" now comes from the role`)
	v := e.verify(map[string]interface{}{"api_key": resp.Data["api_key"].(string)})
	require.Equal(t, map[string]string{"tenant": "acme", "host": "h1"}, v["metadata"])
}

func TestRotationMetadataOfKeysIssuedWithout(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"metadata": map[string]interface{}{"team": "a", "old": "x"}})
	k := e.issue("svc", nil)
	e.mustOK(logical.UpdateOperation, "roles/svc", map[string]interface{}{"metadata": map[string]interface{}{"team": "b"}})
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": k.keyID})
	require.Equal(t, map[string]string{"team": "b"}, resp.Data["metadata"], "exactly the role's pairs of now")
	require.Empty(t, resp.Warnings)
}

// TestStaleRollbackLeavesACompletedRotation: the rollback manager reads a WAL entry
// before it takes the key's lock; if the rotation completed meanwhile (its entry gone),
// the rollback must not undo it.
func TestStaleRollbackLeavesACompletedRotation(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	old := e.issue("svc", nil)
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID})
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, old.keyID)
	require.NoError(t, err)
	stale := map[string]interface{}{"old_key_id": old.keyID, "new_key_id": resp.Data["key_id"], "token": rec.RotationToken}
	require.NoError(t, e.b.walRollback(e.ctx, &logical.Request{Storage: e.storage}, walKindRotation, stale))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(resp.Data["api_key"].(string)))
	require.Equal(t, verifyapi.CodeExpired, e.verifyCode(old.key))
}
