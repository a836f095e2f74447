package apikey

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
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
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k1.key))
	require.Equal(t, verifyapi.CodeValid, e.verify(map[string]interface{}{"api_key": k2.key, "client_ip": "10.0.0.1"})["code"])
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

// TestKeysListDoesNotFillTheVerifyCache: a listing reads every record once; caching them
// would evict the records verify keeps hot.
func TestKeysListDoesNotFillTheVerifyCache(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	hot := e.issue("svc", nil)
	for range 20 {
		e.issue("svc", nil)
	}
	e.b.keyCache.Purge()
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(hot.key))
	require.Equal(t, 1, e.b.keyCache.Len())

	list := e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"]
	require.Len(t, list, 21)
	require.Equal(t, 1, e.b.keyCache.Len(), "listing cached nothing")
	_, ok := e.b.keyCache.Peek(hot.keyID)
	require.True(t, ok, "the hot record is still cached")
}
