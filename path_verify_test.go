package apikey

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestVerifyCodes(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "orders:*,users:read", "ttl": "1h"})
	e.writeRole("bound", map[string]interface{}{"scopes": "a", "bound_cidrs": "10.0.0.0/8,2001:db8::/32"})
	valid := e.issue("svc", nil)
	disabled := e.issue("svc", nil)
	e.mustOK(logical.UpdateOperation, "keys/"+disabled.keyID, map[string]interface{}{"disabled": true})
	bound := e.issue("bound", nil)

	expired := e.issue("svc", nil)
	e.b.keyCache.Purge()
	rec, err := e.b.storageKeyEntry(e.ctx, e.storage, expired.keyID)
	require.NoError(t, err)
	rec.ExpiresAt = time.Now().Add(-time.Second)
	require.NoError(t, e.b.putKeyEntry(e.ctx, e.storage, rec))

	// A well-formed key this mount never issued, and a real key_id with a wrong secret.
	other := newTestEnv(t)
	other.writeRole("svc", nil)
	unknown := other.issue("svc", nil)
	forged := forgeSameKeyID(t, valid.key)

	cases := []struct {
		name string
		data map[string]interface{}
		code string
	}{
		{"valid", map[string]interface{}{"api_key": valid.key}, verifyapi.CodeValid},
		{"valid with scopes", map[string]interface{}{"api_key": valid.key, "scopes": "orders:write,users:read"}, verifyapi.CodeValid},
		{"wildcard covers", map[string]interface{}{"api_key": valid.key, "scopes": []string{"orders:refund"}}, verifyapi.CodeValid},
		{"malformed garbage", map[string]interface{}{"api_key": "hello"}, verifyapi.CodeMalformed},
		{"malformed checksum", map[string]interface{}{"api_key": valid.key[:len(valid.key)-1] + flip(valid.key[len(valid.key)-1])}, verifyapi.CodeMalformed},
		{"malformed huge", map[string]interface{}{"api_key": strings.Repeat("a", 1<<20)}, verifyapi.CodeMalformed},
		{"not found unknown", map[string]interface{}{"api_key": unknown.key}, verifyapi.CodeNotFound},
		{"not found forged", map[string]interface{}{"api_key": forged}, verifyapi.CodeNotFound},
		{"disabled", map[string]interface{}{"api_key": disabled.key}, verifyapi.CodeDisabled},
		{"disabled before scope", map[string]interface{}{"api_key": disabled.key, "scopes": "nope"}, verifyapi.CodeDisabled},
		{"expired", map[string]interface{}{"api_key": expired.key}, verifyapi.CodeExpired},
		{"ip missing", map[string]interface{}{"api_key": bound.key}, verifyapi.CodeForbiddenIP},
		{"ip outside", map[string]interface{}{"api_key": bound.key, "client_ip": "192.168.0.1"}, verifyapi.CodeForbiddenIP},
		{"ip inside v4", map[string]interface{}{"api_key": bound.key, "client_ip": "10.1.2.3"}, verifyapi.CodeValid},
		{"ip inside v6", map[string]interface{}{"api_key": bound.key, "client_ip": "2001:db8::1"}, verifyapi.CodeValid},
		{"ip v4-mapped v6", map[string]interface{}{"api_key": bound.key, "client_ip": "::ffff:10.1.2.3"}, verifyapi.CodeValid},
		{"ip before scope", map[string]interface{}{"api_key": bound.key, "scopes": "b"}, verifyapi.CodeForbiddenIP},
		{"insufficient scope", map[string]interface{}{"api_key": valid.key, "scopes": "users:write"}, verifyapi.CodeInsufficientScope},
		{"wildcard does not cover other prefix", map[string]interface{}{"api_key": valid.key, "scopes": "order"}, verifyapi.CodeInsufficientScope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := e.verify(tc.data)
			require.Equal(t, tc.code, got["code"])
			require.Equal(t, tc.code == verifyapi.CodeValid, got["valid"])
			switch tc.code {
			case verifyapi.CodeMalformed, verifyapi.CodeNotFound:
				require.Len(t, got, 2, "nothing but valid and code: %v", got)
			default:
				for _, field := range []string{"key_id", "role", "name", "scopes", "metadata", "expires_at", "ttl"} {
					require.Contains(t, got, field)
				}
			}
			for _, v := range got {
				require.NotContains(t, fmt.Sprint(v), tc.data["api_key"].(string))
			}
		})
	}
}

