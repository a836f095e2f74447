package apikey

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// usageTraffic issues a key of role "orders" (scope read) and sends a known mix of
// verifications; it returns the key.
func usageTraffic(t *testing.T, e *testEnv) issued {
	t.Helper()
	e.writeRole("orders", map[string]interface{}{"scopes": "read"})
	k := e.issue("orders", nil)
	valid := map[string]interface{}{"api_key": k.key, "scopes": "read", "client_ip": "10.1.2.3", "tags": []string{"route=/orders", "region=eu"}}
	for range 3 {
		require.Equal(t, verifyapi.CodeValid, e.verify(valid)["code"])
	}
	require.Equal(t, verifyapi.CodeInsufficientScope, e.verify(map[string]interface{}{"api_key": k.key, "scopes": "write", "client_ip": "2001:db8:7:1::9", "tags": "route=/admin"})["code"])
	require.Equal(t, verifyapi.CodeNotFound, e.verify(map[string]interface{}{"api_key": forgeSameKeyID(t, k.key), "client_ip": "10.1.2.200"})["code"])
	require.Equal(t, verifyapi.CodeMalformed, e.verifyCode("not-a-key"))
	return k
}

func TestVerifyOutcomesAreCountedPerKeyRoleAndMount(t *testing.T) {
	e := newTestEnv(t)
	k := usageTraffic(t, e)

	// Before any flush: the read includes what this node holds in memory.
	for _, flushed := range []bool{false, true} {
		if flushed {
			e.mustOK(logical.UpdateOperation, "tidy", nil)
			_, held := e.b.stats.Peek(usagestats.ScopeKey, k.keyID)
			require.False(t, held, "a flush leaves nothing counted in memory")
		}
		u := e.mustOK(logical.ReadOperation, "keys/"+k.keyID+"/usage", nil).Data
		require.Equal(t, map[string]uint64{"VALID": 3, "INSUFFICIENT_SCOPE": 1, "NOT_FOUND": 1}, u["totals"], "flushed=%v", flushed)
		require.EqualValues(t, 5, u["total"])
		require.EqualValues(t, 2, u["refusals"])
		require.Equal(t, "orders", u["role"])
		require.Equal(t, true, u["exists"])
		require.NotEmpty(t, u["last_used_at"])
		series := u["series"].([]map[string]interface{})
		require.Len(t, series, 1, "all traffic is in the current hour")
		require.EqualValues(t, 5, series[0]["total"])

		nets := u["networks"].([]map[string]interface{})
		byNet := map[string]map[string]interface{}{}
		for _, n := range nets {
			byNet[n["network"].(string)] = n
		}
		require.Len(t, byNet, 2)
		require.EqualValues(t, 4, byNet["10.1.2.0/24"]["count"])
		require.EqualValues(t, 1, byNet["10.1.2.0/24"]["refused"])
		require.EqualValues(t, 1, byNet["2001:db8:7::/48"]["count"])

		tags := map[string]uint64{}
		for _, tc := range u["tags"].([]map[string]interface{}) {
			tags[tc["name"].(string)+"="+tc["value"].(string)] = tc["total"].(uint64)
		}
		require.Equal(t, map[string]uint64{"route=/orders": 3, "region=eu": 3, "route=/admin": 1}, tags)

		mount := e.mustOK(logical.ReadOperation, "usage", nil).Data
		require.Equal(t, map[string]uint64{"VALID": 3, "INSUFFICIENT_SCOPE": 1, "NOT_FOUND": 1, "MALFORMED": 1}, mount["totals"])
		role := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"role": "orders"}).Data
		require.Equal(t, map[string]uint64{"VALID": 3, "INSUFFICIENT_SCOPE": 1, "NOT_FOUND": 1}, role["totals"])
	}
}

