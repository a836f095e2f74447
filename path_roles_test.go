package apikey

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

func TestRoleWriteReadListDelete(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("payments", map[string]interface{}{
		"scopes":           "orders:read,orders:*",
		"ttl":              "1h",
		"max_ttl":          "2h",
		"key_prefix":       "pay",
		"bound_cidrs":      []string{"10.0.0.0/8", "2001:db8::/32", "192.168.1.7"},
		"rate_limit":       2.5,
		"rate_limit_burst": 5,
		"max_uses":         100,
		"metadata":         map[string]interface{}{"team": "payments"},
	})

	got := e.mustOK(logical.ReadOperation, "roles/payments", nil).Data
	// The anomaly settings in force (defaults here) are tested in role_anomaly_test.go.
	require.Equal(t, "log", got["anomaly_action"])
	for field := range got {
		if strings.HasPrefix(field, "anomaly_") {
			delete(got, field)
		}
	}
	require.Equal(t, map[string]interface{}{
		"scopes":           []string{"orders:read", "orders:*"},
		"ttl":              int64(3600),
		"max_ttl":          int64(7200),
		"key_prefix":       "pay",
		"bound_cidrs":      []string{"10.0.0.0/8", "2001:db8::/32", "192.168.1.7"},
		"rate_limit":       2.5,
		"rate_limit_burst": 5,
		"max_uses":         int64(100),
		"metadata":         map[string]string{"team": "payments"},
		"rate_limits":      []string{},
		"refill_interval":  "",
		"refill_amount":    int64(0),
		"allow_identity":   false,
		"shared_limits":    false,
	}, got)

	// A partial update keeps every field it does not name.
	e.mustOK(logical.UpdateOperation, "roles/payments", map[string]interface{}{"ttl": "30m"})
	got = e.mustOK(logical.ReadOperation, "roles/payments", nil).Data
	require.Equal(t, int64(1800), got["ttl"])
	require.Equal(t, "pay", got["key_prefix"])
	require.Equal(t, []string{"orders:read", "orders:*"}, got["scopes"])

	e.writeRole("other", nil)
	got = e.mustOK(logical.ReadOperation, "roles/other", nil).Data
	require.Equal(t, "vk", got["key_prefix"], "default prefix")
	require.Equal(t, []string{}, got["scopes"])

	list := e.mustOK(logical.ListOperation, "roles/", nil).Data
	require.Equal(t, []string{"other", "payments"}, list["keys"])

	e.mustOK(logical.DeleteOperation, "roles/payments", nil)
	require.Nil(t, e.do(logical.ReadOperation, "roles/payments", nil))
	list = e.mustOK(logical.ListOperation, "roles/", nil).Data
	require.Equal(t, []string{"other"}, list["keys"])
}

func TestRoleValidation(t *testing.T) {
	cases := []struct {
		name string
		data map[string]interface{}
		want string
	}{
		{"ttl above max_ttl", map[string]interface{}{"ttl": "2h", "max_ttl": "1h"}, "ttl (2h0m0s) must not be greater than max_ttl"},
		{"negative ttl", map[string]interface{}{"ttl": "-5s"}, "ttl"},
		{"negative max_ttl", map[string]interface{}{"max_ttl": -5}, "max_ttl"},
		{"garbage ttl", map[string]interface{}{"ttl": "soon"}, "ttl"},
		{"prefix upper", map[string]interface{}{"key_prefix": "VK"}, "key_prefix"},
		{"prefix too long", map[string]interface{}{"key_prefix": "abcdefghijk"}, "key_prefix"},
		{"prefix one char", map[string]interface{}{"key_prefix": "a"}, "key_prefix"},
		{"prefix underscore", map[string]interface{}{"key_prefix": "a_b"}, "key_prefix"},
		{"bad cidr", map[string]interface{}{"bound_cidrs": "10.0.0.0/33"}, "bound_cidrs"},
		{"cidr garbage", map[string]interface{}{"bound_cidrs": "not-an-ip"}, "bound_cidrs"},
		{"scope charset", map[string]interface{}{"scopes": "orders read"}, "scopes"},
		{"scope inner star", map[string]interface{}{"scopes": "or*ders"}, "scopes"},
		{"duplicate scope", map[string]interface{}{"scopes": "a,a"}, "listed twice"},
		{"negative rate", map[string]interface{}{"rate_limit": -1}, "rate_limit"},
		{"rate below one a day", map[string]interface{}{"rate_limit": 1e-300}, "rate_limit"},
		{"burst without rate", map[string]interface{}{"rate_limit_burst": 3}, "rate_limit_burst"},
		{"negative burst", map[string]interface{}{"rate_limit": 1, "rate_limit_burst": -3}, "rate_limit_burst"},
		{"negative max_uses", map[string]interface{}{"max_uses": -1}, "max_uses"},
		{"rate not a number", map[string]interface{}{"rate_limit": "fast"}, "rate_limit"},
		{"metadata control char", map[string]interface{}{"metadata": map[string]interface{}{"a": "b\x00"}}, "metadata"},
		{"metadata huge value", map[string]interface{}{"metadata": map[string]interface{}{"a": strings.Repeat("x", 600)}}, "metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("keep", map[string]interface{}{"scopes": "a"})
			e.mustFail(logical.CreateOperation, "roles/r", tc.data, tc.want)
			require.Nil(t, e.do(logical.ReadOperation, "roles/r", nil), "nothing stored on error")

			// The same value on an existing role is refused and changes nothing.
			before := e.mustOK(logical.ReadOperation, "roles/keep", nil).Data
			e.mustFail(logical.UpdateOperation, "roles/keep", tc.data, tc.want)
			require.Equal(t, before, e.mustOK(logical.ReadOperation, "roles/keep", nil).Data)
		})
	}
}