func TestVerifyBadRequests(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	k := e.issue("svc", nil)
	cases := []struct {
		name string
		data map[string]interface{}
		want string
	}{
		{"missing api_key", map[string]interface{}{}, "api_key is required"},
		{"empty api_key", map[string]interface{}{"api_key": ""}, "api_key is required"},
		{"api_key wrong type", map[string]interface{}{"api_key": []int{1}}, "api_key"},
		{"bad scope", map[string]interface{}{"api_key": k.key, "scopes": "a b"}, "scopes"},
		{"bad client_ip", map[string]interface{}{"api_key": k.key, "client_ip": "300.1.1.1"}, "client_ip"},
		{"negative cost", map[string]interface{}{"api_key": k.key, "cost": -1}, "cost"},
		{"cost not a number", map[string]interface{}{"api_key": k.key, "cost": "x"}, "cost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.mustFail(logical.UpdateOperation, "verify", tc.data, tc.want)
		})
	}
}

func TestVerifyWarmCacheReadsNoStorage(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	k := e.issue("svc", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))

	down := &failingStorage{Storage: e.storage, failGet: true}
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: logical.UpdateOperation, Path: "verify", Storage: down,
		Data: map[string]interface{}{"api_key": k.key},
	})
	require.NoError(t, err)
	require.Equal(t, verifyapi.CodeValid, resp.Data["code"])
}

func TestVerifyCacheStaysExact(t *testing.T) {
	cases := []struct {
		name   string
		change func(e *testEnv, k issued)
		want   string
	}{
		{"delete", func(e *testEnv, k issued) { e.mustOK(logical.DeleteOperation, "keys/"+k.keyID, nil) }, verifyapi.CodeNotFound},
		{"disable", func(e *testEnv, k issued) {
			e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": true})
		}, verifyapi.CodeDisabled},
		{"revoke", func(e *testEnv, k issued) { require.NoError(e.t, e.revoke(k)) }, verifyapi.CodeNotFound},
		{"invalidate after a write by another node", func(e *testEnv, k issued) {
			// Another node deleted the record: storage changes, then Vault calls Invalidate.
			require.NoError(e.t, e.storage.Delete(e.ctx, keyPrefix+k.keyID))
			e.b.invalidate(e.ctx, keyPrefix+k.keyID)
		}, verifyapi.CodeNotFound},
		{"enable again", func(e *testEnv, k issued) {
			e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": true})
			require.Equal(e.t, verifyapi.CodeDisabled, e.verifyCode(k.key))
			e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": false})
		}, verifyapi.CodeValid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("svc", nil)
			k := e.issue("svc", nil)
			require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key)) // now cached
			tc.change(e, k)
			require.Equal(t, tc.want, e.verifyCode(k.key))
		})
	}
}

func TestVerifyConcurrentWithRevoke(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	keys := make([]issued, 20)
	for i := range keys {
		keys[i] = e.issue("svc", nil)
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				e.verifyCode(k.key)
			}
		}()
		go func() {
			defer wg.Done()
			require.NoError(t, e.revoke(k))
		}()
	}
	wg.Wait()
	for _, k := range keys {
		require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key), "a revoked key never comes back from the cache")
	}
}

// forgeSameKeyID builds a well-formed key with the same prefix and key_id but another
// secret part and a correct checksum, as an attacker who saw a key_id could.
func forgeSameKeyID(t *testing.T, key string) string {
	t.Helper()
	other, _, err := keyformat.Generate("vk")
	require.NoError(t, err)
	head := key[:len("vk_")+keyformat.KeyIDLen] + other[len("vk_")+keyformat.KeyIDLen:len(other)-keyformat.ChecksumLen]
	forged := head + keyformat.Checksum(head)
	_, err = keyformat.Parse(forged)
	require.NoError(t, err)
	return forged
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestVerifyRateLimit(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"rate_limit": 0.001, "rate_limit_burst": 2})
	k := e.issue("svc", nil)
	other := e.issue("svc", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key))
	got := e.verify(map[string]interface{}{"api_key": k.key})
	require.Equal(t, verifyapi.CodeRateLimited, got["code"])
	require.Equal(t, false, got["valid"])
	require.Greater(t, got["retry_after"].(int64), int64(900))
	require.Equal(t, 0.001, got["rate_limit"], "callers that cache learn the key is metered")
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(other.key), "limits are per key")

	// A tiny rate never yields a negative or absurd retry_after.
	e.writeRole("slow", map[string]interface{}{"rate_limit": minRateLimit})
	slow := e.issue("slow", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(slow.key))
	got = e.verify(map[string]interface{}{"api_key": slow.key})
	require.Equal(t, verifyapi.CodeRateLimited, got["code"])
	require.InDelta(t, 86400, got["retry_after"].(int64), 2)

	// Earlier checks win and take no token.
	e.writeRole("scoped", map[string]interface{}{"scopes": "a", "rate_limit": 0.001, "rate_limit_burst": 1})
	s := e.issue("scoped", nil)
	for i := 0; i < 3; i++ {
		require.Equal(t, verifyapi.CodeInsufficientScope, e.verifyCode(s.key, "b"))
	}
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(s.key, "a"))
}

