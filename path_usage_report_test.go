package apikey

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func (e *testEnv) report(r verifyapi.Report) (accepted, rejected int64) {
	e.t.Helper()
	resp := e.mustOK(logical.UpdateOperation, usageReportPath, wire(e.t, r.Data()))
	accepted, rejected, err := verifyapi.DecodeReportResponse(wire(e.t, resp.Data))
	require.NoError(e.t, err)
	return accepted, rejected
}

func TestUsageReport(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("free", nil)
	e.writeRole("quota", map[string]interface{}{"max_uses": 100})
	e.writeRole("rated", map[string]interface{}{"rate_limit": 100})
	free, quota, rated := e.issue("free", nil), e.issue("quota", nil), e.issue("rated", nil)
	tokenOf := func(k issued) string {
		res := e.verifyGrant(k.key, "gw", nil)
		require.Equal(t, verifyapi.CodeValid, res.Code)
		return res.ReportToken
	}
	freeToken, quotaToken, ratedToken := tokenOf(free), tokenOf(quota), tokenOf(rated)
	require.NotEqual(t, freeToken, quotaToken, "a token per key")

	accepted, rejected := e.report(verifyapi.Report{Holder: "gw", Entries: []verifyapi.ReportEntry{
		{KeyID: free.keyID, ReportToken: freeToken, Code: verifyapi.CodeValid, Count: 10, Uses: 12, Tags: []string{"route=/orders"}, ClientIP: "192.0.2.9"},
		{KeyID: rated.keyID, ReportToken: ratedToken, Code: verifyapi.CodeRateLimited, Count: 3},
		{KeyID: rated.keyID, ReportToken: ratedToken, Code: verifyapi.CodeValid, Count: 4, Uses: 4},
		{KeyID: quota.keyID, ReportToken: quotaToken, Code: verifyapi.CodeValid, Count: 5, Uses: 5},
		{KeyID: quota.keyID, ReportToken: freeToken, Code: verifyapi.CodeValid, Count: 1000, Uses: 1000}, // another key's token
		{KeyID: quota.keyID, ReportToken: strings.Repeat("0", 64), Code: verifyapi.CodeValid, Count: 1000, Uses: 1000},
		{KeyID: "0000000000000000", ReportToken: freeToken, Code: verifyapi.CodeValid, Count: 1000, Uses: 1000}, // no such key
		{KeyID: "not-a-key-id", ReportToken: freeToken, Code: verifyapi.CodeValid, Count: 1000, Uses: 1000},
	}})
	require.Equal(t, [2]int64{4, 4}, [2]int64{accepted, rejected})

	read := func(k issued) map[string]interface{} {
		return e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
	}
	require.Equal(t, int64(1+12), read(free)["use_count"], "uses served without verify count on keys without max_uses")
	require.Equal(t, int64(1+4), read(rated)["use_count"], "rate limits alone do not debit: the uses count")
	require.Equal(t, int64(1+16), read(quota)["use_count"], "max_uses keys were debited by their grant: not again")
	require.NotEmpty(t, read(quota)["last_used_at"])

	usage := e.mustOK(logical.ReadOperation, "keys/"+free.keyID+"/usage", nil).Data
	require.Equal(t, uint64(11), usage["all_time"].(map[string]uint64)[verifyapi.CodeValid], "the verify and the 10 reported")
	networks := fmt.Sprint(usage["networks"])
	require.Contains(t, networks, "192.0.2.0/24")
	require.Contains(t, fmt.Sprint(usage["tags"]), "/orders")
	ratedUsage := e.mustOK(logical.ReadOperation, "keys/"+rated.keyID+"/usage", nil).Data["all_time"].(map[string]uint64)
	require.Equal(t, uint64(3), ratedUsage[verifyapi.CodeRateLimited])
	quotaUsage := e.mustOK(logical.ReadOperation, "keys/"+quota.keyID+"/usage", nil).Data["all_time"].(map[string]uint64)
	require.Equal(t, uint64(6), quotaUsage[verifyapi.CodeValid], "rejected entries count nothing")

	// The metrics counters and the anomaly detector saw them too.
	idx, _ := usagestats.CodeIndex(verifyapi.CodeValid)
	require.Equal(t, uint64(11), e.b.counters.verificationCounts()["free"][idx])
	require.Positive(t, e.b.detector.Stats().Keys)

	// With counting off, accepted entries count no series (uses still count).
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"usage_counting": false})
	accepted, _ = e.report(verifyapi.Report{Holder: "gw", Entries: []verifyapi.ReportEntry{
		{KeyID: free.keyID, ReportToken: freeToken, Code: verifyapi.CodeValid, Count: 1, Uses: 1},
	}})
	require.Equal(t, int64(1), accepted)
	require.Equal(t, int64(14), read(free)["use_count"])
}

