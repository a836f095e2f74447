package usage

import (
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUseQuota(t *testing.T) {
	now := time.Unix(100, 0)
	cases := []struct {
		name          string
		max, stored   int64
		costs         []int64
		wantAllowed   []bool
		wantRemaining int64
	}{
		{"unlimited", 0, 0, []int64{1, 5, 100}, []bool{true, true, true}, -1},
		{"exact spend", 3, 0, []int64{1, 1, 1, 1}, []bool{true, true, true, false}, 0},
		{"cost too big is not counted", 5, 0, []int64{4, 2, 1}, []bool{true, false, true}, 0},
		{"starts from stored", 5, 4, []int64{1, 1}, []bool{true, false}, 0},
		{"cost zero checks only", 2, 1, []int64{0, 1, 0}, []bool{true, true, false}, 0},
		{"a huge cost does not overflow", 10, 0, []int64{1, math.MaxInt64, 1}, []bool{true, false, true}, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			var remaining int64
			for i, cost := range tc.costs {
				var ok bool
				ok, remaining = tr.Use("k", cost, quota(tc.max), State{Count: tc.stored, Limit: tc.max}, now)
				require.Equal(t, tc.wantAllowed[i], ok, "use %d", i)
			}
			require.Equal(t, tc.wantRemaining, remaining)
			require.Equal(t, tc.wantRemaining, tr.Remaining("k", quota(tc.max), State{Count: tc.stored, Limit: tc.max}))
		})
	}
}

func TestDirtyFlushedAndDrop(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(100, 0)
	tr.Use("a", 2, Quota{}, State{Count: 10}, now)
	dirty := tr.Dirty()
	require.Len(t, dirty, 1)
	require.Equal(t, "a", dirty[0].Key)
	require.Equal(t, State{Count: 12, LastUsed: now}, dirty[0].State)
	require.False(t, dirty[0].Quota)

	tr.Use("a", 1, Quota{}, State{}, now.Add(time.Second)) // used while flushing
	tr.Flushed(dirty[0])
	dirty = tr.Dirty()
	require.Len(t, dirty, 1, "a use after the snapshot keeps it dirty")

	tr.Flushed(dirty[0])
	require.Empty(t, tr.Dirty())
	require.Equal(t, 0, tr.Len(), "idle counters are dropped after a clean flush round")

	// A dropped counter restarts from what storage holds.
	ok, remaining := tr.Use("a", 1, quota(20), State{Count: 13, Limit: 20}, now)
	require.True(t, ok)
	require.Equal(t, int64(6), remaining)

	// Counters of keys with a quota stay, even when idle.
	for _, p := range tr.Dirty() {
		require.True(t, p.Quota)
		tr.Flushed(p)
	}
	require.Empty(t, tr.Dirty())
	require.Equal(t, 1, tr.Len())

	tr.Forget("a")
	_, _, ok = tr.Peek("a")
	require.False(t, ok)
}

func TestConcurrentUsesNeverOverAdmit(t *testing.T) {
	tr := NewTracker()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // a flusher running at the same time, dropping idle counters
		for {
			select {
			case <-stop:
				return
			default:
				for _, p := range tr.Dirty() {
					tr.Flushed(p)
				}
			}
		}
	}()
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if ok, _ := tr.Use("k", 1, quota(1000), State{Limit: 1000}, time.Now()); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	require.Equal(t, int64(1000), allowed.Load())
}

// quota is a quota of max uses without refill (0: unlimited).
func quota(max int64) Quota { return Quota{Limited: max > 0} }

