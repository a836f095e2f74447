package apikey

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func (e *testEnv) credits(keyID string, data map[string]interface{}) map[string]interface{} {
	e.t.Helper()
	return e.mustOK(logical.UpdateOperation, "keys/"+keyID+"/credits", data).Data
}

func TestKeyCredits(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 10})
	k := e.issue("svc", nil)
	e.verify(map[string]interface{}{"api_key": k.key, "cost": 4}) // counted in memory only

	steps := []struct {
		name          string
		data          map[string]interface{}
		wantRemaining int64
		verifyCost    int
		wantCode      string
	}{
		{"set counts unflushed uses as spent", map[string]interface{}{"set": 2}, 2, 3, verifyapi.CodeUsageExceeded},
		{"add to what is left", map[string]interface{}{"add": 5}, 7, 7, verifyapi.CodeValid},
		{"add to none left", map[string]interface{}{"add": 1}, 1, 1, verifyapi.CodeValid},
		{"set zero", map[string]interface{}{"set": 0}, 0, 0, verifyapi.CodeUsageExceeded},
		{"set above max_uses", map[string]interface{}{"set": 100}, 100, 100, verifyapi.CodeValid},
		{"as strings, as the CLI sends them", map[string]interface{}{"add": "3"}, 3, 1, verifyapi.CodeValid},
	}
	for _, s := range steps {
		got := e.credits(k.keyID, s.data)
		require.Equal(t, s.wantRemaining, got["remaining_uses"], s.name)
		require.Equal(t, false, got["shared_limits"])
		// The next verify on this node sees it: cache and counts agree.
		v := e.verify(map[string]interface{}{"api_key": k.key, "cost": s.verifyCost})
		require.Equal(t, s.wantCode, v["code"], s.name)
	}
	read := e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data
	require.Equal(t, int64(2), read["remaining_uses"])
	require.Equal(t, int64(113), read["use_count"])

	// The change is stored at once (a flush has nothing left to write for it).
	rec := e.record(k.keyID)
	require.Equal(t, int64(112), rec.UseCount, "what the last credits call saw")
	require.Equal(t, int64(115), rec.Credits.Limit)
	require.NoError(t, e.b.flushUsage(e.ctx, e.storage))
	rec = e.record(k.keyID)
	require.Equal(t, int64(113), rec.UseCount)
	require.Equal(t, int64(2), e.reopenVerify(k.key))

	// Unknown keys are a 404.
	other := newTestEnv(t)
	other.writeRole("svc", nil)
	unknown := other.issue("svc", nil)
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "keys/" + unknown.keyID + "/credits", Data: map[string]interface{}{"add": 1}, Storage: e.storage}
	_, err := e.b.HandleRequest(e.ctx, req)
	var coded logical.HTTPCodedError
	require.ErrorAs(t, err, &coded)
	require.Equal(t, http.StatusNotFound, coded.Code())
}

// reopenVerify answers the remaining uses of key as a new backend on e's storage sees them.
func (e *testEnv) reopenVerify(key string) int64 {
	e.t.Helper()
	return reopen(e.t, e).verify(map[string]interface{}{"api_key": key, "cost": 0})["remaining_uses"].(int64)
}

// TestKeyCreditsAndRefill: a top-up lasts until the next refill, which resets remaining
// uses to refill_amount (no carry-over).
func TestKeyCreditsAndRefill(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("daily", map[string]interface{}{"max_uses": 5, "refill_interval": "daily"})
	k := e.issue("daily", nil)
	got := e.credits(k.keyID, map[string]interface{}{"add": 10})
	require.Equal(t, int64(15), got["remaining_uses"])
	require.NotEmpty(t, got["next_refill_at"])
	next, err := time.Parse(time.RFC3339, got["next_refill_at"].(string))
	require.NoError(t, err)
	require.Equal(t, verifyapi.CodeValid, e.chargeAt(k.keyID, 15, next.Add(-time.Second)).code)
	c := e.chargeAt(k.keyID, 0, next)
	require.Equal(t, int64(5), c.remaining)
}

// TestRotationKeepsCredits: the replacement keeps spent uses and top-ups, and a change of
// the role's max_uses applies as a difference; a rotated-out key's credits cannot be
// changed (its uses are charged to the replacement).
func TestRotationKeepsCredits(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 10})
	old := e.issue("svc", nil)
	e.verify(map[string]interface{}{"api_key": old.key, "cost": 3})
	e.credits(old.keyID, map[string]interface{}{"add": 20}) // 27 left

	resp := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": old.keyID, "grace_period": "1h"})
	newID := resp.Data["key_id"].(string)
	read := e.mustOK(logical.ReadOperation, "keys/"+newID, nil).Data
	require.Equal(t, int64(27), read["remaining_uses"])
	require.Equal(t, int64(3), read["use_count"])
	e.mustFail(logical.UpdateOperation, "keys/"+old.keyID+"/credits", map[string]interface{}{"add": 1}, "add: key "+old.keyID+" was rotated")

	// The role now allows 5 more: the next replacement gets them on top.
	e.mustOK(logical.UpdateOperation, "roles/svc", map[string]interface{}{"max_uses": 15})
	again := e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": newID})
	read = e.mustOK(logical.ReadOperation, "keys/"+again.Data["key_id"].(string), nil).Data
	require.Equal(t, int64(32), read["remaining_uses"])
}

// TestKeyCreditsConcurrentWithVerify: top-ups while verifies hammer the key admit
// exactly what was granted.
func TestKeyCreditsConcurrentWithVerify(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 50})
	k := e.issue("svc", nil)
	var valid atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verify := func() {
				if e.verifyCode(k.key) == verifyapi.CodeValid {
					valid.Add(1)
				}
			}
			for {
				select {
				case <-done:
					for range 20 { // and then some, after the last top-up
						verify()
					}
					return
				default:
					verify()
				}
			}
		}()
	}
	for range 10 {
		e.credits(k.keyID, map[string]interface{}{"add": 5})
		require.NoError(t, e.b.flushUsage(e.ctx, e.storage))
	}
	close(done)
	wg.Wait()
	require.Equal(t, int64(100), valid.Load(), "50 + 10 top-ups of 5")
	require.NoError(t, e.b.flushUsage(e.ctx, e.storage))
	require.Equal(t, int64(100), e.record(k.keyID).UseCount)
	require.Equal(t, int64(0), e.reopenVerify(k.key))
}

// TestSharedCreditsWhenTheLocksCollide: key locks are striped, so a key's lock and its
// identity's may be one lock; changing the credits must not wait on itself.
func TestSharedCreditsWhenTheLocksCollide(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("shared", map[string]interface{}{"max_uses": 10, "shared_limits": true, "allow_identity": true})
	idLock := e.b.keyLock(identityAccountPrefix + "acme")
	var k issued
	for i := 0; ; i++ {
		require.Less(t, i, 10_000, "no key shares the identity's lock")
		k = e.issue("shared", map[string]interface{}{"identity": "acme"})
		if e.b.keyLock(k.keyID) == idLock {
			break
		}
	}
	done := make(chan *logical.Response, 1)
	go func() {
		resp, _ := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "keys/" + k.keyID + "/credits", Storage: e.storage, Data: map[string]interface{}{"add": 5}})
		done <- resp
	}()
	select {
	case resp := <-done:
		require.False(t, resp.IsError(), "%v", resp.Data)
		require.Equal(t, int64(15), resp.Data["remaining_uses"])
	case <-time.After(30 * time.Second):
		t.Fatal("the credits change waits on the lock it holds")
	}
}
