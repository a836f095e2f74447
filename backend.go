// Package apikey is a HashiCorp Vault secrets engine that makes Vault the system of record
// for API keys: roles define scopes, TTLs and restrictions; every issued key is a Vault
// lease; services check presented keys through the verify path.
package apikey

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/changefeed"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/grants"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/lru"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/ratelimit"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// maxCachedRoles bounds the role cache; a role past it is read from storage.
const maxCachedRoles = 10_000

// maxUnknownKeys bounds the cache of key_ids known not to exist (about 100 bytes each).
const maxUnknownKeys = 100_000

// maxRateBuckets bounds the rate limiter's memory (about 100 bytes a bucket).
const maxRateBuckets = 1_000_000

// operationPrefix names the engine's operations in Vault's OpenAPI document.
const operationPrefix = "api-key"

// Storage layout. keys/ is LocalStorage: leases are per cluster, so are key records.
const (
	rolePrefix        = "roles/"
	keyPrefix         = "keys/"
	configSettingsKey = "config/settings"
	// configSecretKey holds the per-mount HMAC secret. It is seal-wrapped and no path
	// ever returns it.
	configSecretKey = "config/secret"
	// usagePrefix holds the usage counts (usage_store.go). LocalStorage like keys/: each
	// cluster counts the verifications it answered.
	usagePrefix = "usage/"
)

// Factory is the plugin's logical.Factory.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	withCache := *conf
	if conf.System != nil {
		withCache.System = &cachedSystemView{SystemView: conf.System}
	}
	if err := b.Setup(ctx, &withCache); err != nil {
		return nil, err
	}
	return b, nil
}

// backend holds per-mount state only: one plugin process serves many mounts.
type backend struct {
	*framework.Backend

	// keyLocks serialise read-modify-write of one key record (update, rotate, revoke).
	keyLocks []*locksutil.LockEntry
	// roleLock serialises role writes (read-modify-write). Readers take no lock: the
	// role cache's generation check keeps what they read exact.
	roleLock sync.RWMutex

	// stateMu guards the lazily loaded mount secret and settings below.
	stateMu     sync.RWMutex
	mountSecret []byte
	settings    *settings

	// keyCache answers verify for repeated keys; local writes and Invalidate keep it exact.
	keyCache *lru.Cache[string, *keyEntry]
	// unknownKeys remembers key_ids storage does not hold, so that a flood of well-formed
	// keys with made-up ids costs no storage read after the first. Kept exact like
	// keyCache: every write of a key record removes its id, and so does Invalidate.
	unknownKeys *lru.Cache[string, struct{}]
	// verifyReplays holds recent verify results by request_id, so that a verify the
	// client retried (after a 5xx it got although the first attempt counted) is not
	// charged twice.
	verifyReplays *lru.Cache[verifyReplayKey, verifyReplay]
	// roleCache saves issuing a storage read per key; kept exact the same way.
	roleCache *lru.Cache[string, *role]
	// rateLimiter holds per-key token buckets: limits are per Vault node.
	rateLimiter *ratelimit.Limiter
	// imported finds keys imported from other systems (imported_index.go).
	imported *importedIndex
	// leakedLimiter bounds the unauthenticated leak reports (path_leaked.go).
	leakedLimiter *ratelimit.Limiter
	// usage counts uses in memory; PeriodicFunc flushes them to the key records.
	usage *usage.Tracker
	// stats counts verify outcomes over time in memory; PeriodicFunc flushes them under
	// usage/ (usage_store.go). statsFlushMu serialises flushes.
	stats        *usagestats.Recorder
	statsFlushMu sync.Mutex
	// detector learns each key's normal use and raises anomalies (anomaly_records.go);
	// anomalyLock serialises acknowledgements (read-modify-write of one record).
	detector    *anomaly.Detector
	anomalyLock sync.Mutex
	// countingOff mirrors settings.UsageCountingOff for verify's hot path.
	countingOff atomic.Bool
	// counters are the process's event counters for the metrics path.
	counters *engineCounters
	// grants is the book of quota grants handed to callers that serve many requests
	// per verify (fleet_grants.go); feed is the change feed they follow (path_feed.go).
	// Both live in memory only: a restart forgets grants (their uses stay spent) and
	// starts a feed of a new epoch (callers drop their caches).
	grants *grants.Table
	feed   *changefeed.Feed
	// inventory caches the key gauges of the metrics path.
	inventory inventoryCache
	// clock is time.Now except in builds with the testclock tag (testclock_on.go).
	clock clock

	// lastTidy is when the periodic tidy last ran on this node (guarded by stateMu).
	lastTidy time.Time
	// tidyRunning keeps a manual and a periodic tidy from running at once.
	tidyRunning atomic.Bool
}

