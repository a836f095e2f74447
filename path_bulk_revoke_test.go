package apikey

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// bulkRevokeAnswer is a revoke response.
type bulkRevokeAnswer struct {
	keyIDs    []string
	count     int
	scanned   int
	notFound  []string
	nextAfter string
	dryRun    bool
	warnings  []string
}

func (e *testEnv) bulkRevoke(data map[string]interface{}) bulkRevokeAnswer {
	e.t.Helper()
	resp := e.mustOK(logical.UpdateOperation, bulkRevokePath, data)
	a := bulkRevokeAnswer{
		keyIDs:   resp.Data["key_ids"].([]string),
		count:    resp.Data["count"].(int),
		scanned:  resp.Data["scanned"].(int),
		dryRun:   resp.Data["dry_run"].(bool),
		warnings: resp.Warnings,
	}
	a.notFound, _ = resp.Data["not_found"].([]string)
	a.nextAfter, _ = resp.Data["next_after"].(string)
	require.Len(e.t, a.keyIDs, a.count)
	return a
}

func (e *testEnv) keyIDsStored() []string {
	e.t.Helper()
	ids, err := e.storage.List(e.ctx, keyPrefix)
	require.NoError(e.t, err)
	slices.Sort(ids)
	return ids
}

// TestBulkRevokeSelects: each selector, alone and together, picks the keys it names; a
// dry run lists them and changes nothing, the real run revokes exactly them.
func TestBulkRevokeSelects(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	keys := map[int]listKey{
		1: {role: "web", name: "ci-1", created: 100 * day, expires: day},
		2: {role: "web", name: "ci-2", created: 10 * day, expires: day, lastUsedAgo: time.Hour},
		3: {role: "web", name: "svc", created: day, expires: day, metadata: map[string]string{"team": "red"}},
		4: {role: "ci", name: "ci-4", created: 200 * day, expires: day, disabled: true},
		5: {role: "ci", name: "x", created: 2 * day, expires: -time.Hour, lastUsedAgo: 50 * day},
		6: {role: "ops", created: 300 * day, expires: day, metadata: map[string]string{"team": "red"}, lastUsedAgo: time.Minute},
	}
	ids := func(n ...int) []string {
		out := make([]string, 0, len(n))
		for _, i := range n {
			out = append(out, testKeyID(i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data map[string]interface{}
		want []string
	}{
		{"role", map[string]interface{}{"role": "web"}, ids(1, 2, 3)},
		{"key_ids", map[string]interface{}{"key_ids": []string{testKeyID(5), testKeyID(2), testKeyID(2)}}, ids(2, 5)},
		{"key_ids and role", map[string]interface{}{"key_ids": strings.Join(ids(1, 4, 6), ","), "role": "ci"}, ids(4)},
		{"created_before", map[string]interface{}{"created_before": now.Add(-50 * day).Format(time.RFC3339)}, ids(1, 4, 6)},
		{"unused_for", map[string]interface{}{"unused_for": "30d"}, ids(1, 4, 5)},
		{"unused_for and role", map[string]interface{}{"unused_for": "720h", "role": "ci"}, ids(4, 5)},
		{"never_used", map[string]interface{}{"never_used": "true"}, ids(1, 3, 4)},
		{"name glob", map[string]interface{}{"name": "ci-*"}, ids(1, 2, 4)},
		{"metadata", map[string]interface{}{"metadata": "team=red"}, ids(3, 6)},
		{"status disabled", map[string]interface{}{"status": "disabled"}, ids(4)},
		{"status expired", map[string]interface{}{"status": "expired"}, ids(5)},
		{"expiring_within", map[string]interface{}{"expiring_within": "2d", "role": "ops"}, ids(6)},
		{"nothing matches", map[string]interface{}{"role": "nope"}, ids()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newImportEnv(t)
			for i, lk := range keys {
				e.putListKey(testKeyID(i), lk, now)
			}
			all := e.keyIDsStored()

			dry := map[string]interface{}{"dry_run": true}
			for k, v := range tc.data {
				dry[k] = v
			}
			a := e.bulkRevoke(dry)
			require.True(t, a.dryRun)
			require.Equal(t, tc.want, a.keyIDs)
			require.Empty(t, a.nextAfter)
			require.Equal(t, all, e.keyIDsStored(), "a dry run changes nothing")

			a = e.bulkRevoke(tc.data)
			require.False(t, a.dryRun)
			require.Equal(t, tc.want, a.keyIDs)
			left := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains(tc.want, id) })
			require.Equal(t, left, e.keyIDsStored())
			require.Empty(t, e.bulkRevoke(dry).keyIDs, "nothing left to revoke")
		})
	}
}

