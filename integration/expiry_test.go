//go:build integration

package integration

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// TestExpiryAtScale: 1000 keys with a 10 s TTL, issued concurrently, all stop verifying
// once their TTL is over (the engine checks expires_at itself, so at once: EXPIRED, or
// NOT_FOUND once the lease was revoked), and Vault's expiration manager revokes all 1000
// leases: the mount's lease list for the role empties within a bounded wait and every
// key is NOT_FOUND, its record gone.
func TestExpiryAtScale(t *testing.T) {
	t.Parallel()
	const (
		n       = 1000
		ttl     = 10 * time.Second
		workers = 16
		role    = "exp"
	)
	s := Setup(t)
	_, err := s.Client.Logical().Write("apikey/roles/"+role, map[string]interface{}{
		"scopes": "a", "ttl": ttl.String(), "max_ttl": "1m",
	})
	require.NoError(t, err)
	c := fastClient(t, s.Addr, s.RootToken, 30*time.Second)

	// Two batches of n/2, 4 s apart, so that in the middle of the expiry window half of
	// the keys are past their TTL by about 2 s and half are 2 s before it.
	keys := make([]issued, n)
	expiries := make([]time.Time, n)
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	issueBatch := func(from, to int) time.Duration {
		start := time.Now()
		next.Store(int64(from))
		parallel(workers, func() {
			for i := int(next.Add(1) - 1); i < to; i = int(next.Add(1) - 1) {
				sec, err := c.Logical().Read("apikey/creds/" + role)
				if err == nil {
					keys[i], err = issuedFromSecret(sec)
				}
				if err == nil {
					expiries[i], err = time.Parse(time.RFC3339, fmt.Sprint(sec.Data["expires_at"]))
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
		return time.Since(start)
	}
	issuing := issueBatch(0, n/2)
	time.Sleep(4 * time.Second)
	issuing += issueBatch(n/2, n)
	require.Zero(t, failures.Load(), "issuing failed: %v", firstErr.Load())
	seen := map[string]bool{}
	lastExpiry := expiries[0]
	for i, k := range keys {
		require.False(t, seen[k.KeyID], "duplicate key_id %s", k.KeyID)
		seen[k.KeyID] = true
		if expiries[i].After(lastExpiry) {
			lastExpiry = expiries[i]
		}
	}
	t.Logf("expiry: issued %d keys (ttl %s) with %d goroutines in %s (%.0f/s; two batches 4 s apart)", n, ttl, workers, issuing.Round(time.Millisecond), n/issuing.Seconds())

	leases := func() (int, error) {
		sec, err := c.Logical().List("sys/leases/lookup/apikey/creds/" + role + "/")
		if err != nil || sec == nil {
			return 0, err
		}
		ks, _ := sec.Data["keys"].([]interface{})
		return len(ks), nil
	}
	if time.Now().Before(expiries[0]) {
		// Some leases are still running (the whole batch, if issuing was quick).
		count, err := leases()
		require.NoError(t, err)
		require.Positive(t, count)
		t.Logf("expiry: %d leases listed before the first expiry", count)
	}

	// While the keys expire one after the other, each verifies VALID until its
	// expires_at and not after it (1 s margin either side: expires_at is whole seconds).
	firstExpiry := lastExpiry
	for _, e := range expiries {
		if e.Before(firstExpiry) {
			firstExpiry = e
		}
	}
	time.Sleep(time.Until(firstExpiry.Add(lastExpiry.Sub(firstExpiry) / 2)))
	var early, late, wrong atomic.Int64
	var firstWrong atomic.Value
	next.Store(0)
	parallel(workers, func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			before := time.Now()
			res, err := tryVerify(c, "apikey", keys[i].Key)
			after := time.Now()
			switch {
			case err != nil:
				wrong.Add(1)
				firstWrong.CompareAndSwap(nil, err.Error())
			case after.Before(expiries[i].Add(-time.Second)):
				early.Add(1)
				if res.Code != codeValid {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, fmt.Sprintf("key %s verified %s before its expiry %s", keys[i].KeyID, res.Code, expiries[i]))
				}
			case before.After(expiries[i].Add(time.Second)):
				late.Add(1)
				if res.Code != codeExpired && res.Code != codeNotFound {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, fmt.Sprintf("key %s verified %s after its expiry %s", keys[i].KeyID, res.Code, expiries[i]))
				}
			}
		}
	})
	t.Logf("expiry: in the middle of the expiry window: %d keys before expiry, %d after it, %d wrong", early.Load(), late.Load(), wrong.Load())
	require.Zero(t, wrong.Load(), "%v", firstWrong.Load())
	require.Positive(t, early.Load(), "no key verified before its expiry: the batches were too slow")
	require.Positive(t, late.Load(), "no key verified after its expiry: the batches were too slow")

	// expires_at is whole seconds; one more second and every key is past it.
	time.Sleep(time.Until(lastExpiry.Add(time.Second)))
	checked := time.Now()
	codes := verifyAll(t, c, keys, workers)
	t.Logf("expiry: right after the last expiry: %v", codes)
	require.Zero(t, codes[codeValid], "keys past their TTL still verify VALID")
	require.Equal(t, n, codes[codeExpired]+codes[codeNotFound], "codes: %v", codes)

	// Vault's expiration manager revokes all leases; the list under the role empties.
	var left int
	eventually(t, 3*time.Minute, func() error {
		var err error
		if left, err = leases(); err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d leases left", left)
		}
		return nil
	})
	t.Logf("expiry: all %d leases revoked %s after the last key expired, %s after the first (the list was checked from +%s)",
		n, time.Since(lastExpiry).Round(100*time.Millisecond), time.Since(firstExpiry).Round(100*time.Millisecond), checked.Sub(lastExpiry).Round(100*time.Millisecond))
	for _, k := range []issued{keys[0], keys[n/2], keys[n-1]} {
		require.NoError(t, leaseGone(c, k.LeaseID))
	}
	codes = verifyAll(t, c, keys, workers)
	require.Equal(t, n, codes[codeNotFound], "after revocation every key is NOT_FOUND: %v", codes)
	list, err := c.Logical().List("apikey/keys")
	require.NoError(t, err)
	if list != nil {
		ks, _ := list.Data["keys"].([]interface{})
		require.Empty(t, ks, "key records left after their leases were revoked")
	}
}

// verifyAll verifies every key with the given concurrency and counts the codes (errors
// fail the test).
func verifyAll(t *testing.T, c *api.Client, keys []issued, workers int) map[string]int {
	t.Helper()
	var (
		mu    sync.Mutex
		codes = map[string]int{}
		errs  []error
		next  atomic.Int64
	)
	parallel(workers, func() {
		for i := int(next.Add(1) - 1); i < len(keys); i = int(next.Add(1) - 1) {
			res, err := tryVerify(c, "apikey", keys[i].Key)
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			} else {
				codes[res.Code]++
			}
			mu.Unlock()
		}
	})
	require.Empty(t, errs)
	return codes
}

// parallel runs f in n goroutines and waits for them.
func parallel(n int, f func()) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	wg.Wait()
}
