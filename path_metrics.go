package apikey

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/promtext"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// inventoryMaxAge is how long the key gauges of the metrics path are reused: computing
// them reads every key record, which a scrape every 15 s must not repeat each time.
const inventoryMaxAge = time.Minute

// expiringWindows are the within labels of apikey_keys_expiring.
var expiringWindows = []struct {
	label string
	d     time.Duration
}{{"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}}

// quotaLowFraction: a key with max_uses and less than this share left counts as low.
const quotaLowFraction = 0.1

func pathMetrics(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "metrics$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "metrics",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathMetricsRead,
				Responses: map[int][]framework.Response{http.StatusOK: {{
					Description: "Prometheus text exposition format 0.0.4 (raw body, not JSON).",
					MediaType:   "text/plain",
				}}},
			},
		},
		HelpSynopsis:    strings.TrimSpace(metricsHelpSyn),
		HelpDescription: strings.TrimSpace(metricsHelpDesc),
	}
}

// inventoryCache holds the last key gauges computed.
type inventoryCache struct {
	mu   sync.Mutex
	last *inventorySnapshot
}

// inventorySnapshot counts keys per role.
type inventorySnapshot struct {
	at     time.Time
	byRole map[string]*roleInventory
}

type roleInventory struct {
	status         map[string]int
	expiring       []int // by expiringWindows
	quotaExhausted int
	quotaLow       int
}

// inventorySnapshot returns key gauges at most inventoryMaxAge old, computing them when
// needed (one at a time: concurrent scrapes wait for the same scan).
func (b *backend) inventorySnapshot(ctx context.Context, s logical.Storage, now time.Time) (*inventorySnapshot, error) {
	b.inventory.mu.Lock()
	defer b.inventory.mu.Unlock()
	if last := b.inventory.last; last != nil && now.Sub(last.at) < inventoryMaxAge && !now.Before(last.at) {
		return last, nil
	}
	ids, err := s.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	snap := &inventorySnapshot{at: now, byRole: make(map[string]*roleInventory)}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k, err := b.inventoryKeyEntry(ctx, s, id)
		if err != nil {
			return nil, err
		}
		if k == nil {
			continue
		}
		ri := snap.byRole[k.Role]
		if ri == nil {
			ri = &roleInventory{status: make(map[string]int), expiring: make([]int, len(expiringWindows))}
			snap.byRole[k.Role] = ri
		}
		status := keyStatus(k, now)
		ri.status[status]++
		if status == keyStatusExpired {
			continue
		}
		for i, w := range expiringWindows {
			if k.validUntil().Before(now.Add(w.d)) {
				ri.expiring[i]++
			}
		}
		if k.MaxUses > 0 {
			used := k.UseCount
			if c, _, ok := b.usage.Peek(k.KeyID); ok {
				used = c
			}
			left := k.MaxUses - used
			switch {
			case left <= 0:
				ri.quotaExhausted++
			case float64(left) < quotaLowFraction*float64(k.MaxUses):
				ri.quotaLow++
			}
		}
	}
	b.inventory.last = snap
	return snap, nil
}

func (b *backend) pathMetricsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	now := b.clock.now()
	snap, err := b.inventorySnapshot(ctx, req.Storage, now)
	if err != nil {
		return nil, err
	}
	mount := promtext.L("mount", req.MountPoint)
	fams := b.metricFamilies(mount, snap)
	var body bytes.Buffer
	if err := promtext.Write(&body, fams); err != nil {
		return nil, fmt.Errorf("writing metrics: %w", err)
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPContentType: promtext.ContentType,
		logical.HTTPRawBody:     body.Bytes(),
		logical.HTTPStatusCode:  http.StatusOK,
	}}, nil
}

