package apikey

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestCredsIssueWithRoleDefaults(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{
		"scopes": "orders:read,orders:write", "ttl": "1h", "max_ttl": "2h",
		"key_prefix": "acme", "metadata": map[string]interface{}{"team": "a"},
	})
	before := time.Now()
	k := e.issue("svc", nil)

	require.True(t, strings.HasPrefix(k.key, "acme_"))
	parsed, err := keyformat.Parse(k.key)
	require.NoError(t, err)
	require.Equal(t, parsed.KeyID, k.keyID)
	require.Equal(t, "svc", k.data["role"])
	require.Equal(t, []string{"orders:read", "orders:write"}, k.data["scopes"])
	require.Equal(t, map[string]string{"team": "a"}, k.data["metadata"])
	require.Equal(t, time.Hour, k.secret.TTL)
	require.Equal(t, 2*time.Hour, k.secret.MaxTTL)
	require.Equal(t, k.keyID, k.secret.InternalData["key_id"])
	require.Equal(t, "svc", k.secret.InternalData["role"])
	require.NotContains(t, k.secret.InternalData, "api_key")

	expires, err := time.Parse(time.RFC3339, k.data["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, before.Add(time.Hour), expires, 2*time.Second)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key, "orders:read"))
}

func TestCredsNarrowing(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{
		"scopes": "orders:*,users:read", "ttl": "1h", "max_ttl": "2h",
		"metadata": map[string]interface{}{"team": "a", "env": "prod"},
	})
	k := e.issue("svc", map[string]interface{}{
		"scopes":   "orders:read",
		"ttl":      "10m",
		"name":     "billing worker",
		"metadata": map[string]interface{}{"env": "prod", "host": "w1"},
	})
	require.Equal(t, []string{"orders:read"}, k.data["scopes"])
	require.Equal(t, "billing worker", k.data["name"])
	require.Equal(t, map[string]string{"team": "a", "env": "prod", "host": "w1"}, k.data["metadata"])
	require.Equal(t, 10*time.Minute, k.secret.TTL)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key, "orders:read"))
	require.Equal(t, verifyapi.CodeInsufficientScope, e.verifyCode(k.key, "orders:write"))

	// The role itself is not changed by narrowing.
	role := e.mustOK(logical.ReadOperation, "roles/svc", nil).Data
	require.Equal(t, map[string]string{"team": "a", "env": "prod"}, role["metadata"])
}

func TestCredsTTLIsCappedByMaxTTL(t *testing.T) {
	cases := []struct {
		name     string
		role     map[string]interface{}
		request  map[string]interface{}
		expected time.Duration
	}{
		{"role ttl", map[string]interface{}{"ttl": "30m", "max_ttl": "1h"}, nil, 30 * time.Minute},
		{"request above max_ttl", map[string]interface{}{"ttl": "30m", "max_ttl": "1h"}, map[string]interface{}{"ttl": "5h"}, time.Hour},
		{"no role ttl uses mount default", map[string]interface{}{}, nil, testDefaultTTL},
		{"role max above mount max", map[string]interface{}{"ttl": "48h", "max_ttl": "72h"}, nil, testMaxTTL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("r", tc.role)
			k := e.issue("r", tc.request)
			require.Equal(t, tc.expected, k.secret.TTL)
			read := e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
			expires, err := time.Parse(time.RFC3339, read["expires_at"].(string))
			require.NoError(t, err)
			require.WithinDuration(t, time.Now().Add(tc.expected), expires, 2*time.Second)
		})
	}
}

func TestCredsRejects(t *testing.T) {
	cases := []struct {
		name string
		path string
		data map[string]interface{}
		want string
	}{
		{"unknown role", "creds/nope", map[string]interface{}{}, `role "nope" does not exist`},
		{"scope not granted", "creds/svc", map[string]interface{}{"scopes": "users:write"}, "not granted"},
		{"wildcard wider than role", "creds/svc", map[string]interface{}{"scopes": "*"}, "not granted"},
		{"bad scope", "creds/svc", map[string]interface{}{"scopes": "a b"}, "scopes"},
		{"negative ttl", "creds/svc", map[string]interface{}{"ttl": -10}, "ttl"},
		{"name with control char", "creds/svc", map[string]interface{}{"name": "a\nb"}, "name"},
		{"name too long", "creds/svc", map[string]interface{}{"name": strings.Repeat("n", 129)}, "name"},
		{"metadata too many", "creds/svc", map[string]interface{}{"metadata": manyPairs(65)}, "metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("svc", map[string]interface{}{"scopes": "orders:*"})
			e.mustFail(logical.UpdateOperation, tc.path, tc.data, tc.want)
			list := e.do(logical.ListOperation, "keys/", nil)
			require.Empty(t, list.Data["keys"], "no key stored on error")
		})
	}
}

