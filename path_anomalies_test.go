package apikey

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// raise records an anomaly of kind for k at at, as verify does when the detector fires.
func raise(e *testEnv, k issued, role string, kind anomaly.Kind, at time.Time, action string) {
	e.b.raiseAnomaly(e.ctx, e.storage, anomaly.Anomaly{
		Key: k.keyID, Role: role, Kind: kind, At: at,
		Detail: "seen from 203.0.113.0/24, not among its 1 known network", Observed: 1, Baseline: 0, Network: "203.0.113.0/24",
	}, action)
}

func listAnomalies(e *testEnv, data map[string]interface{}) ([]string, map[string]interface{}) {
	e.t.Helper()
	resp := e.mustOK(logical.ListOperation, "anomalies/", data)
	keys, _ := resp.Data["keys"].([]string)
	return keys, resp.Data
}

func TestAnomalyRecordsListReadAcknowledge(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", nil)
	e.writeRole("reports", nil)
	a, b := e.issue("orders", nil), e.issue("reports", nil)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	raise(e, a, "orders", anomaly.NewNetwork, t0, anomalyActionLog)
	raise(e, a, "orders", anomaly.RateSpike, t0.Add(time.Hour), anomalyActionLog)
	raise(e, b, "reports", anomaly.SecretGuessing, t0.Add(2*time.Hour), anomalyActionLog)

	all, _ := listAnomalies(e, nil)
	require.Len(t, all, 3)
	require.True(t, strings.HasPrefix(all[0], "20260302T100000.000Z-"), "ids start with their time: %s", all[0])
	tests := []struct {
		name string
		data map[string]interface{}
		want []string
	}{
		{"role", map[string]interface{}{"role": "orders"}, all[:2]},
		{"key", map[string]interface{}{"key_id": b.keyID}, all[2:]},
		{"kind", map[string]interface{}{"kind": "rate_spike"}, all[1:2]},
		{"since", map[string]interface{}{"since": t0.Add(time.Hour).Format(time.RFC3339)}, all[1:]},
		{"until", map[string]interface{}{"until": t0.Add(time.Hour).Format(time.RFC3339)}, all[:1]},
		{"since and until in Unix seconds", map[string]interface{}{"since": "1772445600", "until": "1772452800"}, all[:2]},
		{"role and kind", map[string]interface{}{"role": "orders", "kind": "secret_guessing"}, nil},
		{"page", map[string]interface{}{"limit": "1", "after": all[0]}, all[1:2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := listAnomalies(e, tt.data)
			if tt.want == nil {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tt.want, got)
		})
	}
	_, page := listAnomalies(e, map[string]interface{}{"limit": "2"})
	require.Equal(t, all[1], page["next_after"])

	rec := e.mustOK(logical.ReadOperation, "anomalies/"+all[0], nil).Data
	require.Equal(t, a.keyID, rec["key_id"])
	require.Equal(t, "new_network", rec["kind"])
	require.Equal(t, "logged", rec["action"])
	require.Equal(t, "203.0.113.0/24", rec["network"])
	require.Equal(t, false, rec["acknowledged"])

	acked := e.mustOK(logical.UpdateOperation, "anomalies/"+all[0], map[string]interface{}{"acknowledged": true, "note": "new office"}).Data
	require.Equal(t, true, acked["acknowledged"])
	require.Equal(t, "new office", acked["note"])
	require.NotEmpty(t, acked["acknowledged_at"])
	open, _ := listAnomalies(e, map[string]interface{}{"acknowledged": "false"})
	require.Equal(t, all[1:], open)

	// Acknowledging does not re-enable anything, and verify is untouched by a logged one.
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(a.key))
	require.Contains(t, metricsBody(t, e), `apikey_anomalies_total{mount="apikey/",role="orders",kind="new_network"} 1`+"\n")
}

func TestAnomalyActionDisableDisablesAtOnce(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", map[string]interface{}{"anomaly_action": "disable"})
	k := e.issue("orders", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key), "warms the cache")
	raise(e, k, "orders", anomaly.NewNetwork, time.Now(), anomalyActionDisable)
	require.Equal(t, verifyapi.CodeDisabled, e.verifyCode(k.key), "the cached record was replaced")
	ids, _ := listAnomalies(e, nil)
	require.Len(t, ids, 1)
	require.Equal(t, "disabled", e.mustOK(logical.ReadOperation, "anomalies/"+ids[0], nil).Data["action"])
	require.Equal(t, true, e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data["disabled"])
}

