package grantpool

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func uses(n int64) *int64 { return &n }

func TestSpendUsesAndCost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		granted int64
		cost    int64
		admit   int
	}{
		{name: "cost 1", granted: 5, cost: 1, admit: 5},
		{name: "cost 3", granted: 10, cost: 3, admit: 3},
		{name: "cost 0 never spends uses", granted: 1, cost: 0, admit: 100},
		{name: "cost above the grant", granted: 2, cost: 3, admit: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{})
			require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(tc.granted), Sent: t0, TTL: 5 * time.Second}, t0))
			admitted := 0
			for range 100 {
				out, _ := p.Spend("k", tc.cost, t0)
				if out == Spent {
					admitted++
					continue
				}
				require.Equal(t, Exhausted, out)
			}
			require.Equal(t, tc.admit, admitted)
			left, limited := p.Uses("k")
			require.True(t, limited)
			require.Equal(t, tc.granted-int64(tc.admit)*tc.cost, left)
		})
	}
}

func TestSpendWithoutGrantOrUseLimit(t *testing.T) {
	p := New(Options{})
	out, _ := p.Spend("k", 1, t0)
	require.Equal(t, NoGrant, out)
	// A grant without uses (the key has no max_uses) and without limits admits everything.
	require.True(t, p.Apply("k", Grant{ID: "g", Sent: t0, TTL: time.Second}, t0))
	for range 1000 {
		out, _ := p.Spend("k", 7, t0)
		require.Equal(t, Spent, out)
	}
	_, limited := p.Uses("k")
	require.False(t, limited)
}

// TestNeverOverSpendsUnderConcurrency: goroutines spend (cost 1 to 3) while others top
// the grant up and the renewal loop returns surpluses; what was admitted never exceeds
// what was granted minus what was returned, and nothing granted is lost while the grant
// lives.
func TestNeverOverSpendsUnderConcurrency(t *testing.T) {
	p := New(Options{})
	const topUps, perTopUp = 200, 25
	var granted, returned, spent atomic.Int64
	require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(perTopUp), Sent: t0, TTL: time.Hour}, t0))
	granted.Add(perTopUp)

	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cost := int64(w%3 + 1)
			for !stop.Load() {
				if out, _ := p.Spend("k", cost, t0); out == Spent {
					spent.Add(cost)
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range topUps {
			require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(perTopUp), Sent: t0, TTL: time.Hour}, t0))
			granted.Add(perTopUp)
		}
	}()
	go func() {
		defer wg.Done()
		now := t0.Add(30 * time.Minute) // half the TTL: due, and again a second after each failure
		for range 200 {
			now = now.Add(time.Second)
			for _, r := range p.Due(now) {
				returned.Add(r.Unused)
				p.RenewFailed(r.KeyID, r.GrantID, now)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	left, _ := p.Uses("k")
	require.LessOrEqual(t, spent.Load(), granted.Load()-returned.Load())
	require.Equal(t, granted.Load(), spent.Load()+returned.Load()+left, "every granted use is spent, returned or still held")
}

func TestRateBucketsBurstThenRefill(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("k", Grant{ID: "g", Limits: []Limit{{Name: "default", Rate: 2, Burst: 3, Tokens: 3}}, Sent: t0, TTL: time.Minute}, t0))
	for i := range 3 {
		out, _ := p.Spend("k", 1, t0)
		require.Equal(t, Spent, out, "request %d within the burst", i)
	}
	out, wait := p.Spend("k", 1, t0)
	require.Equal(t, RateLimited, out)
	require.Equal(t, 500*time.Millisecond, wait)
	out, _ = p.Spend("k", 1, t0.Add(500*time.Millisecond))
	require.Equal(t, Spent, out)
	// Every limit must admit; the slowest decides the wait.
	p2 := New(Options{})
	require.True(t, p2.Apply("k", Grant{ID: "g", Limits: []Limit{{Name: "a", Rate: 10, Burst: 1, Tokens: 1}, {Name: "b", Rate: 1, Burst: 1, Tokens: 1}}, Sent: t0, TTL: time.Minute}, t0))
	out, _ = p2.Spend("k", 1, t0)
	require.Equal(t, Spent, out)
	out, wait = p2.Spend("k", 1, t0)
	require.Equal(t, RateLimited, out)
	require.Equal(t, time.Second, wait)
	// A refused request takes no uses.
	p3 := New(Options{})
	require.True(t, p3.Apply("k", Grant{ID: "g", Uses: uses(5), Limits: []Limit{{Name: "a", Rate: 1, Burst: 1, Tokens: 1}}, Sent: t0, TTL: time.Minute}, t0))
	p3.Spend("k", 1, t0)
	out, _ = p3.Spend("k", 1, t0)
	require.Equal(t, RateLimited, out)
	left, _ := p3.Uses("k")
	require.EqualValues(t, 4, left)
}

func TestRateShareOfZeroWaitsForRenewal(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("k", Grant{ID: "g", Limits: []Limit{{Name: "default", Rate: 0, Burst: 1, Tokens: 1}}, Sent: t0, TTL: 4 * time.Second}, t0))
	out, _ := p.Spend("k", 1, t0)
	require.Equal(t, Spent, out)
	out, wait := p.Spend("k", 1, t0.Add(time.Second))
	require.Equal(t, RateLimited, out)
	require.Equal(t, time.Second, wait, "until the renewal at half the TTL")
}

