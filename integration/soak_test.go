//go:build integration

package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// TestSoak runs the concurrency, plugin-crash and HA scenarios for longer, with faults
// injected over and over, and prints a summary: operations done, faults injected,
// invariant violations (the test fails unless there are none). It only runs with
// APIKEY_SOAK=1 (`make soak`); SOAK_DURATION (default 5m) bounds the whole run: 20 % for
// concurrency alone, 30 % for plugin crashes under load, the rest for leader kills on a
// 3-node cluster under load. The short versions (TestConcurrency, TestPluginCrash,
// TestHAFailover) run in every `make test`.
func TestSoak(t *testing.T) {
	if os.Getenv("APIKEY_SOAK") != "1" {
		t.Skip("soak test: set APIKEY_SOAK=1 (and SOAK_DURATION), or run `make soak`")
	}
	total := envDuration(t, "SOAK_DURATION", 5*time.Minute)
	began := time.Now()
	until := func(share float64) time.Time { return began.Add(time.Duration(float64(total) * share)) }
	sum := &soakSummary{}

	phases := []struct {
		name string
		end  time.Time
		run  func(*testing.T, time.Time, *soakPhase)
	}{
		{"concurrency", until(0.2), soakConcurrency},
		{"plugin-crash", until(0.5), soakCrash},
		{"ha-failover", until(1), soakHA},
	}
	for _, ph := range phases {
		p := &soakPhase{name: ph.name}
		sum.phases = append(sum.phases, p)
		start := time.Now()
		p.passed = t.Run(ph.name, func(t *testing.T) { ph.run(t, ph.end, p) })
		p.took = time.Since(start)
	}
	// On stdout, not through t.Log: the summary is the output of `make soak`.
	fmt.Print(sum.String(time.Since(began)))
	if v := sum.violations(); v > 0 {
		t.Errorf("soak: %d invariant violations", v)
	}
}

type soakSummary struct{ phases []*soakPhase }

// soakPhase collects one scenario's numbers.
type soakPhase struct {
	name   string
	stats  workloadStats
	notes  []string
	passed bool
	took   time.Duration
}

func (p *soakPhase) note(format string, args ...interface{}) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

func (s *soakSummary) violations() int64 {
	var n int64
	for _, p := range s.phases {
		n += p.stats.violations.Load()
		if !p.passed {
			n++ // a failed check that stopped the phase
		}
	}
	return n
}

func (s *soakSummary) String(took time.Duration) string {
	var b strings.Builder
	var all workloadStats
	fmt.Fprintf(&b, "==== SOAK SUMMARY (%s) ====\n", took.Round(time.Second))
	for _, p := range s.phases {
		all.add(&p.stats)
		status := "ok"
		if !p.passed {
			status = "FAILED (a check stopped the phase; counted as 1 violation)"
		}
		fmt.Fprintf(&b, "%-13s %s in %s: %s\n", p.name, status, p.took.Round(time.Second), p.stats.String())
		for _, n := range p.notes {
			fmt.Fprintf(&b, "%-13s   %s\n", "", n)
		}
	}
	fmt.Fprintf(&b, "TOTAL: %d operations, %d faults injected, %d failed requests (tolerated only while faults were injected), %d invariant violations\n",
		all.ops(), all.faults.Load(), all.errors.Load(), s.violations())
	return b.String()
}

