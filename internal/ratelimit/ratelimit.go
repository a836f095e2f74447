// Package ratelimit keeps token buckets per key in memory, with a bound on how many
// buckets it holds. Limits are per process (per Vault node): nothing is shared.
//
// A key may have several limits (named, such as burst=10/1s and daily=10000/24h): they
// are kept together in one entry, so a key's state is one map entry and one bucket per
// limit, whatever the limits' windows. A request is admitted only when every limit
// admits it, and then takes one token from each; a refused request takes none.
//
// When the bound is reached the least recently used key's buckets are dropped; a dropped
// key starts again with full buckets. With the bound well above the number of keys in
// active use at once, that never matters; beyond it, memory wins over exactness.
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// maxWait bounds the wait Allow reports.
const maxWait = 365 * 24 * time.Hour

// Limit is one token bucket: Burst tokens at most, refilled continuously at Rate tokens
// per second. A limit of "limit requests per window" is Burst = limit and Rate =
// limit / window: a full bucket admits limit requests at once, then one every
// window/limit. A Rate of 0 or less admits everything.
type Limit struct {
	Name  string
	Rate  float64
	Burst float64
}

// Limiter holds the buckets.
type Limiter struct {
	mu sync.Mutex
	// maxBuckets bounds size, the buckets held (one per limit of each key).
	maxBuckets int
	size       int
	order      *list.List // front = most recently used; values are *entry
	entries    map[string]*list.Element
}

// entry is one key's buckets, in the order of the limits it was last used with.
type entry struct {
	key     string
	last    time.Time
	buckets []bucket
}

type bucket struct {
	name   string
	tokens float64
	rate   float64
	burst  float64
}

// New returns a limiter holding at most maxBuckets buckets (at least 1).
func New(maxBuckets int) *Limiter {
	if maxBuckets < 1 {
		maxBuckets = 1
	}
	return &Limiter{maxBuckets: maxBuckets, order: list.New(), entries: make(map[string]*list.Element)}
}

// Burst is the bucket size used for rate when burst is 0: enough for one second's worth,
// and at least one request.
func Burst(rate float64, burst int) float64 {
	if burst > 0 {
		return float64(burst)
	}
	return math.Max(1, math.Ceil(rate))
}

// Allow takes one token from key's bucket (rate tokens per second, burst capacity). When
// the bucket is empty it returns false and how long until a token is available. A rate of
// 0 or less always allows.
func (l *Limiter) Allow(key string, rate float64, burst int, now time.Time) (bool, time.Duration) {
	if rate <= 0 {
		return true, 0
	}
	one := [1]Limit{{Rate: rate, Burst: Burst(rate, burst)}}
	ok, _, wait := l.AllowAll(key, one[:], now)
	return ok, wait
}

// AllowAll admits one request of key when every limit has a token, and then takes one
// from each, atomically: a refused request takes nothing. When refused, refused is the
// index in limits of the limit that refused (of those that did, the one with the
// longest wait) and wait how long until every limit has a token again. With no limits
// (or only limits with a Rate of 0 or less) it always admits.
func (l *Limiter) AllowAll(key string, limits []Limit, now time.Time) (ok bool, refused int, wait time.Duration) {
	return l.AllowAllScaled(key, limits, 1, now)
}

