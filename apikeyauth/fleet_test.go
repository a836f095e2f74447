package apikeyauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func int64p(n int64) *int64 { return &n }

const peer = "198.51.100.7:40000"

// TestFleetOffIsUnchanged: without Fleet the verify body has exactly the fields it had
// before, nothing but verify is called, and Close does nothing.
func TestFleetOffIsUnchanged(t *testing.T) {
	h := newHarness(t, Config{})
	h.vault.set(func(fv *fakeVault) {
		fv.data = validData(h.clock.Now(), time.Hour)
		fv.data["remaining_uses"] = 10
	})
	key := newKey(t)
	require.Equal(t, 200, h.do(key).Code)
	require.Equal(t, 200, h.do(key).Code)
	require.EqualValues(t, 2, h.vault.calls.Load(), "a metered key is not cached without Fleet")
	fields := h.vault.lastRequest().Fields
	slices.Sort(fields)
	require.Equal(t, []string{"api_key", "client_ip", "cost", "request_id"}, fields)
	require.Nil(t, h.mw.fleet)
	require.NoError(t, h.mw.Close(context.Background()))
	require.NoError(t, h.mw.Close(context.Background()))
	require.Equal(t, map[string]int{"verify": 2}, h.obs.fleetCalls(), "verify calls reach a FleetObserver in any mode")
}

func TestFleetConfig(t *testing.T) {
	fv := newFakeVault(t, DefaultMount)
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no cache", cfg: Config{CacheSize: -1}, wantErr: "fleet mode needs the cache"},
		{name: "no positive cache", cfg: Config{CacheTTL: -1}, wantErr: "fleet mode needs the cache"},
		{name: "negative fleet ttl", cfg: Config{FleetCacheTTL: -1}, wantErr: "must not be negative"},
		{name: "negative feed timeout", cfg: Config{FeedTimeout: -1}, wantErr: "must not be negative"},
		{name: "defaults", cfg: Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Fleet, tc.cfg.Client = true, fv.client(t)
			m, err := newMiddleware(tc.cfg, hooks{noLoops: true})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, DefaultFleetCacheTTL, m.fleet.cacheTTL)
			require.Equal(t, DefaultFeedTimeout, m.fleet.feedTimeout)
			require.Equal(t, DefaultFleetReportInterval, m.fleet.reportInterval)
			require.Equal(t, 5*time.Second*2/3, m.fleet.feedWait, "within two thirds of the test client's 5s timeout")
			require.True(t, verifyapi.ValidHolder(m.fleet.holder))
			require.NoError(t, m.Close(context.Background()))
		})
	}
}

// TestFleetSpendsGrants: a metered key is cached; requests served from the cache spend
// the grant, an empty pool asks verify again (which tops it up), and the key's max_uses
// is never exceeded.
func TestFleetSpendsGrants(t *testing.T) {
	h := newFleetHarness(t, Config{})
	key := newKey(t)
	k := h.engine.addKey(&fakeKey{key: key, remaining: int64p(100)})

	require.Equal(t, 200, h.do(key).Code)
	first := h.vault.lastRequest()
	require.True(t, verifyapi.ValidHolder(first.GrantHolder))
	require.Nil(t, first.GrantUses, "an unknown key: the engine sizes the first grant")
	for i := range 16 {
		require.Equal(t, 200, h.do(key).Code, "request %d from the grant", i)
	}
	require.EqualValues(t, 1, h.verifyCalls(), "16 uses granted: no Vault call")
	require.Equal(t, 200, h.do(key).Code)
	require.EqualValues(t, 2, h.verifyCalls(), "pool empty: verify")
	again := h.vault.lastRequest()
	require.NotNil(t, again.GrantUses, "the key is known: the grant asked for is sized by its demand")
	require.Positive(t, *again.GrantUses)

	admitted, exceeded := 18, 0
	for range 200 {
		switch h.do(key).Code {
		case 200:
			admitted++
		case 429:
			exceeded++
		}
	}
	require.Equal(t, 100, admitted, "exactly max_uses admitted")
	require.Equal(t, 200-(100-18), exceeded)
	require.EqualValues(t, 0, *k.remaining)
	require.Less(t, h.verifyCalls(), int64(10), "a handful of top-ups, then refusals from the negative cache")
}