func TestVerifyQuota(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "a", "max_uses": 5})
	k := e.issue("svc", nil)

	verify := func(cost int, scopes string) map[string]interface{} {
		data := map[string]interface{}{"api_key": k.key, "cost": cost}
		if scopes != "" {
			data["scopes"] = scopes
		}
		return e.verify(data)
	}
	got := verify(3, "")
	require.Equal(t, verifyapi.CodeValid, got["code"])
	require.Equal(t, int64(2), got["remaining_uses"])
	got = verify(3, "")
	require.Equal(t, verifyapi.CodeUsageExceeded, got["code"], "a cost beyond what is left is refused")
	require.Equal(t, int64(2), got["remaining_uses"])
	got = verify(1, "b")
	require.Equal(t, verifyapi.CodeInsufficientScope, got["code"], "a refused request uses nothing")
	require.Equal(t, int64(2), got["remaining_uses"])
	require.Equal(t, verifyapi.CodeValid, verify(0, "")["code"], "cost 0 checks without counting")
	require.Equal(t, verifyapi.CodeValid, verify(2, "")["code"])
	got = verify(0, "")
	require.Equal(t, verifyapi.CodeUsageExceeded, got["code"])
	require.Equal(t, int64(0), got["remaining_uses"])

	read := e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
	require.Equal(t, int64(0), read["remaining_uses"])
	require.Equal(t, int64(5), read["use_count"])

	// A huge cost can neither overflow the count nor buy uses back.
	fresh := e.issue("svc", nil)
	require.Equal(t, verifyapi.CodeValid, e.verify(map[string]interface{}{"api_key": fresh.key, "cost": 1})["code"])
	e.mustFail(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": fresh.key, "cost": int64(9223372036854775807)}, "cost")
	got = e.verify(map[string]interface{}{"api_key": fresh.key, "cost": maxCost})
	require.Equal(t, verifyapi.CodeUsageExceeded, got["code"])
	require.Equal(t, int64(4), got["remaining_uses"])
}

func TestVerifyConcurrentQuotaAndRateLimit(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("quota", map[string]interface{}{"max_uses": 100})
	e.writeRole("rate", map[string]interface{}{"rate_limit": 0.0001, "rate_limit_burst": 30})
	quota := e.issue("quota", nil)
	rate := e.issue("rate", nil)

	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				q := e.verifyCode(quota.key)
				r := e.verifyCode(rate.key)
				mu.Lock()
				counts["quota "+q]++
				counts["rate "+r]++
				mu.Unlock()
				if i%10 == 0 {
					require.NoError(t, e.b.flushUsage(e.ctx, e.storage)) // flushes race with verifies
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 100, counts["quota VALID"])
	require.Equal(t, 220, counts["quota USAGE_EXCEEDED"])
	require.Equal(t, 30, counts["rate VALID"])
	require.Equal(t, 290, counts["rate RATE_LIMITED"])
}

func benchmarkVerify(b *testing.B, cold bool) {
	e := newTestEnv(&testing.T{})
	e.t = nil
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.CreateOperation, Path: "roles/svc", Storage: e.storage,
		Data: map[string]interface{}{"scopes": "orders:*"}})
	if err != nil || resp.IsError() {
		b.Fatal(err, resp)
	}
	resp, err = e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/svc", Storage: e.storage})
	if err != nil || resp.IsError() {
		b.Fatal(err, resp)
	}
	key := resp.Data["api_key"].(string)
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: e.storage}
	b.ReportAllocs()
	for b.Loop() {
		if cold {
			e.b.keyCache.Purge()
		}
		req.Data = map[string]interface{}{"api_key": key, "scopes": []string{"orders:read"}}
		resp, err := e.b.HandleRequest(e.ctx, req)
		if err != nil || resp.Data["code"] != verifyapi.CodeValid {
			b.Fatal(err, resp)
		}
	}
}

func BenchmarkVerifyWarmCache(b *testing.B) { benchmarkVerify(b, false) }
func BenchmarkVerifyColdCache(b *testing.B) { benchmarkVerify(b, true) }