// TestBulkRevokedKeysStopAtOnce: real keys (and imported ones) stop verifying on the
// next request; their leases still revoke, as no-ops.
func TestBulkRevokedKeysStopAtOnce(t *testing.T) {
	e := newImportEnv(t)
	e.writeRole("web", nil)
	e.writeRole("ci", nil)
	web := []issued{e.issue("web", nil), e.issue("web", nil)}
	ci := e.issue("ci", nil)
	for _, k := range append(web, ci) {
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key)) // cached now
	}
	imported := legacyKey(t)
	importedID := e.importOne(map[string]interface{}{"role": "web", "key": imported}).Data["key_id"].(string)
	require.NotNil(t, e.importedRecord(e.storage, imported))

	a := e.bulkRevoke(map[string]interface{}{"role": "web"})
	require.Equal(t, 3, a.count)
	require.ElementsMatch(t, []string{web[0].keyID, web[1].keyID, importedID}, a.keyIDs)
	for _, k := range web {
		require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key))
		require.NoError(t, e.revoke(k), "the lease revokes as a no-op")
	}
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(ci.key))
	require.Nil(t, e.importedRecord(e.storage, imported))
	ref, err := readImportedRef(e.ctx, e.storage, importedID)
	require.NoError(t, err)
	require.False(t, ref.Revoked.IsZero(), "the imported key's index entry is marked revoked")
	// Revoked, the imported key may be imported again.
	e.importOne(map[string]interface{}{"role": "web", "key": imported})
}

func TestBulkRevokeRejects(t *testing.T) {
	e := newImportEnv(t)
	e.writeRole("web", nil)
	k := e.issue("web", nil)
	tooMany := make([]string, maxBulkRevokeKeyIDs+1)
	for i := range tooMany {
		tooMany[i] = testKeyID(i)
	}
	for _, tc := range []struct {
		name string
		data map[string]interface{}
		want string
	}{
		{"no selector", map[string]interface{}{}, "at least one selector is required"},
		{"only dry_run", map[string]interface{}{"dry_run": true}, "at least one selector is required"},
		{"only paging", map[string]interface{}{"limit": "10", "after": testKeyID(1)}, "at least one selector is required"},
		{"empty role", map[string]interface{}{"role": ""}, "role: must not be empty"},
		{"uppercase role", map[string]interface{}{"role": "Web"}, "role \"Web\" must be lowercase"},
		{"empty identity", map[string]interface{}{"identity": ""}, "identity must be 1-128 characters"},
		{"identity charset", map[string]interface{}{"identity": "a b"}, "identity must start with a letter or digit"},
		{"bad key_id", map[string]interface{}{"key_ids": "short"}, "key_ids: \"short\" is not a key_id"},
		{"empty key_ids", map[string]interface{}{"key_ids": []string{}}, "key_ids: must not be empty"},
		{"created_before", map[string]interface{}{"created_before": "yesterday"}, "created_before: must be an RFC 3339 time"},
		{"unused_for", map[string]interface{}{"unused_for": "-1"}, "unused_for: must not be negative"},
		{"unused_for words", map[string]interface{}{"unused_for": "a while"}, "unused_for: must be a duration"},
		{"never_used", map[string]interface{}{"never_used": "maybe"}, "never_used: must be true or false"},
		{"status", map[string]interface{}{"status": "gone"}, "status: must be one of"},
		{"expiring_within", map[string]interface{}{"expiring_within": "soon"}, "expiring_within: must be a duration"},
		{"limit", map[string]interface{}{"role": "web", "limit": "0"}, "limit: must be an integer from 1 to 10000"},
		{"limit too big", map[string]interface{}{"role": "web", "limit": "10001"}, "limit: must be an integer from 1 to 10000"},
		{"after", map[string]interface{}{"role": "web", "after": "x"}, "after: must be a key_id"},
		{"dry_run", map[string]interface{}{"role": "web", "dry_run": "perhaps"}, "dry_run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.mustFail(logical.UpdateOperation, bulkRevokePath, tc.data, tc.want)
		})
	}
	// Past 16 KiB the generic field bound refuses key_ids first, until HandleRequest
	// leaves it to this path (allowsLargeField).
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: bulkRevokePath, Storage: e.storage,
		Data: map[string]interface{}{"key_ids": tooMany}})
	require.NoError(t, err)
	require.True(t, resp.IsError())
	if msg := resp.Error().Error(); !strings.Contains(msg, "key_ids: value is too long") {
		require.Contains(t, msg, "key_ids: at most 10000 per request")
	}
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key), "no refused request revoked anything")
}