// metricFamilies is the metrics path's content. No family has a per-key label (that
// would make series without bound) and none carries key material.
func (b *backend) metricFamilies(mount promtext.Label, snap *inventorySnapshot) []promtext.Family {
	build := promtext.Family{Name: "apikey_build_info", Help: "The plugin's version (always 1).", Type: promtext.Gauge}
	build.Add(1, mount, promtext.L("version", Version))

	verifications := promtext.Family{Name: "apikey_verifications_total", Help: "Verify outcomes by role (empty for keys not found) and code, since the plugin started.", Type: promtext.Counter}
	codes := verifyapi.Codes()
	for role, counts := range b.counters.verificationCounts() {
		// Every code of a role seen, zeros included: Prometheus cannot see the first
		// increase of a series that appears with 1, so the first USAGE_EXCEEDED would
		// go unnoticed by increase() and rate().
		for i, n := range counts {
			verifications.Add(float64(n), mount, promtext.L("role", role), promtext.L("code", codes[i]))
		}
	}

	issued := promtext.Family{Name: "apikey_keys_issued_total", Help: "Keys issued by role, since the plugin started.", Type: promtext.Counter}
	revoked := promtext.Family{Name: "apikey_keys_revoked_total", Help: "Key leases revoked by role, since the plugin started.", Type: promtext.Counter}
	rotated := promtext.Family{Name: "apikey_keys_rotated_total", Help: "Keys rotated by role, since the plugin started.", Type: promtext.Counter}
	leaked := promtext.Family{Name: "apikey_keys_leaked_total", Help: "Keys killed by leak reports (the leaked path) by role and action (revoke, disable), since the plugin started.", Type: promtext.Counter}
	for role, e := range b.counters.roleEvents() {
		r := promtext.L("role", role)
		issued.Add(float64(e.Issued), mount, r)
		revoked.Add(float64(e.Revoked), mount, r)
		rotated.Add(float64(e.Rotated), mount, r)
		leaked.Add(float64(e.LeakRevoked), mount, r, promtext.L("action", leakedActionRevoke))
		leaked.Add(float64(e.LeakDisabled), mount, r, promtext.L("action", leakedActionDisable))
	}

	keys := promtext.Family{Name: "apikey_keys", Help: "Keys by role and status (active, disabled, expired, rotated).", Type: promtext.Gauge}
	expiring := promtext.Family{Name: "apikey_keys_expiring", Help: "Keys not yet expired that stop verifying within 24h, 7d or 30d, by role.", Type: promtext.Gauge}
	exhausted := promtext.Family{Name: "apikey_keys_quota_exhausted", Help: "Keys with max_uses and no use left, by role.", Type: promtext.Gauge}
	low := promtext.Family{Name: "apikey_keys_quota_low", Help: "Keys with max_uses and less than 10% of it left, by role.", Type: promtext.Gauge}
	for role, ri := range snap.byRole {
		r := promtext.L("role", role)
		for _, status := range keyStatusNames() {
			keys.Add(float64(ri.status[status]), mount, r, promtext.L("status", status))
		}
		for i, w := range expiringWindows {
			expiring.Add(float64(ri.expiring[i]), mount, r, promtext.L("within", w.label))
		}
		exhausted.Add(float64(ri.quotaExhausted), mount, r)
		low.Add(float64(ri.quotaLow), mount, r)
	}
	inventoryAt := promtext.Family{Name: "apikey_inventory_timestamp_seconds", Help: "When the key gauges were computed (Unix seconds; they are reused for up to a minute).", Type: promtext.Gauge}
	inventoryAt.Add(float64(snap.at.Unix()), mount)

	lastFlush := promtext.Family{Name: "apikey_usage_last_flush_timestamp_seconds", Help: "When counts held in memory were last all written to storage (Unix seconds; 0 before the first flush).", Type: promtext.Gauge}
	lastFlush.Add(float64(b.counters.lastFlush.Load()), mount)
	unflushed := promtext.Family{Name: "apikey_usage_unflushed", Help: "Keys, roles and the mount with usage counts held in memory on this node, not yet written to storage.", Type: promtext.Gauge}
	unflushed.Add(float64(b.stats.Pending()), mount)
	flushErrors := promtext.Family{Name: "apikey_usage_flush_errors_total", Help: "Flushes of usage counts that failed, since the plugin started.", Type: promtext.Counter}
	flushErrors.Add(float64(b.counters.flushErrors.Load()), mount)

	anomalies := promtext.Family{Name: "apikey_anomalies_total", Help: "Anomalies raised by role and kind, since the plugin started.", Type: promtext.Counter}
	for rk, n := range b.counters.anomalyCounts() {
		anomalies.Add(float64(n), mount, promtext.L("role", rk[0]), promtext.L("kind", rk[1]))
	}

	cache := promtext.Family{Name: "apikey_verify_cache_lookups_total", Help: "Key record lookups by result: hit (memory) or miss (storage read).", Type: promtext.Counter}
	cache.Add(float64(b.counters.cacheHits.Load()), mount, promtext.L("result", "hit"))
	cache.Add(float64(b.counters.cacheMisses.Load()), mount, promtext.L("result", "miss"))

	return []promtext.Family{build, verifications, issued, revoked, rotated, leaked, keys, expiring, exhausted, low, inventoryAt, lastFlush, unflushed, flushErrors, anomalies, cache}
}

const metricsHelpSyn = `Prometheus metrics of this mount.`

const metricsHelpDesc = `
Returns the Prometheus text exposition format (not JSON): verify outcomes by role and
code, keys issued, revoked and rotated by role (counters since the plugin started on
this node), keys by role and status, keys expiring within 24h/7d/30d, keys whose
max_uses is spent or nearly spent (these gauges are recomputed at most once a minute),
when usage counts were last written to storage, and the verify cache's hits and misses.
No metric has a per-key label and none carries key material.

Scrape it with a token whose policy reads only this path (policies/metrics.hcl), for
example "metrics_path: /v1/apikey/metrics" with "authorization: credentials_file"
(docs/prometheus.yml); alert rules are in docs/alerts.yml, the whole story in
docs/monitoring.md. Counters count since the plugin started on the active node.
`