// BenchmarkVerifyCounting is verify with usage counting off and on, with the inputs
// counting records (two tags and a client address): the in-process cost of monitoring
// per verify (ns and allocations). make bench reports the same pair through Vault as
// ratio 8 of bench/load.
func BenchmarkVerifyCounting(b *testing.B) {
	for _, counting := range []bool{false, true} {
		name := "off"
		if counting {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			e := newTestEnv(&testing.T{})
			e.t = nil
			for _, r := range []*logical.Request{
				{Operation: logical.UpdateOperation, Path: "config", Data: map[string]interface{}{"usage_counting": counting}},
				{Operation: logical.CreateOperation, Path: "roles/svc", Data: map[string]interface{}{"scopes": "orders:*"}},
			} {
				r.Storage = e.storage
				if resp, err := e.b.HandleRequest(e.ctx, r); err != nil || (resp != nil && resp.IsError()) {
					b.Fatal(err, resp)
				}
			}
			resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/svc", Storage: e.storage})
			if err != nil || resp.IsError() {
				b.Fatal(err, resp)
			}
			key := resp.Data["api_key"].(string)
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: e.storage}
			b.ReportAllocs()
			for b.Loop() {
				req.Data = map[string]interface{}{"api_key": key, "scopes": []string{"orders:read"}, "client_ip": "192.0.2.10", "tags": []string{"route=/orders", "region=eu"}}
				resp, err := e.b.HandleRequest(e.ctx, req)
				if err != nil || resp.Data["code"] != verifyapi.CodeValid {
					b.Fatal(err, resp)
				}
			}
		})
	}
}

func BenchmarkVerifyMalformed(b *testing.B) {
	e := newTestEnv(&testing.T{})
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: e.storage}
	b.ReportAllocs()
	for b.Loop() {
		req.Data = map[string]interface{}{"api_key": "vk_nope"}
		resp, err := e.b.HandleRequest(e.ctx, req)
		if err != nil || resp.Data["code"] != verifyapi.CodeMalformed {
			b.Fatal(err, resp)
		}
	}
}

// TestVerifyUnknownKeyIDsReadStorageOnce: anyone can mint well-formed keys, so a
// repeated unknown key_id must not cost a storage read each time; the cache of unknown
// ids stays exact when the id is issued here or written by another node.
func TestVerifyUnknownKeyIDsReadStorageOnce(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	e.issue("svc", nil) // the mount secret exists
	counting := &countingStorage{Storage: e.storage}
	verifyWith := func(s logical.Storage, key string) string {
		resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
			Operation: logical.UpdateOperation, Path: "verify", Storage: s,
			Data: map[string]interface{}{"api_key": key},
		})
		require.NoError(t, err)
		return resp.Data["code"].(string)
	}

	key, keyID, err := keyformat.Generate(keyformat.DefaultPrefix)
	require.NoError(t, err)
	require.Equal(t, verifyapi.CodeNotFound, verifyWith(counting, key))
	reads := counting.gets.Load()
	require.Positive(t, reads)
	for range 100 {
		require.Equal(t, verifyapi.CodeNotFound, verifyWith(counting, key))
	}
	require.Equal(t, reads, counting.gets.Load(), "repeats of an unknown key_id read no storage")

	// Another node stores a record under that id, then Vault calls Invalidate.
	rec := &keyEntry{KeyID: keyID, Role: "svc", Hash: []byte("x"), ExpiresAt: time.Now().Add(time.Hour)}
	entry, err := logical.StorageEntryJSON(keyPrefix+keyID, rec)
	require.NoError(t, err)
	require.NoError(t, e.storage.Put(e.ctx, entry))
	e.b.invalidate(e.ctx, keyPrefix+keyID)
	verifyWith(counting, key)
	require.Greater(t, counting.gets.Load(), reads, "an invalidated id is read again")

	// A local write of the id drops it from the cache too.
	other, otherID, err := keyformat.Generate(keyformat.DefaultPrefix)
	require.NoError(t, err)
	require.Equal(t, verifyapi.CodeNotFound, verifyWith(counting, other))
	secret, err := e.b.getMountSecret(e.ctx, e.storage)
	require.NoError(t, err)
	require.NoError(t, e.b.putKeyEntry(e.ctx, e.storage, &keyEntry{KeyID: otherID, Role: "svc", Hash: keyHash(secret, other), ExpiresAt: time.Now().Add(time.Hour)}))
	require.Equal(t, verifyapi.CodeValid, verifyWith(counting, other))
}