// TestFleetLocalRateLimit: a cached rate-limited key is refused locally, with
// Retry-After, once its share of the rate is spent; no Vault call.
func TestFleetLocalRateLimit(t *testing.T) {
	h := newFleetHarness(t, Config{})
	key := newKey(t)
	h.engine.addKey(&fakeKey{key: key, rate: 2, burst: 2})
	for i := range 3 {
		require.Equal(t, 200, h.do(key).Code, "request %d: the verify, then the share's burst", i)
	}
	rec := h.do(key)
	require.Equal(t, 429, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), CodeRateLimited)
	require.EqualValues(t, 1, h.verifyCalls())
	require.Equal(t, 1, h.obs.decided(CodeRateLimited))
	h.clock.Advance(500 * time.Millisecond)
	require.Equal(t, 200, h.do(key).Code, "one token refilled at 2/s")
	require.Equal(t, 429, h.do(key).Code)
	require.EqualValues(t, 1, h.verifyCalls())

	// Another client address is another cache entry: Vault refuses it for the rate (the
	// direct share is spent), but this middleware holds a share of its own.
	h.engine.with(func(e *fakeEngine) {
		for _, k := range e.keys {
			k.rateLimited = true
		}
	})
	h.clock.Advance(time.Second)
	require.Equal(t, 200, h.doFrom(key, "203.0.113.9:1", 1).StatusCode)
	require.EqualValues(t, 2, h.verifyCalls())
	require.Equal(t, 200, h.doFrom(key, "203.0.113.9:1", 1).StatusCode, "now cached as VALID, spending the share")
	require.EqualValues(t, 2, h.verifyCalls())
	require.Equal(t, 429, h.doFrom(key, "203.0.113.9:1", 1).StatusCode, "the share is spent: refused locally")
	require.EqualValues(t, 2, h.verifyCalls())
}

// TestFleetWithoutGrantStaysPerRequest: a metered key answered without a grant (the
// engine gives none: a rate window over a minute, or its bookkeeping is full) is not
// cached, as without Fleet.
func TestFleetWithoutGrantStaysPerRequest(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.engine.with(func(e *fakeEngine) { e.noGrants = true })
	key := newKey(t)
	h.engine.addKey(&fakeKey{key: key, remaining: int64p(10)})
	for range 3 {
		require.Equal(t, 200, h.do(key).Code)
	}
	require.EqualValues(t, 3, h.verifyCalls())
}

func TestFleetFeedInvalidates(t *testing.T) {
	h := newFleetHarness(t, Config{})
	cursor := h.poll("")
	require.Equal(t, "e1.0", cursor)
	require.True(t, h.mw.fleet.healthy(h.clock.Now()))

	a, b, c, m1, m2 := newKey(t), newKey(t), newKey(t), newKey(t), newKey(t)
	ka := h.engine.addKey(&fakeKey{key: a})
	kb := h.engine.addKey(&fakeKey{key: b, code: CodeDisabled})
	h.engine.addKey(&fakeKey{key: c})
	km1 := h.engine.addKey(&fakeKey{key: m1, remaining: int64p(100)})
	km2 := h.engine.addKey(&fakeKey{key: m2, remaining: int64p(100)})
	for _, k := range []string{a, b, c, m1, m2} {
		h.do(k)
		h.do(k)
	}
	require.EqualValues(t, 5, h.verifyCalls(), "each key asked once, refusals cached too")

	h.engine.event(verifyapi.EventDisabled, ka.keyID)
	h.engine.event(verifyapi.EventEnabled, kb.keyID)
	h.engine.event(verifyapi.EventRevoked, km1.keyID)
	h.engine.event(verifyapi.EventExpiryChanged, km2.keyID)
	next := h.poll(cursor)
	require.Equal(t, "e1.4", next)
	require.Equal(t, cursor, h.engine.lastCursor, "resumed from the cursor")
	require.False(t, h.mw.fleet.pool.Live(km1.keyID, h.clock.Now()), "revoked: its grant is dropped")
	require.True(t, h.mw.fleet.pool.Live(km2.keyID, h.clock.Now()), "expiry moved: the grant stands")

	calls := h.verifyCalls()
	h.do(c)
	require.Equal(t, calls, h.verifyCalls(), "a key without events stays cached")
	for _, k := range []string{a, b, m1, m2} {
		h.do(k)
		calls++
		require.Equal(t, calls, h.verifyCalls(), "positive and negative entries of the keys in events are dropped")
	}
	// Nothing new: the cursor stays.
	require.Equal(t, next, h.poll(next))
}

