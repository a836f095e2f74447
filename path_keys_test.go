package apikey

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
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

// listKey is a key record written straight to storage, as the list sees it.
type listKey struct {
	role, name  string
	metadata    map[string]string
	created     time.Duration // before now
	expires     time.Duration // after now (negative: in the past)
	graceEnds   time.Duration // rotated keys: after now
	disabled    bool
	useCount    int64
	lastUsedAgo time.Duration // 0: never used (in storage)
}

// testKeyID returns the i-th of a series of valid key_ids, sorted like i.
func testKeyID(i int) string { return fmt.Sprintf("k%015d", i) }

func (e *testEnv) putListKey(id string, lk listKey, now time.Time) *keyEntry {
	e.t.Helper()
	k := &keyEntry{
		KeyID:         id,
		Hash:          []byte("not a real hash"),
		Role:          lk.role,
		Name:          lk.name,
		Scopes:        []string{},
		Metadata:      nonNilMap(lk.metadata),
		IssueMetadata: map[string]string{},
		TTL:           time.Hour,
		CreatedAt:     now.Add(-lk.created),
		ExpiresAt:     now.Add(lk.expires),
		Disabled:      lk.disabled,
		UseCount:      lk.useCount,
	}
	if lk.graceEnds != 0 {
		k.ReplacedBy = testKeyID(0)
		k.InvalidAfter = now.Add(lk.graceEnds)
	}
	if lk.lastUsedAgo != 0 {
		k.LastUsedAt = now.Add(-lk.lastUsedAgo)
	}
	entry, err := logical.StorageEntryJSON(keyPrefix+id, k)
	require.NoError(e.t, err)
	require.NoError(e.t, e.storage.Put(e.ctx, entry))
	return k
}

// listPage lists one page and returns its key_ids and next_after ("" if none).
func (e *testEnv) listPage(data map[string]interface{}) ([]string, string) {
	e.t.Helper()
	resp := e.mustOK(logical.ListOperation, "keys/", data)
	keys, _ := resp.Data["keys"].([]string)
	next, _ := resp.Data["next_after"].(string)
	return keys, next
}

const day = 24 * time.Hour