// TestVerifyRequestIDIsNotChargedTwice: the Vault client retries a verify after a 5xx
// with the same body; with a request_id the retry returns the first count.
func TestVerifyRequestIDIsNotChargedTwice(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 3, "scopes": "a"})
	k := e.issue("svc", nil)
	check := func(id string, extra map[string]interface{}) map[string]interface{} {
		data := map[string]interface{}{"api_key": k.key, "request_id": id}
		for f, v := range extra {
			data[f] = v
		}
		return e.verify(data)
	}

	first := check("req-1", nil)
	require.Equal(t, verifyapi.CodeValid, first["code"])
	require.Equal(t, int64(2), first["remaining_uses"])
	for range 3 {
		again := check("req-1", nil)
		require.Equal(t, verifyapi.CodeValid, again["code"])
		require.Equal(t, int64(2), again["remaining_uses"], "a retry is not charged")
	}
	// Another id, or the same id with another cost or scope, is a new check.
	require.Equal(t, int64(1), check("req-2", nil)["remaining_uses"])
	require.Equal(t, int64(0), check("req-1", map[string]interface{}{"scopes": "a"})["remaining_uses"])
	require.Equal(t, verifyapi.CodeUsageExceeded, check("req-3", nil)["code"])

	// A replay never resurrects a key disabled since the first attempt.
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID, map[string]interface{}{"disabled": true})
	require.Equal(t, verifyapi.CodeDisabled, check("req-1", nil)["code"])

	e.mustFail(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": k.key, "request_id": "bad id"}, "request_id must be")
	e.mustFail(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": k.key, "request_id": strings.Repeat("a", 65)}, "request_id must be")
}

// TestVerifyAddressFormsAgree: bound_cidrs and client_ip match whatever form each is
// written in (IPv4-mapped IPv6 networks and addresses are their IPv4 selves), as the
// middleware's trusted proxies do (internal/clientaddr).
func TestVerifyAddressFormsAgree(t *testing.T) {
	cases := []struct{ bound, client, want string }{
		{"::ffff:10.0.0.0/104", "10.0.0.5", verifyapi.CodeValid},
		{"10.0.0.0/8", "::ffff:10.0.0.5", verifyapi.CodeValid},
		{"::ffff:10.0.0.5", "10.0.0.5", verifyapi.CodeValid},
		{"fe80::1", "fe80::1%eth0", verifyapi.CodeValid},
		{"::ffff:10.0.0.0/104", "11.0.0.5", verifyapi.CodeForbiddenIP},
	}
	for _, tc := range cases {
		t.Run(tc.bound+" "+tc.client, func(t *testing.T) {
			e := newTestEnv(t)
			e.writeRole("svc", map[string]interface{}{"bound_cidrs": tc.bound})
			k := e.issue("svc", nil)
			require.Equal(t, tc.want, e.verify(map[string]interface{}{"api_key": k.key, "client_ip": tc.client})["code"])
		})
	}
}

// chargeAt runs verify's charging step for key keyID at now, as pathVerify does after
// its checks, so tests can cross refill and rate-limit boundaries without waiting.
func (e *testEnv) chargeAt(keyID string, cost int64, now time.Time) charge {
	e.t.Helper()
	k, err := e.b.cachedKeyEntry(e.ctx, e.storage, keyID)
	require.NoError(e.t, err)
	require.NotNil(e.t, k)
	account, err := e.b.accountKey(e.ctx, e.storage, k)
	require.NoError(e.t, err)
	seed, err := e.b.creditSeed(e.ctx, e.storage, account, now)
	require.NoError(e.t, err)
	return e.b.chargeKey(account, seed, cost, now)
}

// TestVerifyNamedRateLimits: every limit is checked, the refusal names the limit with
// its own retry_after, and a refused request takes no token from any limit.
func TestVerifyNamedRateLimits(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("named", map[string]interface{}{"rate_limits": "burst=1/1h,daily=5/24h"})
	k := e.issue("named", nil)
	got := e.verify(map[string]interface{}{"api_key": k.key})
	require.Equal(t, verifyapi.CodeValid, got["code"])
	require.InDelta(t, 5.0/86400, got["rate_limit"], 1e-12, "the slowest rate tells caching callers the key is metered")
	got = e.verify(map[string]interface{}{"api_key": k.key})
	require.Equal(t, verifyapi.CodeRateLimited, got["code"])
	require.Equal(t, "burst", got["rate_limit_name"])
	require.InDelta(t, 3600, got["retry_after"].(int64), 2)

	// rate_limit keeps working as one limit, named default, beside named ones.
	e.writeRole("legacy", map[string]interface{}{"rate_limit": 0.001, "rate_limit_burst": 1, "rate_limits": "hour=10/1h"})
	l := e.issue("legacy", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(l.key))
	got = e.verify(map[string]interface{}{"api_key": l.key})
	require.Equal(t, verifyapi.CodeRateLimited, got["code"])
	require.Equal(t, "default", got["rate_limit_name"])
	require.Equal(t, 0.001, got["rate_limit"])
	e.writeRole("only", map[string]interface{}{"rate_limit": 0.001, "rate_limit_burst": 1})
	o := e.issue("only", nil)
	e.verifyCode(o.key)
	require.Equal(t, "default", e.verify(map[string]interface{}{"api_key": o.key})["rate_limit_name"])

	// Through the charging step at chosen times: burst=1/1h refuses for an hour while
	// daily=5/24h still has 4 tokens (and gains 5/24 an hour). Ten refusals take none of
	// them: the next five hours each admit one request, and only the sixth runs into
	// daily.
	e.writeRole("times", map[string]interface{}{"rate_limits": "burst=1/1h,daily=5/24h"})
	tk := e.issue("times", nil)
	t0 := time.Now()
	require.Equal(t, verifyapi.CodeValid, e.chargeAt(tk.keyID, 1, t0).code)
	for range 10 {
		c := e.chargeAt(tk.keyID, 1, t0.Add(time.Minute))
		require.Equal(t, verifyapi.CodeRateLimited, c.code)
		require.Equal(t, "burst", c.limitName)
		require.InDelta(t, 59*time.Minute, c.retryAfter, float64(time.Second))
	}
	for h := 1; h <= 5; h++ {
		c := e.chargeAt(tk.keyID, 1, t0.Add(time.Duration(h)*time.Hour))
		require.Equal(t, verifyapi.CodeValid, c.code, "hour %d: daily was not charged by the refusals", h)
	}
	c := e.chargeAt(tk.keyID, 1, t0.Add(6*time.Hour))
	require.Equal(t, verifyapi.CodeRateLimited, c.code)
	require.Equal(t, "daily", c.limitName, "six in six hours: daily (5/24h) is spent, burst is not")
	require.InDelta(t, 3.6*float64(time.Hour), c.retryAfter, float64(time.Minute), "(1 - 0.25 tokens) at 5/24h")

	// The other way round: a refusal by daily takes nothing from burst.
	e.writeRole("twice", map[string]interface{}{"rate_limits": "burst=2/1h,daily=1/24h"})
	wk := e.issue("twice", nil)
	require.Equal(t, verifyapi.CodeValid, e.chargeAt(wk.keyID, 1, t0).code)
	for range 5 {
		require.Equal(t, "daily", e.chargeAt(wk.keyID, 1, t0).limitName)
	}
	// A key's state is one bucket per limit, whatever the windows.
	fresh := e.issue("twice", nil)
	before := e.b.rateLimiter.Buckets()
	e.chargeAt(fresh.keyID, 1, t0)
	require.Equal(t, 2, e.b.rateLimiter.Buckets()-before)
}

// TestVerifyRefillBoundaries crosses refill boundaries through the charging step, which
// verify runs with b.clock.now(): remaining uses become refill_amount at each period
// start, unspent uses do not carry over, and nothing is written to storage for it.
func TestVerifyRefillBoundaries(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("daily", map[string]interface{}{"max_uses": 3, "refill_interval": "daily", "refill_amount": 5})
	k := e.issue("daily", nil)
	rec := e.record(k.keyID)
	require.NotNil(t, rec.Refill)
	require.Equal(t, int64(5), rec.Refill.Amount)
	issued := time.Unix(rec.Credits.Period, 0).Add(time.Second) // in the period the key was issued in
	boundary := rec.Refill.next(issued)

	steps := []struct {
		name          string
		at            time.Time
		cost          int64
		wantCode      string
		wantRemaining int64
	}{
		{"max_uses in the first period", issued, 3, verifyapi.CodeValid, 0},
		{"spent", issued.Add(time.Hour), 1, verifyapi.CodeUsageExceeded, 0},
		{"a second before the boundary", boundary.Add(-time.Second), 1, verifyapi.CodeUsageExceeded, 0},
		{"at the boundary: refill_amount", boundary, 1, verifyapi.CodeValid, 4},
		{"cost 0 checks", boundary.Add(time.Minute), 0, verifyapi.CodeValid, 4},
		{"a cost over what is left", boundary.Add(time.Hour), 5, verifyapi.CodeUsageExceeded, 4},
		{"unspent uses do not carry over", boundary.Add(24 * time.Hour), 5, verifyapi.CodeValid, 0},
		{"two periods later: one refill", boundary.Add(72 * time.Hour), 0, verifyapi.CodeValid, 5},
	}
	before := storageSnapshot(t, e)
	for _, s := range steps {
		c := e.chargeAt(k.keyID, s.cost, s.at)
		require.Equal(t, s.wantCode, c.code, s.name)
		require.Equal(t, s.wantRemaining, c.remaining, s.name)
	}
	require.Equal(t, before, storageSnapshot(t, e), "refills are computed, never written by verify")

	// The flushed state carries the refill: a new backend on the same storage agrees.
	require.NoError(t, e.b.flushUsage(e.ctx, e.storage))
	rec = e.record(k.keyID)
	require.Equal(t, int64(9), rec.UseCount)
	require.Equal(t, boundary.Add(72*time.Hour).Unix(), rec.Credits.Period, "the state of the last period seen")
	require.Equal(t, int64(14), rec.Credits.Limit)
	e2 := reopen(t, e)
	c := e2.chargeAt(k.keyID, 5, boundary.Add(73*time.Hour))
	require.Equal(t, verifyapi.CodeValid, c.code, "after a restart, the same period's credits")
	require.Equal(t, verifyapi.CodeUsageExceeded, e2.chargeAt(k.keyID, 1, boundary.Add(74*time.Hour)).code)
	c = e2.chargeAt(k.keyID, 0, boundary.Add(96*time.Hour))
	require.Equal(t, int64(5), c.remaining, "the next period refills")

	// Monthly, in UTC calendar months.
	e.writeRole("monthly", map[string]interface{}{"max_uses": 2, "refill_interval": "monthly"})
	m := e.issue("monthly", nil)
	mrec := e.record(m.keyID)
	start := time.Unix(mrec.Credits.Period, 0).UTC()
	require.Equal(t, 1, start.Day())
	require.Equal(t, verifyapi.CodeValid, e.chargeAt(m.keyID, 2, start).code)
	require.Equal(t, verifyapi.CodeUsageExceeded, e.chargeAt(m.keyID, 1, start.AddDate(0, 1, 0).Add(-time.Second)).code)
	c = e.chargeAt(m.keyID, 1, start.AddDate(0, 1, 0))
	require.Equal(t, verifyapi.CodeValid, c.code)
	require.Equal(t, int64(1), c.remaining, "refill_amount defaults to max_uses")

	// keys/<key_id> shows the next refill.
	read := e.mustOK(logical.ReadOperation, "keys/"+m.keyID, nil).Data
	require.Equal(t, "monthly", read["refill_interval"])
	require.Equal(t, int64(2), read["refill_amount"])
	require.NotEmpty(t, read["next_refill_at"])
}

// reopen is a new backend on e's storage, as after a restart of the plugin.
func reopen(t *testing.T, e *testEnv) *testEnv {
	t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = e.storage
	config.System = testSystemView()
	raw, err := Factory(e.ctx, config)
	require.NoError(t, err)
	next := &testEnv{t: t, b: raw.(*backend), storage: e.storage, ctx: e.ctx}
	return next
}

// TestVerifyRestartKeepsSpentCredits: spent credits, a top-up and shared credits are
// flushed and survive a new backend on the same storage.
func TestVerifyRestartKeepsSpentCredits(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("quota", map[string]interface{}{"max_uses": 10})
	e.writeRole("shared", map[string]interface{}{"max_uses": 10, "shared_limits": true, "allow_identity": true})
	own := e.issue("quota", nil)
	a := e.issue("shared", map[string]interface{}{"identity": "acme"})
	b := e.issue("shared", map[string]interface{}{"identity": "acme"})
	e.verify(map[string]interface{}{"api_key": own.key, "cost": 4})
	e.mustOK(logical.UpdateOperation, "keys/"+own.keyID+"/credits", map[string]interface{}{"add": 5}) // 11 left
	e.verify(map[string]interface{}{"api_key": own.key, "cost": 1})                                   // 10 left
	e.verify(map[string]interface{}{"api_key": a.key, "cost": 3})
	e.verify(map[string]interface{}{"api_key": b.key, "cost": 4})
	require.NoError(t, e.b.periodic(e.ctx, &logical.Request{Storage: e.storage}))

	e2 := reopen(t, e)
	got := e2.verify(map[string]interface{}{"api_key": own.key, "cost": 0})
	require.Equal(t, int64(10), got["remaining_uses"])
	got = e2.verify(map[string]interface{}{"api_key": b.key, "cost": 0})
	require.Equal(t, int64(3), got["remaining_uses"], "the identity's 10, less 3 and 4")
	require.Equal(t, verifyapi.CodeUsageExceeded, e2.verify(map[string]interface{}{"api_key": a.key, "cost": 4})["code"])
	read := e2.mustOK(logical.ReadOperation, "keys/"+a.keyID, nil).Data
	require.Equal(t, int64(3), read["use_count"], "each key keeps its own use count")
	require.Equal(t, int64(3), read["remaining_uses"])
}

func benchmarkVerifyRole(b *testing.B, role map[string]interface{}, issue map[string]interface{}) {
	e := newTestEnv(&testing.T{})
	e.t = nil
	if resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.CreateOperation, Path: "roles/svc", Storage: e.storage, Data: role}); err != nil || resp.IsError() {
		b.Fatal(err, resp)
	}
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "creds/svc", Storage: e.storage, Data: issue})
	if err != nil || resp.IsError() {
		b.Fatal(err, resp)
	}
	key := resp.Data["api_key"].(string)
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: e.storage}
	b.ReportAllocs()
	for b.Loop() {
		req.Data = map[string]interface{}{"api_key": key, "scopes": []string{"orders:read"}}
		resp, err := e.b.HandleRequest(e.ctx, req)
		if err != nil || resp.Data["code"] != verifyapi.CodeValid {
			b.Fatal(err, resp)
		}
	}
}

