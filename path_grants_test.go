package apikey

import (
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestGrantRenewReturnAndRelease(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 1000})
	k := e.issue("svc", nil)
	remaining := func() int64 {
		return e.verify(map[string]interface{}{"api_key": k.key, "cost": 0})["remaining_uses"].(int64)
	}
	g := e.verifyGrant(k.key, "gw", map[string]interface{}{verifyapi.FieldGrantUses: 100}).Grant
	require.Equal(t, int64(100), *g.Uses)
	require.Equal(t, int64(899), remaining())

	// A renewal returns what was not spent and tops up under the same id.
	got := e.renewGrant(verifyapi.RenewRequest{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "gw", Uses: 10}, Unused: 60})
	require.True(t, got.Renewed)
	require.Equal(t, g.ID, got.Grant.ID)
	require.Equal(t, int64(10), *got.Grant.Uses)
	require.Equal(t, int64(899+60-10), remaining(), "returned uses are usable again")

	// At most what the grant has outstanding (100 + 10 - 60) comes back.
	e.mustFail(logical.UpdateOperation, grantsRenewPath, verifyapi.RenewRequest{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "gw"}, Unused: 51}.Data(), "unused")
	require.Equal(t, int64(949), remaining(), "a refused return changes nothing")

	// Another holder, or an unknown id: not renewed, never an error.
	for _, r := range []verifyapi.RenewRequest{
		{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "someone-else"}, Unused: 50},
		{GrantID: "0123456789abcdef0123456789abcdef", Want: verifyapi.GrantRequest{Holder: "gw"}, Unused: 50},
	} {
		require.False(t, e.renewGrant(r).Renewed)
	}
	require.Equal(t, int64(949), remaining(), "nothing came back")

	// Release: the rest comes back and the grant ends.
	got = e.renewGrant(verifyapi.RenewRequest{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "gw"}, Unused: 50, Release: true})
	require.False(t, got.Renewed)
	require.Equal(t, int64(999), remaining())
	require.False(t, e.renewGrant(verifyapi.RenewRequest{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "gw"}}).Renewed, "released")

	// A new verify makes a new grant.
	again := e.verifyGrant(k.key, "gw", nil)
	require.NotEqual(t, g.ID, again.Grant.ID)
}

func TestGrantRenewOfAKeyThatStoppedVerifying(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 1000, "ttl": "1h"})
	k := e.issue("svc", nil)
	g := e.verifyGrant(k.key, "gw", nil).Grant
	// Expired (the record's expiry moved into the past, as a lease end does).
	lock := e.b.keyLock(k.keyID)
	lock.Lock()
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, k.keyID)
	require.NoError(t, err)
	next := *rec
	next.ExpiresAt = next.CreatedAt
	require.NoError(t, e.b.putKeyEntry(e.ctx, e.storage, &next))
	lock.Unlock()
	require.False(t, e.renewGrant(verifyapi.RenewRequest{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "gw"}}).Renewed)
}

func TestGrantRenewBadRequests(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 1000})
	k := e.issue("svc", nil)
	g := e.verifyGrant(k.key, "gw", nil).Grant
	for _, tc := range []struct {
		data map[string]interface{}
		want string
	}{
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw"}, verifyapi.FieldGrantID},
		{map[string]interface{}{verifyapi.FieldGrantID: "nope", verifyapi.FieldGrantHolder: "gw"}, verifyapi.FieldGrantID},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID + "0", verifyapi.FieldGrantHolder: "gw"}, verifyapi.FieldGrantID},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID}, verifyapi.FieldGrantHolder},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID, verifyapi.FieldGrantHolder: "g w"}, verifyapi.FieldGrantHolder},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID, verifyapi.FieldGrantHolder: "gw", verifyapi.FieldUnused: -1}, verifyapi.FieldUnused},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID, verifyapi.FieldGrantHolder: "gw", verifyapi.FieldUnused: "many"}, verifyapi.FieldUnused},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID, verifyapi.FieldGrantHolder: "gw", verifyapi.FieldGrantUses: -5}, verifyapi.FieldGrantUses},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID, verifyapi.FieldGrantHolder: "gw", verifyapi.FieldGrantRate: -5}, verifyapi.FieldGrantRate},
		{map[string]interface{}{verifyapi.FieldGrantID: g.ID, verifyapi.FieldGrantHolder: "gw", verifyapi.FieldRelease: "maybe"}, verifyapi.FieldRelease},
	} {
		t.Run(fmt.Sprint(tc.data), func(t *testing.T) {
			e.mustFail(logical.UpdateOperation, grantsRenewPath, tc.data, tc.want)
		})
	}
	require.True(t, e.renewGrant(verifyapi.RenewRequest{GrantID: g.ID, Want: verifyapi.GrantRequest{Holder: "gw"}}).Renewed, "the grant is untouched")
}

// TestRenewNeverRefundsToAnotherAccount: a grant given for an old key in its rotation
// grace was debited from the replacement; once the replacement is gone, the old key
// bears its own uses again, and returning the grant's uses must not credit them to it.
func TestRenewNeverRefundsToAnotherAccount(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 100})
	old := e.issue("svc", nil)
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID, "grace_period": "1h"})
	replacement := resp.Data["key_id"].(string)

	res := e.verifyGrant(old.key, "gw", map[string]interface{}{verifyapi.FieldGrantUses: 10})
	require.Equal(t, verifyapi.CodeValid, res.Code)
	require.NotNil(t, res.Grant)
	require.Equal(t, int64(10), *res.Grant.Uses)

	e.mustOK(logical.DeleteOperation, "keys/"+replacement, nil)
	before := e.verify(map[string]interface{}{"api_key": old.key, "cost": 0})["remaining_uses"]
	got := e.renewGrant(verifyapi.RenewRequest{GrantID: res.Grant.ID, Want: verifyapi.GrantRequest{Holder: "gw"}, Unused: 10})
	require.False(t, got.Renewed)
	require.Equal(t, before, e.verify(map[string]interface{}{"api_key": old.key, "cost": 0})["remaining_uses"], "nothing refunded to the old key")
}
