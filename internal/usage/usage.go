// Package usage counts key uses in memory so that verify never waits on a storage write.
// Counts are flushed to storage in the background by the caller; quotas (credits) are
// decided here, exactly, for everything this process counts.
//
// A quota is a credit threshold: a use of cost is allowed while count+cost <= limit,
// where count only grows (it is the key's use count) and limit moves: it starts at the
// key's max uses, an operator may raise or lower it (Adjust), and a refill sets it to
// count+amount when a new refill period starts. Refills are computed lazily, from the
// time the caller passes, when the counter is next used or read: nothing runs at the
// boundary, and nothing needs writing for it (the same limit follows from the stored
// state and the time).
package usage

import (
	"math"
	"sync"
	"time"
)

// Tracker holds one Counter per key that was used since it was last flushed.
type Tracker struct {
	mu       sync.Mutex
	counters map[string]*Counter
	// dropped holds the last state of the counters the previous Dirty dropped: a verify
	// that loaded its key record before that state was stored seeds a new counter from
	// a stale count, and taking the larger of the two keeps counts from going back.
	// Kept for one flush interval (until the next Dirty), so it is bounded by the keys
	// that went idle in one interval.
	dropped map[string]State
}

// State is a key's (or a shared account's) use state as stored.
type State struct {
	Count    int64
	LastUsed time.Time
	// Limit is the credit threshold: uses are allowed while Count+cost <= Limit. It
	// matters only under a Quota.
	Limit int64
	// Period is the refill period Limit belongs to: any number that grows with time
	// (the period's start in Unix seconds, say); 0 when there is no refill.
	Period int64
}

// Remaining is what is left of s's credits (never negative).
func (s State) Remaining() int64 { return max(s.Limit-s.Count, 0) }

// Quota says how uses are limited right now. The zero Quota is unlimited.
type Quota struct {
	// Limited turns the credit threshold on.
	Limited bool
	// Refill, when positive, is what a new period brings: once Period is later than the
	// state's, Limit becomes Count+Refill (unspent credits do not carry over).
	Refill int64
	// Period is the current refill period (see State.Period).
	Period int64
}

// apply moves s into q's period.
func (q Quota) apply(s *State) {
	if q.Refill > 0 && q.Period > s.Period {
		s.Limit = s.Count + q.Refill
		s.Period = q.Period
	}
}

// Counter is one key's use state in memory.
type Counter struct {
	mu    sync.Mutex
	state State
	// version grows with every change that must reach storage (a use, an adjustment);
	// a flush clears dirty only if no change came after its snapshot.
	version uint64
	dirty   bool
	// quota counters are kept until Forget: a counter rebuilt from a stale stored count
	// could admit uses twice, which a quota must never do.
	quota bool
	// retired is set when the tracker dropped this counter; a holder must fetch a new one.
	retired bool
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{counters: make(map[string]*Counter), dropped: make(map[string]State)}
}

// Use counts cost uses of key if q allows it. stored is the key's persisted state, used
// when the key has no counter yet. It returns whether the use was allowed and how many
// uses remain (-1 if unlimited). A cost of 0 checks without counting: it is refused only
// when nothing is left.
func (t *Tracker) Use(key string, cost int64, q Quota, stored State, now time.Time) (bool, int64) {
	if cost == 0 && !q.Limited {
		return true, -1 // nothing to check, nothing to count
	}
	for {
		c := t.counter(key, stored)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		allowed := true
		if q.Limited {
			c.quota = true
			q.apply(&c.state)
			if cost == 0 {
				allowed = c.state.Count < c.state.Limit
			} else {
				allowed = cost <= c.state.Limit-c.state.Count // never Count+cost: it could overflow
			}
		}
		if allowed && cost > 0 {
			c.state.Count += cost
			c.state.LastUsed = now
			c.version++
			c.dirty = true
		}
		remaining := int64(-1)
		if q.Limited {
			remaining = c.state.Remaining()
		}
		c.mu.Unlock()
		return allowed, remaining
	}
}

// TakeUpTo debits, atomically, the uses size asks for given what remains of key's
// credits under q (stored seeds a new counter, as for Use): it takes
// min(size(remaining), remaining) uses and returns how many it took and what remains
// after. For quota grants: a holder gets uses sized on what is left, debited at once,
// and no other use can slip between the reading and the debit. Without a quota nothing
// is taken (uses are not limited) and remaining is -1.
func (t *Tracker) TakeUpTo(key string, size func(remaining int64) int64, q Quota, stored State, now time.Time) (taken, remaining int64) {
	if !q.Limited {
		return 0, -1
	}
	for {
		c := t.counter(key, stored)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		c.quota = true
		q.apply(&c.state)
		left := c.state.Remaining()
		taken = max(0, min(size(left), left))
		if taken > 0 {
			c.state.Count += taken
			c.state.LastUsed = now
			c.version++
			c.dirty = true
		}
		remaining = c.state.Remaining()
		c.mu.Unlock()
		return taken, remaining
	}
}

