//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// The fleet tests run several apikey-gateway processes with -fleet (quota grants, the
// change feed, usage reports) in front of one upstream, against a real Vault with the
// shipped plugin and a token holding only policies/verifier.hcl. Each keeps its own
// Vault; bounds are correctness bounds (generous against the machine), not benchmarks:
// bench/fleet measures the same things.

// fleetRefusalDeadline bounds how long a change may take to reach every gateway through
// the feed. It is far below the gateways' caches (-fleet-cache-ttl 60s, -cache-ttl 30s),
// so a refusal within it can only come from the feed.
const fleetRefusalDeadline = 10 * time.Second

// fleetQuiet is how long hammering goes on after the last admitted request before the
// admitted count is final: more than the negative cache (1s) and half a grant's TTL (the
// default 5s grant is renewed, and unused uses returned, at half of it).
const fleetQuiet = 4 * time.Second

// TestFleetRevocation: three gateways with a 60 s positive cache serve a key from their
// caches (no verify call per request); after it is revoked, disabled or rotated out
// (no grace period), every gateway refuses it within fleetRefusalDeadline and never
// serves it again.
func TestFleetRevocation(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	verifier := s.VerifierToken(t)
	writeFleetRole(t, s.Client, "fleet", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_ttl": "24h"})
	up := newCountingUpstream(t)
	gws := startFleetGateways(t, 3, []string{s.Addr}, verifier, up.URL(), "-fleet-cache-ttl", "60s", "-cache-ttl", "30s")
	client := newFleetClient()

	// Fleet mode is on: after the first verify, repeated requests are cache hits.
	probe := issueAPI(t, s.Client, "apikey", "fleet", nil)
	requireStatusEverywhere(t, client, gws, probe.Key, http.StatusOK)
	before := vaultCalls(t, gws, "verify")
	for range 5 {
		requireStatusEverywhere(t, client, gws, probe.Key, http.StatusOK)
	}
	require.Equal(t, before, vaultCalls(t, gws, "verify"), "cached answers made verify calls")
	require.Positive(t, vaultCalls(t, gws, "feed"), "no gateway polls the feed")

	for _, tc := range []struct {
		name string
		code string
		// act changes the key in Vault and returns its replacement, if any.
		act func(t *testing.T, k issued) string
	}{
		{"revoke", codeNotFound, func(t *testing.T, k issued) string {
			require.NoError(t, s.Client.Sys().Revoke(k.LeaseID))
			return ""
		}},
		{"disable", codeDisabled, func(t *testing.T, k issued) string {
			_, err := s.Client.Logical().Write("apikey/keys/"+k.KeyID, map[string]interface{}{"disabled": true})
			require.NoError(t, err)
			return ""
		}},
		{"rotate without grace", codeExpired, func(t *testing.T, k issued) string {
			sec, err := s.Client.Logical().Write("apikey/creds/fleet/rotate", map[string]interface{}{"key_id": k.KeyID})
			require.NoError(t, err)
			return str(t, sec.Data, "api_key")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := issueAPI(t, s.Client, "apikey", "fleet", nil)
			for range 3 {
				requireStatusEverywhere(t, client, gws, k.Key, http.StatusOK)
			}
			replacement := tc.act(t, k)
			lat := waitRefusedEverywhere(t, client, gws, k.Key, time.Now(), fleetRefusalDeadline, http.StatusUnauthorized, tc.code)
			t.Logf("fleet %s: refused at every gateway after %v (cache 60s)", tc.name, lat)
			requireNeverServed(t, client, gws, k.Key, time.Second)
			if replacement != "" {
				requireStatusEverywhere(t, client, gws, replacement, http.StatusOK)
			}
		})
	}
}

// TestFleetMaxUses: a key with max_uses=300 hammered through three gateways far past
// it: exactly 300 requests reach the upstream, never more; once the gateways have
// reported and tidy has flushed, the key's use_count is 300 too.
func TestFleetMaxUses(t *testing.T) {
	t.Parallel()
	const maxUses = 300
	s := Setup(t)
	verifier := s.VerifierToken(t)
	writeFleetRole(t, s.Client, "quota", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": maxUses})
	up := newCountingUpstream(t)
	gws := startFleetGateways(t, 3, []string{s.Addr}, verifier, up.URL(), "-report-interval", "1s")
	k := issueAPI(t, s.Client, "apikey", "quota", nil)

	began := time.Now()
	h := startFleetHammer(t, newFleetClient(), gws, k.Key, 4)
	require.NoError(t, h.waitFor(90*time.Second, func() bool { return h.tooMany.Load() > 0 }))
	// Until the quota ran out, requests were served from grants: far fewer verify calls.
	callsAtRefusal, refusedAt := vaultCalls(t, gws, "verify"), time.Now()
	require.NoError(t, h.waitQuiet(fleetQuiet, 90*time.Second, func() bool { return true }))
	h.stop()
	admitted := up.count(k.KeyID)
	verifyCalls, renewCalls := vaultCalls(t, gws, "verify"), vaultCalls(t, gws, "renew")
	t.Logf("fleet max_uses=%d: %d admitted (upstream), %s in %s; %.0f verify calls until the first refusal, %.0f in all (%.0f/s while refusing), %.0f renew calls",
		maxUses, admitted, h, time.Since(began).Round(time.Millisecond), callsAtRefusal, verifyCalls,
		(verifyCalls-callsAtRefusal)/time.Since(refusedAt).Seconds(), renewCalls)
	require.Equal(t, h.ok.Load(), admitted, "2xx answers and requests the upstream saw differ")
	require.LessOrEqual(t, admitted, int64(maxUses), "over-admission")
	require.Equal(t, int64(maxUses), admitted, "under-admission: uses were debited but never served")
	require.Less(t, callsAtRefusal, float64(maxUses/2), "admitted requests asked Vault one by one: no grants in use")

	// Reports (every second) and a flush: Vault's count is what the upstream saw.
	eventually(t, 15*time.Second, func() error {
		if _, err := s.Client.Logical().Write("apikey/tidy", nil); err != nil {
			return err
		}
		sec, err := s.Client.Logical().Read("apikey/keys/" + k.KeyID)
		if err != nil {
			return err
		}
		if got := num(t, sec.Data, "use_count"); got != maxUses {
			return fmt.Errorf("use_count %d, want %d", got, maxUses)
		}
		if got := num(t, sec.Data, "remaining_uses"); got != 0 {
			return fmt.Errorf("remaining_uses %d, want 0", got)
		}
		return nil
	})
}

// TestFleetPluginCrash: the plugin process is killed with SIGKILL while three gateways
// spend grants of a max_uses key. No more than max_uses requests are ever admitted
// (debits are persisted before a grant is answered); the restarted plugin has a new
// feed epoch, the gateways start over from it, metered keys get grants again, an
// unmetered key is served, and a revocation still reaches every gateway.
func TestFleetPluginCrash(t *testing.T) {
	t.Parallel()
	const maxUses = 2000
	s := Setup(t)
	verifier := s.VerifierToken(t)
	writeFleetRole(t, s.Client, "quota", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": maxUses})
	writeFleetRole(t, s.Client, "big", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": 1_000_000})
	writeFleetRole(t, s.Client, "plain", map[string]interface{}{"scopes": "api", "ttl": "1h"})
	up := newCountingUpstream(t)
	gws := startFleetGateways(t, 3, []string{s.Addr}, verifier, up.URL(), "-fleet-cache-ttl", "60s", "-cache-ttl", "30s")
	client := newFleetClient()
	metered := issueAPI(t, s.Client, "apikey", "quota", nil)
	afterCrash := issueAPI(t, s.Client, "apikey", "big", nil)
	unmetered := issueAPI(t, s.Client, "apikey", "plain", nil)
	requireStatusEverywhere(t, client, gws, unmetered.Key, http.StatusOK)

	h := startFleetHammer(t, client, gws, metered.Key, 3)
	require.NoError(t, h.waitFor(60*time.Second, func() bool { return h.ok.Load() >= 400 }))
	pids := pluginPIDs(t, s)
	require.NotEmpty(t, pids, "no plugin process of %s", s.Addr)
	for _, pid := range pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	killedAt, okAtKill, refusedAtKill := time.Now(), h.ok.Load(), h.tooMany.Load()
	restarted := func() bool {
		now := pluginPIDs(t, s)
		for _, p := range now {
			for _, old := range pids {
				if p == old {
					return false
				}
			}
		}
		return len(now) > 0
	}
	require.NoError(t, h.waitQuiet(fleetQuiet, 2*time.Minute, func() bool { return restarted() && h.tooMany.Load() > refusedAtKill }))
	h.stop()
	admitted := up.count(metered.KeyID)
	t.Logf("fleet plugin crash: killed pid %v after %d admitted; %d admitted in all of max_uses=%d (%d under); %s, the last failure %s after the kill; %.0f verify calls",
		pids, okAtKill, admitted, maxUses, maxUses-admitted, h, h.failedUntil(killedAt), vaultCalls(t, gws, "verify"))
	require.LessOrEqual(t, admitted, int64(maxUses), "over-admission after a plugin kill")

	sec, err := s.Client.Logical().Read("apikey/keys/" + metered.KeyID)
	require.NoError(t, err)
	t.Logf("fleet plugin crash: after the restart use_count %d, remaining_uses %d", num(t, sec.Data, "use_count"), num(t, sec.Data, "remaining_uses"))
	require.LessOrEqual(t, num(t, sec.Data, "use_count"), int64(maxUses))

	// Recovery: grants again, the unmetered key, and the feed.
	eventuallyStatusEverywhere(t, client, gws, afterCrash.Key, http.StatusOK, time.Minute)
	before := vaultCalls(t, gws, "verify")
	for range 50 {
		requireStatusEverywhere(t, client, gws, afterCrash.Key, http.StatusOK)
	}
	require.Less(t, vaultCalls(t, gws, "verify")-before, float64(50*len(gws)), "no grants after the restart")
	eventuallyStatusEverywhere(t, client, gws, unmetered.Key, http.StatusOK, time.Minute)
	require.NoError(t, s.Client.Sys().Revoke(unmetered.LeaseID))
	lat := waitRefusedEverywhere(t, client, gws, unmetered.Key, time.Now(), fleetRefusalDeadline, http.StatusUnauthorized, codeNotFound)
	t.Logf("fleet plugin crash: a revocation after the restart reached every gateway in %v", lat)
}

// TestFleetFailover: the active node of a 3-node Raft cluster is killed while three
// gateways (talking to the standbys) spend grants of a max_uses key. Uses granted were
// persisted (and replicated) before the grant was answered, so the new active node
// knows them; what may be lost are per-request uses of verify calls not yet flushed,
// at most one per verify call made before the kill. Admitted stays within max_uses plus
// that bound, and the gateways recover (grants, feed) against the new active node.
func TestFleetFailover(t *testing.T) {
	t.Parallel()
	const maxUses = 2000
	c := StartCluster(t, 3)
	active := c.Active(t)
	ac := active.Client
	verifier := active.VerifierToken(t)
	writeFleetRole(t, ac, "quota", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": maxUses})
	writeFleetRole(t, ac, "big", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": 1_000_000})
	writeFleetRole(t, ac, "plain", map[string]interface{}{"scopes": "api", "ttl": "1h"})
	var standbys []string
	for _, n := range c.Nodes {
		if n != active {
			standbys = append(standbys, n.Addr)
		}
	}
	up := newCountingUpstream(t)
	// Standbys forward to the active node, and one of them becomes it: every gateway
	// keeps a Vault to talk to through the failover.
	gws := startFleetGateways(t, 3, standbys, verifier, up.URL(), "-fleet-cache-ttl", "60s", "-cache-ttl", "30s")
	client := newFleetClient()
	metered := issueAPI(t, ac, "apikey", "quota", nil)
	afterFailover := issueAPI(t, ac, "apikey", "big", nil)
	unmetered := issueAPI(t, ac, "apikey", "plain", nil)
	requireStatusEverywhere(t, client, gws, unmetered.Key, http.StatusOK)

	h := startFleetHammer(t, client, gws, metered.Key, 3)
	require.NoError(t, h.waitFor(90*time.Second, func() bool { return h.ok.Load() >= 400 }))
	refusedAtKill := h.tooMany.Load()
	f := c.Failover(t, unmetered.Key, 2*time.Minute)
	// Each verify call made before the kill holds at most one unflushed use; counted once
	// a new node answers, so a few calls after the kill are in too (a looser bound).
	bound := int64(vaultCalls(t, gws, "verify"))
	require.NoError(t, h.waitQuiet(fleetQuiet, 2*time.Minute, func() bool { return h.tooMany.Load() > refusedAtKill }))
	h.stop()
	admitted := up.count(metered.KeyID)
	t.Logf("fleet failover: killed node%d (%s); %d admitted of max_uses=%d, bound max_uses+%d; %s, the last failure %s after the kill",
		c.Index(f.killed), f, admitted, maxUses, bound, h, h.failedUntil(f.killedAt))
	require.LessOrEqual(t, admitted, int64(maxUses)+bound, "over-admission beyond the documented bound")
	if admitted > maxUses {
		t.Logf("fleet failover: %d over max_uses (within the bound)", admitted-maxUses)
	}

	na := c.Active(t)
	eventuallyStatusEverywhere(t, client, gws, afterFailover.Key, http.StatusOK, time.Minute)
	before := vaultCalls(t, gws, "verify")
	for range 50 {
		requireStatusEverywhere(t, client, gws, afterFailover.Key, http.StatusOK)
	}
	require.Less(t, vaultCalls(t, gws, "verify")-before, float64(50*len(gws)), "no grants after the failover")
	eventuallyStatusEverywhere(t, client, gws, unmetered.Key, http.StatusOK, time.Minute)
	require.NoError(t, na.Client.Sys().Revoke(unmetered.LeaseID))
	lat := waitRefusedEverywhere(t, client, gws, unmetered.Key, time.Now(), fleetRefusalDeadline, http.StatusUnauthorized, codeNotFound)
	t.Logf("fleet failover: a revocation on the new active node reached every gateway in %v", lat)
}

// TestFleetVaultUnreachable: with the feed healthy, a gateway keeps a VALID answer past
// -cache-ttl (the long fleet cache); once Vault is stopped, a key it has cached VALID
// (unmetered, or metered with a grant) is refused with 503 after at most -feed-timeout
// + -cache-ttl, and never served again.
func TestFleetVaultUnreachable(t *testing.T) {
	t.Parallel()
	const cacheTTL, feedTimeout = 2 * time.Second, 3 * time.Second
	s := Setup(t)
	verifier := s.VerifierToken(t)
	writeFleetRole(t, s.Client, "plain", map[string]interface{}{"scopes": "api", "ttl": "1h"})
	writeFleetRole(t, s.Client, "big", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": 1_000_000})
	up := newCountingUpstream(t)
	gws := startFleetGateways(t, 2, []string{s.Addr}, verifier, up.URL(),
		"-fleet-cache-ttl", "60s", "-cache-ttl", cacheTTL.String(), "-feed-timeout", feedTimeout.String())
	client := newFleetClient()
	keys := []string{issueAPI(t, s.Client, "apikey", "plain", nil).Key, issueAPI(t, s.Client, "apikey", "big", nil).Key}
	for _, k := range keys {
		requireStatusEverywhere(t, client, gws, k, http.StatusOK)
	}
	// Older than -cache-ttl, and still served from the cache while the feed is healthy.
	time.Sleep(cacheTTL + 500*time.Millisecond)
	before := vaultCalls(t, gws, "verify")
	requireStatusEverywhere(t, client, gws, keys[0], http.StatusOK)
	require.Equal(t, before, vaultCalls(t, gws, "verify"), "an answer older than -cache-ttl was not served from the cache with the feed healthy")
	for _, k := range keys {
		requireStatusEverywhere(t, client, gws, k, http.StatusOK)
	}

	s.Stop(t)
	stopped := time.Now()
	bound := feedTimeout + cacheTTL
	for i, k := range keys {
		lat := waitRefusedEverywhere(t, client, gws, k, stopped, bound+1500*time.Millisecond, http.StatusServiceUnavailable, "VERIFY_UNAVAILABLE")
		t.Logf("fleet, Vault stopped: key %d refused (503) at every gateway %v after the stop (fallback bound %s)", i, lat, bound)
	}
	for _, k := range keys {
		requireNeverServed(t, client, gws, k, 2*time.Second)
	}
}

// TestFleetUsageReports: requests served from the gateways' caches and grants show in
// Vault once reported: use_count and the usage series of an unmetered key count every
// request, and the usage series of a metered key counts every request too.
func TestFleetUsageReports(t *testing.T) {
	t.Parallel()
	const plainRequests, meteredRequests = 200, 100
	s := Setup(t)
	verifier := s.VerifierToken(t)
	writeFleetRole(t, s.Client, "plain", map[string]interface{}{"scopes": "api", "ttl": "1h"})
	writeFleetRole(t, s.Client, "big", map[string]interface{}{"scopes": "api", "ttl": "1h", "max_uses": 1_000_000})
	up := newCountingUpstream(t)
	gws := startFleetGateways(t, 2, []string{s.Addr}, verifier, up.URL(), "-report-interval", "1s")
	client := newFleetClient()
	plain := issueAPI(t, s.Client, "apikey", "plain", nil)
	metered := issueAPI(t, s.Client, "apikey", "big", nil)

	send := func(key string, n int) {
		// One request per gateway first (its verify call), then the rest concurrently:
		// cache hits and grant spends, which only reports tell Vault about.
		requireStatusEverywhere(t, client, gws, key, http.StatusOK)
		var wg sync.WaitGroup
		var left, failed atomic.Int64
		left.Store(int64(n - len(gws)))
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; left.Add(-1) >= 0; i++ {
					st, _, err := fleetGet(client, gws[i%len(gws)].Addr, key)
					if err != nil || st != http.StatusOK {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		require.Zero(t, failed.Load(), "requests refused")
	}
	send(plain.Key, plainRequests)
	send(metered.Key, meteredRequests)
	t.Logf("fleet reports: %.0f verify, %.0f report calls for %d requests",
		vaultCalls(t, gws, "verify"), vaultCalls(t, gws, "report"), plainRequests+meteredRequests)
	require.Less(t, vaultCalls(t, gws, "verify"), float64(plainRequests), "requests were not served from the cache")

	valid := func(keyID string) (int64, map[string]interface{}) {
		sec, err := s.Client.Logical().Read("apikey/keys/" + keyID + "/usage")
		require.NoError(t, err)
		allTime, _ := sec.Data["all_time"].(map[string]interface{})
		if allTime == nil || allTime[codeValid] == nil {
			return 0, sec.Data
		}
		return num(t, allTime, codeValid), sec.Data
	}
	var plainUsage map[string]interface{}
	eventually(t, 20*time.Second, func() error {
		if _, err := s.Client.Logical().Write("apikey/tidy", nil); err != nil {
			return err
		}
		sec, err := s.Client.Logical().Read("apikey/keys/" + plain.KeyID)
		if err != nil {
			return err
		}
		if got := num(t, sec.Data, "use_count"); got != plainRequests {
			return fmt.Errorf("use_count of the unmetered key %d, want %d", got, plainRequests)
		}
		if str(t, sec.Data, "last_used_at") == "" {
			return fmt.Errorf("no last_used_at")
		}
		var n int64
		if n, plainUsage = valid(plain.KeyID); n != plainRequests {
			return fmt.Errorf("usage of the unmetered key: %d VALID, want %d", n, plainRequests)
		}
		if n, _ := valid(metered.KeyID); n != meteredRequests {
			return fmt.Errorf("usage of the metered key: %d VALID, want %d", n, meteredRequests)
		}
		return nil
	})
	networks, _ := plainUsage["networks"].([]interface{})
	require.NotEmpty(t, networks, "usage has no client networks: %v", plainUsage)
	first, _ := networks[0].(map[string]interface{})
	require.Equal(t, "127.0.0.0/24", first["network"], "networks %v", networks)
	require.Equal(t, int64(plainRequests), num(t, first, "count"), "networks %v", networks)
	sec, err := s.Client.Logical().Read("apikey/keys/" + metered.KeyID)
	require.NoError(t, err)
	require.NotEmpty(t, str(t, sec.Data, "last_used_at"))
}

// ---- helpers of the fleet tests ----

func writeFleetRole(t *testing.T, c *api.Client, name string, data map[string]interface{}) {
	t.Helper()
	_, err := c.Logical().Write("apikey/roles/"+name, data)
	require.NoError(t, err)
}

// startFleetGateways starts n gateways with -fleet in front of upstream, gateway i
// talking to vaultAddrs[i % len], each with its metrics listener.
func startFleetGateways(t *testing.T, n int, vaultAddrs []string, token, upstream string, args ...string) []*gatewayProcess {
	t.Helper()
	gws := make([]*gatewayProcess, n)
	for i := range gws {
		gws[i] = startGateway(t, gatewayBin, vaultAddrs[i%len(vaultAddrs)], token,
			append([]string{"-upstream", upstream, "-fleet", "-log-level", "warn"}, args...)...)
	}
	return gws
}

// newFleetClient is a keep-alive client for many concurrent requests to a few gateways.
func newFleetClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
		Timeout: 20 * time.Second,
	}
}

// fleetGet sends GET /fleet with key to the gateway at base and returns the status and,
// for a refusal, the code of the error body.
func fleetGet(c *http.Client, base, key string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/fleet", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	var body struct {
		Code string `json:"code"`
	}
	if resp.StatusCode >= 300 {
		_ = json.Unmarshal(b, &body)
	}
	return resp.StatusCode, body.Code, nil
}

func requireStatusEverywhere(t *testing.T, c *http.Client, gws []*gatewayProcess, key string, want int) {
	t.Helper()
	for i, g := range gws {
		st, code, err := fleetGet(c, g.Addr, key)
		require.NoError(t, err, "gateway %d", i)
		require.Equal(t, want, st, "gateway %d answered %d %s", i, st, code)
	}
}

// eventuallyStatusEverywhere waits until every gateway answers want for key.
func eventuallyStatusEverywhere(t *testing.T, c *http.Client, gws []*gatewayProcess, key string, want int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		for i, g := range gws {
			st, code, err := fleetGet(c, g.Addr, key)
			if err != nil {
				return fmt.Errorf("gateway %d: %w", i, err)
			}
			if st != want {
				return fmt.Errorf("gateway %d answered %d %s, want %d", i, st, code, want)
			}
		}
		return nil
	})
}

// waitRefusedEverywhere polls every gateway (each every 20 ms) until it refuses key
// with status and code, and fails the test if one has not within deadline of since, or
// answers anything else than 200 before. It returns each gateway's time to refusal.
func waitRefusedEverywhere(t *testing.T, c *http.Client, gws []*gatewayProcess, key string, since time.Time, deadline time.Duration, status int, code string) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, len(gws))
	errs := make([]error, len(gws))
	var wg sync.WaitGroup
	for i, g := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				st, got, err := fleetGet(c, g.Addr, key)
				now := time.Now()
				switch {
				case err == nil && st == status && got == code:
					lat[i] = now.Sub(since).Round(time.Millisecond)
					return
				case err == nil && st != http.StatusOK:
					errs[i] = fmt.Errorf("gateway %d answered %d %s, want 200 until %d %s", i, st, got, status, code)
					return
				case now.Sub(since) > deadline:
					errs[i] = fmt.Errorf("gateway %d still answers %d (%v) %s after the change, want %d %s", i, st, err, now.Sub(since).Round(time.Millisecond), status, code)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return lat
}

// requireNeverServed checks for d that no gateway serves key.
func requireNeverServed(t *testing.T, c *http.Client, gws []*gatewayProcess, key string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for i, g := range gws {
			st, _, err := fleetGet(c, g.Addr, key)
			require.False(t, err == nil && st < 300, "gateway %d served the key again (%d)", i, st)
		}
	}
}

// vaultCalls sums apikey_gateway_vault_calls_total{call=<call>} over the gateways.
func vaultCalls(t *testing.T, gws []*gatewayProcess, call string) float64 {
	t.Helper()
	total := 0.0
	for i, g := range gws {
		m, err := g.Metrics(context.Background())
		require.NoError(t, err, "gateway %d metrics", i)
		v, ok := m[`apikey_gateway_vault_calls_total{call="`+call+`"}`]
		require.True(t, ok, "gateway %d has no apikey_gateway_vault_calls_total{call=%q}", i, call)
		total += v
	}
	return total
}

// countingUpstream answers 200 and counts requests by the key_id the gateway names in
// X-Api-Key-Id: what was admitted, whatever the clients saw.
type countingUpstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   map[string]int64
}

func newCountingUpstream(t *testing.T) *countingUpstream {
	u := &countingUpstream{n: map[string]int64{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.n[r.Header.Get("X-Api-Key-Id")]++
		u.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *countingUpstream) URL() string { return u.srv.URL }

func (u *countingUpstream) count(keyID string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[keyID]
}

// fleetHammer sends requests with one key to every gateway from a few workers per
// gateway until stopped, counting the answers. A worker pauses briefly after a refusal
// or error, so that a long refusal phase does not load the machine.
type fleetHammer struct {
	ok, tooMany, unavailable, other atomic.Int64
	lastOK                          atomic.Int64 // unix nanoseconds
	lastFailed                      atomic.Int64 // unix nanoseconds of the last 503 or error, 0: none
	okAtFirstRefusal                atomic.Int64 // 2xx answers when the first 429 came, -1 before

	mu           sync.Mutex
	otherSamples []string

	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func startFleetHammer(t *testing.T, c *http.Client, gws []*gatewayProcess, key string, workersPerGateway int) *fleetHammer {
	h := &fleetHammer{done: make(chan struct{})}
	h.okAtFirstRefusal.Store(-1)
	h.lastOK.Store(time.Now().UnixNano())
	for _, g := range gws {
		for range workersPerGateway {
			h.wg.Add(1)
			go h.work(c, g.Addr, key)
		}
	}
	t.Cleanup(h.stop)
	return h
}

func (h *fleetHammer) work(c *http.Client, base, key string) {
	defer h.wg.Done()
	for {
		select {
		case <-h.done:
			return
		default:
		}
		st, code, err := fleetGet(c, base, key)
		switch {
		case err == nil && st == http.StatusOK:
			h.ok.Add(1)
			h.lastOK.Store(time.Now().UnixNano())
			continue
		case err == nil && st == http.StatusTooManyRequests:
			if h.tooMany.Add(1) == 1 {
				h.okAtFirstRefusal.Store(h.ok.Load())
			}
		case err == nil && st == http.StatusServiceUnavailable:
			h.unavailable.Add(1)
			h.lastFailed.Store(time.Now().UnixNano())
		default:
			h.other.Add(1)
			h.lastFailed.Store(time.Now().UnixNano())
			h.mu.Lock()
			if len(h.otherSamples) < 5 {
				h.otherSamples = append(h.otherSamples, fmt.Sprintf("%d %s %v", st, code, err))
			}
			h.mu.Unlock()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *fleetHammer) stop() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
}

// failedUntil is how long after t the last 503 or error came (0: none after t).
func (h *fleetHammer) failedUntil(t time.Time) time.Duration {
	last := h.lastFailed.Load()
	if last == 0 || time.Unix(0, last).Before(t) {
		return 0
	}
	return time.Unix(0, last).Sub(t).Round(time.Millisecond)
}

// waitFor polls cond every 5 ms for at most timeout.
func (h *fleetHammer) waitFor(timeout time.Duration, cond func() bool) error {
	for end := time.Now().Add(timeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			return fmt.Errorf("condition not met within %s (%s)", timeout, h)
		}
	}
	return nil
}

// waitQuiet waits until cond holds and no request was admitted for quiet.
func (h *fleetHammer) waitQuiet(quiet, timeout time.Duration, cond func() bool) error {
	return h.waitFor(timeout, func() bool {
		return time.Since(time.Unix(0, h.lastOK.Load())) >= quiet && cond()
	})
}

func (h *fleetHammer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := fmt.Sprintf("answers: %d 2xx, %d 429 (first after %d 2xx), %d 503, %d other",
		h.ok.Load(), h.tooMany.Load(), h.okAtFirstRefusal.Load(), h.unavailable.Load(), h.other.Load())
	if len(h.otherSamples) > 0 {
		s += " (" + strings.Join(h.otherSamples, "; ") + ")"
	}
	return s
}
