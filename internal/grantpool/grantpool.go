// Package grantpool spends, inside one process, the quota grants the apikey engine hands
// a holder (internal/verifyapi, fleet.go): per key, a number of uses already debited
// from the key's credits and a share of each of its rate limits, valid until a deadline.
// It imports nothing of Vault; the apikeyauth middleware drives it.
//
// The pool never admits more than it was granted: uses are taken under the grant's
// mutex and never go below zero, and rate tokens come from local token buckets whose
// rate and size are the granted share. A bucket holds only the tokens the engine handed
// over (Limit.Tokens, taken from the engine's own bucket) and what it refilled at the
// share's rate since: a new grant starts with the answer's tokens, not full (a fresh
// grant must not be a free burst), and a renewal rescales the buckets and adds the
// answer's tokens, clamped to the new size. After its deadline a grant admits nothing.
//
// It also measures demand (attempts per second, and uses per second) per key, so that
// renewals ask for what the holder actually needs, and it decides which grants are due
// for renewal (half their TTL, or low on uses) and which are idle (released, their
// unused uses returned).
package grantpool

import (
	"math"
	"sync"
	"time"
)

// Limit is the holder's share of one rate limit: Burst tokens at most, refilled at Rate
// per second. Tokens are added to the bucket by the answer (clamped to Burst).
type Limit struct {
	Name   string
	Rate   float64
	Burst  float64
	Tokens float64
}

// Grant is one answer that carried a grant, as the holder applies it.
type Grant struct {
	ID string
	// Uses are the uses this answer added; nil: the key's uses are not limited.
	Uses   *int64
	Limits []Limit
	// Sent is when the request that brought the grant was sent: the engine's TTL ran
	// from no earlier than that, so Sent+TTL is a deadline the engine honours too.
	Sent time.Time
	TTL  time.Duration
}

// Outcome of Spend.
type Outcome uint8

const (
	// Spent: admitted; the uses and one token of every limit were taken.
	Spent Outcome = iota
	// NoGrant: the pool has no live grant for the key.
	NoGrant
	// Exhausted: the grant has fewer uses left than the cost.
	Exhausted
	// RateLimited: a rate bucket is empty; Spend's wait says for how long.
	RateLimited
)

func (o Outcome) String() string {
	switch o {
	case Spent:
		return "spent"
	case NoGrant:
		return "no grant"
	case Exhausted:
		return "exhausted"
	case RateLimited:
		return "rate limited"
	}
	return "unknown"
}

// Renewal is a grants/renew call the pool wants made: return Unused uses and, unless
// Release, ask for WantUses more uses and a share sized for WantRate requests per
// second.
type Renewal struct {
	KeyID    string
	GrantID  string
	Unused   int64
	Release  bool
	WantUses int64
	WantRate float64
}

// Options tune a Pool; zero fields take the defaults.
type Options struct {
	// MaxGrants bounds the keys held (default 10000); Apply refuses beyond it.
	MaxGrants int
	// LowWater is the fraction of the last top-up below which a grant is renewed before
	// its half TTL (default 0.25).
	LowWater float64
	// MinWindow is the shortest time demand is measured over (default 100ms): a renewal
	// right after a top-up must not extrapolate a handful of requests into a huge rate.
	MinWindow time.Duration
	// RetryAfterFailure is how long after a failed renewal the grant is due again
	// (default 1s, at most a quarter of its TTL).
	RetryAfterFailure time.Duration
}

// Pool holds the grants of one holder, by key_id. It is safe for concurrent use.
type Pool struct {
	opts Options

	mu     sync.RWMutex
	grants map[string]*grant

	// kick is signalled (never blocking) when a grant runs low, so that the owner
	// renews it without waiting for its next tick.
	kick chan struct{}
}