func TestUsageGroupings(t *testing.T) {
	e := newTestEnv(t)
	k := usageTraffic(t, e)
	quiet := e.issue("orders", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(quiet.key))
	// Before any flush, keys counted only in memory rank too, within their role.
	unflushed := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"group_by": "key", "role": "orders"}).Data["top_keys"].([]map[string]interface{})
	require.Len(t, unflushed, 2)
	require.Equal(t, k.keyID, unflushed[0]["key_id"])
	e.mustOK(logical.UpdateOperation, "tidy", nil)
	// One more after the flush: group_by=key merges memory with storage too.
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(quiet.key))

	top := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"group_by": "key"}).Data["top_keys"].([]map[string]interface{})
	require.Len(t, top, 2)
	require.Equal(t, k.keyID, top[0]["key_id"])
	require.EqualValues(t, 5, top[0]["total"])
	require.Equal(t, quiet.keyID, top[1]["key_id"])
	require.EqualValues(t, 2, top[1]["total"])

	byRefusals := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"group_by": "key", "top": "refusals", "limit": 5, "role": "orders"}).Data["top_keys"].([]map[string]interface{})
	require.Len(t, byRefusals, 1, "keys without refusals are left out")
	require.EqualValues(t, 2, byRefusals[0]["refusals"])
	none := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"group_by": "key", "role": "other"}).Data["top_keys"]
	require.Empty(t, none)

	// The mount's tags are its roles' tags together.
	tags := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"group_by": "tag", "tag": "route"}).Data
	got := map[string]uint64{}
	for _, tc := range tags["tags"].([]map[string]interface{}) {
		got[tc["value"].(string)] = tc["total"].(uint64)
	}
	require.Equal(t, map[string]uint64{"/orders": 3, "/admin": 1}, got)
	require.Len(t, tags["tag_series"], 1, "one day")

	outcome := e.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"granularity": "day"}).Data
	require.Equal(t, "day", outcome["granularity"])
	require.NotContains(t, outcome, "tags", "only group_by=tag ranks tags")
	require.EqualValues(t, 8, outcome["total"])
}

func TestUsageRange(t *testing.T) {
	e := newTestEnv(t)
	k := usageTraffic(t, e)
	path := "keys/" + k.keyID + "/usage"
	now := time.Now().UTC()
	hourStart := now.Truncate(time.Hour)
	tests := []struct {
		name  string
		data  map[string]interface{}
		total uint64
	}{
		{"default range", nil, 5},
		{"the current hour", map[string]interface{}{"start": hourStart.Format(time.RFC3339)}, 5},
		{"Unix seconds", map[string]interface{}{"start": hourStart.Unix(), "end": hourStart.Add(time.Hour).Unix()}, 5},
		{"before the traffic", map[string]interface{}{"start": hourStart.Add(-3 * time.Hour).Format(time.RFC3339), "end": hourStart.Format(time.RFC3339)}, 0},
		{"days", map[string]interface{}{"granularity": "day", "start": now.Add(-48 * time.Hour).Format(time.RFC3339)}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := e.mustOK(logical.ReadOperation, path, tt.data).Data
			require.EqualValues(t, tt.total, u["total"])
		})
	}
}

func TestUsageRefusesBadInput(t *testing.T) {
	e := newTestEnv(t)
	k := usageTraffic(t, e)
	keyUsage := "keys/" + k.keyID + "/usage"
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = "t" + string(rune('a'+i)) + "=x"
	}
	tests := []struct {
		name, path string
		op         logical.Operation
		data       map[string]interface{}
		want       string
	}{
		{"nine tags", "verify", logical.UpdateOperation, map[string]interface{}{"api_key": k.key, "tags": nine}, "tags: at most 8"},
		{"tag without value", "verify", logical.UpdateOperation, map[string]interface{}{"api_key": k.key, "tags": "route="}, "tags:"},
		{"tag with space", "verify", logical.UpdateOperation, map[string]interface{}{"api_key": k.key, "tags": "route=/a b"}, "tags:"},
		{"uppercase tag name", "verify", logical.UpdateOperation, map[string]interface{}{"api_key": k.key, "tags": "Route=/a"}, "tags:"},
		{"tag name twice", "verify", logical.UpdateOperation, map[string]interface{}{"api_key": k.key, "tags": []string{"a=1", "a=2"}}, "tags:"},
		{"bad tags before MALFORMED", "verify", logical.UpdateOperation, map[string]interface{}{"api_key": "nope", "tags": "x"}, "tags:"},
		{"granularity", keyUsage, logical.ReadOperation, map[string]interface{}{"granularity": "week"}, "granularity"},
		{"start garbage", keyUsage, logical.ReadOperation, map[string]interface{}{"start": "yesterday"}, "start:"},
		{"end garbage", "usage", logical.ReadOperation, map[string]interface{}{"end": "2026-13-01T00:00:00Z"}, "end:"},
		{"negative end", "usage", logical.ReadOperation, map[string]interface{}{"end": "-5"}, "end:"},
		{"start after end", "usage", logical.ReadOperation, map[string]interface{}{"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start:"},
		{"empty range", "usage", logical.ReadOperation, map[string]interface{}{"start": "1767225600", "end": "1767225600"}, "start:"},
		{"tag name", "usage", logical.ReadOperation, map[string]interface{}{"tag": "Route"}, "tag:"},
		{"group_by", "usage", logical.ReadOperation, map[string]interface{}{"group_by": "day"}, "group_by"},
		{"top", "usage", logical.ReadOperation, map[string]interface{}{"group_by": "key", "top": "latency"}, "top"},
		{"limit zero", "usage", logical.ReadOperation, map[string]interface{}{"group_by": "key", "limit": 0}, "limit"},
		{"limit too big", "usage", logical.ReadOperation, map[string]interface{}{"group_by": "key", "limit": 1001}, "limit"},
		{"limit not a number", "usage", logical.ReadOperation, map[string]interface{}{"group_by": "key", "limit": "ten"}, "limit:"},
		{"uppercase role", "usage", logical.ReadOperation, map[string]interface{}{"role": "Orders"}, "role"},
		{"bad key_id", "keys/short/usage", logical.ReadOperation, nil, "key_id"},
		{"usage_hours", "config", logical.UpdateOperation, map[string]interface{}{"usage_hours": 0}, "usage_hours"},
		{"usage_days", "config", logical.UpdateOperation, map[string]interface{}{"usage_days": 5000}, "usage_days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.mustFail(tt.op, tt.path, tt.data, tt.want)
		})
	}
	// Refused verifies count nothing.
	u := e.mustOK(logical.ReadOperation, keyUsage, nil).Data
	require.EqualValues(t, 5, u["total"])
}