// TestRefillBoundaries: a new period sets the limit to count+refill, lazily, whatever
// was left (no carry-over), and only once per period.
func TestRefillBoundaries(t *testing.T) {
	now := time.Unix(100, 0)
	q := func(period int64) Quota { return Quota{Limited: true, Refill: 5, Period: period} }
	cases := []struct {
		name          string
		stored        State
		uses          []struct{ period, cost int64 }
		wantAllowed   []bool
		wantRemaining int64
	}{
		{
			name:   "spent, then refilled",
			stored: State{Limit: 3, Period: 1},
			uses: []struct{ period, cost int64 }{
				{1, 3}, {1, 1}, {2, 5}, {2, 1},
			},
			wantAllowed:   []bool{true, false, true, false},
			wantRemaining: 0,
		},
		{
			name:          "unspent credit does not carry over",
			stored:        State{Limit: 100, Period: 1},
			uses:          []struct{ period, cost int64 }{{1, 1}, {2, 6}, {2, 5}},
			wantAllowed:   []bool{true, false, true},
			wantRemaining: 0,
		},
		{
			name:          "several periods skipped refill once",
			stored:        State{Count: 7, Limit: 7, Period: 1},
			uses:          []struct{ period, cost int64 }{{9, 2}},
			wantAllowed:   []bool{true},
			wantRemaining: 3,
		},
		{
			name:          "an older period never refills",
			stored:        State{Count: 3, Limit: 3, Period: 5},
			uses:          []struct{ period, cost int64 }{{4, 1}},
			wantAllowed:   []bool{false},
			wantRemaining: 0,
		},
		{
			name:          "the stored period is already refilled",
			stored:        State{Count: 10, Limit: 12, Period: 2},
			uses:          []struct{ period, cost int64 }{{2, 2}, {2, 1}},
			wantAllowed:   []bool{true, false},
			wantRemaining: 0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			var remaining int64
			for i, u := range tc.uses {
				var ok bool
				ok, remaining = tr.Use("k", u.cost, q(u.period), tc.stored, now)
				require.Equal(t, tc.wantAllowed[i], ok, "use %d", i)
			}
			require.Equal(t, tc.wantRemaining, remaining)
		})
	}

	// Remaining and Effective see a refill without making it.
	tr := NewTracker()
	stored := State{Count: 3, Limit: 3, Period: 1}
	require.Equal(t, int64(5), tr.Remaining("k", q(2), stored))
	require.Equal(t, State{Count: 3, Limit: 8, Period: 2}, tr.Effective("k", q(2), stored))
	_, ok := tr.State("k")
	require.False(t, ok, "reading creates no counter")
}

func TestAdjust(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(100, 0)
	q := Quota{Limited: true}
	stored := State{Count: 2, Limit: 10}
	tr.Use("k", 3, q, stored, now) // count 5, 5 left

	p, err := tr.Adjust("k", q, stored, func(cur State) (int64, error) { return cur.Count + 1, nil }) // set=1
	s := p.State
	require.NoError(t, err)
	require.Equal(t, int64(1), s.Remaining())
	ok, _ := tr.Use("k", 2, q, stored, now)
	require.False(t, ok, "the new limit holds at once")
	p, err = tr.Adjust("k", q, stored, func(cur State) (int64, error) { return cur.Limit + 10, nil }) // add=10
	require.NoError(t, err)
	s = p.State
	require.Equal(t, int64(11), s.Remaining())

	_, err = tr.Adjust("k", q, stored, func(State) (int64, error) { return 0, errBoom })
	require.ErrorIs(t, err, errBoom)
	require.Equal(t, int64(11), tr.Remaining("k", q, stored), "a refused adjustment changes nothing")

	dirty := tr.Dirty()
	require.Len(t, dirty, 1)
	require.True(t, dirty[0].Quota)
	require.Equal(t, int64(16), dirty[0].Limit)

	// Adjusting a key without a counter starts from what is stored, and keeps it.
	fresh := NewTracker()
	p, err = fresh.Adjust("x", Quota{Limited: true, Refill: 4, Period: 3}, State{Count: 9, Limit: 9, Period: 2}, func(cur State) (int64, error) {
		require.Equal(t, State{Count: 9, Limit: 13, Period: 3}, cur, "in the current period")
		return cur.Limit + 1, nil
	})
	require.NoError(t, err)
	require.Equal(t, int64(5), p.Remaining())
	require.True(t, fresh.HasQuota("x"))
	snap, ok := fresh.Snapshot("x")
	require.True(t, ok)
	fresh.Flushed(snap)
	require.Empty(t, fresh.Dirty())
	require.Equal(t, 1, fresh.Len(), "a quota counter stays")
}

