package apikey

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

const testEntity = "5e5b3a4e-1c5d-4a57-9c39-2a1f0e0c6b7d"

func TestKeyIdentity(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", nil)
	e.writeRole("customers", map[string]interface{}{"allow_identity": true})

	cases := []struct {
		name   string
		entity string
		role   string
		data   map[string]interface{}
		want   string
	}{
		{"the issuing token's entity", testEntity, "svc", nil, testEntity},
		{"a root token without entity: none", "", "svc", nil, ""},
		{"explicit, where the role allows it", testEntity, "customers", map[string]interface{}{"identity": "customer:acme"}, "customer:acme"},
		{"the entity where the role allows but none is given", testEntity, "customers", map[string]interface{}{"name": "x"}, testEntity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := e.issueAs(tc.entity, tc.role, tc.data)
			require.Equal(t, tc.want, e.record(k.keyID).Identity)
			v := e.verify(map[string]interface{}{"api_key": k.key})
			read := e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
			require.Equal(t, tc.want, read["identity"])
			if tc.want == "" {
				require.NotContains(t, k.data, "identity")
				require.NotContains(t, v, "identity", "keys without an identity answer as before")
				return
			}
			require.Equal(t, tc.want, k.data["identity"])
			require.Equal(t, tc.want, v["identity"])
			list := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{"identity": tc.want}).Data
			require.Contains(t, list["keys"], k.keyID)
			require.Equal(t, tc.want, list["key_info"].(map[string]interface{})[k.keyID].(map[string]interface{})["identity"])
		})
	}
	list := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{"identity": "customer:acme"}).Data
	require.Len(t, list["keys"], 1, "the filter selects the identity's keys only")

	// A replacement belongs to the old key's identity, whoever rotates it.
	k := e.issueAs(testEntity, "svc", nil)
	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": k.keyID})
	require.Equal(t, testEntity, resp.Data["identity"])
	ids, err := e.b.identityKeyIDs(e.ctx, e.storage, testEntity)
	require.NoError(t, err)
	require.Contains(t, ids, resp.Data["key_id"])
}

// TestSharedCreditsConcurrent: goroutines hammer verify on five keys of one identity
// whose credits are shared (max_uses=1000): exactly 1000 are admitted, whichever keys
// spend them, while flushes run.
func TestSharedCreditsConcurrent(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("shared", map[string]interface{}{"max_uses": 1000, "shared_limits": true, "allow_identity": true})
	e.writeRole("own", map[string]interface{}{"max_uses": 1000})
	var keys []issued
	for range 5 {
		keys = append(keys, e.issue("shared", map[string]interface{}{"identity": "acme"}))
	}
	var valid, exceeded atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 80; i++ {
				switch e.verifyCode(keys[(g+i)%len(keys)].key) {
				case verifyapi.CodeValid:
					valid.Add(1)
				case verifyapi.CodeUsageExceeded:
					exceeded.Add(1)
				}
				if i%20 == 0 {
					require.NoError(t, e.b.flushUsage(e.ctx, e.storage))
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1000), valid.Load(), "all of the shared 1000, and never more")
	require.Equal(t, int64(280), exceeded.Load())

	got := e.mustOK(logical.ReadOperation, "identities/acme", nil).Data
	require.Equal(t, 5, got["key_count"])
	require.Equal(t, int64(1000), got["use_count"], "the keys' own counts add up")
	require.Equal(t, int64(0), got["remaining_uses"])
	require.Equal(t, int64(1000), got["shared_use_count"])
	require.Equal(t, true, got["shared_limits"])
	// Storage holds them too: once flushed and the idle counters dropped (and their
	// dropped state forgotten), the counts are read from the keys' records.
	for range 3 {
		require.NoError(t, e.b.flushUsage(e.ctx, e.storage))
	}
	for _, k := range keys {
		_, _, inMemory := e.b.usage.Peek(k.keyID)
		require.False(t, inMemory, "idle counters are dropped")
	}
	got = e.mustOK(logical.ReadOperation, "identities/acme", nil).Data
	require.Equal(t, int64(1000), got["use_count"], "the keys' stored counts add up")
	for _, k := range keys {
		require.Equal(t, int64(0), e.verify(map[string]interface{}{"api_key": k.key, "cost": 0})["remaining_uses"])
	}

	// A top-up through any key is the identity's.
	require.Equal(t, true, e.credits(keys[2].keyID, map[string]interface{}{"add": 3})["shared_limits"])
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(keys[0].key))
	require.Equal(t, int64(2), e.verify(map[string]interface{}{"api_key": keys[4].key, "cost": 0})["remaining_uses"])

	// Keys of the same role without an identity keep their own credits; so do keys
	// with an identity whose role does not share.
	lone := e.issue("shared", nil)
	own := e.issue("own", map[string]interface{}{})
	require.Equal(t, int64(999), e.verify(map[string]interface{}{"api_key": lone.key})["remaining_uses"])
	require.Equal(t, int64(999), e.verify(map[string]interface{}{"api_key": own.key})["remaining_uses"])
}

