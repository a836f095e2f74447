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
	// a stale count, and taking the larger of the two keeps what the counter shows from
	// going back. Kept for one flush interval (until the next Dirty), so it is bounded
	// by the keys that went idle in one interval. A verify can hold its record longer
	// than that (concurrent flushes, a slow storage read): then the new counter is
	// seeded low, and catchUp and Reconcile (see Counter.anchored) add what it missed,
	// so no count is lost either way.
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
	// anchored says that state.Count includes everything storage held for the key when
	// the counter was made. A counter made by a quota operation is anchored from the
	// start: quota seeds are read where they are current, and quota counters are never
	// dropped. One made by a plain use or a touch (a key without max_uses, or one whose
	// credits are its identity's) is seeded from the key record its caller loaded,
	// possibly before an earlier counter of the key was flushed and dropped: then storage
	// holds uses the seed lacks, and a flush that trusted the counter would lose them
	// (it writes counts only upwards). Until it is anchored, such a counter counts its
	// own uses on top of base, and a larger stored count seen meanwhile adds to them
	// (catchUp): those uses can only be an earlier counter's, because storage never holds
	// an unanchored counter's own uses (every writer anchors first: Reconcile, Adjust,
	// and Flushed once a state is stored).
	anchored bool
	// base is the stored count an unanchored counter's own uses add to.
	base int64
}

// catchUp adds to an unanchored counter the uses a stored count holds beyond its base:
// an earlier counter's, stored before this one was made (see anchored). The caller
// holds c.mu.
func (c *Counter) catchUp(stored State) {
	if c.anchored || stored.Count <= c.base {
		return
	}
	c.state.Count += stored.Count - c.base
	c.base = stored.Count
	if stored.LastUsed.After(c.state.LastUsed) {
		c.state.LastUsed = stored.LastUsed
	}
	c.version++
}

// anchor catches up with stored, which must be the key's current stored state (read
// under the key's storage lock), and from then on trusts the counter's own count: it is
// about to be stored, after which a stored count above base may be its own. The caller
// holds c.mu.
func (c *Counter) anchor(stored State) {
	c.catchUp(stored)
	c.anchored = true
}

// view is c's state with stored caught up, changing nothing. The caller holds c.mu.
func (c *Counter) view(stored State) State {
	s := c.state
	if !c.anchored && stored.Count > c.base {
		s.Count += stored.Count - c.base
		if stored.LastUsed.After(s.LastUsed) {
			s.LastUsed = stored.LastUsed
		}
	}
	return s
}

func (c *Counter) pending(key string) Pending {
	return Pending{Key: key, State: c.state, Quota: c.quota, version: c.version, counter: c}
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
		c := t.counter(key, stored, q.Limited)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		c.catchUp(stored)
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
			c.state.Count = addCapped(c.state.Count, cost)
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
		c := t.counter(key, stored, true)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		c.catchUp(stored)
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
		c := t.counter(key, stored, false)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		c.catchUp(stored)
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
	s := t.Effective(key, q, stored)
	return s.Remaining()
}

// Effective is key's state under q: its counter's if it has one (caught up with stored,
// see Counter.anchored), else stored, moved into q's period. It changes nothing.
func (t *Tracker) Effective(key string, q Quota, stored State) State {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	s := stored
	if ok {
		c.mu.Lock()
		s = c.view(stored)
		c.mu.Unlock()
	}
	q.apply(&s)
	return s
}

// Adjust changes key's credit limit: set returns the new limit from the current state
// (in q's period, unflushed uses included), or an error that leaves it unchanged. The
// counter is created from stored if needed, kept like any quota counter, and marked
// dirty: the caller stores the returned state and then marks it Flushed; a flush
// stores it if the caller's write failed. stored must be the key's current stored
// state, read under its storage lock, like Reconcile's: the returned state is written,
// so the counter is anchored to it.
func (t *Tracker) Adjust(key string, q Quota, stored State, set func(current State) (int64, error)) (Pending, error) {
	for {
		c := t.counter(key, stored, true)
		c.mu.Lock()
		if c.retired {
			c.mu.Unlock()
			continue
		}
		c.anchor(stored)
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
		p := c.pending(key)
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

// counter returns key's counter, making one from stored (or the state Dirty dropped, if
// later) when it has none; anchored is whether a new one is (see Counter.anchored).
func (t *Tracker) counter(key string, stored State, anchored bool) *Counter {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.counters[key]
	if !ok {
		if last, ok := t.dropped[key]; ok && last.Count > stored.Count {
			stored = last
		}
		c = &Counter{state: stored, base: stored.Count, anchored: anchored}
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
	// counter is the counter the state was taken from: Flushed marks that one, never a
	// counter made for the key after it was dropped (whose versions start over).
	counter *Counter
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
			out = append(out, c.pending(key))
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
// under that lock), which is what it must write. It is for accounts whose counters are
// only made under a quota (an identity's shared credits), which are anchored from the
// start; a key's record is written from Reconcile, since its counter may be seeded
// from a stale record.
func (t *Tracker) Snapshot(key string) (Pending, bool) {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return Pending{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending(key), true
}

// Reconcile is Snapshot for a write of key's record: stored is the record's state, read
// under the key's storage lock. A counter not anchored yet first takes up the uses
// stored beyond its seed (an earlier counter's, which a verify holding a stale record
// did not see), and is anchored: what it returns includes every use, and the counter is
// trusted from then on. Reconciling again, after a write that failed (or did not say it
// landed), adds nothing.
func (t *Tracker) Reconcile(key string, stored State) (Pending, bool) {
	t.mu.Lock()
	c, ok := t.counters[key]
	t.mu.Unlock()
	if !ok {
		return Pending{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.anchor(stored)
	return c.pending(key), true
}

// Flushed marks p as persisted: the counter stays dirty if it changed after p was taken.
// It anchors the counter: its own uses are in storage now, so a stored count above its
// base no longer tells of uses it missed.
func (t *Tracker) Flushed(p Pending) {
	c := p.counter
	if c == nil {
		return
	}
	c.mu.Lock()
	c.anchored = true
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

// addCapped is a+b for b >= 0, capped at the largest int64: a count that only grows
// must never wrap negative, whatever callers report (usage reports add counts from
// outside).
func addCapped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
