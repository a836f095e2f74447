//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// TestHAFailover: a 3-node Vault cluster with integrated storage. Keys issued on the
// active node verify through every node (standbys forward). The active node is killed
// (SIGKILL to its process group); once a new leader is elected every key still verifies
// VALID, new keys are issued, and a short lease issued before the kill is still revoked.
// The killed node restarts on its data dir, is unsealed and rejoins.
func TestHAFailover(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	active := c.Active(t)
	ac := active.Client
	_, err := ac.Logical().Write("apikey/roles/app", map[string]interface{}{
		"scopes": "orders:read,orders:write", "ttl": "1h", "max_ttl": "24h",
	})
	require.NoError(t, err)

	var keys []issued
	for i := 0; i < 10; i++ {
		keys = append(keys, issueAPI(t, ac, "apikey", "app", nil))
	}
	revoked := issueAPI(t, ac, "apikey", "app", nil)
	require.NoError(t, ac.Sys().Revoke(revoked.LeaseID))
	disabled := issueAPI(t, ac, "apikey", "app", nil)
	_, err = ac.Logical().Write("apikey/keys/"+disabled.KeyID, map[string]interface{}{"disabled": true})
	require.NoError(t, err)
	rotatedOut := issueAPI(t, ac, "apikey", "app", nil)
	sec, err := ac.Logical().Write("apikey/creds/app/rotate", map[string]interface{}{"key_id": rotatedOut.KeyID})
	require.NoError(t, err)
	keys = append(keys, issuedFrom(t, sec))

	// Every node answers for every key: the standbys forward to the active node.
	for _, n := range c.Nodes {
		for _, k := range keys {
			requireCode(t, n.Client, "apikey", k.Key, codeValid)
		}
		requireCode(t, n.Client, "apikey", revoked.Key, codeNotFound)
		requireCode(t, n.Client, "apikey", disabled.Key, codeDisabled)
		requireCode(t, n.Client, "apikey", rotatedOut.Key, codeExpired)
	}

	// A short lease, issued last before the kill: it must still be revoked by the new
	// active node.
	short := issueAPI(t, ac, "apikey", "app", map[string]interface{}{"ttl": "15s"})
	shortExpiry := timeField(t, short.Secret.Data, "expires_at")
	requireCode(t, ac, "apikey", short.Key, codeValid)

	f := c.Failover(t, keys[0].Key, 2*time.Minute)
	require.Same(t, active, f.killed)
	t.Logf("HA failover: killed active node%d; new active node%d elected %s after the kill; first successful verify %s after the kill (via node%d; %d probes failed before)",
		c.Index(f.killed), c.Index(f.newActive), f.toActive.Round(time.Millisecond), f.toVerify.Round(time.Millisecond), c.Index(f.via), f.failedProbes)

	survivors := c.Up()
	require.Len(t, survivors, 2)
	t.Run("keys survive leader loss", func(t *testing.T) {
		for _, n := range survivors {
			// The standby may take a moment to learn the new leader it forwards to.
			eventuallyCode(t, n.Client, "apikey", keys[0].Key, time.Minute, codeValid)
			for _, k := range keys {
				requireCode(t, n.Client, "apikey", k.Key, codeValid)
			}
			requireCode(t, n.Client, "apikey", revoked.Key, codeNotFound)
			requireCode(t, n.Client, "apikey", disabled.Key, codeDisabled)
			requireCode(t, n.Client, "apikey", rotatedOut.Key, codeExpired)
		}
	})

	var fresh []issued
	t.Run("new keys after failover", func(t *testing.T) {
		for _, n := range survivors {
			fresh = append(fresh, issueAPI(t, n.Client, "apikey", "app", nil))
		}
		for _, n := range survivors {
			for _, k := range fresh {
				requireCode(t, n.Client, "apikey", k.Key, codeValid)
			}
		}
	})

	t.Run("short lease revoked after failover", func(t *testing.T) {
		na := c.Active(t)
		wait := time.Until(shortExpiry) + time.Minute
		eventually(t, wait, func() error { return leaseGone(na.Client, short.LeaseID) })
		eventuallyCode(t, na.Client, "apikey", short.Key, 10*time.Second, codeNotFound)
		for _, n := range survivors {
			requireCode(t, n.Client, "apikey", short.Key, codeNotFound)
		}
		t.Logf("HA failover: the 15s lease issued before the kill was revoked %s after its expiry", time.Since(shortExpiry).Round(time.Second))
	})

	t.Run("killed node rejoins", func(t *testing.T) {
		start := time.Now()
		c.Restart(t, f.killed)
		c.WaitHealthy(t, 2*time.Minute)
		t.Logf("HA failover: node%d restarted, unsealed and healthy again in %s", c.Index(f.killed), time.Since(start).Round(time.Millisecond))
		voters, err := raftVoters(c.Active(t).Client)
		require.NoError(t, err)
		require.Len(t, voters, 3, "raft voters %v", voters)
		for _, k := range append(keys, fresh...) {
			requireCode(t, f.killed.Client, "apikey", k.Key, codeValid)
		}
		requireCode(t, f.killed.Client, "apikey", revoked.Key, codeNotFound)
		requireCode(t, f.killed.Client, "apikey", short.Key, codeNotFound)
		requireCode(t, f.killed.Client, "apikey", disabled.Key, codeDisabled)
		requireCode(t, f.killed.Client, "apikey", rotatedOut.Key, codeExpired)
	})
}

