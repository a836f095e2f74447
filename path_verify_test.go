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
