// Package ratelimit keeps one token bucket per key in memory, with a bound on how many
// buckets it holds. Limits are per process (per Vault node): nothing is shared.
//
// When the bound is reached the least recently used bucket is dropped; a dropped key
// starts again with a full bucket. With the bound well above the number of keys in active
// use at once, that never matters; beyond it, memory wins over exactness.
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// maxWait bounds the wait Allow reports.
const maxWait = 365 * 24 * time.Hour

// Limiter holds the buckets.
type Limiter struct {
	mu         sync.Mutex
	maxBuckets int
	order      *list.List // front = most recently used; values are *bucket
	buckets    map[string]*list.Element
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
}

// New returns a limiter holding at most maxBuckets buckets (at least 1).
func New(maxBuckets int) *Limiter {
	if maxBuckets < 1 {
		maxBuckets = 1
	}
	return &Limiter{maxBuckets: maxBuckets, order: list.New(), buckets: make(map[string]*list.Element)}
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
	capacity := Burst(rate, burst)

	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if el, ok := l.buckets[key]; ok {
		l.order.MoveToFront(el)
		b = el.Value.(*bucket)
		if b.rate != rate || b.burst != capacity { // the limit changed: keep the tokens, clamp
			b.rate, b.burst = rate, capacity
			b.tokens = math.Min(b.tokens, capacity)
		}
		if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
			b.tokens = math.Min(capacity, b.tokens+elapsed*rate)
			b.last = now
		}
	} else {
		b = &bucket{key: key, tokens: capacity, last: now, rate: rate, burst: capacity}
		l.buckets[key] = l.order.PushFront(b)
		for l.order.Len() > l.maxBuckets {
			oldest := l.order.Back()
			l.order.Remove(oldest)
			delete(l.buckets, oldest.Value.(*bucket).key)
		}
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	// Clamped in floating point: for a tiny rate the quotient would overflow a Duration.
	wait := math.Min((1-b.tokens)/rate, maxWait.Seconds())
	return false, time.Duration(wait * float64(time.Second))
}

// Forget drops key's bucket (the key was revoked or deleted).
func (l *Limiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.buckets[key]; ok {
		l.order.Remove(el)
		delete(l.buckets, key)
	}
}

// Len returns how many buckets are held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}