// failoverResult describes one kill of the active node.
type failoverResult struct {
	killed, newActive, via *Server
	killedAt               time.Time
	toActive               time.Duration // kill → another node reports itself active
	toVerify               time.Duration // kill → first VALID verify through a surviving node
	failedProbes           int
}

// Failover kills the active node and probes the surviving nodes until a new node is
// active and a verify of probeKey (which must be VALID) succeeds through one of them.
// Probes start every 100 ms on every survivor without waiting for earlier ones (a
// request to a standby that still forwards to the dead node hangs until its timeout).
// Their timeout is short (1 s): a standby holds a lock for every request it is
// forwarding, and it has to take that lock exclusively before it can become active, so
// a request stuck forwarding to the dead node delays the promotion by up to the client's
// timeout (Vault 1.21, vault/request_forwarding.go).
func (c *Cluster) Failover(t *testing.T, probeKey string, timeout time.Duration) failoverResult {
	t.Helper()
	active := c.Active(t)
	f := failoverResult{killed: active}
	f.killedAt = c.Kill(t, active)
	survivors := c.Up()
	clients := map[*Server]*api.Client{}
	for _, n := range survivors {
		clients[n] = fastClient(t, n.Addr, c.RootToken, time.Second)
	}
	type probe struct {
		n   *Server
		res verifyResult
		err error
		at  time.Time
	}
	done := make(chan struct{})
	defer close(done)
	results := make(chan probe)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last error
	for f.toVerify == 0 || f.toActive == 0 {
		select {
		case <-deadline.C:
			t.Fatalf("no failover within %s of killing the active node (new active after %s): %v", timeout, f.toActive, last)
		case <-tick.C:
			if f.toActive == 0 {
				if na := c.activeNow(t); na != nil {
					f.toActive = time.Since(f.killedAt)
					f.newActive = na
				}
			}
			if f.toVerify != 0 {
				continue
			}
			for _, n := range survivors {
				go func() {
					res, err := tryVerify(clients[n], "apikey", probeKey)
					select {
					case results <- probe{n, res, err, time.Now()}:
					case <-done:
					}
				}()
			}
		case p := <-results:
			switch {
			case p.err != nil:
				f.failedProbes++
				last = p.err
			case p.res.Code != codeValid:
				t.Fatalf("during failover, node%d answered %s for a live key", c.Index(p.n), p.res.Code)
			case f.toVerify == 0:
				f.toVerify = p.at.Sub(f.killedAt)
				f.via = p.n
			}
		}
	}
	return f
}

// String is a one-line summary of the failover.
func (f failoverResult) String() string {
	return fmt.Sprintf("new leader after %s, first successful verify after %s",
		f.toActive.Round(time.Millisecond), f.toVerify.Round(time.Millisecond))
}