// runInBackground runs the workload with n goroutines until end (or the returned stop is
// called, also in t.Cleanup); stop waits for the goroutines.
func runInBackground(t *testing.T, w *workload, n int, end time.Time) (stop func()) {
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(n, func() bool { return !stopped.Load() && time.Now().Before(end) })
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopped.Store(true)
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// staticKeys is a keySource of keys that nothing revokes or rotates.
type staticKeys []string

func (s staticKeys) liveKey() string { return s[rand.IntN(len(s))] }

// probeKeys issues n keys of a role of their own, which the workload never touches.
func probeKeys(t *testing.T, c *api.Client, n int) staticKeys {
	t.Helper()
	_, err := c.Logical().Write("apikey/roles/probe", map[string]interface{}{"scopes": "a", "ttl": "24h", "max_ttl": "24h"})
	require.NoError(t, err)
	var keys staticKeys
	for i := 0; i < n; i++ {
		keys = append(keys, issueAPI(t, c, "apikey", "probe", nil).Key)
	}
	return keys
}

// soakConcurrency: 16 goroutines against a dev server, no faults: every failed request
// is a violation too.
func soakConcurrency(t *testing.T, end time.Time, p *soakPhase) {
	s := Setup(t)
	w := newWorkload(t, "apikey", "soak", s.Client, 300)
	defer p.stats.add(&w.stats) // also when a check stops the phase
	w.client = singleClient(fastClient(t, s.Addr, s.RootToken, 30*time.Second))
	w.Run(16, func() bool { return time.Now().Before(end) })
	w.Check(t, s.Client, 3000)
	t.Logf("soak %s: %s", p.name, w.stats.String())
	if v := w.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// soakCrash: 8 goroutines against a dev server while the plugin process is killed with
// SIGKILL every few seconds.
func soakCrash(t *testing.T, end time.Time, p *soakPhase) {
	s := Setup(t)
	probes := probeKeys(t, s.Client, 5)
	w := newWorkload(t, "apikey", "soak", s.Client, 300)
	defer p.stats.add(&w.stats) // also when a check stops the phase
	w.faults = true
	w.client = singleClient(fastClient(t, s.Addr, s.RootToken, 10*time.Second))
	stop := runInBackground(t, w, 8, end)

	var recoveries []time.Duration
	var windows []faultWindow
	for first := true; first || time.Until(end) > 10*time.Second; first = false {
		// Some load first, then the crash.
		time.Sleep(time.Duration(2000+rand.IntN(4000)) * time.Millisecond)
		r := crashPlugin(t, s, probes, time.Minute)
		w.stats.faults.Add(1)
		recoveries = append(recoveries, r.recovery)
		windows = append(windows, faultWindow{r.killedAt, r.killedAt.Add(r.recovery + windowSlack)})
		t.Logf("soak %s: plugin pid %v killed; verify back after %s (pid %v)", p.name, r.killed, r.recovery.Round(time.Millisecond), r.restarted)
	}
	stop()
	for _, k := range probes {
		requireCode(t, s.Client, "apikey", k, codeValid)
	}
	w.Check(t, s.Client, 3000)
	checkErrorWindows(t, w, p, windows)
	p.note("%d plugin kills; verify back after %s", len(recoveries), durationRange(recoveries))
	t.Logf("soak %s: %s", p.name, w.stats.String())
	if v := w.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// soakHA: a 3-node raft cluster under load (8 goroutines, requests spread over the
// running nodes) while the active node is killed again and again. Each round: a 15 s
// lease is issued, the active node is SIGKILLed, the failover is timed, the node restarts
// and rejoins, and the short lease must still be revoked.
func soakHA(t *testing.T, end time.Time, p *soakPhase) {
	c := StartCluster(t, 3)
	admin := c.Active(t).Client
	probes := probeKeys(t, admin, 5)
	w := newWorkload(t, "apikey", "soak", admin, 300)
	defer p.stats.add(&w.stats) // also when a check stops the phase
	w.faults = true
	clients := map[*Server]*api.Client{}
	for _, n := range c.Nodes {
		// A short timeout: a request a standby is forwarding to a dead node delays that
		// standby's promotion until it ends (see Cluster.Failover).
		clients[n] = fastClient(t, n.Addr, c.RootToken, 3*time.Second)
	}
	w.client = func() *api.Client {
		up := c.Up()
		return clients[up[rand.IntN(len(up))]]
	}
	stop := runInBackground(t, w, 8, end)

	// A round takes about 25 s (failover, restart, waiting for the 15 s lease).
	var failovers, rejoins, revocations []time.Duration
	var windows []faultWindow
	for round := 1; round == 1 || time.Until(end) > 20*time.Second; round++ {
		time.Sleep(time.Duration(2000+rand.IntN(3000)) * time.Millisecond)
		var short issued
		eventually(t, time.Minute, func() error {
			sec, err := c.Active(t).Client.Logical().Write("apikey/creds/soak", map[string]interface{}{"ttl": "15s"})
			if err == nil {
				short, err = issuedFromSecret(sec)
			}
			return err
		})
		shortExpiry := timeField(t, short.Secret.Data, "expires_at")

		f := c.Failover(t, probes.liveKey(), 2*time.Minute)
		w.stats.faults.Add(1)
		windows = append(windows, faultWindow{f.killedAt, f.killedAt.Add(f.toVerify + windowSlack)})
		failovers = append(failovers, f.toVerify)
		t.Logf("soak %s round %d: HA failover: killed node%d; %s", p.name, round, c.Index(f.killed), f)

		start := time.Now()
		c.Restart(t, f.killed)
		c.WaitHealthy(t, 2*time.Minute)
		rejoins = append(rejoins, time.Since(start))
		windows = append(windows, faultWindow{start, time.Now().Add(windowSlack)})

		na := c.Active(t)
		eventually(t, time.Until(shortExpiry)+time.Minute, func() error { return leaseGone(na.Client, short.LeaseID) })
		revocations = append(revocations, time.Since(shortExpiry))
		eventuallyCode(t, na.Client, "apikey", short.Key, 10*time.Second, codeNotFound)
		t.Logf("soak %s round %d: node%d rejoined in %s; the 15 s lease was revoked %s after its expiry",
			p.name, round, c.Index(f.killed), rejoins[len(rejoins)-1].Round(time.Millisecond), revocations[len(revocations)-1].Round(time.Second))
	}
	stop()
	for _, n := range c.Nodes {
		for _, k := range probes {
			requireCode(t, n.Client, "apikey", k, codeValid)
		}
	}
	w.Check(t, c.Active(t).Client, 3000)
	checkErrorWindows(t, w, p, windows)
	p.note("%d leader kills; first successful verify after %s; rejoined in %s; short leases revoked %s after expiry",
		len(failovers), durationRange(failovers), durationRange(rejoins), durationRange(revocations))
	t.Logf("soak %s: %s", p.name, w.stats.String())
	if v := w.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}

// windowSlack: a fault window lasts from the fault until this long after the recovery
// the test saw (requests that were already waiting then may fail a little later).
const windowSlack = 5 * time.Second

// checkErrorWindows logs the workload's failed requests by kind; a request failing
// outside every fault window is a violation (the system should serve between faults).
func checkErrorWindows(t *testing.T, w *workload, p *soakPhase, windows []faultWindow) {
	t.Helper()
	outside, report := w.ErrorReport(windows)
	t.Logf("soak %s: failed requests by kind:%s", p.name, report)
	if outside > 0 {
		w.violate("%d requests failed outside the fault windows", outside)
	}
	p.note("%d failed requests, all while a fault was being injected or recovered from (within %s of the recovery); %d outside",
		w.stats.errors.Load()-int64(outside), windowSlack, outside)
}

// durationRange formats min–max of ds.
func durationRange(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo == hi {
		return lo.Round(100 * time.Millisecond).String()
	}
	return lo.Round(100*time.Millisecond).String() + "–" + hi.Round(100*time.Millisecond).String()
}