// AllowAllScaled is AllowAll with every limit scaled by scale, in (0, 1]: its rate
// times scale and its burst times scale, at least 1 (a bucket of less never admits).
// The engine scales the buckets of the requests it answers itself by the part of a
// key's rate that no grant holder has (package grants). A scale of 0 or less refuses
// every request with the wait of the unscaled buckets (never "unlimited", which a Rate
// of 0 means); more than 1 is 1.
//
// Tokens are conserved across scale changes: the time since the entry was last seen
// accrues at the rates its buckets had then (the scale of that time), and only then
// are the buckets rescaled. At a scale of 0 an existing entry's buckets are emptied and
// stop refilling (the holders own the whole rate), so the time spent there is never
// refilled later at a larger scale.
func (l *Limiter) AllowAllScaled(key string, limits []Limit, scale float64, now time.Time) (ok bool, refused int, wait time.Duration) {
	if !anyActive(limits) {
		return true, -1, 0
	}
	if !(scale > 0) { // NaN too
		l.zeroScale(key, limits, now)
		for i := range limits {
			if limits[i].Rate > 0 {
				return false, i, time.Duration(math.Min(1/limits[i].Rate, maxWait.Seconds()) * float64(time.Second))
			}
		}
	}
	scale = math.Min(scale, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	var e *entry
	if el, found := l.entries[key]; found {
		l.order.MoveToFront(el)
		e = el.Value.(*entry)
		e.accrue(now)
		// Restores rate and burst after a zero scale too, before the admit check below
		// (where a rate of 0 would admit).
		l.reconcile(e, limits, scale)
	} else {
		e = l.add(key, limits, scale, now)
	}

	refused, longest := -1, 0.0
	for i := range e.buckets {
		b := &e.buckets[i]
		if b.rate <= 0 || b.tokens >= 1 {
			continue
		}
		// Clamped in floating point: for a tiny rate the quotient would overflow a Duration.
		if w := math.Min((1-b.tokens)/b.rate, maxWait.Seconds()); refused < 0 || w > longest {
			refused, longest = i, w
		}
	}
	if refused >= 0 {
		return false, refused, time.Duration(longest * float64(time.Second))
	}
	for i := range e.buckets {
		if e.buckets[i].rate > 0 {
			e.buckets[i].tokens--
		}
	}
	return true, -1, 0
}

// zeroScale is AllowAllScaled's bookkeeping at a scale of 0 or less: key's entry (if
// any) accrues up to now at its current rates, then holds nothing and refills at rate 0
// until a positive scale restores it. Callers must still refuse: a bucket of rate 0
// admits everything in the admit check.
func (l *Limiter) zeroScale(key string, limits []Limit, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.entries[key]
	if !found {
		return // nothing to take from: a later positive scale starts full, as ever
	}
	l.order.MoveToFront(el)
	e := el.Value.(*entry)
	e.accrue(now)
	l.reconcile(e, limits, 0)
	for i := range e.buckets {
		e.buckets[i].tokens = 0
	}
}

// Handover moves tokens from key's buckets to a grant holder: scale is the part of the
// rate left to the buckets after the grant (1 - the holders' shares, this one's
// included). Under the lock it creates the entry, full at the unscaled limits, if there
// is none (what AllowAllScaled would start from), accrues up to now at the current
// rates, then takes from each bucket what no longer fits its new capacity (burst ×
// scale) and rescales it. It returns the tokens taken, per limit: what the holder's
// bucket of that limit gets, so that the holders and the buckets together never have
// more than one bucket of the key would.
func (l *Limiter) Handover(key string, limits []Limit, scale float64, now time.Time) []float64 {
	given := make([]float64, len(limits))
	if !anyActive(limits) {
		return given
	}
	if !(scale > 0) { // NaN too
		scale = 0
	}
	scale = math.Min(scale, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	var e *entry
	if el, found := l.entries[key]; found {
		l.order.MoveToFront(el)
		e = el.Value.(*entry)
		e.accrue(now)
		// Same scale: only the names are matched (a limit new to the entry starts full).
		l.reconcile(e, limits, e.scaleOf(limits))
	} else {
		e = l.add(key, limits, 1, now)
	}
	for i := range e.buckets {
		b := &e.buckets[i]
		if limits[i].Rate <= 0 {
			continue
		}
		capacity := limits[i].Burst * scale
		if b.tokens > capacity {
			given[i] = b.tokens - capacity
			b.tokens = capacity
		}
	}
	l.reconcile(e, limits, scale)
	return given
}

// add creates key's entry, full at limits scaled by scale.
func (l *Limiter) add(key string, limits []Limit, scale float64, now time.Time) *entry {
	e := &entry{key: key, last: now, buckets: make([]bucket, len(limits))}
	for i, lim := range limits {
		rate, burst := scaled(lim, scale)
		e.buckets[i] = bucket{name: lim.Name, tokens: burst, rate: rate, burst: burst}
	}
	l.entries[key] = l.order.PushFront(e)
	l.size += len(e.buckets)
	for l.size > l.maxBuckets && l.order.Len() > 1 {
		l.drop(l.order.Back())
	}
	return e
}

// accrue refills e's buckets up to now at their current rates.
func (e *entry) accrue(now time.Time) {
	if elapsed := now.Sub(e.last).Seconds(); elapsed > 0 {
		for i := range e.buckets {
			b := &e.buckets[i]
			b.tokens = math.Min(b.burst, b.tokens+elapsed*b.rate)
		}
		e.last = now
	}
}

// scaleOf is the scale e's buckets are at relative to limits (the first active limit
// whose name matches decides; 1 when none does).
func (e *entry) scaleOf(limits []Limit) float64 {
	for i := range limits {
		if limits[i].Rate <= 0 {
			continue
		}
		for _, b := range e.buckets {
			if b.name == limits[i].Name {
				return math.Max(0, math.Min(1, b.rate/limits[i].Rate))
			}
		}
	}
	return 1
}

// scaled is lim's rate and burst under scale (see AllowAllScaled); exactly lim's when
// scale is 1, and nothing at all (rate and burst 0) when scale is 0 or less.
func scaled(lim Limit, scale float64) (rate, burst float64) {
	if scale == 1 {
		return lim.Rate, lim.Burst
	}
	if !(scale > 0) {
		return 0, 0
	}
	return lim.Rate * scale, math.Max(1, lim.Burst*scale)
}

func anyActive(limits []Limit) bool {
	for i := range limits {
		if limits[i].Rate > 0 {
			return true
		}
	}
	return false
}

// reconcile makes e's buckets match limits. A key's limits change only when several keys
// share one entry (an identity's keys from roles with different limits) or a role's
// limit changed under a shared entry: a bucket keeps its tokens (clamped to its new
// size) when a limit of the same name remains, and a new limit starts full.
func (l *Limiter) reconcile(e *entry, limits []Limit, scale float64) {
	if len(e.buckets) == len(limits) {
		same := true
		for i := range limits {
			if e.buckets[i].name != limits[i].Name {
				same = false
				break
			}
		}
		if same {
			for i := range limits {
				b := &e.buckets[i]
				if rate, burst := scaled(limits[i], scale); b.rate != rate || b.burst != burst {
					if b.rate <= 0 && rate > 0 {
						// Back from a zero scale (grant holders had all of the rate, and their
						// tokens left with them): one token to start with. Empty, the first
						// request would be refused with a wait rounded up to a whole second
						// on the wire, and callers cache that refusal for it, although the
						// bucket refills within microseconds at a high rate. At most one
						// token more per time the holders give the whole rate back.
						b.tokens = math.Max(b.tokens, math.Min(1, burst))
					}
					b.rate, b.burst = rate, burst
					b.tokens = math.Min(b.tokens, b.burst)
				}
			}
			return
		}
	}
	next := make([]bucket, len(limits))
	for i, lim := range limits {
		rate, burst := scaled(lim, scale)
		next[i] = bucket{name: lim.Name, tokens: burst, rate: rate, burst: burst}
		for _, old := range e.buckets {
			if old.name == lim.Name {
				next[i].tokens = math.Min(old.tokens, burst)
				break
			}
		}
	}
	l.size += len(next) - len(e.buckets)
	e.buckets = next
}

func (l *Limiter) drop(el *list.Element) {
	e := el.Value.(*entry)
	l.order.Remove(el)
	delete(l.entries, e.key)
	l.size -= len(e.buckets)
}

// Forget drops key's buckets (the key was revoked or deleted).
func (l *Limiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.entries[key]; ok {
		l.drop(el)
	}
}

// Len returns how many keys have buckets.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

// Buckets returns how many buckets are held (what maxBuckets bounds).
func (l *Limiter) Buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}
