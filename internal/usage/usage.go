// Package usage counts key uses in memory so that verify never waits on a storage write.
// Counts are flushed to storage in the background by the caller; quotas (max uses) are
// decided here, exactly, for everything this process counts.
package usage

import (
	"sync"
	"time"
)

// Tracker holds one Counter per key that was used since it was last flushed.
type Tracker struct {
	mu       sync.Mutex
	counters map[string]*Counter
}

// Counter is one key's use count and last use.
type Counter struct {
	mu       sync.Mutex
	count    int64
	lastUsed time.Time
	dirty    bool
	// quota counters are kept until Forget: a counter rebuilt from a stale stored count
	// could admit uses twice, which a quota must never do.
	quota bool
	// retired is set when the tracker dropped this counter; a holder must fetch a new one.
	retired bool
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{counters: make(map[string]*Counter)} }

// Use counts cost uses of key if max (0 = unlimited) allows it. stored and storedLast
// are the key's persisted count and last use, used when the key has no counter yet.
// It returns whether the use was allowed and how many uses remain (-1 if unlimited).
// A cost of 0 checks without counting: it is refused only when nothing is left.
func (t *Tracker) Use(key string, cost, limit, stored int64, storedLast, now time.Time) (bool, int64) {
	if cost == 0 && limit <= 0 {
		return true, -1 // nothing to check, nothing to count
	}
	for {
		c := t.counter(key, stored, storedLast)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		allowed := true
		switch {
		case limit > 0 && cost == 0:
			allowed = c.count < limit
		case limit > 0:
			allowed = cost <= limit-c.count // never c.count+cost: it could overflow
		}
		if limit > 0 {
			c.quota = true
		}
		if allowed && cost > 0 {
			c.count += cost
			c.lastUsed = now
			c.dirty = true
		}
		remaining := int64(-1)
		if limit > 0 {
			remaining = max(limit-c.count, 0)
		}
		c.mu.Unlock()
		return allowed, remaining
	}
}

// Remaining returns how many uses of key are left given limit and its persisted count,
// taking unflushed uses into account (-1 if unlimited).
func (t *Tracker) Remaining(key string, limit, stored int64) int64 {
	if limit <= 0 {
		return -1
	}
	count, _, ok := t.Peek(key)
	if !ok {
		count = stored
	}
	return max(limit-count, 0)
}

// Peek returns key's in-memory count and last use, if it has a counter.
func (t *Tracker) Peek(key string) (int64, time.Time, bool) {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return 0, time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count, c.lastUsed, true
}

func (t *Tracker) counter(key string, stored int64, storedLast time.Time) *Counter {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.counters[key]
	if !ok {
		c = &Counter{count: stored, lastUsed: storedLast}
		t.counters[key] = c
	}
	return c
}

// Pending is a count to persist.
type Pending struct {
	Key      string
	Count    int64
	LastUsed time.Time
}

// Dirty returns the counts changed since they were last marked flushed. Counters of keys
// without a quota that were not used since the previous call are dropped, so memory
// follows the keys in use; their counts are in storage by then.
func (t *Tracker) Dirty() []Pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Pending
	for key, c := range t.counters {
		c.mu.Lock()
		if c.dirty {
			out = append(out, Pending{Key: key, Count: c.count, LastUsed: c.lastUsed})
		} else if !c.quota {
			c.retired = true
			delete(t.counters, key)
		}
		c.mu.Unlock()
	}
	return out
}

// Flushed marks p as persisted: the counter stays dirty if it was used after p was taken.
func (t *Tracker) Flushed(p Pending) {
	t.mu.Lock()
	c, ok := t.counters[p.Key]
	t.mu.Unlock()
	if !ok {
		return
	}
	c.mu.Lock()
	if c.count == p.Count {
		c.dirty = false
	}
	c.mu.Unlock()
}

// Forget drops key's counter (the key is gone).
func (t *Tracker) Forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.counters[key]; ok {
		c.mu.Lock()
		c.retired = true
		c.mu.Unlock()
		delete(t.counters, key)
	}
}

// Len returns how many counters are held.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.counters)
}