func TestKeysListFilters(t *testing.T) {
	e := newTestEnv(t)
	now := time.Now()
	fixture := []listKey{
		1: {role: "ci", name: "ci-build", metadata: map[string]string{"team": "a", "env": "prod"}, created: 50 * day, expires: 30 * day, useCount: 5, lastUsedAgo: time.Hour},
		2: {role: "ci", name: "ci-deploy", metadata: map[string]string{"team": "a"}, created: 100 * day, expires: 3 * day},
		3: {role: "web", name: "web", metadata: map[string]string{"team": "b"}, created: 300 * day, expires: 30 * day, disabled: true, useCount: 9, lastUsedAgo: 200 * day},
		4: {role: "web", name: "web-old", created: 10 * day, expires: -time.Hour},
		5: {role: "ci", name: "rotated", metadata: map[string]string{"env": "prod"}, created: 20 * day, expires: 30 * day, graceEnds: 2 * time.Hour, useCount: 1, lastUsedAgo: 10 * day},
		6: {role: "ops", created: 200 * day, expires: 100 * day}, // used in memory only, below
		7: {role: "ci", name: "CI-build", created: 5 * day, expires: 30 * day, useCount: 1, lastUsedAgo: day},
	}
	records := map[int]*keyEntry{}
	for i, lk := range fixture[1:] {
		records[i+1] = e.putListKey(testKeyID(i+1), lk, now)
	}
	// An unflushed use counts: key 6 was never used as far as storage knows.
	allowed, _ := e.b.usage.Use(testKeyID(6), 1, usage.Quota{}, usage.State{}, now)
	require.True(t, allowed)

	cases := []struct {
		name string
		data map[string]interface{}
		want []int
	}{
		{"no filter", nil, []int{1, 2, 3, 4, 5, 6, 7}},
		{"role", map[string]interface{}{"role": "ci"}, []int{1, 2, 5, 7}},
		{"role without keys", map[string]interface{}{"role": "nobody"}, nil},
		{"status active", map[string]interface{}{"status": "active"}, []int{1, 2, 6, 7}},
		{"status disabled", map[string]interface{}{"status": "disabled"}, []int{3}},
		{"status expired", map[string]interface{}{"status": "expired"}, []int{4}},
		{"status rotated", map[string]interface{}{"status": "rotated"}, []int{5}},
		{"expiring_within hours", map[string]interface{}{"expiring_within": "168h"}, []int{2, 5}},
		{"expiring_within days", map[string]interface{}{"expiring_within": "7d"}, []int{2, 5}},
		{"expiring_within seconds", map[string]interface{}{"expiring_within": "3600"}, nil},
		{"expiring_within zero", map[string]interface{}{"expiring_within": "0"}, nil},
		{"unused_for", map[string]interface{}{"unused_for": "2160h"}, []int{2, 3}},
		{"unused_for short", map[string]interface{}{"unused_for": "2h"}, []int{2, 3, 4, 5, 7}},
		{"never_used", map[string]interface{}{"never_used": "true"}, []int{2, 4}},
		{"used", map[string]interface{}{"never_used": "false"}, []int{1, 3, 5, 6, 7}},
		{"name exact and case-sensitive", map[string]interface{}{"name": "ci-build"}, []int{1}},
		{"name glob prefix", map[string]interface{}{"name": "ci-*"}, []int{1, 2}},
		{"name glob suffix", map[string]interface{}{"name": "*-old"}, []int{4}},
		{"name glob inner", map[string]interface{}{"name": "c*d*"}, []int{1, 2}},
		{"name star matches the empty name too", map[string]interface{}{"name": "*"}, []int{1, 2, 3, 4, 5, 6, 7}},
		{"name no match", map[string]interface{}{"name": "ci-"}, nil},
		{"metadata one pair", map[string]interface{}{"metadata": map[string]interface{}{"team": "a"}}, []int{1, 2}},
		{"metadata all pairs", map[string]interface{}{"metadata": map[string]interface{}{"team": "a", "env": "prod"}}, []int{1}},
		{"metadata as query pairs", map[string]interface{}{"metadata": []string{"env=prod"}}, []int{1, 5}},
		{"metadata value differs", map[string]interface{}{"metadata": "team=c"}, nil},
		{"role and status", map[string]interface{}{"role": "ci", "status": "active"}, []int{1, 2, 7}},
		{"role, name and expiry", map[string]interface{}{"role": "ci", "name": "ci-*", "expiring_within": "168h"}, []int{2}},
		{"status and unused_for", map[string]interface{}{"status": "active", "unused_for": "90d"}, []int{2}},
		{"role and never_used", map[string]interface{}{"role": "web", "never_used": "true"}, []int{4}},
		{"metadata and status", map[string]interface{}{"metadata": "env=prod", "status": "rotated"}, []int{5}},
		{"everything", map[string]interface{}{
			"role": "ci", "status": "active", "expiring_within": "4d", "unused_for": "30d",
			"never_used": "true", "name": "*deploy", "metadata": "team=a", "limit": "10",
		}, []int{2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, next := e.listPage(tc.data)
			want := []string{}
			for _, i := range tc.want {
				want = append(want, testKeyID(i))
			}
			require.Equal(t, want, append([]string{}, keys...))
			require.Empty(t, next)
		})
	}

	t.Run("key_info", func(t *testing.T) {
		info := e.mustOK(logical.ListOperation, "keys/", nil).Data["key_info"].(map[string]interface{})
		statuses := map[int]string{1: "active", 2: "active", 3: "disabled", 4: "expired", 5: "rotated", 6: "active", 7: "active"}
		for i, status := range statuses {
			got := info[testKeyID(i)].(map[string]interface{})
			k := records[i]
			require.Equal(t, status, got["status"], "key %d", i)
			require.Equal(t, k.CreatedAt.UTC().Format(time.RFC3339), got["created_at"])
			require.Equal(t, k.validUntil().UTC().Format(time.RFC3339), got["expires_at"])
			require.Equal(t, k.Role, got["role"])
			require.Equal(t, k.Name, got["name"])
			require.Equal(t, k.Disabled, got["disabled"])
			require.NotContains(t, got, "hash")
		}
		six := info[testKeyID(6)].(map[string]interface{})
		require.Equal(t, int64(1), six["use_count"])
		require.NotEmpty(t, six["last_used_at"])
		two := info[testKeyID(2)].(map[string]interface{})
		require.Equal(t, int64(0), two["use_count"])
		require.Equal(t, "", two["last_used_at"])
	})
}

