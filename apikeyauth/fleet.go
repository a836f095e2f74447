package apikeyauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/grantpool"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// Kinds of Vault calls, as FleetObserver hears of them.
const (
	callVerify = "verify"
	callRenew  = "renew"
	callFeed   = "feed"
	callReport = "report"
)

// FleetCalls returns the call kinds FleetObserver.FleetCall reports.
func FleetCalls() []string { return []string{callVerify, callRenew, callFeed, callReport} }

const (
	// defaultGrantTick is how often grants are checked for renewal (half their TTL, at
	// least 500ms with the engine's 1s minimum grant_ttl).
	defaultGrantTick = 100 * time.Millisecond
	// defaultFeedWait is the feed's long-poll wait.
	defaultFeedWait = 10 * time.Second
	// renewWorkers bounds the grants/renew calls in flight at once.
	renewWorkers = 4
	// maxInvalidations bounds the keys remembered as changed; beyond, the whole cache
	// is dropped instead (as on a feed reset).
	maxInvalidations = 100_000
)

// fleet is the state of Config.Fleet: the holder's grants, what the change feed has
// invalidated, and the usage not yet reported.
type fleet struct {
	m              *Middleware
	client         *api.Client
	holder         string
	renewPath      string
	feedPath       string
	reportPath     string
	cacheTTL       time.Duration // FleetCacheTTL
	feedTimeout    time.Duration
	reportInterval time.Duration
	feedWait       time.Duration
	tick           time.Duration
	pool           *grantpool.Pool
	reports        *reporter

	// The feed: healthy while feedOK and the last answer is younger than feedTimeout.
	feedOK     atomic.Bool
	lastAnswer atomic.Int64 // Unix nanoseconds (m.now) of the feed's last answer
	// gen counts invalidations; a cache entry records it before its Vault call. An
	// entry is stale when a reset, or an event about its key, came after that.
	gen          atomic.Uint64
	resetGen     atomic.Uint64
	lastEventGen atomic.Uint64
	invMu        sync.RWMutex
	invalid      map[string]invalidation
	lastPrune    time.Time // feed loop only

	ctx       context.Context // canceled by close: stops the loops
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

type invalidation struct {
	gen uint64
	at  time.Time
}

func newFleet(m *Middleware, client *api.Client, mount string, cfg Config, hk hooks) (*fleet, error) {
	f := &fleet{
		m:              m,
		client:         client,
		holder:         newHolderID(),
		renewPath:      mount + "/grants/renew",
		feedPath:       mount + "/feed",
		reportPath:     mount + "/usage/report",
		cacheTTL:       durationOrDefault(cfg.FleetCacheTTL, DefaultFleetCacheTTL),
		feedTimeout:    durationOrDefault(cfg.FeedTimeout, DefaultFeedTimeout),
		reportInterval: durationOrDefault(cfg.FleetReportInterval, DefaultFleetReportInterval),
		tick:           durationOrDefault(hk.tick, defaultGrantTick),
		pool:           grantpool.New(grantpool.Options{MaxGrants: intOrDefault(cfg.CacheSize, DefaultCacheSize)}),
		reports:        newReporter(verifyapi.MaxReportEntries),
		invalid:        map[string]invalidation{},
	}
	if f.cacheTTL < 0 || f.feedTimeout < 0 || f.reportInterval < 0 {
		return nil, errors.New("FleetCacheTTL, FeedTimeout and FleetReportInterval must not be negative")
	}
	// The long poll must answer well within FeedTimeout, and within the client's own
	// timeout, or a quiet feed would look broken.
	f.feedWait = min(defaultFeedWait, f.feedTimeout*2/3)
	if t := client.ClientTimeout(); t > 0 {
		f.feedWait = min(f.feedWait, t*2/3)
	}
	if hk.feedWait > 0 {
		f.feedWait = hk.feedWait
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	if !hk.noLoops {
		f.wg.Add(3)
		go f.feedLoop()
		go f.grantLoop()
		go f.reportLoop()
	}
	return f, nil
}

// newHolderID names this middleware to the engine: random, so that two processes (or
// two middlewares in one) never share grants.
func newHolderID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (f *fleet) observe(call string, start time.Time, err error) {
	f.m.fleetCall(call, time.Since(start), err)
}

// healthy reports whether the feed may be trusted at now to have told of every change.
func (f *fleet) healthy(now time.Time) bool {
	return f.feedOK.Load() && now.UnixNano()-f.lastAnswer.Load() < int64(f.feedTimeout)
}

// fresh reports whether a cache entry about keyID ("" for none) produced by a call that
// began at generation gen is still good: no reset and no event about keyID since.
func (f *fleet) fresh(keyID string, gen uint64) bool {
	if gen < f.resetGen.Load() {
		return false
	}
	if gen >= f.lastEventGen.Load() || keyID == "" {
		return true
	}
	f.invMu.RLock()
	inv, ok := f.invalid[keyID]
	f.invMu.RUnlock()
	return !ok || gen >= inv.gen
}

// grantRequest is what a verify call asks for: a report token, and a grant sized by
// keyID's demand when the key is known. Nil once closed: the call is then as without
// Fleet.
func (f *fleet) grantRequest(keyID string, now time.Time) *verifyapi.GrantRequest {
	if f.closed.Load() {
		return nil
	}
	g := &verifyapi.GrantRequest{Holder: f.holder}
	if keyID != "" {
		g.Uses, g.Rate = f.pool.Demand(keyID, now)
	}
	return g
}

func toPoolGrant(g *verifyapi.Grant, sent time.Time) grantpool.Grant {
	limits := make([]grantpool.Limit, len(g.Limits))
	for i, l := range g.Limits {
		limits[i] = grantpool.Limit{Name: l.Name, Rate: l.Rate, Burst: l.Burst, Tokens: l.Tokens}
	}
	return grantpool.Grant{ID: g.ID, Uses: g.Uses, Limits: limits, Sent: sent, TTL: g.TTL}
}

// applyGrant adds the grant of a verify answer sent at sent to the pool, and reports
// whether requests may spend it (the answer is then cached).
func (f *fleet) applyGrant(res Result, g *verifyapi.Grant, sent time.Time) bool {
	if !res.Valid || res.Identity == nil {
		return false
	}
	keyID := res.Identity.KeyID
	if f.closed.Load() || !f.pool.Apply(keyID, toPoolGrant(g, sent), f.m.now()) {
		// Nobody will spend or return it later: return it now.
		var unused int64
		if g.Uses != nil {
			unused = *g.Uses
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.m.verifyTimeout)
		defer cancel()
		f.renew(ctx, grantpool.Renewal{KeyID: keyID, GrantID: g.ID, Unused: unused, Release: true})
		return false
	}
	return true
}

// afterCall decides what a verify answer (res, from a call begun at generation gen)
// serves to the request that asked, and what is cached. A RATE_LIMITED or
// USAGE_EXCEEDED answer for a key this middleware holds a live grant for says the key
// passed every other check, and that what Vault has left for callers without a grant
// is spent, while this middleware holds uses and a share of the rate of its own (taken
// from the key's, so spending them admits nothing extra): the request spends the grant
// instead, and the key is cached as VALID for later requests to spend it too. When the
// grant cannot admit it either, Vault's refusal stands.
func (f *fleet) afterCall(res Result, cost int, gen uint64) (serve, keep Result) {
	if res.Code != CodeRateLimited && res.Code != CodeUsageExceeded || res.Identity == nil || !res.Metered || f.closed.Load() {
		return res, res
	}
	now := f.m.now()
	keyID := res.Identity.KeyID
	if !f.fresh(keyID, gen) || !f.pool.Live(keyID, now) {
		return res, res
	}
	keep = res
	keep.Valid, keep.Code, keep.RetryAfter, keep.granted = true, CodeValid, 0, true
	if serve, ok := f.spend(keep, cost, now); ok {
		return serve, keep
	}
	return res, res
}

// spend serves one request of a granted VALID result from the pool: the result itself
// when the grant admits it, a RATE_LIMITED refusal (no Vault call) when a share of a
// rate limit is spent, false when Vault must be asked (no grant, or no uses left).
func (f *fleet) spend(res Result, cost int, now time.Time) (Result, bool) {
	out, wait := f.pool.Spend(res.Identity.KeyID, int64(cost), now)
	switch out {
	case grantpool.Spent:
		return res, true
	case grantpool.RateLimited:
		res.Valid, res.Code, res.RetryAfter = false, CodeRateLimited, wait
		return res, true
	}
	return Result{}, false
}

// served counts an answer given without a Vault call of its own in the next usage
// report. Only answers about a found key (with its report token) can be reported.
func (f *fleet) served(res Result, clientIP netip.Addr, cost int, tags []string) {
	if res.Identity == nil || res.reportToken == "" || f.closed.Load() {
		return
	}
	var uses int64
	if res.Valid {
		uses = int64(cost)
	}
	if !f.reports.add(res.Identity.KeyID, res.reportToken, res.Code, tags, clientIP, uses) {
		f.reports.kick()
	}
}

// close stops the loops, releases every grant and sends the last report.
func (f *fleet) close(ctx context.Context) error {
	f.closeOnce.Do(func() {
		f.closed.Store(true)
		f.feedOK.Store(false)
		f.cancel()
		f.wg.Wait()
		var errs []error
		for _, r := range f.pool.TakeAll(f.m.now()) {
			if err := f.renew(ctx, r); err != nil {
				errs = append(errs, err)
			}
		}
		if err := f.sendReport(ctx); err != nil {
			errs = append(errs, err)
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// sleep waits d or until the loops are stopped; false when stopped.
func (f *fleet) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// fleetError builds an error of the fleet's calls from scratch (no key is ever part
// of these calls, and report tokens are never echoed by the engine's errors).
func fleetError(call string, err error) error {
	return fmt.Errorf("%s: %s", call, describeVaultError(err, ""))
}

func (f *fleet) warn(msg string, attrs ...slog.Attr) {
	f.m.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}
