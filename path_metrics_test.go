package apikey

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/promtext"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// metricsBody reads the metrics path as Vault would serve it for the mount apikey/.
func metricsBody(t *testing.T, e *testEnv) string {
	t.Helper()
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: e.storage, MountPoint: "apikey/"})
	require.NoError(t, err)
	require.Equal(t, promtext.ContentType, resp.Data[logical.HTTPContentType])
	require.Equal(t, 200, resp.Data[logical.HTTPStatusCode])
	return string(resp.Data[logical.HTTPRawBody].([]byte))
}

func TestMetricsCountEventsWithoutKeyMaterial(t *testing.T) {
	e := newTestEnv(t)
	k := usageTraffic(t, e)
	e.writeRole("metered", map[string]interface{}{"max_uses": 20, "ttl": "2h", "max_ttl": "24h"})
	m := e.issue("metered", nil)
	for range 19 {
		require.Equal(t, verifyapi.CodeValid, e.verify(map[string]interface{}{"api_key": m.key})["code"])
	}
	spent := e.issue("metered", nil)
	require.Equal(t, verifyapi.CodeValid, e.verify(map[string]interface{}{"api_key": spent.key, "cost": 20})["code"])
	gone := e.issue("metered", nil)
	rotated := e.mustOK(logical.UpdateOperation, "creds/orders/rotate", map[string]interface{}{"key_id": k.keyID, "grace_period": "1h"})
	require.NoError(t, e.revoke(gone))

	body := metricsBody(t, e)
	for _, want := range []string{
		`apikey_verifications_total{mount="apikey/",role="orders",code="VALID"} 3`,
		`apikey_verifications_total{mount="apikey/",role="orders",code="INSUFFICIENT_SCOPE"} 1`,
		`apikey_verifications_total{mount="apikey/",role="orders",code="NOT_FOUND"} 1`,
		`apikey_verifications_total{mount="apikey/",role="",code="MALFORMED"} 1`,
		`apikey_verifications_total{mount="apikey/",role="metered",code="VALID"} 20`,
		`apikey_keys_issued_total{mount="apikey/",role="metered"} 3`,
		`apikey_keys_issued_total{mount="apikey/",role="orders"} 1`,
		`apikey_keys_rotated_total{mount="apikey/",role="orders"} 1`,
		`apikey_keys_revoked_total{mount="apikey/",role="metered"} 1`,
		`apikey_keys{mount="apikey/",role="orders",status="active"} 1`,
		`apikey_keys{mount="apikey/",role="orders",status="rotated"} 1`,
		`apikey_keys{mount="apikey/",role="metered",status="active"} 2`,
		`apikey_keys_expiring{mount="apikey/",role="metered",within="24h"} 2`,
		`apikey_keys_quota_low{mount="apikey/",role="metered"} 1`,
		`apikey_keys_quota_exhausted{mount="apikey/",role="metered"} 1`,
		`apikey_usage_last_flush_timestamp_seconds{mount="apikey/"} 0`,
		`apikey_build_info{mount="apikey/",version="` + Version + `"} 1`,
		"# TYPE apikey_verifications_total counter",
		"# TYPE apikey_keys gauge",
	} {
		require.Contains(t, body, want+"\n")
	}
	require.Regexp(t, `apikey_verify_cache_lookups_total\{mount="apikey/",result="hit"\} [1-9]`, body)
	for _, secret := range []string{k.key, m.key, spent.key, rotated.Data["api_key"].(string), k.keyID, m.keyID} {
		require.NotContains(t, body, secret, "no key material and no per-key label")
	}

	// A flush sets the flush time; the key gauges are reused for a minute.
	require.Contains(t, body, `apikey_usage_unflushed{mount="apikey/"} 6`+"\n", "the mount, two roles, three keys verified")
	e.mustOK(logical.UpdateOperation, "tidy", nil)
	flushed := metricsBody(t, e)
	require.NotContains(t, flushed, `apikey_usage_last_flush_timestamp_seconds{mount="apikey/"} 0`+"\n")
	require.Contains(t, flushed, `apikey_usage_unflushed{mount="apikey/"} 0`+"\n")
	e.mustOK(logical.UpdateOperation, "keys/"+m.keyID, map[string]interface{}{"disabled": true})
	require.Contains(t, metricsBody(t, e), `apikey_keys{mount="apikey/",role="metered",status="active"} 2`+"\n", "cached")
	e.b.inventory.mu.Lock()
	e.b.inventory.last.at = e.b.inventory.last.at.Add(-inventoryMaxAge)
	e.b.inventory.mu.Unlock()
	body = metricsBody(t, e)
	require.Contains(t, body, `apikey_keys{mount="apikey/",role="metered",status="disabled"} 1`+"\n")
	require.Contains(t, body, `apikey_keys{mount="apikey/",role="metered",status="active"} 1`+"\n")
	require.Equal(t, 16, strings.Count(body, "# TYPE "))
}

// BenchmarkMetricsInventory is the scrape that recomputes the key gauges over 100k key
// records (at most once a minute; other scrapes reuse them).
func BenchmarkMetricsInventory(b *testing.B) {
	mount, storage := newListBenchEnv(b)
	req := &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: storage, MountPoint: "apikey/"}
	b.ReportAllocs()
	for b.Loop() {
		mount.inventory.mu.Lock()
		mount.inventory.last = nil
		mount.inventory.mu.Unlock()
		if _, err := mount.HandleRequest(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