// TestBulkRevokeContinues: a request revokes at most limit keys and reads at most the
// scan budget; next_after goes on until everything selected is gone.
func TestBulkRevokeContinues(t *testing.T) {
	e := newImportEnv(t)
	now := time.Now()
	for i := 1; i <= 7; i++ {
		role := "web"
		if i%3 == 0 {
			role = "ci"
		}
		e.putListKey(testKeyID(i), listKey{role: role, expires: day}, now)
	}
	dry := e.bulkRevoke(map[string]interface{}{"role": "web", "dry_run": true, "limit": "2"})
	require.Equal(t, []string{testKeyID(1), testKeyID(2)}, dry.keyIDs)
	require.Equal(t, testKeyID(2), dry.nextAfter)
	dry = e.bulkRevoke(map[string]interface{}{"role": "web", "dry_run": true, "limit": "2", "after": dry.nextAfter})
	require.Equal(t, []string{testKeyID(4), testKeyID(5)}, dry.keyIDs)

	var revoked []string
	after := ""
	for range 10 {
		a := e.bulkRevoke(map[string]interface{}{"role": "web", "limit": "2", "after": after})
		revoked = append(revoked, a.keyIDs...)
		if a.nextAfter == "" {
			break
		}
		after = a.nextAfter
	}
	require.Equal(t, []string{testKeyID(1), testKeyID(2), testKeyID(4), testKeyID(5), testKeyID(7)}, revoked)
	require.Equal(t, []string{testKeyID(3), testKeyID(6)}, e.keyIDsStored())

	// key_ids page the same way.
	a := e.bulkRevoke(map[string]interface{}{"key_ids": []string{testKeyID(6), testKeyID(3)}, "limit": "1"})
	require.Equal(t, []string{testKeyID(3)}, a.keyIDs)
	require.Equal(t, testKeyID(3), a.nextAfter)
}

// TestBulkRevokeScanBudget: a filter that matches nothing still answers after the scan
// budget, with where to go on.
func TestBulkRevokeScanBudget(t *testing.T) {
	e := newImportEnv(t)
	now := time.Now()
	total := bulkRevokeScanBudget + 2
	for i := 1; i <= total; i++ {
		role := "web"
		if i == total {
			role = "ci"
		}
		e.putListKey(testKeyID(i), listKey{role: role, expires: day}, now)
	}
	counting := &countingStorage{Storage: e.storage}
	e.storage = counting
	a := e.bulkRevoke(map[string]interface{}{"role": "ci", "dry_run": true})
	require.Empty(t, a.keyIDs)
	require.Equal(t, bulkRevokeScanBudget, a.scanned)
	require.Equal(t, testKeyID(bulkRevokeScanBudget), a.nextAfter)
	require.LessOrEqual(t, counting.gets.Load(), int64(bulkRevokeScanBudget+5))

	a = e.bulkRevoke(map[string]interface{}{"role": "ci", "after": a.nextAfter})
	require.Equal(t, []string{testKeyID(total)}, a.keyIDs)
	require.Empty(t, a.nextAfter)
}