type grant struct {
	mu      sync.Mutex
	dropped bool // removed from the pool: whoever holds the pointer must look again

	id          string
	usesLimited bool
	uses        int64
	lastTopUp   int64
	buckets     []bucket
	expires     time.Time
	renewAt     time.Time
	ttl         time.Duration
	renewing    bool
	lowSignaled bool

	// Demand since windowStart: every attempt, admitted or not.
	windowStart time.Time
	attempts    int64
	attemptUses int64
}

type bucket struct {
	name   string
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// New returns an empty pool.
func New(opts Options) *Pool {
	if opts.MaxGrants <= 0 {
		opts.MaxGrants = 10000
	}
	if opts.LowWater <= 0 || opts.LowWater >= 1 {
		opts.LowWater = 0.25
	}
	if opts.MinWindow <= 0 {
		opts.MinWindow = 100 * time.Millisecond
	}
	if opts.RetryAfterFailure <= 0 {
		opts.RetryAfterFailure = time.Second
	}
	return &Pool{opts: opts, grants: map[string]*grant{}, kick: make(chan struct{}, 1)}
}

// Kick is signalled when a grant runs low on uses: renew (Due) without waiting.
func (p *Pool) Kick() <-chan struct{} { return p.kick }

func (p *Pool) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Pool) get(keyID string) *grant {
	p.mu.RLock()
	g := p.grants[keyID]
	p.mu.RUnlock()
	return g
}

// Spend admits one request of cost uses for keyID at now, or says why not. wait is set
// with RateLimited: how long until every bucket has a token (for a share whose rate is
// 0, until the grant is due for renewal, which may change it).
func (p *Pool) Spend(keyID string, cost int64, now time.Time) (Outcome, time.Duration) {
	g := p.get(keyID)
	if g == nil {
		return NoGrant, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dropped {
		return NoGrant, 0
	}
	g.attempts++
	g.attemptUses += cost
	if !now.Before(g.expires) {
		return NoGrant, 0
	}
	if g.usesLimited && g.uses < cost {
		return Exhausted, 0
	}
	refused, wait := false, 0.0
	for i := range g.buckets {
		b := &g.buckets[i]
		b.advance(now)
		if b.tokens >= 1 {
			continue
		}
		refused = true
		w := math.Inf(1)
		if b.rate > 0 {
			w = (1 - b.tokens) / b.rate
		}
		wait = math.Max(wait, w)
	}
	if refused {
		if math.IsInf(wait, 1) {
			// A share of rate 0 refills only through a renewal.
			wait = math.Max(g.renewAt.Sub(now).Seconds(), 0)
		}
		return RateLimited, time.Duration(wait * float64(time.Second))
	}
	for i := range g.buckets {
		g.buckets[i].tokens--
	}
	if g.usesLimited {
		g.uses -= cost
		if !g.lowSignaled && !g.renewing && float64(g.uses) < p.opts.LowWater*float64(g.lastTopUp) {
			g.lowSignaled = true
			p.signal()
		}
	}
	return Spent, 0
}

// advance refills b up to now.
func (b *bucket) advance(now time.Time) {
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(b.burst, b.tokens+elapsed*b.rate)
		b.last = now
	}
}

// Live reports whether keyID has a grant that has not expired at now.
func (p *Pool) Live(keyID string, now time.Time) bool {
	g := p.get(keyID)
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.dropped && now.Before(g.expires)
}

// Apply adds a grant from a verify answer for keyID. A new grant's buckets start with
// the answer's tokens. The same grant id tops up (uses added, limits rescaled and the
// answer's tokens added, deadline moved on); another id replaces the grant (its uses are
// gone: the engine cancelled it), keeping the tokens the old share's buckets had (the
// engine handed them over), capped, plus the answer's. It reports false when the pool is full and did not keep the
// grant: the caller should release it.
func (p *Pool) Apply(keyID string, gr Grant, now time.Time) bool {
	for {
		p.mu.Lock()
		g := p.grants[keyID]
		if g == nil {
			if len(p.grants) >= p.opts.MaxGrants {
				p.mu.Unlock()
				return false
			}
			g = &grant{windowStart: now}
			p.grants[keyID] = g
		}
		p.mu.Unlock()
		g.mu.Lock()
		if g.dropped {
			g.mu.Unlock()
			continue
		}
		if g.id != gr.ID {
			g.id = gr.ID
			g.uses, g.lastTopUp = 0, 0
			g.expires, g.renewing, g.lowSignaled = time.Time{}, false, false
		}
		g.topUp(gr, now)
		g.mu.Unlock()
		return true
	}
}