func newBackend() *backend {
	b := &backend{
		keyLocks:      locksutil.CreateLocks(),
		keyCache:      lru.New[string, *keyEntry](defaultCacheSize),
		unknownKeys:   lru.New[string, struct{}](maxUnknownKeys),
		verifyReplays: lru.New[verifyReplayKey, verifyReplay](maxVerifyReplays),
		roleCache:     lru.New[string, *role](maxCachedRoles),
		rateLimiter:   ratelimit.New(maxRateBuckets),
		leakedLimiter: ratelimit.New(1),
		imported:      newImportedIndex(),
		usage:         usage.NewTracker(),
		stats:         newRecorder(),
		detector:      anomaly.NewDetector(maxDetectorKeys),
		counters:      newEngineCounters(),
		grants:        grants.New(grants.Config{MaxEntries: maxGrants, MaxPerAccount: maxGrantHolders}),
		feed:          changefeed.New(maxFeedEvents),
	}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configSecretKey},
			Unauthenticated: []string{leakedPath},
			LocalStorage:    []string{keyPrefix, usagePrefix, anomalyPrefix, identityPrefix, importedPrefix},
		},
		// Vault matches patterns in order and anchors every pattern at both ends, so none
		// can shadow another: creds/<role>/rotate and creds/<role>, keys/<key_id>/usage and
		// keys/<key_id> differ by the slash that a role name or key_id cannot contain;
		// usage/report and usage, grants/renew, feed are literal paths no other pattern
		// matches (keys/, roles/ and identities/ patterns all start with their prefix).
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathRoles(b),
			[]*framework.Path{pathCreds(b), pathRotate(b)},
			// import and revoke live outside keys/ so that an ACL on keys/+ (one key's
			// record) never grants importing or revoking many keys.
			[]*framework.Path{pathImport(b), pathBulkRevoke(b)},
			pathKeys(b),
			pathUsage(b),
			pathAnomalies(b),
			pathLimits(b),
			[]*framework.Path{pathVerify(b), pathTidy(b), pathMetrics(b), pathLeaked(b), pathLeakedCheck(b)},
			// The fleet paths (quota grants, change feed, usage reports): see fleet_grants.go.
			[]*framework.Path{pathGrantsRenew(b), pathFeed(b), pathUsageReport(b)},
			b.clock.paths(b),
		),
		Secrets:           []*framework.Secret{secretAPIKey(b)},
		WALRollback:       b.walRollback,
		WALRollbackMinAge: rotationWALMinAge,
		Invalidate:        b.invalidate,
		PeriodicFunc:      b.periodic,
		RunningVersion:    Version,
	}
	return b
}

// maxFieldBytes bounds each string a request carries (api_key excepted: verify answers
// MALFORMED for any key it cannot parse). No legitimate field comes near it; refusing
// larger values up front keeps error messages, which may echo input, small.
const maxFieldBytes = 16 << 10