// Refund gives back n uses taken from key's credits in refill period period (a grant's
// uses its holder did not spend): the credit limit rises by n, so what remains grows
// by n and the use count never goes back (counts only grow; a flush relies on it). It
// refunds nothing, and returns false, when the credits refill and are in another period
// by now (a refill replaced them) or key holds no quota counter (the key is gone, or the
// process restarted since the uses were taken: then they stay spent). The caller
// bounds n by what it took.
func (t *Tracker) Refund(key string, n int64, q Quota, period int64) bool {
	if n <= 0 || !q.Limited {
		return false
	}
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retired || !c.quota {
		return false
	}
	q.apply(&c.state)
	if (q.Refill > 0 && c.state.Period != period) || c.state.Limit > math.MaxInt64-n {
		return false
	}
	c.state.Limit += n
	c.version++
	c.dirty = true
	return true
}

// Touch records a use of key at now without counting it (uses counted elsewhere, such
// as a grant's, debited when it was granted): the last use moves, if now is later.
func (t *Tracker) Touch(key string, stored State, now time.Time) {
	for {
		c := t.counter(key, stored)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		if now.After(c.state.LastUsed) {
			c.state.LastUsed = now
			c.version++
			c.dirty = true
		}
		c.mu.Unlock()
		return
	}
}

// Remaining returns how many uses of key are left under q, given its persisted state,
// taking unflushed uses into account (-1 if unlimited). It changes nothing.
func (t *Tracker) Remaining(key string, q Quota, stored State) int64 {
	if !q.Limited {
		return -1
	}
	s, ok := t.State(key)
	if !ok {
		s = stored
	}
	q.apply(&s)
	return s.Remaining()
}

// Effective is key's state under q: its counter's if it has one, else stored, moved
// into q's period. It changes nothing.
func (t *Tracker) Effective(key string, q Quota, stored State) State {
	s, ok := t.State(key)
	if !ok {
		s = stored
	}
	q.apply(&s)
	return s
}

// Adjust changes key's credit limit: set returns the new limit from the current state
// (in q's period, unflushed uses included), or an error that leaves it unchanged. The
// counter is created from stored if needed, kept like any quota counter, and marked
// dirty: the caller stores the returned state and then marks it Flushed; a flush
// stores it if the caller's write failed.
func (t *Tracker) Adjust(key string, q Quota, stored State, set func(current State) (int64, error)) (Pending, error) {
	for {
		c := t.counter(key, stored)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		q.apply(&c.state)
		limit, err := set(c.state)
		if err != nil {
			c.mu.Unlock()
			return Pending{}, err
		}
		c.quota = true
		c.state.Limit = limit
		c.version++
		c.dirty = true
		p := Pending{Key: key, State: c.state, Quota: true, version: c.version}
		c.mu.Unlock()
		return p, nil
	}
}

// Peek returns key's in-memory count and last use, if it has a counter.
func (t *Tracker) Peek(key string) (int64, time.Time, bool) {
	s, ok := t.State(key)
	return s.Count, s.LastUsed, ok
}

// State returns key's in-memory state, if it has a counter.
func (t *Tracker) State(key string) (State, bool) {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return State{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, true
}

// HasQuota reports whether key has a counter that holds a quota: then the state passed
// to Use is not read, and a caller that must read storage for it can skip the read.
func (t *Tracker) HasQuota(key string) bool {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quota && !c.retired
}

func (t *Tracker) counter(key string, stored State) *Counter {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.counters[key]
	if !ok {
		if last, ok := t.dropped[key]; ok && last.Count > stored.Count {
			stored = last
		}
		c = &Counter{state: stored}
		t.counters[key] = c
	}
	return c
}

// Pending is a state to persist.
type Pending struct {
	Key string
	State
	// Quota says whether the state holds credits (Limit and Period mean something).
	Quota   bool
	version uint64
}

// Dirty returns the states changed since they were last marked flushed. Counters of keys
// without a quota that were not used since the previous call are dropped, so memory
// follows the keys in use; their counts are in storage by then.
func (t *Tracker) Dirty() []Pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Pending
	clear(t.dropped)
	for key, c := range t.counters {
		c.mu.Lock()
		if c.dirty {
			out = append(out, Pending{Key: key, State: c.state, Quota: c.quota, version: c.version})
		} else if !c.quota {
			c.retired = true
			delete(t.counters, key)
			t.dropped[key] = c.state
		}
		c.mu.Unlock()
	}
	return out
}

// Snapshot returns key's state to persist now, if it has a counter. A caller that holds
// the key's storage lock gets the newest state (and no older one than any write made
// under that lock), which is what it must write.
func (t *Tracker) Snapshot(key string) (Pending, bool) {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return Pending{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return Pending{Key: key, State: c.state, Quota: c.quota, version: c.version}, true
}

// Flushed marks p as persisted: the counter stays dirty if it changed after p was taken.
func (t *Tracker) Flushed(p Pending) {
	t.mu.Lock()
	c, ok := t.counters[p.Key]
	t.mu.Unlock()
	if !ok {
		return
	}
	c.mu.Lock()
	if c.version == p.version {
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
	delete(t.dropped, key)
}

// Len returns how many counters are held.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.counters)
}