// topUp applies gr to g (same id).
func (g *grant) topUp(gr Grant, now time.Time) {
	g.usesLimited = gr.Uses != nil
	if gr.Uses != nil {
		g.uses += *gr.Uses
		g.lastTopUp = *gr.Uses
	} else {
		g.uses, g.lastTopUp = 0, 0
	}
	g.lowSignaled = false
	buckets := make([]bucket, len(gr.Limits))
	for i, l := range gr.Limits {
		nb := bucket{name: l.Name, rate: l.Rate, burst: l.Burst, last: now}
		for j := range g.buckets {
			old := &g.buckets[j]
			if old.name != l.Name {
				continue
			}
			// Rescaled, never refilled: a smaller share keeps the same fraction of
			// its bucket, a larger one keeps its tokens and fills at the new rate.
			old.advance(now)
			nb.tokens = old.tokens
			if l.Burst < old.burst && old.burst > 0 {
				nb.tokens = old.tokens * l.Burst / old.burst
			}
			break
		}
		// Only what the engine handed over is added (never a full bucket): the
		// engine's buckets and the holders' together hold no more than one bucket.
		nb.tokens = math.Min(nb.tokens+max(l.Tokens, 0), l.Burst)
		buckets[i] = nb
	}
	g.buckets = buckets
	if exp := gr.Sent.Add(gr.TTL); exp.After(g.expires) {
		g.expires = exp
		g.renewAt = gr.Sent.Add(gr.TTL / 2)
		g.ttl = gr.TTL
	}
}