var errBoom = errors.New("boom")

func TestConcurrentRefillAndAdjustNeverOverAdmit(t *testing.T) {
	tr := NewTracker()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	q := Quota{Limited: true, Refill: 100, Period: 2}
	stored := State{Count: 50, Limit: 50, Period: 1} // spent; period 2 refills 100
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if ok, _ := tr.Use("k", 1, q, stored, time.Now()); ok {
					allowed.Add(1)
				}
				if i == 10 {
					_, _ = tr.Adjust("k", q, stored, func(cur State) (int64, error) { return cur.Limit + 1, nil })
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(100+16), allowed.Load(), "one refill and sixteen top-ups of one")
}

// TestCountsNeverGoBackAfterADrop: a counter dropped as idle comes back seeded from a
// stale record (a verify that loaded it before the flush) without losing counts.
func TestCountsNeverGoBackAfterADrop(t *testing.T) {
	tr := NewTracker()
	now := time.Now()
	stale := State{Count: 40}
	ok, _ := tr.Use("k", 20, Quota{}, stale, now)
	require.True(t, ok)
	for _, p := range tr.Dirty() {
		tr.Flushed(p) // stored: 60
	}
	require.Empty(t, tr.Dirty(), "idle: dropped")
	tr.Use("k", 1, Quota{}, stale, now) // seeded from the stale record of 40
	s, ok := tr.State("k")
	require.True(t, ok)
	require.EqualValues(t, 61, s.Count, "not 41")
}

func TestTakeUpTo(t *testing.T) {
	now := time.Unix(100, 0)
	tr := NewTracker()
	half := func(left int64) int64 { return (left + 1) / 2 }
	taken, remaining := tr.TakeUpTo("k", half, quota(10), State{Limit: 10}, now)
	require.Equal(t, int64(5), taken)
	require.Equal(t, int64(5), remaining)
	taken, remaining = tr.TakeUpTo("k", func(int64) int64 { return 100 }, quota(10), State{}, now)
	require.Equal(t, int64(5), taken, "never more than remains")
	require.Zero(t, remaining)
	taken, _ = tr.TakeUpTo("k", func(int64) int64 { return 1 }, quota(10), State{}, now)
	require.Zero(t, taken)
	taken, _ = tr.TakeUpTo("k", func(int64) int64 { return -4 }, quota(10), State{}, now)
	require.Zero(t, taken, "a negative size takes nothing")
	s, _ := tr.State("k")
	require.Equal(t, State{Count: 10, Limit: 10, LastUsed: now}, s)

	taken, remaining = tr.TakeUpTo("free", half, Quota{}, State{}, now)
	require.Zero(t, taken)
	require.Equal(t, int64(-1), remaining)
	require.Equal(t, 1, tr.Len(), "no counter for a key without a quota")
}

func TestRefund(t *testing.T) {
	now := time.Unix(100, 0)
	tr := NewTracker()
	require.False(t, tr.Refund("k", 3, quota(10), 0), "no counter: nothing to refund")
	tr.TakeUpTo("k", func(int64) int64 { return 8 }, quota(10), State{Limit: 10}, now)
	require.True(t, tr.Refund("k", 3, quota(10), 0))
	s, _ := tr.State("k")
	require.Equal(t, int64(8), s.Count, "the count never goes back")
	require.Equal(t, int64(5), s.Remaining())
	require.False(t, tr.Refund("k", 0, quota(10), 0))
	require.False(t, tr.Refund("k", 1, Quota{}, 0))
	require.False(t, tr.Refund("k", math.MaxInt64, quota(10), 0), "no overflow")

	// Refill periods: uses of an earlier period are not refunded.
	daily := func(p int64) Quota { return Quota{Limited: true, Refill: 10, Period: p} }
	tr.TakeUpTo("r", func(int64) int64 { return 6 }, daily(1), State{Limit: 10, Period: 1}, now)
	require.True(t, tr.Refund("r", 2, daily(1), 1))
	require.Equal(t, int64(6), tr.Remaining("r", daily(1), State{}))
	require.False(t, tr.Refund("r", 2, daily(2), 1), "the refill replaced them")
	require.Equal(t, int64(10), tr.Remaining("r", daily(2), State{}))

	tr.Forget("k")
	require.False(t, tr.Refund("k", 1, quota(10), 0))
	// A counter without a quota (a key without max_uses) refunds nothing.
	tr.Use("plain", 1, Quota{}, State{}, now)
	require.False(t, tr.Refund("plain", 1, quota(10), 0))
}