// TestSharedRateLimits: the keys of one identity share their rate limits; keys without
// an identity have their own buckets.
func TestSharedRateLimits(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("shared", map[string]interface{}{"rate_limits": "hour=3/1h", "shared_limits": true})
	a := e.issueAs(testEntity, "shared", nil)
	b := e.issueAs(testEntity, "shared", nil)
	codes := map[string]int{}
	for _, k := range []issued{a, b, a, b, a, b} {
		codes[e.verifyCode(k.key)]++
	}
	require.Equal(t, map[string]int{verifyapi.CodeValid: 3, verifyapi.CodeRateLimited: 3}, codes)
	got := e.verify(map[string]interface{}{"api_key": b.key})
	require.Equal(t, "hour", got["rate_limit_name"])

	x := e.issueAs("", "shared", nil)
	y := e.issueAs("", "shared", nil)
	for range 3 {
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(x.key))
		require.Equal(t, verifyapi.CodeValid, e.verifyCode(y.key))
	}
	require.Equal(t, verifyapi.CodeRateLimited, e.verifyCode(x.key))

	// A grace period does not add a shared account either: the chain's keys share it.
	resp := e.mustOK(logical.UpdateOperation, "creds/shared/rotate", map[string]interface{}{"key_id": a.keyID, "grace_period": "1h"})
	require.Equal(t, verifyapi.CodeRateLimited, e.verifyCode(resp.Data["api_key"].(string)))
	require.Equal(t, verifyapi.CodeRateLimited, e.verifyCode(a.key))
}

func TestIdentityReadAndRevoke(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 100, "refill_interval": "monthly", "shared_limits": true})
	e.writeRole("plain", nil)
	var keys []issued
	for i := range 3 {
		keys = append(keys, e.issueAs(testEntity, "svc", map[string]interface{}{"name": fmt.Sprint("k", i)}))
	}
	plain := e.issueAs(testEntity, "plain", nil)
	other := e.issueAs("9d2c6f2a-0000-4000-8000-000000000000", "svc", nil)
	e.verify(map[string]interface{}{"api_key": keys[0].key, "cost": 5})
	e.verify(map[string]interface{}{"api_key": keys[1].key, "cost": 2})
	e.verify(map[string]interface{}{"api_key": plain.key})
	e.verify(map[string]interface{}{"api_key": other.key, "cost": 50})

	// A key deleted through keys/ leaves the identity.
	e.mustOK(logical.DeleteOperation, "keys/"+keys[2].keyID, nil)

	got := e.mustOK(logical.ReadOperation, "identities/"+testEntity, nil).Data
	require.Equal(t, testEntity, got["identity"])
	require.ElementsMatch(t, []string{keys[0].keyID, keys[1].keyID, plain.keyID}, got["keys"])
	require.Equal(t, 3, got["key_count"])
	require.Equal(t, int64(8), got["use_count"])
	require.Equal(t, int64(93), got["remaining_uses"], "shared credits: 100 less 5 and 2; the plain key's use is its own")
	require.Equal(t, int64(7), got["shared_use_count"])
	require.NotEmpty(t, got["next_refill_at"])
	info := got["key_info"].(map[string]interface{})[keys[0].keyID].(map[string]interface{})
	require.Equal(t, "svc", info["role"])
	require.Equal(t, "k0", info["name"])
	require.Equal(t, int64(5), info["use_count"])
	require.Equal(t, "active", info["status"])
	require.Equal(t, true, info["shared_limits"])
	ids, err := e.b.identityKeyIDs(e.ctx, e.storage, testEntity)
	require.NoError(t, err)
	require.NotContains(t, ids, keys[2].keyID, "deleting a key removes its index entry")

	list := e.mustOK(logical.ListOperation, "identities/", nil).Data
	require.ElementsMatch(t, []string{testEntity, "9d2c6f2a-0000-4000-8000-000000000000"}, list["keys"])
	resp := e.do(logical.ReadOperation, "identities/nobody", nil)
	require.Nil(t, resp, "an identity with nothing is a 404")

	// Revoke: every key of the identity goes, the others stay; again revokes nothing.
	before := e.b.counters.roleEvents()["svc"].Revoked
	got = e.mustOK(logical.UpdateOperation, "identities/"+testEntity+"/revoke", nil).Data
	require.Equal(t, 3, got["revoked"])
	require.ElementsMatch(t, []string{keys[0].keyID, keys[1].keyID, plain.keyID}, got["key_ids"])
	require.Equal(t, before+2, e.b.counters.roleEvents()["svc"].Revoked, "counted as revocations")
	for _, k := range []issued{keys[0], keys[1], plain} {
		require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key))
		require.NoError(t, e.revoke(k), "the lease still revokes, as a no-op")
	}
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(other.key))
	got = e.mustOK(logical.UpdateOperation, "identities/"+testEntity+"/revoke", nil).Data
	require.Equal(t, 0, got["revoked"])

	// The shared credits stay: a new key of the identity does not get them back.
	fresh := e.issueAs(testEntity, "svc", nil)
	require.Equal(t, int64(92), e.verify(map[string]interface{}{"api_key": fresh.key})["remaining_uses"])
	got = e.mustOK(logical.ReadOperation, "identities/"+testEntity, nil).Data
	require.Equal(t, []string{fresh.keyID}, got["keys"])
}