// TestConcurrentRateNeverExceedsBurst: at a fixed instant, however many goroutines
// spend, the bucket admits its burst and no more.
func TestConcurrentRateNeverExceedsBurst(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("k", Grant{ID: "g", Limits: []Limit{{Name: "d", Rate: 1000, Burst: 50, Tokens: 50}}, Sent: t0, TTL: time.Minute}, t0))
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if out, _ := p.Spend("k", 1, t0); out == Spent {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 50, admitted.Load())
}

// TestRenewalRescalesWithoutRefilling: a new share never hands out a fresh bucket.
func TestRenewalRescalesWithoutRefilling(t *testing.T) {
	for _, tc := range []struct {
		name       string
		spend      int // from a full bucket of 10 at rate 1/s
		newRate    float64
		newBurst   float64
		wantTokens int // admitted right after the renewal
	}{
		{name: "smaller share: same fraction of the bucket", spend: 5, newRate: 0.5, newBurst: 4, wantTokens: 2},
		{name: "larger share: tokens kept, not refilled", spend: 8, newRate: 2, newBurst: 20, wantTokens: 2},
		{name: "empty stays empty", spend: 10, newRate: 5, newBurst: 40, wantTokens: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{})
			require.True(t, p.Apply("k", Grant{ID: "g", Limits: []Limit{{Name: "d", Rate: 1, Burst: 10, Tokens: 10}}, Sent: t0, TTL: time.Minute}, t0))
			for range tc.spend {
				out, _ := p.Spend("k", 1, t0)
				require.Equal(t, Spent, out)
			}
			r := p.Due(t0.Add(30 * time.Second))
			require.Len(t, r, 1)
			// The renewal's answer comes at the same instant the bucket was last used
			// (the clock does not move, so the old rate adds nothing).
			p.Renewed("k", "g", &Grant{ID: "g", Limits: []Limit{{Name: "d", Rate: tc.newRate, Burst: tc.newBurst}}, Sent: t0, TTL: time.Minute}, t0)
			admitted := 0
			for range 100 {
				if out, _ := p.Spend("k", 1, t0); out == Spent {
					admitted++
				}
			}
			require.Equal(t, tc.wantTokens, admitted)
		})
	}
}

// TestBucketsHoldOnlyHandedOverTokens: a new grant's bucket starts with the tokens the
// answer handed over (not full); a renewal adds the answer's tokens to what the bucket
// has, clamped to its new size; a replacement keeps the old tokens and adds the new.
func TestBucketsHoldOnlyHandedOverTokens(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first float64 // tokens of the first answer, bucket 10 at rate 1/s
		spend int
		// the second answer (same id unless replace), at the same instant
		replace        bool
		burst, renewed float64
		wantFirst      int // admitted after the first answer
		wantAfter      int // admitted after the second
	}{
		{name: "no tokens: nothing until it refills", first: 0, burst: 10, renewed: 0, wantFirst: 0, wantAfter: 0},
		{name: "part of the burst", first: 4, burst: 10, renewed: 0, wantFirst: 4, wantAfter: 0},
		{name: "renewal adds", first: 4, spend: 2, burst: 10, renewed: 3, wantFirst: 4, wantAfter: 5},
		{name: "renewal adds, clamped to the new burst", first: 10, spend: 2, burst: 10, renewed: 5, wantFirst: 10, wantAfter: 10},
		{name: "smaller share: rescaled then added", first: 10, spend: 5, burst: 4, renewed: 1, wantFirst: 10, wantAfter: 3},
		{name: "replacement keeps the old tokens and adds", first: 6, spend: 3, replace: true, burst: 10, renewed: 2, wantFirst: 6, wantAfter: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{})
			require.True(t, p.Apply("k", Grant{ID: "g", Limits: []Limit{{Name: "d", Rate: 1, Burst: 10, Tokens: tc.first}}, Sent: t0, TTL: time.Minute}, t0))
			spend := func(n int) int {
				admitted := 0
				for range n {
					if out, _ := p.Spend("k", 1, t0); out == Spent {
						admitted++
					}
				}
				return admitted
			}
			if tc.spend == 0 {
				require.Equal(t, tc.wantFirst, spend(100))
				// It refills at the share's rate like any bucket.
				out, _ := p.Spend("k", 1, t0.Add(time.Second))
				require.Equal(t, Spent, out)
				return
			}
			require.LessOrEqual(t, tc.spend, tc.wantFirst)
			require.Equal(t, tc.spend, spend(tc.spend))
			second := Grant{ID: "g", Limits: []Limit{{Name: "d", Rate: 1, Burst: tc.burst, Tokens: tc.renewed}}, Sent: t0, TTL: time.Minute}
			if tc.replace {
				second.ID = "g2"
				require.True(t, p.Apply("k", second, t0))
			} else {
				p.Due(t0.Add(30 * time.Second))
				p.Renewed("k", "g", &second, t0)
			}
			require.Equal(t, tc.wantAfter, spend(100))
		})
	}
}