func TestRoleNameValidation(t *testing.T) {
	e := newTestEnv(t)
	e.mustFail(logical.CreateOperation, "roles/a..b", nil, "'..'")
	e.mustFail(logical.CreateOperation, "roles/"+strings.Repeat("a", 200), nil, "at most 128")
	e.mustFail(logical.UpdateOperation, "roles/missing", map[string]interface{}{"ttl": 5}, "does not exist")
	// A slash is not part of the name pattern: Vault answers unsupported path.
	_, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.CreateOperation, Path: "roles/a/b", Storage: e.storage})
	require.ErrorIs(t, err, logical.ErrUnsupportedPath)
}

func TestRoleCacheStaysExact(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "a", "key_prefix": "one"})
	require.True(t, strings.HasPrefix(e.issue("svc", nil).key, "one_"), "role now cached")

	e.mustOK(logical.UpdateOperation, "roles/svc", map[string]interface{}{"key_prefix": "two"})
	require.True(t, strings.HasPrefix(e.issue("svc", nil).key, "two_"), "a local write replaces the cached role")

	// Another node changed the role: storage changes, then Vault calls Invalidate.
	entry, err := logical.StorageEntryJSON(rolePrefix+"svc", &role{Scopes: []string{"a"}, KeyPrefix: "three"})
	require.NoError(t, err)
	require.NoError(t, e.storage.Put(e.ctx, entry))
	e.b.invalidate(e.ctx, rolePrefix+"svc")
	require.True(t, strings.HasPrefix(e.issue("svc", nil).key, "three_"))

	e.mustOK(logical.DeleteOperation, "roles/svc", nil)
	e.mustFail(logical.ReadOperation, "creds/svc", nil, "does not exist")
}

// TestRoleNamesAreNeverFolded: Vault's ACLs and lease ids are case-sensitive, so a name
// that is not lowercase is refused on every path that takes one, never folded to an
// existing role.
func TestRoleNamesAreNeverFolded(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("admin", map[string]interface{}{"scopes": "*"})
	cases := []struct {
		op   logical.Operation
		path string
		data map[string]interface{}
	}{
		{logical.ReadOperation, "creds/ADMIN", nil},
		{logical.UpdateOperation, "creds/Admin", map[string]interface{}{"name": "x"}},
		{logical.UpdateOperation, "creds/ADMIN/rotate", map[string]interface{}{"key_id": "0000000000000000"}},
		{logical.ReadOperation, "roles/ADMIN", nil},
		{logical.CreateOperation, "roles/NEW", nil},
		{logical.UpdateOperation, "roles/ADMIN", map[string]interface{}{"scopes": "a"}},
		{logical.DeleteOperation, "roles/ADMIN", nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.op)+" "+tc.path, func(t *testing.T) {
			e.mustFail(tc.op, tc.path, tc.data, "must be lowercase")
			require.Empty(t, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], "no key issued")
			require.Equal(t, []string{"admin"}, e.mustOK(logical.ListOperation, "roles/", nil).Data["keys"], "no role created or deleted")
			require.Equal(t, []string{"*"}, e.mustOK(logical.ReadOperation, "roles/admin", nil).Data["scopes"], "role unchanged")
		})
	}
}