// BenchmarkVerifyLimits is BenchmarkVerifyWarmCache for keys with the limits of
// role_limits.go: two named rate limits, credits that refill, and limits and credits
// shared by an identity (high enough never to refuse).
func BenchmarkVerifyLimits(b *testing.B) {
	for _, bc := range []struct {
		name  string
		role  map[string]interface{}
		issue map[string]interface{}
	}{
		{"none", map[string]interface{}{"scopes": "orders:*"}, nil},
		{"two limits", map[string]interface{}{"scopes": "orders:*", "rate_limits": "burst=1000000000/1s,daily=1000000000/24h"}, nil},
		{"credits refill", map[string]interface{}{"scopes": "orders:*", "max_uses": int64(maxCredits), "refill_interval": "daily"}, nil},
		{"shared", map[string]interface{}{"scopes": "orders:*", "rate_limits": "burst=1000000000/1s,daily=1000000000/24h", "max_uses": int64(maxCredits), "shared_limits": true, "allow_identity": true}, map[string]interface{}{"identity": "acme"}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchmarkVerifyRole(b, bc.role, bc.issue) })
	}
}

// BenchmarkChargeKey is verify's charging step alone (rate limits and credits), where
// the limits of role_limits.go cost what they cost: whole verifies are dominated by the
// framework and the HMAC (BenchmarkVerifyLimits).
func BenchmarkChargeKey(b *testing.B) {
	for _, bc := range []struct {
		name  string
		role  map[string]interface{}
		issue map[string]interface{}
	}{
		{"none", nil, nil},
		{"rate_limit", map[string]interface{}{"rate_limit": 1e9}, nil},
		{"two limits", map[string]interface{}{"rate_limits": "burst=1000000000/1s,daily=1000000000/24h"}, nil},
		{"credits refill", map[string]interface{}{"max_uses": int64(maxCredits), "refill_interval": "daily"}, nil},
		{"shared", map[string]interface{}{"rate_limits": "burst=1000000000/1s,daily=1000000000/24h", "max_uses": int64(maxCredits), "shared_limits": true, "allow_identity": true}, map[string]interface{}{"identity": "acme"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newTestEnv(&testing.T{})
			e.t = nil
			if resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.CreateOperation, Path: "roles/svc", Storage: e.storage, Data: bc.role}); err != nil || resp.IsError() {
				b.Fatal(err, resp)
			}
			resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "creds/svc", Storage: e.storage, Data: bc.issue})
			if err != nil || resp.IsError() {
				b.Fatal(err, resp)
			}
			k, err := e.b.cachedKeyEntry(e.ctx, e.storage, resp.Data["key_id"].(string))
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			seed, err := e.b.creditSeed(e.ctx, e.storage, k, now)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if c := e.b.chargeKey(k, seed, 1, now); c.code != verifyapi.CodeValid {
					b.Fatal(c)
				}
			}
		})
	}
}