func TestTopUpAndReplace(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("k", Grant{ID: "g1", Uses: uses(3), Sent: t0, TTL: time.Minute}, t0))
	require.True(t, p.Apply("k", Grant{ID: "g1", Uses: uses(4), Sent: t0, TTL: time.Minute}, t0))
	left, _ := p.Uses("k")
	require.EqualValues(t, 7, left, "the same grant is topped up")
	require.True(t, p.Apply("k", Grant{ID: "g2", Uses: uses(2), Sent: t0, TTL: time.Minute}, t0))
	left, _ = p.Uses("k")
	require.EqualValues(t, 2, left, "another id replaces: the old grant was cancelled")
}

func TestExpiry(t *testing.T) {
	p := New(Options{})
	sent := t0.Add(-time.Second) // the request went out a second before the answer
	require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(10), Sent: sent, TTL: 5 * time.Second}, t0))
	out, _ := p.Spend("k", 1, sent.Add(5*time.Second-time.Nanosecond))
	require.Equal(t, Spent, out)
	out, _ = p.Spend("k", 1, sent.Add(5*time.Second))
	require.Equal(t, NoGrant, out, "dead at sent + TTL, not answer + TTL")
	require.False(t, p.Live("k", sent.Add(5*time.Second)))
	require.Empty(t, p.Due(sent.Add(5*time.Second)), "an expired grant is dropped, never renewed")
	require.Zero(t, p.Len())
}

func TestDue(t *testing.T) {
	ttl := 10 * time.Second
	p := New(Options{})
	require.True(t, p.Apply("busy", Grant{ID: "b", Uses: uses(100), Sent: t0, TTL: ttl}, t0))
	require.True(t, p.Apply("idle", Grant{ID: "i", Uses: uses(40), Sent: t0, TTL: ttl}, t0))
	require.True(t, p.Apply("rate", Grant{ID: "r", Limits: []Limit{{Name: "d", Rate: 100, Burst: 100}}, Sent: t0, TTL: ttl}, t0))
	require.Empty(t, p.Due(t0.Add(4*time.Second)), "nothing before half the TTL")

	// busy: 10 requests of cost 2 in 5s = 4 uses/s, 40 uses per TTL.
	for range 10 {
		out, _ := p.Spend("busy", 2, t0)
		require.Equal(t, Spent, out)
	}
	for range 50 {
		p.Spend("rate", 0, t0)
	}
	at := t0.Add(5 * time.Second)
	got := map[string]Renewal{}
	for _, r := range p.Due(at) {
		got[r.KeyID] = r
	}
	require.Len(t, got, 3)
	require.Equal(t, Renewal{KeyID: "idle", GrantID: "i", Unused: 40, Release: true}, got["idle"], "idle: released with all its uses")
	require.Equal(t, "b", got["busy"].GrantID)
	require.EqualValues(t, 0, got["busy"].Unused, "80 left, need 40: not twice the need")
	require.EqualValues(t, 1, got["busy"].WantUses, "already holds what it needs")
	require.InDelta(t, 2.0, got["busy"].WantRate, 1e-9)
	require.InDelta(t, 10.0, got["rate"].WantRate, 1e-9)
	require.Zero(t, got["rate"].WantUses)
	require.False(t, p.Live("idle", at))

	// In progress: not due again until answered.
	require.Empty(t, p.Due(at.Add(time.Second)))
	p.RenewFailed("busy", "b", at)
	require.Empty(t, p.Due(at.Add(time.Second-time.Millisecond)))
	r := p.Due(at.Add(time.Second))
	require.Len(t, r, 1, "retried a second after the failure")
	require.Equal(t, "busy", r[0].KeyID)
	require.True(t, r[0].Release, "no attempts since the last renewal: idle now")

	// Not renewed: dropped.
	p.Renewed("rate", "r", nil, at)
	require.False(t, p.Live("rate", at))
}