// HandleRequest refuses oversized fields, routes as usual, and redacts anything shaped
// like a key from error messages: a client that puts its key in the wrong field must not
// find it echoed in a response, a log or an audit entry.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if clientOperation(req.Operation) {
		for field, value := range req.Data {
			if field != "api_key" && !allowsLargeField(req.Path, field) && !fleetLargeField(req.Path, field) && oversized(value) {
				return logical.ErrorResponse("%.60s: value is too long (at most %d bytes)", field, maxFieldBytes), nil
			}
		}
	}
	resp, err := b.Backend.HandleRequest(ctx, req)
	if resp != nil && resp.IsError() {
		if msg, ok := resp.Data["error"].(string); ok {
			resp.Data["error"] = redactKeys(msg)
		}
	}
	if err != nil {
		if msg := err.Error(); redactKeys(msg) != msg {
			var coded logical.HTTPCodedError
			if errors.As(err, &coded) {
				return resp, logical.CodedError(coded.Code(), redactKeys(msg))
			}
			return resp, errors.New(redactKeys(msg))
		}
	}
	return resp, err
}

// clientOperation reports whether op comes from a client request. Revoke, renew and
// rollback carry data Vault stored itself (the lease's response data, a WAL entry):
// refusing them for size would make a lease irrevocable.
func clientOperation(op logical.Operation) bool {
	switch op {
	case logical.CreateOperation, logical.UpdateOperation, logical.PatchOperation,
		logical.ReadOperation, logical.ListOperation, logical.DeleteOperation:
		return true
	}
	return false
}

// keyShaped matches a key prefix followed by enough base62 to carry key material.
var keyShaped = regexp.MustCompile(`[a-z][a-z0-9]{1,9}_[0-9A-Za-z]{12,}`)

func redactKeys(s string) string { return keyShaped.ReplaceAllString(s, "[redacted]") }

// oversized reports whether value, with everything nested in it, holds more than
// maxFieldBytes of strings, map keys and numbers.
func oversized(value interface{}) bool {
	budget := maxFieldBytes
	return !fitsIn(value, &budget)
}

// fitsIn subtracts value's size from budget and reports whether it stayed >= 0. It
// stops as soon as the budget is spent, so a huge value costs no more than a small one.
func fitsIn(value interface{}, budget *int) bool {
	switch v := value.(type) {
	case string:
		*budget -= len(v)
	case json.Number:
		*budget -= len(v)
	case []interface{}:
		for _, item := range v {
			if !fitsIn(item, budget) {
				return false
			}
		}
	case []string:
		for _, item := range v {
			if *budget -= len(item); *budget < 0 {
				return false
			}
		}
	case map[string]interface{}:
		for k, item := range v {
			*budget -= len(k)
			if !fitsIn(item, budget) {
				return false
			}
		}
	case map[string]string:
		for k, item := range v {
			if *budget -= len(k) + len(item); *budget < 0 {
				return false
			}
		}
	}
	return *budget >= 0
}

// invalidate is called on nodes that did not make a storage write themselves (replication,
// WAL replay): drop whatever the write made stale.
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case strings.HasPrefix(key, importedPrefix):
		b.invalidateImported(key)
	case strings.HasPrefix(key, keyPrefix):
		id := strings.TrimPrefix(key, keyPrefix)
		b.keyCache.Remove(id)
		b.unknownKeys.Remove(id)
		// Written on another node: what changed is unknown here (there is no storage to
		// read in Invalidate), so callers following this node's feed (a performance
		// standby answers reads) are told the key changed and ask verify again, which
		// the active node answers. Use-count flushes come too: a cache miss a minute.
		b.feed.Append(verifyapi.EventUpdated, id)
	case strings.HasPrefix(key, rolePrefix):
		b.roleCache.Remove(strings.TrimPrefix(key, rolePrefix))
	case key == configSecretKey:
		b.stateMu.Lock()
		b.mountSecret = nil
		b.stateMu.Unlock()
		b.keyCache.Purge()
		b.verifyReplays.Purge()
	case key == configSettingsKey:
		b.stateMu.Lock()
		b.settings = nil
		b.stateMu.Unlock()
	}
}

const backendHelp = `
The apikey secrets engine issues, verifies and revokes API keys.

Operators define roles (scopes, TTLs, restrictions) under roles/. Applications read
creds/<role> to get a key: every key is a Vault lease, renewable up to the role's max_ttl
and revoked when the lease ends. Services check presented keys with verify. keys/ is
the inventory (never the keys themselves: only an HMAC of each key is stored).
`