func TestAnomalyPathsRefuseBadInput(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", nil)
	k := e.issue("orders", nil)
	raise(e, k, "orders", anomaly.DormantWake, time.Now(), anomalyActionLog)
	ids, _ := listAnomalies(e, nil)
	tests := []struct {
		name, path string
		op         logical.Operation
		data       map[string]interface{}
		want       string
	}{
		{"kind", "anomalies/", logical.ListOperation, map[string]interface{}{"kind": "weird"}, "kind:"},
		{"role", "anomalies/", logical.ListOperation, map[string]interface{}{"role": "Orders"}, "role"},
		{"key_id", "anomalies/", logical.ListOperation, map[string]interface{}{"key_id": "short"}, "key_id:"},
		{"since", "anomalies/", logical.ListOperation, map[string]interface{}{"since": "last week"}, "since:"},
		{"since after until", "anomalies/", logical.ListOperation, map[string]interface{}{"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "since:"},
		{"acknowledged", "anomalies/", logical.ListOperation, map[string]interface{}{"acknowledged": "maybe"}, "acknowledged:"},
		{"limit", "anomalies/", logical.ListOperation, map[string]interface{}{"limit": "0"}, "limit:"},
		{"after", "anomalies/", logical.ListOperation, map[string]interface{}{"after": "x"}, "after:"},
		{"read bad id", "anomalies/nope", logical.ReadOperation, nil, "id:"},
		{"update nothing", "anomalies/" + ids[0], logical.UpdateOperation, map[string]interface{}{}, "acknowledged:"},
		{"note too long", "anomalies/" + ids[0], logical.UpdateOperation, map[string]interface{}{"note": strings.Repeat("n", 1025)}, "note:"},
		{"update unknown", "anomalies/20260302T100000.000Z-00000000", logical.UpdateOperation, map[string]interface{}{"acknowledged": true}, "does not exist"},
		{"role anomaly_action", "roles/orders", logical.UpdateOperation, map[string]interface{}{"anomaly_action": "page"}, "anomaly_action"},
		{"role anomaly_off", "roles/orders", logical.UpdateOperation, map[string]interface{}{"anomaly_off": "rate_spike,sneezing"}, "anomaly_off"},
		{"role anomaly_rate_floor", "roles/orders", logical.UpdateOperation, map[string]interface{}{"anomaly_rate_floor": -1}, "anomaly_rate_floor"},
		{"role anomaly_dormancy", "roles/orders", logical.UpdateOperation, map[string]interface{}{"anomaly_dormancy": -5}, "anomaly_dormancy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.mustFail(tt.op, tt.path, tt.data, tt.want)
		})
	}
	// Nothing stored changed.
	rec := e.mustOK(logical.ReadOperation, "anomalies/"+ids[0], nil).Data
	require.Equal(t, false, rec["acknowledged"])
	require.Equal(t, "log", e.mustOK(logical.ReadOperation, "roles/orders", nil).Data["anomaly_action"])
	require.Nil(t, e.do(logical.ReadOperation, "anomalies/20260302T100000.000Z-00000000", nil), "404")
}

func TestRoleAnomalySettings(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", map[string]interface{}{
		"anomaly_action":          "disable",
		"anomaly_learning_period": "48h",
		"anomaly_dormancy":        "720h",
		"anomaly_rate_floor":      50,
		"anomaly_off":             "new_network,dormant_wake,new_network",
	})
	got := e.mustOK(logical.ReadOperation, "roles/orders", nil).Data
	require.Equal(t, "disable", got["anomaly_action"])
	require.Equal(t, int64(48*3600), got["anomaly_learning_period"])
	require.Equal(t, int64(720*3600), got["anomaly_dormancy"])
	require.Equal(t, 50, got["anomaly_rate_floor"])
	require.Equal(t, []string{"new_network", "dormant_wake"}, got["anomaly_off"])
	defaults := anomaly.Defaults()
	require.Equal(t, defaults.RateZ, got["anomaly_rate_z"], "unset fields show the defaults in force")

	// An update that sets one field keeps the others.
	e.mustOK(logical.UpdateOperation, "roles/orders", map[string]interface{}{"anomaly_action": "log"})
	got = e.mustOK(logical.ReadOperation, "roles/orders", nil).Data
	require.Equal(t, "log", got["anomaly_action"])
	require.Equal(t, 50, got["anomaly_rate_floor"])
}

// TestVerifyFeedsTheDetector: wrong secrets for one key_id in a burst, through verify,
// raise a secret_guessing anomaly with the real detector.
func TestVerifyFeedsTheDetector(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", nil)
	k := e.issue("orders", nil)
	require.Equal(t, verifyapi.CodeValid, e.verify(map[string]interface{}{"api_key": k.key, "client_ip": "198.51.100.7"})["code"])
	for range 40 {
		require.Equal(t, verifyapi.CodeNotFound, e.verify(map[string]interface{}{"api_key": forgeSameKeyID(t, k.key), "client_ip": "203.0.113.9"})["code"])
	}
	ids, data := listAnomalies(e, map[string]interface{}{"key_id": k.keyID, "kind": "secret_guessing"})
	require.Len(t, ids, 1, "one anomaly for the burst (cooldown), %v", data)
	rec := e.mustOK(logical.ReadOperation, "anomalies/"+ids[0], nil).Data
	require.Equal(t, "logged", rec["action"])
	require.NotContains(t, rec["detail"], k.key)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key), "anomaly_action=log leaves the key alone")
}