func TestDueReturnsSurplus(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(1000), Sent: t0, TTL: 10 * time.Second}, t0))
	for range 5 { // 1 use/s over 5s: need 10 per TTL
		p.Spend("k", 1, t0)
	}
	r := p.Due(t0.Add(5 * time.Second))
	require.Len(t, r, 1)
	require.EqualValues(t, 995-20, r[0].Unused, "everything beyond twice the need goes back")
	require.EqualValues(t, 1, r[0].WantUses)
	left, _ := p.Uses("k")
	require.EqualValues(t, 20, left)
}

func TestLowWaterKicksAndIsDue(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(8), Sent: t0, TTL: time.Minute}, t0))
	for range 6 {
		p.Spend("k", 1, t0)
	}
	select {
	case <-p.Kick():
		t.Fatal("kicked at 2 of 8 left: not below a quarter yet")
	default:
	}
	p.Spend("k", 1, t0)
	select {
	case <-p.Kick():
	default:
		t.Fatal("1 of 8 left: below a quarter, kick expected")
	}
	r := p.Due(t0.Add(time.Second))
	require.Len(t, r, 1, "due before half the TTL when low")
	require.Greater(t, r[0].WantUses, int64(0))
}

func TestDemand(t *testing.T) {
	p := New(Options{})
	u, r := p.Demand("k", t0)
	require.Zero(t, u)
	require.Zero(t, r)
	require.True(t, p.Apply("k", Grant{ID: "g", Uses: uses(2), Sent: t0, TTL: 10 * time.Second}, t0))
	for range 4 {
		p.Spend("k", 1, t0) // 2 admitted, 2 exhausted: all four are demand
	}
	u, r = p.Demand("k", t0.Add(2*time.Second))
	require.InDelta(t, 2.0, r, 1e-9)
	require.EqualValues(t, 20, u)
}

func TestBounded(t *testing.T) {
	p := New(Options{MaxGrants: 2})
	require.True(t, p.Apply("a", Grant{ID: "1", Sent: t0, TTL: time.Second}, t0))
	require.True(t, p.Apply("b", Grant{ID: "2", Sent: t0, TTL: time.Second}, t0))
	require.False(t, p.Apply("c", Grant{ID: "3", Sent: t0, TTL: time.Second}, t0))
	require.True(t, p.Apply("a", Grant{ID: "1", Sent: t0, TTL: time.Second}, t0), "a top-up of a held grant still fits")
	p.Drop("a")
	require.True(t, p.Apply("c", Grant{ID: "3", Sent: t0, TTL: time.Second}, t0))
}

func TestTakeAllAndDropAll(t *testing.T) {
	p := New(Options{})
	require.True(t, p.Apply("a", Grant{ID: "1", Uses: uses(5), Sent: t0, TTL: time.Minute}, t0))
	require.True(t, p.Apply("b", Grant{ID: "2", Sent: t0, TTL: time.Minute}, t0))
	require.True(t, p.Apply("old", Grant{ID: "3", Uses: uses(5), Sent: t0.Add(-time.Hour), TTL: time.Minute}, t0))
	p.Spend("a", 2, t0)
	all := p.TakeAll(t0)
	require.ElementsMatch(t, []Renewal{
		{KeyID: "a", GrantID: "1", Unused: 3, Release: true},
		{KeyID: "b", GrantID: "2", Release: true},
	}, all)
	out, _ := p.Spend("a", 1, t0)
	require.Equal(t, NoGrant, out)
	require.Zero(t, p.Len())

	require.True(t, p.Apply("a", Grant{ID: "1", Uses: uses(5), Sent: t0, TTL: time.Minute}, t0))
	p.DropAll()
	out, _ = p.Spend("a", 1, t0)
	require.Equal(t, NoGrant, out)
	require.Empty(t, p.TakeAll(t0))
}