func TestFleetFeedReset(t *testing.T) {
	h := newFleetHarness(t, Config{})
	a, m := newKey(t), newKey(t)
	h.engine.addKey(&fakeKey{key: a})
	km := h.engine.addKey(&fakeKey{key: m, remaining: int64p(100)})
	h.do(a)
	h.do(m)
	require.Equal(t, 1, h.mw.fleet.pool.Len())

	// The first poll resets: answers stored before the feed had a cursor are dropped,
	// the grants (given by the engine that answers) are kept.
	cursor := h.poll("")
	require.Zero(t, h.mw.cache.Len())
	require.True(t, h.mw.fleet.pool.Live(km.keyID, h.clock.Now()))
	h.do(a)
	h.do(m)
	require.EqualValues(t, 4, h.verifyCalls())

	// Another epoch (the engine restarted, or another node took over): everything goes.
	h.engine.with(func(e *fakeEngine) { e.epoch = "e2" })
	next := h.poll(cursor)
	require.Equal(t, "e2.0", next)
	require.Zero(t, h.mw.cache.Len())
	require.Zero(t, h.mw.negCache.Len())
	require.Zero(t, h.mw.fleet.pool.Len(), "grants dropped, without returns")
	h.do(a)
	h.do(m)
	require.EqualValues(t, 6, h.verifyCalls())
	for _, r := range h.engine.renews {
		require.NotEqual(t, true, r["release"], "nothing was released to an engine that lost the grants")
	}
}

// TestFleetFallsBackToShortTTL: with the feed healthy a VALID result lives up to
// FleetCacheTTL; when the feed fails or stops answering within FeedTimeout, only
// CacheTTL from when it was stored.
func TestFleetFallsBackToShortTTL(t *testing.T) {
	h := newFleetHarness(t, Config{})
	key := newKey(t)
	h.engine.addKey(&fakeKey{key: key})

	// No feed answer yet: CacheTTL.
	h.do(key)
	h.clock.Advance(5 * time.Second)
	h.do(key)
	require.EqualValues(t, 2, h.verifyCalls(), "before the feed answers, 5s only")

	cursor := h.poll("")
	h.do(key)
	require.EqualValues(t, 3, h.verifyCalls(), "stored before the first cursor: dropped by its reset")
	for range 5 {
		h.clock.Advance(10 * time.Second)
		cursor = h.poll(cursor)
	}
	h.clock.Advance(9 * time.Second)
	h.do(key)
	require.EqualValues(t, 3, h.verifyCalls(), "59s old, feed healthy: cached")
	h.clock.Advance(time.Second)
	cursor = h.poll(cursor)
	h.do(key)
	require.EqualValues(t, 4, h.verifyCalls(), "never past FleetCacheTTL")

	// The feed fails: an entry older than CacheTTL goes at once.
	h.clock.Advance(6 * time.Second)
	cursor = h.poll(cursor)
	h.engine.with(func(e *fakeEngine) { e.feedStatus = 500 })
	_, err := h.mw.fleet.pollFeed(context.Background(), cursor)
	require.Error(t, err)
	require.False(t, h.mw.fleet.healthy(h.clock.Now()))
	h.do(key)
	require.EqualValues(t, 5, h.verifyCalls(), "6s old with the feed failing: asked again")
	h.clock.Advance(4 * time.Second)
	h.do(key)
	require.EqualValues(t, 5, h.verifyCalls(), "but still cached for CacheTTL")

	// The feed answers again (resuming from its cursor: nothing was missed), then
	// stops answering: healthy until FeedTimeout.
	h.engine.with(func(e *fakeEngine) { e.feedStatus = 0 })
	h.clock.Advance(time.Second)
	h.poll(cursor)
	h.do(key)
	require.EqualValues(t, 5, h.verifyCalls(), "5s old, feed healthy again: cached")
	h.clock.Advance(14 * time.Second)
	h.do(key)
	require.EqualValues(t, 5, h.verifyCalls(), "14s since the feed answered: still healthy")
	h.clock.Advance(time.Second)
	h.do(key)
	require.EqualValues(t, 6, h.verifyCalls(), "FeedTimeout without an answer: CacheTTL again")
}