// Demand returns keyID's demand measured since its last renewal: uses wanted for one
// TTL, and requests per second. Zeros when the pool has no grant for it (the engine
// then sizes the grant itself).
func (p *Pool) Demand(keyID string, now time.Time) (uses int64, rate float64) {
	g := p.get(keyID)
	if g == nil {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	need, rate := g.demand(now, p.opts.MinWindow)
	return max(need-g.uses, 1), rate
}

// demand: uses needed for a whole TTL at the measured pace (renewals come at half the
// TTL, so that is twice what the next half needs), and attempts per second.
func (g *grant) demand(now time.Time, minWindow time.Duration) (need int64, rate float64) {
	window := max(now.Sub(g.windowStart), minWindow).Seconds()
	rate = float64(g.attempts) / window
	ttl := g.ttl
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	need = int64(math.Ceil(float64(g.attemptUses) / window * ttl.Seconds()))
	return need, rate
}

// Due returns the renewals to make at now, and marks them in progress: grants at half
// their TTL or low on uses. A grant without attempts since its last renewal is idle: it
// is removed and released with all its uses returned. Uses beyond twice the measured
// need are returned too, so that an idle-ish holder does not sit on a key's last uses.
// Expired grants are dropped (the engine has forgotten them: their uses stay spent).
func (p *Pool) Due(now time.Time) []Renewal {
	p.mu.RLock()
	candidates := make(map[string]*grant, len(p.grants))
	for k, g := range p.grants {
		candidates[k] = g
	}
	p.mu.RUnlock()
	var out []Renewal
	for keyID, g := range candidates {
		g.mu.Lock()
		r, remove, ok := p.due(keyID, g, now)
		if remove {
			g.dropped = true
		}
		g.mu.Unlock()
		if remove {
			p.remove(keyID, g)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

func (p *Pool) due(keyID string, g *grant, now time.Time) (r Renewal, remove, ok bool) {
	if g.dropped {
		return Renewal{}, false, false
	}
	if !now.Before(g.expires) {
		return Renewal{}, true, false
	}
	if g.renewing {
		return Renewal{}, false, false
	}
	low := g.usesLimited && float64(g.uses) < p.opts.LowWater*float64(g.lastTopUp)
	if now.Before(g.renewAt) && !low {
		return Renewal{}, false, false
	}
	r = Renewal{KeyID: keyID, GrantID: g.id}
	if g.attempts == 0 {
		r.Release, r.Unused = true, g.uses
		g.uses = 0
		return r, true, true
	}
	need, rate := g.demand(now, p.opts.MinWindow)
	if g.usesLimited {
		if surplus := g.uses - 2*need; surplus > 0 {
			r.Unused = surplus
			g.uses -= surplus
		}
		r.WantUses = max(need-g.uses, 1)
	}
	r.WantRate = rate
	g.renewing = true
	g.windowStart, g.attempts, g.attemptUses = now, 0, 0
	return r, false, true
}

func (p *Pool) remove(keyID string, g *grant) {
	p.mu.Lock()
	if p.grants[keyID] == g {
		delete(p.grants, keyID)
	}
	p.mu.Unlock()
}

// Renewed applies the answer to a renewal of grantID for keyID: gr nil means the
// engine did not renew it (unknown to it now): the grant is dropped. An answer for a
// grant that was replaced or dropped meanwhile is ignored.
func (p *Pool) Renewed(keyID, grantID string, gr *Grant, now time.Time) {
	g := p.get(keyID)
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.dropped || g.id != grantID {
		g.mu.Unlock()
		return
	}
	g.renewing = false
	if gr == nil {
		g.dropped = true
		g.mu.Unlock()
		p.remove(keyID, g)
		return
	}
	g.topUp(*gr, now)
	g.mu.Unlock()
}

// RenewFailed says the renewal of grantID could not be made: the grant stays usable
// until its deadline and is due again shortly.
func (p *Pool) RenewFailed(keyID, grantID string, now time.Time) {
	g := p.get(keyID)
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dropped || g.id != grantID {
		return
	}
	g.renewing = false
	g.renewAt = now.Add(min(p.opts.RetryAfterFailure, g.ttl/4))
}

// Drop forgets keyID's grant (the engine cancelled it, or the key changed): nothing is
// returned.
func (p *Pool) Drop(keyID string) {
	p.mu.Lock()
	g := p.grants[keyID]
	delete(p.grants, keyID)
	p.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		g.dropped = true
		g.mu.Unlock()
	}
}

// DropAll forgets every grant, returning nothing (the engine lost them).
func (p *Pool) DropAll() {
	p.mu.Lock()
	grants := p.grants
	p.grants = map[string]*grant{}
	p.mu.Unlock()
	for _, g := range grants {
		g.mu.Lock()
		g.dropped = true
		g.mu.Unlock()
	}
}

// TakeAll removes every live grant and returns their releases, each with the uses it
// has left: for a holder shutting down. Expired grants are dropped without a release.
func (p *Pool) TakeAll(now time.Time) []Renewal {
	p.mu.Lock()
	grants := p.grants
	p.grants = map[string]*grant{}
	p.mu.Unlock()
	out := make([]Renewal, 0, len(grants))
	for keyID, g := range grants {
		g.mu.Lock()
		if !g.dropped && now.Before(g.expires) {
			out = append(out, Renewal{KeyID: keyID, GrantID: g.id, Unused: g.uses, Release: true})
		}
		g.dropped = true
		g.uses = 0
		g.mu.Unlock()
	}
	return out
}

// Len returns the number of grants held.
func (p *Pool) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.grants)
}

// Uses returns the uses keyID's grant has left, and whether it limits uses at all.
func (p *Pool) Uses(keyID string) (int64, bool) {
	g := p.get(keyID)
	if g == nil {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.uses, g.usesLimited && !g.dropped
}