func TestTouch(t *testing.T) {
	now := time.Unix(100, 0)
	tr := NewTracker()
	tr.Touch("k", State{Count: 4, LastUsed: time.Unix(50, 0)}, now)
	s, ok := tr.State("k")
	require.True(t, ok)
	require.Equal(t, State{Count: 4, LastUsed: now}, s, "the count does not move")
	dirty := tr.Dirty()
	require.Len(t, dirty, 1)
	tr.Flushed(dirty[0])
	tr.Touch("k", State{}, time.Unix(10, 0))
	require.Empty(t, tr.Dirty(), "an earlier time changes nothing")
}

// TestTakeUpToNeverOverAdmits: grants, refunds and plain uses race; what was admitted
// (uses plus takes less refunds) never exceeds the limit, and reaches it.
func TestTakeUpToNeverOverAdmits(t *testing.T) {
	const limit = 1000
	now := time.Unix(100, 0)
	tr := NewTracker()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if g%2 == 0 {
					if ok, _ := tr.Use("k", 1, quota(limit), State{Limit: limit}, now); ok {
						admitted.Add(1)
					}
					continue
				}
				taken, _ := tr.TakeUpTo("k", func(left int64) int64 { return min(7, left) }, quota(limit), State{Limit: limit}, now)
				back := taken / 3
				if i%4 == 0 && back > 0 && tr.Refund("k", back, quota(limit), 0) {
					taken -= back
				}
				admitted.Add(taken)
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, admitted.Load(), int64(limit))
	require.Equal(t, int64(limit), admitted.Load()+tr.Remaining("k", quota(limit), State{}))
}

// store is a key-value storage of use states for the tests below; flush writes to it
// what the tracker holds the way the backend's flushOne writes key records: reconciled
// with the stored state, and only upwards.
type store map[string]State

func (s store) flush(t *testing.T, tr *Tracker) {
	t.Helper()
	for _, d := range tr.Dirty() {
		s.flushKey(tr, d.Key)
	}
}

func (s store) flushKey(tr *Tracker, key string) {
	p, ok := tr.Reconcile(key, s[key])
	if !ok {
		return
	}
	if p.Count > s[key].Count {
		s[key] = p.State
	}
	tr.Flushed(p)
}