// TestKeysListStatusFollowsVerify: the status the list shows is verify's code for the key.
func TestKeysListStatusFollowsVerify(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	active := e.issue("svc", nil)
	disabled := e.issue("svc", nil)
	e.mustOK(logical.UpdateOperation, "keys/"+disabled.keyID, map[string]interface{}{"disabled": true})
	old := e.issue("svc", nil)
	rotated := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"api_key": old.key, "grace_period": "1h"})
	require.NotNil(t, rotated)

	want := map[string]string{
		active.keyID:   verifyapi.CodeValid,
		disabled.keyID: verifyapi.CodeDisabled,
		old.keyID:      verifyapi.CodeValid, // in its grace period
	}
	keys := map[string]issued{active.keyID: active, disabled.keyID: disabled, old.keyID: old}
	for status, id := range map[string]string{"active": active.keyID, "disabled": disabled.keyID, "rotated": old.keyID} {
		listed, _ := e.listPage(map[string]interface{}{"status": status})
		require.Contains(t, listed, id, status)
		require.Equal(t, want[id], e.verifyCode(keys[id].key), status)
	}
}

func TestKeysListPagination(t *testing.T) {
	e := newTestEnv(t)
	now := time.Now()
	var all, ciOnly []string
	// Written out of order: pages follow key_id order, not storage's.
	for _, i := range []int{7, 3, 25, 1, 12, 9, 2, 18, 4, 23, 5, 14, 6, 20, 8, 10, 11, 13, 15, 16, 17, 19, 21, 22, 24} {
		role := "web"
		if i%3 == 0 {
			role = "ci"
		}
		e.putListKey(testKeyID(i), listKey{role: role, created: day, expires: day}, now)
	}
	for i := 1; i <= 25; i++ {
		all = append(all, testKeyID(i))
		if i%3 == 0 {
			ciOnly = append(ciOnly, testKeyID(i))
		}
	}

	walk := func(t *testing.T, limit int, filter map[string]interface{}) (seen []string, pages int) {
		after := ""
		for {
			data := map[string]interface{}{"limit": strconv.Itoa(limit), "after": after}
			for k, v := range filter {
				data[k] = v
			}
			keys, next := e.listPage(data)
			pages++
			require.LessOrEqual(t, len(keys), limit)
			seen = append(seen, keys...)
			if next == "" {
				return seen, pages
			}
			require.Greater(t, next, after, "pages move forward")
			if len(keys) > 0 {
				require.Equal(t, keys[len(keys)-1], next, "a full page ends at its last key")
			}
			after = next
			require.Less(t, pages, 100, "pagination does not end")
		}
	}
	for _, limit := range []int{1, 2, 100} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			seen, pages := walk(t, limit, nil)
			require.Equal(t, all, seen, "every key exactly once, in key_id order")
			require.Equal(t, (len(all)+limit-1)/limit, pages)

			seen, _ = walk(t, limit, map[string]interface{}{"role": "ci"})
			require.Equal(t, ciOnly, seen)
		})
	}

	t.Run("after an id that is not stored", func(t *testing.T) {
		require.NoError(t, e.storage.Delete(e.ctx, keyPrefix+testKeyID(24)))
		defer e.putListKey(testKeyID(24), listKey{role: "web", created: day, expires: day}, now)
		keys, next := e.listPage(map[string]interface{}{"after": testKeyID(24)})
		require.Equal(t, []string{testKeyID(25)}, keys)
		require.Empty(t, next)
	})
	t.Run("after the last id", func(t *testing.T) {
		resp := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{"after": testKeyID(25)})
		require.NotContains(t, resp.Data, "keys")
		require.NotContains(t, resp.Data, "next_after")
	})
	t.Run("default limit", func(t *testing.T) {
		for i := 26; i <= defaultKeysListLimit+1; i++ {
			e.putListKey(testKeyID(i), listKey{role: "web", created: day, expires: day}, now)
		}
		keys, next := e.listPage(nil)
		require.Len(t, keys, defaultKeysListLimit+1, "without limit or after, the list is complete (vault list)")
		require.Empty(t, next)
		keys, next = e.listPage(map[string]interface{}{"after": ""})
		require.Len(t, keys, defaultKeysListLimit, "a page: after given")
		require.Equal(t, testKeyID(defaultKeysListLimit), next)
		keys, next = e.listPage(map[string]interface{}{"after": next})
		require.Equal(t, []string{testKeyID(defaultKeysListLimit + 1)}, keys)
		require.Empty(t, next)
	})
}