// TestIdentityIndexSurvivesFailures: a revocation (or tidy) that could not read the
// record still deletes it; the index entry left behind is skipped by readers and
// cleaned by the identity's revoke.
func TestIdentityIndexSurvivesFailures(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", nil)
	k := e.issueAs(testEntity, "svc", nil)
	kept := e.issueAs(testEntity, "svc", nil)
	// The record goes without its index entry (as after a delete that failed half-way).
	require.NoError(t, e.storage.Delete(e.ctx, keyPrefix+k.keyID))
	e.b.keyCache.Purge()
	got := e.mustOK(logical.ReadOperation, "identities/"+testEntity, nil).Data
	require.Equal(t, []string{kept.keyID}, got["keys"])
	got = e.mustOK(logical.UpdateOperation, "identities/"+testEntity+"/revoke", nil).Data
	require.Equal(t, []string{kept.keyID}, got["key_ids"])
	ids, err := e.b.identityKeyIDs(e.ctx, e.storage, testEntity)
	require.NoError(t, err)
	require.Empty(t, ids)
}

// writeCountingStorage counts writes and reads, to show verify never writes.
type writeCountingStorage struct {
	logical.Storage
	puts, gets atomic.Int64
}

func (s *writeCountingStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	s.puts.Add(1)
	return s.Storage.Put(ctx, entry)
}

func (s *writeCountingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.gets.Add(1)
	return s.Storage.Get(ctx, key)
}

// TestVerifyWithLimitsNeverWrites: named limits, refilling credits and shared credits
// cost verify no storage write, and a warm verify of a shared key no read either (the
// identity's stored credits are read once, when this node holds no count for it).
func TestVerifyWithLimitsNeverWrites(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("all", map[string]interface{}{"rate_limits": "burst=100/1s,daily=1000/24h", "max_uses": 500, "refill_interval": "daily", "shared_limits": true, "allow_identity": true})
	keys := []issued{
		e.issue("all", map[string]interface{}{"identity": "acme"}),
		e.issue("all", map[string]interface{}{"identity": "acme"}),
		e.issue("all", nil), // no identity: its own credits
	}
	counting := &writeCountingStorage{Storage: e.storage}
	verify := func() {
		for _, k := range keys {
			resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: counting, Data: map[string]interface{}{"api_key": k.key}})
			require.NoError(t, err)
			require.Equal(t, verifyapi.CodeValid, resp.Data["code"])
		}
	}
	verify()
	require.Zero(t, counting.puts.Load())
	reads := counting.gets.Load() // cold: the identity's stored credits among them
	for range 20 {
		verify()
	}
	require.Zero(t, counting.puts.Load(), "verify never writes")
	require.Equal(t, reads, counting.gets.Load(), "warm verifies read nothing")
}