// TestStaleSeedsNeverLoseCounts drives, step by step, the interleavings of a verify that
// loads a key record, then counts a use seeded from it, with flushes that store the
// key's counter, drop it as idle and forget the dropped state in between. Whatever the
// order, every use reaches storage exactly once and the count shown never goes back.
func TestStaleSeedsNeverLoseCounts(t *testing.T) {
	now := time.Unix(100, 0)
	type step int
	const (
		useFresh   step = iota // a use seeded from the record as stored now
		load                   // a verify loads the record (kept as the stale seed)
		useStale               // that verify counts its use, seeded from what it loaded
		touchStale             // that verify touches the key, seeded from what it loaded
		flush                  // a flush round: Dirty, then every dirty key written
	)
	cases := []struct {
		name  string
		steps []step
		// wantShown is the in-memory count after the steps, before the final flush.
		wantShown int64
		// wantStored is what storage holds after a final flush: every use, once.
		wantStored int64
	}{
		{
			name:       "no flush in between",
			steps:      []step{useFresh, useFresh, load, useStale},
			wantShown:  3,
			wantStored: 3,
		},
		{
			name:       "dropped, the dropped state still known",
			steps:      []step{useFresh, useFresh, load, flush, flush, useStale},
			wantShown:  3,
			wantStored: 3,
		},
		{
			// The race TestSharedCreditsConcurrent hit: the dropped state is forgotten
			// by the next Dirty before the verify's use, whose counter starts from 0.
			name:       "dropped and forgotten before the stale use",
			steps:      []step{useFresh, useFresh, load, flush, flush, flush, useStale},
			wantShown:  1,
			wantStored: 3,
		},
		{
			name:       "the stale counter keeps counting until flushed",
			steps:      []step{useFresh, useFresh, load, flush, flush, flush, useStale, useStale, useStale},
			wantShown:  3,
			wantStored: 5,
		},
		{
			name:       "a use seeded from the current record catches up at once",
			steps:      []step{useFresh, useFresh, load, flush, flush, flush, useStale, useFresh},
			wantShown:  4,
			wantStored: 4,
		},
		{
			name:       "flushed, then used from the current record: not counted twice",
			steps:      []step{useFresh, useFresh, load, flush, flush, flush, useStale, flush, useFresh, useFresh},
			wantShown:  5,
			wantStored: 5,
		},
		{
			name:       "stale again after the stale counter was flushed and dropped",
			steps:      []step{useFresh, load, flush, flush, flush, useStale, flush, flush, flush, useStale, useFresh},
			wantShown:  4,
			wantStored: 4,
		},
		{
			name:       "a touch from a stale record moves no count",
			steps:      []step{useFresh, useFresh, load, flush, flush, flush, touchStale, useFresh},
			wantShown:  3,
			wantStored: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			s := store{}
			var loaded State
			var shown int64
			for i, st := range tc.steps {
				switch st {
				case useFresh:
					tr.Use("k", 1, Quota{}, s["k"], now)
				case load:
					loaded = s["k"]
				case useStale:
					tr.Use("k", 1, Quota{}, loaded, now)
				case touchStale:
					tr.Touch("k", loaded, now)
				case flush:
					s.flush(t, tr)
				}
				if c, _, ok := tr.Peek("k"); ok {
					shown = c
				}
				require.GreaterOrEqual(t, max(shown, s["k"].Count), s["k"].Count, "step %d: storage never goes back", i)
			}
			require.Equal(t, tc.wantShown, shown, "in memory")
			s.flush(t, tr)
			require.Equal(t, tc.wantStored, s["k"].Count, "stored")
			// Flushing again, and after the counter is dropped, changes nothing.
			s.flush(t, tr)
			s.flush(t, tr)
			require.Equal(t, tc.wantStored, s["k"].Count, "stored, after more flushes")
		})
	}
}

// TestReconcileAfterAnUnacknowledgedWrite: a write of a reconciled state that landed
// but reported an error (so Flushed was not called) is not counted again by the next
// reconcile.
func TestReconcileAfterAnUnacknowledgedWrite(t *testing.T) {
	now := time.Unix(100, 0)
	cases := []struct {
		name       string
		landed     bool
		wantStored int64
	}{
		{"the write landed", true, 7},
		{"the write was lost", false, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			s := store{"k": {Count: 5}}                   // an earlier counter's 5 uses
			tr.Use("k", 2, Quota{}, State{Count: 0}, now) // seeded from a stale record
			p, ok := tr.Reconcile("k", s["k"])
			require.True(t, ok)
			require.Equal(t, int64(7), p.Count)
			if tc.landed {
				s["k"] = p.State
			}
			s.flush(t, tr) // the retry
			require.Equal(t, tc.wantStored, s["k"].Count)
			count, _, _ := tr.Peek("k")
			require.Equal(t, tc.wantStored, count)
		})
	}
}