func TestBulkRevokeKeyIDsNotFound(t *testing.T) {
	e := newImportEnv(t)
	e.writeRole("web", nil)
	k := e.issue("web", nil)
	a := e.bulkRevoke(map[string]interface{}{"key_ids": []string{k.keyID, testKeyID(9)}, "dry_run": true})
	require.Equal(t, []string{k.keyID}, a.keyIDs)
	require.Equal(t, []string{testKeyID(9)}, a.notFound)
	a = e.bulkRevoke(map[string]interface{}{"key_ids": []string{k.keyID, testKeyID(9)}})
	require.Equal(t, []string{k.keyID}, a.keyIDs)
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key))
	a = e.bulkRevoke(map[string]interface{}{"key_ids": k.keyID})
	require.Empty(t, a.keyIDs)
	require.Equal(t, []string{k.keyID}, a.notFound, "revoked: not found any more")
}

// TestBulkRevokeIdentity: the identity selector revokes that identity's keys (found
// through its index), and only them.
func TestBulkRevokeIdentity(t *testing.T) {
	e := newImportEnv(t)
	e.writeRole("web", map[string]interface{}{"allow_identity": true})
	mine := []issued{e.issue("web", map[string]interface{}{"identity": "customer-42"}), e.issue("web", map[string]interface{}{"identity": "customer-42"})}
	other := e.issue("web", map[string]interface{}{"identity": "customer-7"})
	none := e.issue("web", nil)
	importedKey := legacyKey(t)
	importedID := e.importOne(map[string]interface{}{"role": "web", "key": importedKey, "identity": "customer-42"}).Data["key_id"].(string)

	a := e.bulkRevoke(map[string]interface{}{"identity": "customer-42", "dry_run": true})
	require.ElementsMatch(t, []string{mine[0].keyID, mine[1].keyID, importedID}, a.keyIDs)
	a = e.bulkRevoke(map[string]interface{}{"identity": "customer-42"})
	require.Equal(t, 3, a.count)
	for _, k := range mine {
		require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key))
	}
	require.Nil(t, e.importedRecord(e.storage, importedKey))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(other.key))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(none.key))
	require.Empty(t, e.bulkRevoke(map[string]interface{}{"identity": "customer-42"}).keyIDs)
}

// TestBulkRevokeLogsEachKey: each key revoked is logged by key_id, and the whole
// request once with its count; a dry run logs no revocation.
func TestBulkRevokeLogsEachKey(t *testing.T) {
	e := newImportEnv(t)
	var logs bytes.Buffer
	e.b.Backend.Setup(e.ctx, &logical.BackendConfig{ //nolint:errcheck // re-Setup only swaps the logger
		StorageView: e.storage, System: e.b.System(),
		Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}),
	})
	e.writeRole("web", nil)
	keys := []issued{e.issue("web", nil), e.issue("web", nil)}
	e.bulkRevoke(map[string]interface{}{"role": "web", "dry_run": true})
	require.NotContains(t, logs.String(), "revoked")
	e.bulkRevoke(map[string]interface{}{"role": "web"})
	for _, k := range keys {
		require.Contains(t, logs.String(), fmt.Sprintf("key revoked by bulk revoke: key_id=%s", k.keyID))
		require.NotContains(t, logs.String(), k.key)
	}
	require.Contains(t, logs.String(), "bulk revoke: revoked=2")
}