// TestKeysListScanBudget: a filter that matches nothing still answers after a bounded
// number of reads, with next_after to go on from.
func TestKeysListScanBudget(t *testing.T) {
	e := newTestEnv(t)
	now := time.Now()
	total := keysListScanBudget + 3
	for i := 1; i <= total; i++ {
		role := "web"
		if i > keysListScanBudget+1 {
			role = "ci"
		}
		e.putListKey(testKeyID(i), listKey{role: role, created: day, expires: day}, now)
	}
	counting := &countingStorage{Storage: e.storage}
	e.storage = counting

	keys, next := e.listPage(map[string]interface{}{"role": "ci", "limit": "100"})
	require.Empty(t, keys)
	require.Equal(t, testKeyID(keysListScanBudget), next, "the last id scanned")
	require.Equal(t, int64(keysListScanBudget), counting.gets.Load(), "one read per record scanned, no more")

	keys, next = e.listPage(map[string]interface{}{"role": "ci", "after": next})
	require.Equal(t, []string{testKeyID(total - 1), testKeyID(total)}, keys)
	require.Empty(t, next)

	// Without limit or after the list is complete: no budget.
	keys, next = e.listPage(map[string]interface{}{"role": "ci"})
	require.Equal(t, []string{testKeyID(total - 1), testKeyID(total)}, keys)
	require.Empty(t, next)
}