func TestUsageReportBadRequests(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("free", nil)
	k := e.issue("free", nil)
	token := e.verifyGrant(k.key, "gw", nil).ReportToken
	good := map[string]interface{}{"key_id": k.keyID, "report_token": token, "code": verifyapi.CodeValid, "count": 1}
	with := func(field string, value interface{}) []interface{} {
		bad := map[string]interface{}{}
		for f, v := range good {
			bad[f] = v
		}
		if value == nil {
			delete(bad, field)
		} else {
			bad[field] = value
		}
		return []interface{}{good, bad}
	}
	for _, tc := range []struct {
		data map[string]interface{}
		want string
	}{
		{map[string]interface{}{verifyapi.FieldEntries: []interface{}{good}}, verifyapi.FieldGrantHolder},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "g w", verifyapi.FieldEntries: []interface{}{good}}, verifyapi.FieldGrantHolder},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw"}, verifyapi.FieldEntries},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: "x"}, "entries[0]"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("tags", []interface{}{"no-equals"})}, "entries[1].tags"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("tags", "route=/a")}, "entries[1].tags"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("client_ip", "300.1.1.1")}, "entries[1].client_ip"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("client_ip", 7)}, "entries[1].client_ip"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("count", 0)}, "entries[1].count"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("count", -3)}, "entries[1].count"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("count", 1.5)}, "entries[1].count"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("count", nil)}, "entries[1].count"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("uses", -1)}, "entries[1].uses"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("code", verifyapi.CodeNotFound)}, "entries[1].code"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("code", verifyapi.CodeMalformed)}, "entries[1].code"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("code", "bogus")}, "entries[1].code"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("key_id", nil)}, "entries[1].key_id"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("report_token", nil)}, "entries[1].report_token"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: make([]interface{}, verifyapi.MaxReportEntries+1)}, "entries"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("uses", 2*maxCost+1)}, "entries[1].uses"},
		{map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: []interface{}{
			withCount(good, verifyapi.MaxReportCount), withCount(good, 1),
		}}, "entries: the counts of one report add up"},
	} {
		t.Run(fmt.Sprint(tc.want, " ", tc.data[verifyapi.FieldEntries]), func(t *testing.T) {
			before := storageSnapshot(t, e)
			e.mustFail(logical.UpdateOperation, usageReportPath, tc.data, tc.want)
			require.Equal(t, before, storageSnapshot(t, e))
		})
	}
	usage := e.mustOK(logical.ReadOperation, "keys/"+k.keyID+"/usage", nil).Data["all_time"].(map[string]uint64)
	require.Equal(t, uint64(1), usage[verifyapi.CodeValid], "no refused report counted anything, not even its good entries")
	require.Equal(t, int64(1), e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data["use_count"])
	// The error never echoes a report token.
	req := &logical.Request{Operation: logical.UpdateOperation, Path: usageReportPath, Storage: e.storage,
		Data: map[string]interface{}{verifyapi.FieldGrantHolder: "gw", verifyapi.FieldEntries: with("count", 0)}}
	resp, _ := e.b.HandleRequest(e.ctx, req)
	require.NotContains(t, resp.Error().Error(), token)
}

// TestUsageReportIsLarge: a report of many entries is not refused for its size.
func TestUsageReportIsLarge(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("free", nil)
	k := e.issue("free", nil)
	token := e.verifyGrant(k.key, "gw", nil).ReportToken
	entries := make([]verifyapi.ReportEntry, 2000)
	for i := range entries {
		entries[i] = verifyapi.ReportEntry{KeyID: k.keyID, ReportToken: token, Code: verifyapi.CodeValid, Count: 1, Uses: 1, Tags: []string{fmt.Sprintf("n=%d", i%50)}}
	}
	accepted, rejected := e.report(verifyapi.Report{Holder: "gw", Entries: entries})
	require.Equal(t, [2]int64{2000, 0}, [2]int64{accepted, rejected})
	require.Equal(t, int64(2001), e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data["use_count"])
}

func TestReportToken(t *testing.T) {
	secret, err := newHMACKey()
	require.NoError(t, err)
	a, b := reportToken(secret, "0123456789abcdef"), reportToken(secret, "fedcba9876543210")
	require.Len(t, a, 64)
	require.NotEqual(t, a, b, "one per key")
	require.NotEqual(t, fmt.Sprintf("%x", keyHash(secret, "0123456789abcdef")), a, "not a key hash of the key_id")
	other, err := newHMACKey()
	require.NoError(t, err)
	require.NotEqual(t, a, reportToken(other, "0123456789abcdef"), "one per mount")
	require.True(t, reportTokenValid(secret, "0123456789abcdef", a))
	for _, bad := range []string{b, "", a[:63], strings.ToUpper(a), a + "0"} {
		require.False(t, reportTokenValid(secret, "0123456789abcdef", bad))
	}
	require.False(t, reportTokenValid(nil, "0123456789abcdef", a), "no mount secret, no key, no token")
}

// withCount is entry with its count set to n.
func withCount(entry map[string]interface{}, n int64) map[string]interface{} {
	out := map[string]interface{}{}
	for f, v := range entry {
		out[f] = v
	}
	out["count"] = n
	return out
}