// TestFleetFeedStallIsAFailure: a poll that gets no answer within FeedTimeout fails.
func TestFleetFeedStallIsAFailure(t *testing.T) {
	h := newFleetHarness(t, Config{FeedTimeout: 300 * time.Millisecond})
	cursor := h.poll("")
	stall := make(chan struct{})
	defer close(stall)
	h.engine.with(func(e *fakeEngine) { e.feedStall = stall })
	start := time.Now()
	_, err := h.mw.fleet.pollFeed(context.Background(), cursor)
	require.Error(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
	require.False(t, h.mw.fleet.healthy(h.clock.Now()))
}

// TestFleetEventRacingAVerifyInvalidates: an event that arrives while a verify call is
// in flight invalidates the answer that call stores.
func TestFleetEventRacingAVerifyInvalidates(t *testing.T) {
	h := newFleetHarness(t, Config{})
	cursor := h.poll("")
	key := newKey(t)
	k := h.engine.addKey(&fakeKey{key: key})
	hold := make(chan struct{})
	h.vault.set(func(fv *fakeVault) { fv.hold = hold })
	done := make(chan int)
	go func() { done <- h.do(key).Code }()
	require.Eventually(t, func() bool { return h.verifyCalls() == 1 }, 5*time.Second, time.Millisecond)

	// Vault has answered VALID (the answer is on its way) when the key is disabled.
	h.engine.with(func(e *fakeEngine) { k.code = CodeDisabled })
	h.engine.event(verifyapi.EventDisabled, k.keyID)
	h.poll(cursor)
	h.vault.set(func(fv *fakeVault) { fv.hold = nil })
	h.engine.with(func(e *fakeEngine) { k.code = CodeValid })
	close(hold)
	require.Equal(t, 200, <-done, "the answer Vault gave before the change")

	h.engine.with(func(e *fakeEngine) { k.code = CodeDisabled })
	require.Equal(t, 401, h.do(key).Code, "the stored answer predates the event: asked again")
	require.EqualValues(t, 2, h.verifyCalls())
}

func TestFleetRenewals(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.poll("")
	key, idle := newKey(t), newKey(t)
	k := h.engine.addKey(&fakeKey{key: key, remaining: int64p(1000), rate: 100, burst: 100})
	ki := h.engine.addKey(&fakeKey{key: idle, remaining: int64p(1000)})
	h.do(key)
	h.do(idle)
	for range 10 {
		require.Equal(t, 200, h.do(key).Code)
	}
	h.clock.Advance(4 * time.Second)
	h.mw.fleet.renewDue(context.Background())
	require.Empty(t, h.engine.renews, "not due before half the TTL (10s)")

	h.clock.Advance(time.Second)
	h.mw.fleet.renewDue(context.Background())
	require.Len(t, h.engine.renews, 2)
	byGrant := map[string]map[string]any{}
	for _, r := range h.engine.renews {
		byGrant[r["grant_id"].(string)] = r
	}
	busy := byGrant[h.engine.grantOf[h.mw.fleet.holder+"/"+k.keyID]]
	require.NotNil(t, busy)
	require.NotContains(t, busy, "release")
	rate, _ := verifyapi.Number(busy["grant_rate"])
	require.InDelta(t, 2.0, rate, 0.01, "10 attempts in 5s")
	usesWanted, _ := verifyapi.Number(busy["grant_uses"])
	require.Positive(t, usesWanted)
	idleRenewal := byGrant[h.engine.grantOf[h.mw.fleet.holder+"/"+ki.keyID]]
	require.Nil(t, idleRenewal, "released: the engine forgot it")
	require.Equal(t, int64(1000-1), *ki.remaining, "the idle grant's 16 uses came back")
	require.False(t, h.mw.fleet.pool.Live(ki.keyID, h.clock.Now()))

	// The engine forgets the grant (a restart the feed has not told of yet): the next
	// renewal is answered renewed=false, the grant is dropped and verify is asked again.
	h.engine.with(func(e *fakeEngine) {
		clear(e.grants)
		clear(e.grantOf)
	})
	h.do(key)
	h.clock.Advance(5 * time.Second)
	h.mw.fleet.renewDue(context.Background())
	require.False(t, h.mw.fleet.pool.Live(k.keyID, h.clock.Now()))
	calls := h.verifyCalls()
	require.Equal(t, 200, h.do(key).Code)
	require.Equal(t, calls+1, h.verifyCalls())
}

// TestFleetCloseReleasesAndReports: Close returns the uses left, sends the last report,
// and the middleware goes on as without Fleet.
func TestFleetCloseReleasesAndReports(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.poll("")
	key := newKey(t)
	k := h.engine.addKey(&fakeKey{key: key, remaining: int64p(100)})
	for range 5 {
		require.Equal(t, 200, h.do(key).Code)
	}
	require.EqualValues(t, 100-1-16, *k.remaining)
	require.NoError(t, h.mw.Close(context.Background()))
	require.EqualValues(t, 100-5, *k.remaining, "the 12 unspent uses came back")
	require.Len(t, h.engine.renews, 1)
	require.Equal(t, true, h.engine.renews[0]["release"])
	require.Len(t, h.engine.reports, 1)
	require.Equal(t, []verifyapi.ReportEntry{{KeyID: k.keyID, ReportToken: k.token, Code: CodeValid, Count: 4, Uses: 4, ClientIP: "198.51.100.7"}}, h.engine.reports[0].Entries)
	require.Equal(t, h.mw.fleet.holder, h.engine.reports[0].Holder)

	require.NoError(t, h.mw.Close(context.Background()), "twice is fine")
	require.Len(t, h.engine.renews, 1)
	require.Len(t, h.engine.reports, 1)

	calls := h.verifyCalls()
	require.Equal(t, 200, h.do(key).Code)
	require.Equal(t, 200, h.do(key).Code)
	require.Equal(t, calls+2, h.verifyCalls(), "after Close a metered key asks verify every time")
	require.Empty(t, h.vault.lastRequest().GrantHolder)
}

func TestFleetReportsAggregate(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.poll("")
	key, disabled := newKey(t), newKey(t)
	k := h.engine.addKey(&fakeKey{key: key})
	kd := h.engine.addKey(&fakeKey{key: disabled, code: CodeDisabled})
	send := func(key, addr string, tags []string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("X-API-Key", key)
		h.mw.RequireCostTagged(2, tags)(identityHandler()).ServeHTTP(httptest.NewRecorder(), r)
	}
	for range 3 {
		send(key, "198.51.100.7:1", nil) // one verify, two from the cache
	}
	send(key, "198.51.100.8:1", nil) // a verify of its own (another address)
	send(key, "198.51.100.8:1", nil) // the same /24 as .7
	send(key, "198.51.100.7:1", []string{"route=a"})
	send(key, "2001:db8:1:2::1", nil)
	send(key, "2001:db8:1:2::1", nil)
	send(key, "[2001:db8:1:ffff::9]:1", nil) // a verify of its own
	send(key, "[2001:db8:1:ffff::9]:1", nil) // the same /48 as 2001:db8:1:2::1
	send(disabled, "203.0.113.1:1", nil)
	send(disabled, "203.0.113.1:1", nil) // a cached refusal

	require.NoError(t, h.mw.fleet.sendReport(context.Background()))
	require.Len(t, h.engine.reports, 1)
	got := h.engine.reports[0].Entries
	slices.SortFunc(got, func(a, b verifyapi.ReportEntry) int {
		return strings.Compare(a.KeyID+a.ClientIP+strings.Join(a.Tags, ","), b.KeyID+b.ClientIP+strings.Join(b.Tags, ","))
	})
	require.Equal(t, []verifyapi.ReportEntry{
		{KeyID: k.keyID, ReportToken: k.token, Code: CodeValid, Count: 3, Uses: 6, ClientIP: "198.51.100.7"},
		{KeyID: k.keyID, ReportToken: k.token, Code: CodeValid, Count: 1, Uses: 2, ClientIP: "198.51.100.7", Tags: []string{"route=a"}},
		{KeyID: k.keyID, ReportToken: k.token, Code: CodeValid, Count: 2, Uses: 4, ClientIP: "2001:db8:1:2::1"},
		{KeyID: kd.keyID, ReportToken: kd.token, Code: CodeDisabled, Count: 1, ClientIP: "203.0.113.1"},
	}, got)
	require.NoError(t, h.mw.fleet.sendReport(context.Background()))
	require.Len(t, h.engine.reports, 1, "nothing new: nothing sent")
}

func TestReporterIsBounded(t *testing.T) {
	r := newReporter(2)
	require.True(t, r.add("a", "t", CodeValid, nil, ipv4("192.0.2.1"), 1))
	require.True(t, r.add("b", "t", CodeValid, nil, ipv4("192.0.2.1"), 1))
	require.True(t, r.add("a", "t", CodeValid, nil, ipv4("192.0.2.200"), 1), "an existing group still counts")
	require.False(t, r.add("c", "t", CodeValid, nil, ipv4("192.0.2.1"), 1))
	entries, dropped := r.take()
	require.Len(t, entries, 2)
	require.EqualValues(t, 1, dropped)
	r.putBack(entries)
	r.putBack([]verifyapi.ReportEntry{{KeyID: "z", Code: CodeValid, Count: 7}})
	again, dropped := r.take()
	require.Len(t, again, 2)
	require.EqualValues(t, 7, dropped)
}

// TestFleetReportFailures: a report Vault did not answer is sent with the next one; one
// it refused is not sent again.
func TestFleetReportFailures(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.poll("")
	key := newKey(t)
	h.engine.addKey(&fakeKey{key: key})
	h.do(key)
	h.do(key)
	h.engine.with(func(e *fakeEngine) { e.reportStatus = 400 })
	require.Error(t, h.mw.fleet.sendReport(context.Background()))
	h.engine.with(func(e *fakeEngine) { e.reportStatus = 0 })
	require.NoError(t, h.mw.fleet.sendReport(context.Background()))
	require.Empty(t, h.engine.reports, "refused: dropped")

	h.do(key)
	h.engine.with(func(e *fakeEngine) { e.reportStatus = 503 })
	require.Error(t, h.mw.fleet.sendReport(context.Background()))
	h.engine.with(func(e *fakeEngine) { e.reportStatus = 0 })
	require.NoError(t, h.mw.fleet.sendReport(context.Background()))
	require.Len(t, h.engine.reports, 1, "not answered: sent with the next report")
	require.EqualValues(t, 1, h.engine.reports[0].Entries[0].Count)
}

func TestFleetObserverCalls(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.poll("")
	key := newKey(t)
	h.engine.addKey(&fakeKey{key: key, remaining: int64p(100)})
	h.do(key)
	h.do(key)
	h.clock.Advance(5 * time.Second)
	h.mw.fleet.renewDue(context.Background())
	require.NoError(t, h.mw.fleet.sendReport(context.Background()))
	require.Equal(t, map[string]int{"feed": 1, "verify": 1, "renew": 1, "report": 1}, h.obs.fleetCalls())
	require.ElementsMatch(t, FleetCalls(), []string{"verify", "renew", "feed", "report"})
}

// TestFleetNeverLeaksTheKey: no call but verify carries the key, nor does any log
// line, in a run that exercises grants, renewals, refusals, the feed and reports.
func TestFleetNeverLeaksTheKey(t *testing.T) {
	h := newFleetHarness(t, Config{})
	cursor := h.poll("")
	key, rate, bad := newKey(t), newKey(t), newKey(t)
	k := h.engine.addKey(&fakeKey{key: key, remaining: int64p(20)})
	h.engine.addKey(&fakeKey{key: rate, rate: 1, burst: 1})
	for range 30 {
		h.do(key)
		h.do(rate)
		h.do(bad)
	}
	h.clock.Advance(5 * time.Second)
	h.mw.fleet.renewDue(context.Background())
	h.engine.event(verifyapi.EventRevoked, k.keyID)
	h.poll(cursor)
	h.engine.with(func(e *fakeEngine) { e.feedStatus = 500 })
	_, err := h.mw.fleet.pollFeed(context.Background(), cursor)
	require.Error(t, err)
	require.NoError(t, h.mw.Close(context.Background()))
	require.NotEmpty(t, h.engine.reports)
	require.NotEmpty(t, h.engine.renews)
	for _, b := range h.engine.bodies {
		for _, secret := range []string{key, rate, bad} {
			require.NotContains(t, b, secret)
		}
	}
	for _, secret := range []string{key, rate, bad} {
		require.NotContains(t, h.logs.String(), secret)
		require.NotContains(t, err.Error(), secret)
	}
}

// TestFleetConcurrentSpendsNeverOverAdmit: many goroutines hammer one metered key
// through one middleware; the engine's max_uses is never exceeded.
func TestFleetConcurrentSpendsNeverOverAdmit(t *testing.T) {
	h := newFleetHarness(t, Config{})
	h.poll("")
	key := newKey(t)
	h.engine.addKey(&fakeKey{key: key, remaining: int64p(500)})
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if h.do(key).Code == 200 {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, h.mw.Close(context.Background()))
	require.LessOrEqual(t, admitted, 500)
	require.GreaterOrEqual(t, admitted, 490, "uses are returned, not lost")
}

// TestFleetBackgroundLoops runs the real loops with the real clock: a change reaches
// the middleware through the feed, grants are renewed and reports sent in the
// background, and Close stops everything promptly.
func TestFleetBackgroundLoops(t *testing.T) {
	fv := newFakeVault(t, DefaultMount)
	engine := newFakeEngine(t, fv, DefaultMount)
	engine.with(func(e *fakeEngine) { e.grantTTL = time.Second })
	obs := newCountingObserver()
	m, err := New(Config{Client: fv.client(t), Fleet: true, FeedTimeout: 3 * time.Second, FleetReportInterval: 200 * time.Millisecond, Observer: obs})
	require.NoError(t, err)
	h := &harness{t: t, vault: fv, mw: m}
	key, metered := newKey(t), newKey(t)
	k := engine.addKey(&fakeKey{key: key})
	engine.addKey(&fakeKey{key: metered, remaining: int64p(1_000_000)})
	require.Eventually(t, func() bool { return m.fleet.healthy(time.Now()) }, 5*time.Second, 10*time.Millisecond)

	require.Equal(t, 200, h.do(key).Code)
	stop := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(stop) {
		require.Equal(t, 200, h.do(metered).Code)
		time.Sleep(2 * time.Millisecond)
	}
	engine.with(func(e *fakeEngine) { k.code = CodeDisabled })
	engine.event(verifyapi.EventDisabled, k.keyID)
	require.Eventually(t, func() bool { return h.do(key).Code == 401 }, 5*time.Second, 5*time.Millisecond)

	start := time.Now()
	require.NoError(t, m.Close(context.Background()))
	require.Less(t, time.Since(start), 2*time.Second, "the long poll in flight is cut off")
	calls := obs.fleetCalls()
	require.Positive(t, calls["renew"], "renewed at half the 1s TTL")
	require.Positive(t, calls["report"])
	require.Positive(t, calls["feed"])
	require.Less(t, calls["verify"], 20, "the metered key is served from its grants")
}