func TestKeyUsageOfUnknownKeyIsNotFound(t *testing.T) {
	e := newTestEnv(t)
	resp := e.do(logical.ReadOperation, "keys/AAAAAAAAAAAAAAAA/usage", nil)
	require.Nil(t, resp, "404")
}

func TestUsageOutlivesRevocationAndRestart(t *testing.T) {
	e := newTestEnv(t)
	k := usageTraffic(t, e)
	require.NoError(t, e.revoke(k))
	e.mustOK(logical.UpdateOperation, "tidy", nil)

	restarted := &testEnv{t: t, b: newBackend(), storage: e.storage, ctx: e.ctx}
	u := restarted.mustOK(logical.ReadOperation, "keys/"+k.keyID+"/usage", nil).Data
	require.EqualValues(t, 5, u["total"], "flushed counts survive a restart")
	require.Equal(t, false, u["exists"])
	require.Equal(t, "orders", u["role"], "the role is stored with the counts")
	mount := restarted.mustOK(logical.ReadOperation, "usage", nil).Data
	require.EqualValues(t, 6, mount["total"])
	top := restarted.mustOK(logical.ReadOperation, "usage", map[string]interface{}{"group_by": "key", "role": "orders"}).Data["top_keys"].([]map[string]interface{})
	require.Len(t, top, 1, "a revoked key still ranks within its role")

	// Tidy keeps the usage of a gone key while any of it is within the retention, and
	// removes it after.
	require.Zero(t, restarted.mustOK(logical.UpdateOperation, "tidy", nil).Data["usage_deleted"])
	deleted, err := restarted.b.tidyUsage(e.ctx, e.storage, usagestats.Config{}.WithDefaults(), time.Now().Add(91*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, deleted, "the key's record; the role still exists")
	require.Nil(t, restarted.do(logical.ReadOperation, "keys/"+k.keyID+"/usage", nil))
}

func TestUsageCountingOff(t *testing.T) {
	e := newTestEnv(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"usage_counting": false})
	cfg := e.mustOK(logical.ReadOperation, "config", nil).Data
	require.Equal(t, false, cfg["usage_counting"])
	require.Equal(t, usagestats.DefaultHours, cfg["usage_hours"])
	require.Equal(t, usagestats.DefaultDays, cfg["usage_days"])
	e.writeRole("r", nil)
	k := e.issue("r", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))
	require.EqualValues(t, 0, e.mustOK(logical.ReadOperation, "usage", nil).Data["total"])
	require.NotContains(t, metricsBody(t, e), "apikey_verifications_total{")

	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"usage_counting": true, "usage_hours": 24})
	require.Equal(t, 24, e.mustOK(logical.ReadOperation, "config", nil).Data["usage_hours"])
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))
	require.EqualValues(t, 1, e.mustOK(logical.ReadOperation, "usage", nil).Data["total"])
	require.True(t, strings.Contains(metricsBody(t, e), `apikey_verifications_total{mount="apikey/",role="r",code="VALID"} 1`))
}