// TestKeysListRejects: every bad filter or page value is a 400 whose message starts with
// the field's name.
func TestKeysListRejects(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	e.issue("svc", nil)

	cases := []struct {
		field string
		value interface{}
	}{
		{"role", ""},
		{"role", "Admin"},
		{"role", "a..b"},
		{"role", strings.Repeat("r", 200)},
		{"status", "enabled"},
		{"status", "ACTIVE"},
		{"status", ""},
		{"expiring_within", "soon"},
		{"expiring_within", "-1s"},
		{"expiring_within", "-1"},
		{"expiring_within", "-2d"},
		{"expiring_within", ""},
		{"expiring_within", "1e400"},
		{"expiring_within", "100000000h"},
		{"expiring_within", "9223372036854775807"},
		{"expiring_within", "99999999d"},
		{"unused_for", "forever"},
		{"unused_for", "-168h"},
		{"unused_for", "7dd"},
		{"never_used", "maybe"},
		{"never_used", ""},
		{"name", ""},
		{"name", "a\x00b"},
		{"name", "line\nbreak"},
		{"name", strings.Repeat("n", 200)},
		{"metadata", map[string]interface{}{"": "v"}},
		{"metadata", map[string]interface{}{"k": "a\x00"}},
		{"after", "short"},
		{"after", "!!!!!!!!!!!!!!!!"},
		{"after", "k00000000000000/"},
		{"limit", "0"},
		{"limit", "-1"},
		{"limit", "1001"},
		{"limit", "ten"},
		{"limit", "1.5"},
		{"limit", ""},
		{"limit", 5000},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s=%.20q", tc.field, tc.value), func(t *testing.T) {
			msg := e.listRefused(map[string]interface{}{tc.field: tc.value})
			require.True(t, strings.HasPrefix(msg, tc.field), "message %q starts with %q", msg, tc.field)
		})
	}

	// Values the framework cannot convert to the field's type at all (a repeated query
	// parameter, a pair without '=') are refused before the handler runs: still a 400
	// naming the field.
	for name, data := range map[string]map[string]interface{}{
		"repeated status":       {"status": []string{"active", "expired"}},
		"metadata without pair": {"metadata": "novalue"},
	} {
		t.Run(name, func(t *testing.T) {
			for field := range data {
				require.Contains(t, e.listRefused(data), `"`+field+`"`)
			}
		})
	}

	require.Equal(t, "status: must be one of active, disabled, expired, rotated",
		e.listRefused(map[string]interface{}{"status": "enabled"}))
	require.Equal(t, "limit: must be an integer from 1 to 1000",
		e.listRefused(map[string]interface{}{"limit": "0"}))
}

// listRefused lists keys with data, requires a 400 and returns its message.
func (e *testEnv) listRefused(data map[string]interface{}) string {
	e.t.Helper()
	req := &logical.Request{Operation: logical.ListOperation, Path: "keys/", Data: data, Storage: e.storage}
	resp, err := e.b.HandleRequest(e.ctx, req)
	require.NoError(e.t, err)
	require.True(e.t, resp != nil && resp.IsError(), "want a refusal, got %v", resp)
	code, respErr := logical.RespondErrorCommon(req, resp, err)
	require.Equal(e.t, http.StatusBadRequest, code)
	return respErr.Error()
}

// TestKeysListDocumented: Vault's OpenAPI document shows the list's query parameters and
// its next_after, and the help names every filter.
func TestKeysListDocumented(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.HelpOperation, Storage: e.storage})
	require.NoError(t, err)
	doc := resp.Data["openapi"].(*framework.OASDocument)
	list := doc.Paths["/keys/"].Get
	require.NotNil(t, list)
	params := map[string]framework.OASParameter{}
	for _, p := range list.Parameters {
		params[p.Name] = p
	}
	for _, field := range []string{"role", "status", "expiring_within", "unused_for", "never_used", "name", "metadata", "after", "limit"} {
		p, ok := params[field]
		require.True(t, ok, "query parameter %s", field)
		require.Equal(t, "query", p.In)
		require.NotEmpty(t, p.Description, field)
	}
	require.Equal(t, []interface{}{"active", "disabled", "expired", "rotated"}, params["status"].Schema.Enum)

	schema := list.Responses[200].Content["application/json"].Schema
	name := strings.TrimPrefix(schema.Ref, "#/components/schemas/")
	require.Contains(t, doc.Components.Schemas[name].Properties, "next_after")
	require.Contains(t, doc.Components.Schemas[name].Properties, "key_info")

	help, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.HelpOperation, Path: "keys/", Storage: e.storage})
	require.NoError(t, err)
	for _, word := range []string{"role=", "status=", "expiring_within=", "unused_for=", "never_used=", "name=", "metadata=", "after=", "limit=", "next_after", "curl"} {
		require.Contains(t, help.Data["help"], word)
	}
}
