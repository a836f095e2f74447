package apikey

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestRenewExtendsUpToMaxTTL(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("r", map[string]interface{}{"ttl": "10m", "max_ttl": "30m"})
	k := e.issue("r", nil)

	resp := e.renew(k, 20*time.Minute)
	require.Equal(t, 20*time.Minute, resp.Secret.TTL)
	read := e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
	require.InDelta(t, (20 * time.Minute).Seconds(), float64(read["ttl"].(int64)), 2)

	// Asking for more than max_ttl allows is capped at issue time + max_ttl.
	resp = e.renew(k, 5*time.Hour)
	require.InDelta(t, (30 * time.Minute).Seconds(), resp.Secret.TTL.Seconds(), 2)
	require.NotEmpty(t, resp.Warnings)
	read = e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
	require.InDelta(t, (30 * time.Minute).Seconds(), float64(read["ttl"].(int64)), 2)

	// Past max_ttl a renewal is refused.
	expired := k
	old := *k.secret
	old.IssueTime = time.Now().Add(-31 * time.Minute)
	expired.secret = &old
	resp = e.renew(expired, time.Minute)
	require.True(t, resp.IsError())
}

func TestRenewOfDeletedKeyFails(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("r", nil)
	k := e.issue("r", nil)
	e.mustOK(logical.DeleteOperation, "keys/"+k.keyID, nil)
	resp := e.renew(k, time.Minute)
	require.True(t, resp.IsError())
	require.Contains(t, resp.Error().Error(), "no longer exists")
}

func TestRevokeIsIdempotentAndSurvivesRoleDeletion(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("r", nil)
	k := e.issue("r", nil)
	other := e.issue("r", nil)

	e.mustOK(logical.DeleteOperation, "roles/r", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key), "role deletion does not revoke keys")

	require.NoError(t, e.revoke(k))
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key))
	require.NoError(t, e.revoke(k), "second revoke is a success")
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(other.key), "only the revoked key is affected")

	// A lease without key_id (should never exist) revokes as a no-op, not an error.
	noID := *k.secret
	noID.InternalData = map[string]interface{}{"secret_type": secretTypeAPIKey}
	require.NoError(t, e.revoke(issued{secret: &noID}))
}

func TestRevokeReturnsTransientStorageErrors(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("r", nil)
	k := e.issue("r", nil)
	failing := &failingStorage{Storage: e.storage, failDelete: true}
	_, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: logical.RevokeOperation, Path: "creds/r", Secret: k.secret, Storage: failing,
	})
	require.Error(t, err, "Vault must retry")
	require.NotErrorIs(t, err, logical.ErrInvalidRequest)
}