// TestAdjustAnchorsAStaleCounter: a counter made by a touch from a stale record, then
// given credits (written from Adjust's state), takes up the stored uses first: the
// count written never goes back, and is not counted twice afterwards.
func TestAdjustAnchorsAStaleCounter(t *testing.T) {
	now := time.Unix(100, 0)
	q := Quota{Limited: true}
	cases := []struct {
		name      string
		then      func(tr *Tracker, s store)
		wantCount int64
	}{
		{"adjusted only", func(*Tracker, store) {}, 8},
		{"then used from the current record", func(tr *Tracker, s store) { tr.Use("k", 1, q, s["k"], now) }, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			s := store{"k": {Count: 8, Limit: 10}}
			tr.Touch("k", State{Count: 3, Limit: 10}, now) // a stale record
			p, err := tr.Adjust("k", q, s["k"], func(cur State) (int64, error) { return cur.Limit + 5, nil })
			require.NoError(t, err)
			require.Equal(t, int64(8), p.Count)
			require.Equal(t, int64(7), p.Remaining())
			s["k"] = p.State
			tr.Flushed(p)
			tc.then(tr, s)
			s.flush(t, tr)
			require.Equal(t, tc.wantCount, s["k"].Count)
		})
	}
}

// TestFlushedMarksOnlyItsCounter: a late Flushed for a counter that was dropped since
// does not mark the key's new counter flushed (its versions start over, and may match).
func TestFlushedMarksOnlyItsCounter(t *testing.T) {
	now := time.Unix(100, 0)
	tr := NewTracker()
	tr.Use("k", 1, Quota{}, State{}, now)
	old := tr.Dirty()
	require.Len(t, old, 1)
	tr.Flushed(old[0])
	require.Empty(t, tr.Dirty(), "dropped as idle")
	tr.Use("k", 1, Quota{}, State{Count: 1}, now) // a new counter, same version as old's
	tr.Flushed(old[0])
	dirty := tr.Dirty()
	require.Len(t, dirty, 1, "the new counter's use is still to be stored")
	require.Equal(t, int64(2), dirty[0].Count)
}

// TestConcurrentFlushesNeverLoseCounts is TestStaleSeedsNeverLoseCounts left to the
// scheduler: verifies load the record, yield, then count a use seeded from it, while
// flushers store, drop and forget counters. Every use is stored once.
func TestConcurrentFlushesNeverLoseCounts(t *testing.T) {
	const verifiers, uses, keys = 8, 300, 3
	tr := NewTracker()
	s := store{}
	var storeMu sync.Mutex // the keys' storage lock, and the store's
	read := func(key string) State {
		storeMu.Lock()
		defer storeMu.Unlock()
		return s[key]
	}
	flushAll := func() {
		for _, d := range tr.Dirty() {
			storeMu.Lock()
			s.flushKey(tr, d.Key)
			storeMu.Unlock()
		}
	}
	stop := make(chan struct{})
	var flushers sync.WaitGroup
	for range 2 {
		flushers.Add(1)
		go func() {
			defer flushers.Done()
			for {
				select {
				case <-stop:
					return
				default:
					flushAll()
					runtime.Gosched()
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for g := range verifiers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uses {
				key := string(rune('a' + (g+i)%keys))
				loaded := read(key)
				for range i % 4 {
					runtime.Gosched() // widen the window between loading and using
				}
				tr.Use(key, 1, Quota{}, loaded, time.Now())
			}
		}()
	}
	wg.Wait()
	close(stop)
	flushers.Wait()
	flushAll()
	var total int64
	for key, st := range s {
		count, _, ok := tr.Peek(key)
		if ok {
			require.Equal(t, st.Count, count, "key %s: memory and storage agree", key)
		}
		total += st.Count
	}
	require.Equal(t, int64(verifiers*uses), total)
}

// TestCountsNeverWrap: a count at the top stays there instead of turning negative.
func TestCountsNeverWrap(t *testing.T) {
	for _, tc := range []struct {
		a, b, want int64
	}{
		{1, 2, 3},
		{math.MaxInt64 - 1, 1, math.MaxInt64},
		{math.MaxInt64 - 1, 2, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
	} {
		require.Equal(t, tc.want, addCapped(tc.a, tc.b))
	}
	tr := NewTracker()
	now := time.Unix(1_900_000_000, 0)
	ok, _ := tr.Use("k", math.MaxInt64-5, Quota{}, State{Count: 10}, now)
	require.True(t, ok)
	count, _, _ := tr.Peek("k")
	require.Equal(t, int64(math.MaxInt64), count)
}