func manyPairs(n int) map[string]interface{} {
	m := map[string]interface{}{}
	for i := 0; i < n; i++ {
		m[strings.Repeat("k", i+1)] = "v"
	}
	return m
}

func BenchmarkIssue(b *testing.B) {
	e := newTestEnv(&testing.T{})
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.CreateOperation, Path: "roles/svc", Storage: e.storage})
	if err != nil || resp.IsError() {
		b.Fatal(err, resp)
	}
	req := &logical.Request{Operation: logical.ReadOperation, Path: "creds/svc", Storage: e.storage}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := e.b.HandleRequest(e.ctx, req)
		if err != nil || resp.IsError() {
			b.Fatal(err, resp)
		}
	}
}

// TestCredsRoleMetadataIsAuthoritative: issue-time metadata may add pairs, never change
// the role's (services may authorise on them).
func TestCredsRoleMetadataIsAuthoritative(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("tenant", map[string]interface{}{"metadata": map[string]interface{}{"tenant": "acme", "tier": "gold"}})

	e.mustFail(logical.UpdateOperation, "creds/tenant", map[string]interface{}{"metadata": map[string]interface{}{"tenant": "evil"}}, `metadata: "tenant" is set by the role`)
	e.mustFail(logical.UpdateOperation, "creds/tenant", map[string]interface{}{"metadata": "tier=silver,host=h1"}, `metadata: "tier" is set by the role`)
	require.Empty(t, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], "no key issued")

	k := e.issue("tenant", map[string]interface{}{"metadata": map[string]interface{}{"host": "h1", "tenant": "acme"}})
	require.Equal(t, map[string]string{"tenant": "acme", "tier": "gold", "host": "h1"}, k.data["metadata"])
	require.Equal(t, map[string]string{"tenant": "acme", "tier": "gold", "host": "h1"}, e.verify(map[string]interface{}{"api_key": k.key})["metadata"])
}

// TestCredsMergedMetadataIsBounded: each part may pass the field limit while the merge
// does not; the merge travels in the lease, so it is bounded as a whole.
func TestCredsMergedMetadataIsBounded(t *testing.T) {
	half := func(prefix string) map[string]interface{} {
		m := map[string]interface{}{}
		for i := range 20 {
			m[fmt.Sprintf("%s%02d", prefix, i)] = strings.Repeat("v", 500) // 20 * 503 bytes
		}
		return m
	}
	cases := []struct {
		name      string
		roleMeta  map[string]interface{}
		issueMeta map[string]interface{}
		want      string
	}{
		{"bytes", half("r"), half("i"), "at most 16384 bytes of keys and values are allowed, the role's included"},
		{"pairs", manyPairs(40), func() map[string]interface{} {
			m := map[string]interface{}{}
			for i := range 40 {
				m[fmt.Sprintf("x%d", i)] = "v"
			}
			return m
		}(), "at most 64 pairs are allowed, the role's included"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("svc", map[string]interface{}{"metadata": tc.roleMeta})
			e.mustFail(logical.UpdateOperation, "creds/svc", map[string]interface{}{"metadata": tc.issueMeta}, tc.want)
			require.Empty(t, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"])
		})
	}
}

// TestIssueReplayLeavesNoOrphan: Vault replays a request once, with the same id, when
// the plugin died under it. The replay lands on the first attempt's record, so the key
// that reached nobody (and has no lease) does not stay in the inventory as "active".
func TestIssueReplayLeavesNoOrphan(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	issue := func(id string) *logical.Response {
		resp, err := e.b.HandleRequest(e.ctx, &logical.Request{ID: id, Operation: logical.ReadOperation, Path: "creds/svc", Storage: e.storage})
		require.NoError(t, err)
		require.False(t, resp.IsError(), "%v", resp.Data)
		return resp
	}
	lost := issue("req-1")
	replay := issue("req-1")
	require.Equal(t, lost.Data["key_id"], replay.Data["key_id"])
	require.NotEqual(t, lost.Data["api_key"], replay.Data["api_key"])
	require.Equal(t, []string{replay.Data["key_id"].(string)}, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"])
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(lost.Data["api_key"].(string)))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(replay.Data["api_key"].(string)))

	other := issue("req-2")
	require.NotEqual(t, replay.Data["key_id"], other.Data["key_id"], "another request, another key_id")
	require.Len(t, e.mustOK(logical.ListOperation, "keys/", nil).Data["keys"], 2)
}
