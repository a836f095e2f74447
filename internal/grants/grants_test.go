package grants

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const ttl = 5 * time.Second

func req(holder, key string, demand float64) Request {
	return Request{Holder: holder, KeyID: key, Account: key, Demand: demand, Rated: true, TTL: ttl}
}

func TestWaterfill(t *testing.T) {
	for _, tc := range []struct {
		demands []float64
		want    []float64
	}{
		{[]float64{1, 1, 1, 1}, []float64{0.25, 0.25, 0.25, 0.25}},
		{[]float64{0.1, 1, 1}, []float64{0.1, 0.45, 0.45}},
		{[]float64{0.1, 0.2, 0.3}, []float64{0.1, 0.2, 0.3}},
		{[]float64{0.6, 0.6}, []float64{0.5, 0.5}},
		{[]float64{0, 1}, []float64{0, 1}},
		{[]float64{-1, 0.5}, []float64{0, 0.5}},
		{nil, []float64{}},
	} {
		t.Run(fmt.Sprint(tc.demands), func(t *testing.T) {
			got := Waterfill(tc.demands, 1)
			require.InDeltaSlice(t, tc.want, got, 1e-12)
		})
	}
	// Random demands: never above a demand, the sum never above capacity, and all of
	// it used when the demands ask for more.
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		n := 1 + r.IntN(20)
		d := make([]float64, n)
		total := 0.0
		for i := range d {
			d[i] = r.Float64()
			total += d[i]
		}
		got := Waterfill(d, 1)
		sum := 0.0
		for i := range got {
			require.LessOrEqual(t, got[i], d[i])
			sum += got[i]
		}
		require.LessOrEqual(t, sum, 1+1e-12)
		require.InDelta(t, min(total, 1), sum, 1e-9)
	}
}

func TestUses(t *testing.T) {
	for _, tc := range []struct {
		want, remaining int64
		holders         int
		limit, out      int64
	}{
		{0, 1000, 1, 1 << 40, DefaultWant},
		{100, 1000, 1, 1 << 40, 100},
		{1000, 1000, 1, 1 << 40, 500},           // half of what remains
		{1000, 1000, 4, 1 << 40, 125},           // split among holders
		{1000, 1001, 4, 1 << 40, 126},           // rounded up
		{1000, 3, 4, 1 << 40, 1},                // at least 1
		{1000, 1, 100, 1 << 40, 1},              // never more than remains
		{1000, 0, 1, 1 << 40, 0},                // nothing remains
		{1000, -5, 1, 1 << 40, 0},               // (a count above the limit)
		{1 << 50, 1 << 52, 1, 10, 10},           // the limit
		{5, 1000, 0, 1 << 40, 5},                // no holders counts as one
		{-3, 1000, 1000, 1 << 40, 1},            // 1000/2000 rounds up to 1
		{1 << 62, 1 << 62, 1, 1 << 62, 1 << 61}, // no overflow
	} {
		require.Equal(t, tc.out, Uses(tc.want, tc.remaining, tc.holders, tc.limit), "%+v", tc)
	}
}

func TestScale(t *testing.T) {
	r, b := Scale(10, 20, 0.25)
	require.Equal(t, 2.5, r)
	require.Equal(t, 5.0, b)
	r, b = Scale(10, 2, 0.1)
	require.Equal(t, 1.0, r)
	require.Equal(t, 1.0, b, "a burst below 1 could never admit")
}

func TestReserveTopsUpOneGrant(t *testing.T) {
	tb := New(Config{})
	a, ok := tb.Reserve(req("h1", "k", 0), t0)
	require.True(t, ok)
	require.True(t, ValidID(a.ID))
	require.Equal(t, 1.0-shareSlack, a.Share, "the only holder gets all of it")
	require.Equal(t, 1, a.Holders)
	require.True(t, tb.Commit(a, 10, 0))
	b, ok := tb.Reserve(req("h1", "k", 0), t0.Add(time.Second))
	require.True(t, ok)
	require.Equal(t, a.ID, b.ID, "one grant per (holder, key)")
	require.True(t, tb.Commit(b, 5, 0))
	g, ok := tb.Lookup(a.ID, "h1", t0.Add(time.Second))
	require.True(t, ok)
	require.Equal(t, int64(15), g.Outstanding)
	require.Equal(t, t0.Add(time.Second+ttl), g.Expires, "a top-up resets the TTL")

	_, ok = tb.Lookup(a.ID, "h2", t0)
	require.False(t, ok, "another holder cannot use the id")
	_, ok = tb.Lookup(a.ID, "h1", t0.Add(time.Second+ttl))
	require.False(t, ok, "expired")
	require.Equal(t, 0, tb.Len(), "the expired grant was dropped")
}

func TestReturn(t *testing.T) {
	tb := New(Config{})
	tk, _ := tb.Reserve(req("h", "k", 0), t0)
	require.True(t, tb.Commit(tk, 10, 7))

	_, found, err := tb.Return(tk.ID, "h", 11, 7, t0)
	require.True(t, found)
	require.ErrorIs(t, err, ErrTooManyUnused)
	require.Contains(t, err.Error(), "(10)")

	refund, found, err := tb.Return(tk.ID, "h", 4, 7, t0)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, int64(4), refund)

	// A new refill period: the grant's uses were of the old one and are not refunded,
	// but they are no longer outstanding either.
	refund, _, err = tb.Return(tk.ID, "h", 2, 8, t0)
	require.NoError(t, err)
	require.Zero(t, refund)
	require.True(t, tb.Commit(tk, 3, 8))
	refund, _, err = tb.Return(tk.ID, "h", 7, 8, t0)
	require.NoError(t, err)
	require.Equal(t, int64(3), refund, "only the 3 debited in period 8")
	g, _ := tb.Lookup(tk.ID, "h", t0)
	require.Zero(t, g.Outstanding)

	for _, bad := range []struct{ id, holder string }{{tk.ID, "other"}, {newID(), "h"}, {"", "h"}} {
		refund, found, err := tb.Return(bad.id, bad.holder, 1, 8, t0)
		require.NoError(t, err)
		require.False(t, found)
		require.Zero(t, refund)
	}
	require.True(t, tb.Release(tk.ID, "h", t0))
	require.False(t, tb.Release(tk.ID, "h", t0))
	_, found, _ = tb.Return(tk.ID, "h", 0, 8, t0)
	require.False(t, found)
}

func TestSharesConverge(t *testing.T) {
	tb := New(Config{})
	holders := []string{"a", "b", "c", "d"}
	ids := map[string]string{}
	for _, h := range holders {
		tk, ok := tb.Reserve(req(h, "k"+h, 0), t0)
		require.True(t, ok)
		ids[h] = tk.ID
	}
	// Each holder has its own key: all get everything of their own account.
	for _, h := range holders {
		sum, _ := tb.Shares("k"+h, t0)
		require.InDelta(t, 1, sum, 1e-6)
	}

	// Four holders of one key, arriving one by one.
	tb = New(Config{})
	now := t0
	for _, h := range holders {
		tk, _ := tb.Reserve(req(h, "k", 0), now)
		if h == "a" {
			require.InDelta(t, 1, tk.Share, 1e-6, "the first takes all")
		} else {
			require.Zero(t, tk.Share, "nothing is free yet")
		}
		sum, _ := tb.Shares("k", now)
		require.LessOrEqual(t, sum, 1.0)
		now = now.Add(10 * time.Millisecond)
	}
	// a renews first and comes down to a quarter at once, but may spend all of it until
	// its first grant expires: the others get their quarters after that.
	for _, h := range holders {
		tk, _ := tb.Reserve(req(h, "k", 0), now)
		if h == "a" {
			require.InDelta(t, 0.25, tk.Share, 1e-6)
		} else {
			require.Zero(t, tk.Share, "a's first grant still counts")
		}
	}
	now = t0.Add(ttl)
	for _, h := range holders {
		tk, _ := tb.Reserve(req(h, "k", 0), now)
		require.InDelta(t, 0.25, tk.Share, 1e-6, "after a's first grant expired, %s has a quarter", h)
		sum, _ := tb.Shares("k", now)
		require.LessOrEqual(t, sum, 1.0)
	}
	// A holder that asks for little leaves the rest to the others, once the grant
	// with its larger share expired.
	tk, _ := tb.Reserve(req("a", "k", 0.1), now)
	require.InDelta(t, 0.1, tk.Share, 1e-6)
	now = now.Add(ttl)
	for _, h := range holders[1:] {
		tb.Reserve(req(h, "k", 0), now.Add(-time.Millisecond)) // the others stay live
	}
	tb.Reserve(req("a", "k", 0.1), now.Add(-time.Millisecond))
	tk, _ = tb.Reserve(req("b", "k", 0), now)
	require.InDelta(t, 0.3, tk.Share, 1e-6)

	// Expired holders free their share.
	later := now.Add(ttl)
	sum, _ := tb.Shares("k", later)
	require.Zero(t, sum)
	tk, _ = tb.Reserve(req("z", "k", 0), later)
	require.InDelta(t, 1, tk.Share, 1e-6)
}

// TestUnclaimedRateIsShared: what n holders' demands leave unclaimed is divided n+1
// ways, so a holder whose traffic jumps is not refused locally while nobody else wants
// the rate, and a newcomer still finds a part free.
func TestUnclaimedRateIsShared(t *testing.T) {
	for _, tc := range []struct {
		name    string
		demands []float64 // one holder each, renewing in turn until the shares settle
		want    []float64
	}{
		{"a lone holder that saw little traffic gets half of what it did not claim", []float64{0.001}, []float64{0.001 + 0.999/2}},
		{"two quiet holders split two thirds of it", []float64{0.01, 0.01}, []float64{0.01 + 0.98/3, 0.01 + 0.98/3}},
		{"the unclaimed part is split evenly on top of the demands", []float64{0.5, 0.1}, []float64{0.5 + 0.4/3, 0.1 + 0.4/3}},
		{"demands that claim everything are water-filled", []float64{1, 1, 0.1}, []float64{0.45, 0.45, 0.1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{})
			shares := make([]float64, len(tc.demands))
			now := t0
			// Renewing at half the TTL, as holders do: a lowered share counts until
			// the grant that carried it expires, so they settle within a few TTLs.
			for range 8 {
				for i, d := range tc.demands {
					tk, ok := tb.Reserve(req(fmt.Sprint("h", i), "k", d), now)
					require.True(t, ok)
					shares[i] = tk.Share
					sum, _ := tb.Shares("k", now)
					require.LessOrEqual(t, sum, 1.0)
				}
				now = now.Add(ttl / 2)
			}
			require.InDeltaSlice(t, tc.want, shares, 1e-5)
		})
	}
}

func TestRegisterMakesRoom(t *testing.T) {
	tb := New(Config{})
	a, _ := tb.Reserve(req("a", "k", 0), t0)
	require.InDelta(t, 1, a.Share, 1e-6)
	// b was refused RATE_LIMITED: registered, with no share.
	tb.Register(req("b", "k", 0), t0)
	sum, _ := tb.Shares("k", t0)
	require.InDelta(t, 1, sum, 1e-6)
	a, _ = tb.Reserve(req("a", "k", 0), t0.Add(time.Second))
	require.InDelta(t, 0.5, a.Share, 1e-6, "a's renewal makes room for b")
	b, _ := tb.Reserve(req("b", "k", 0), t0.Add(time.Second))
	require.Zero(t, b.Share, "once a's first grant expired")
	tb.Register(req("b", "k", 0), t0.Add(time.Second))
	b, _ = tb.Reserve(req("b", "k", 0), t0.Add(ttl))
	require.InDelta(t, 0.5, b.Share, 1e-6)

	// Registering a holder with a grant keeps its grant and share.
	tb.Register(req("b", "k", 0.2), t0.Add(ttl+time.Second))
	g, ok := tb.Lookup(b.ID, "b", t0.Add(ttl+time.Second))
	require.True(t, ok)
	require.InDelta(t, 0.5, g.Share, 1e-6)
	require.Equal(t, t0.Add(2*ttl), g.Expires)
}

func TestUnratedGrantsHaveNoShare(t *testing.T) {
	tb := New(Config{})
	r := req("a", "k", 0)
	r.Rated = false
	tk, ok := tb.Reserve(r, t0)
	require.True(t, ok)
	require.Zero(t, tk.Share)
	sum, _ := tb.Shares("k", t0)
	require.Zero(t, sum)
}

func TestCancel(t *testing.T) {
	tb := New(Config{})
	shared := func(h, key string) Request {
		r := req(h, key, 0)
		r.Account = "identity:acme"
		return r
	}
	a, _ := tb.Reserve(shared("h1", "k1"), t0)
	b, _ := tb.Reserve(shared("h2", "k1"), t0)
	c, _ := tb.Reserve(shared("h1", "k2"), t0)
	tb.Register(shared("h3", "k3"), t0) // a registration, not a grant
	other, _ := tb.Reserve(req("h1", "k9", 0), t0)

	require.Equal(t, 2, tb.CancelKey("k1"))
	for _, tk := range []Ticket{a, b} {
		_, ok := tb.Lookup(tk.ID, tk.e.holder, t0)
		require.False(t, ok)
		require.False(t, tb.Commit(tk, 5, 0), "a cancelled grant is not committed")
	}
	_, ok := tb.Lookup(c.ID, "h1", t0)
	require.True(t, ok)
	require.Equal(t, []string{"k2"}, tb.CancelAccount("identity:acme"), "k3 had no grant")
	_, ok = tb.Lookup(c.ID, "h1", t0)
	require.False(t, ok)
	_, ok = tb.Lookup(other.ID, "h1", t0)
	require.True(t, ok, "other accounts keep theirs")
	require.Equal(t, 2, tb.Len(), "a's share lingers until its expiry; those without a share went at once")
	require.Zero(t, tb.CancelKey("nope"))

	// A holder asking again after a cancel gets a new grant, with nothing outstanding.
	again, _ := tb.Reserve(shared("h1", "k1"), t0)
	require.NotEqual(t, a.ID, again.ID)
	g, ok := tb.Lookup(again.ID, "h1", t0)
	require.True(t, ok)
	require.Zero(t, g.Outstanding)
	require.Equal(t, 2, tb.Len(), "in the same entry")
	tb.Prune(t0.Add(ttl))
	require.Zero(t, tb.Len())
}

// TestLoweredShareLingers: a holder may spend the share of its last grant until that
// grant's expiry, unaware that the book lowered or ended it (a lost answer, a release
// or cancellation it learns of late), so the freed part goes to the others only then.
// Only the holder's own release frees it at once.
func TestLoweredShareLingers(t *testing.T) {
	t1 := t0.Add(time.Second)
	for _, tc := range []struct {
		name string
		// lower acts on holder a (share 1, grant until t0+ttl) at t1.
		lower func(tb *Table, a Ticket)
		// b's share at t1 and at t0+ttl, when a's first grant expired.
		before, after float64
	}{
		{"a renewal that gives less", func(tb *Table, a Ticket) {
			tk, _ := tb.Reserve(req("a", "k", 0), t1)
			require.InDelta(t, 0.5, tk.Share, 1e-6, "b is registered")
		}, 0, 0.5},
		{"a renewal that gives nothing", func(tb *Table, a Ticket) {
			r := req("a", "k", 0)
			r.Rated = false
			tk, _ := tb.Reserve(r, t1)
			require.Zero(t, tk.Share)
		}, 0, 0.5}, // a is still live, asking for its half
		{"a release by the engine", func(tb *Table, a Ticket) {
			require.True(t, tb.Release(a.ID, "a", t1))
		}, 0, 1},
		{"a cancellation of the key", func(tb *Table, a Ticket) {
			require.Equal(t, 1, tb.CancelKey("k"))
		}, 0, 1},
		{"a cancellation of the account", func(tb *Table, a Ticket) {
			require.Equal(t, []string{"k"}, tb.CancelAccount("k"))
		}, 0, 1},
		{"a release by the holder frees it at once", func(tb *Table, a Ticket) {
			require.True(t, tb.ReleaseByHolder(a.ID, "a", t1))
		}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{})
			a, _ := tb.Reserve(req("a", "k", 0), t0)
			require.InDelta(t, 1, a.Share, 1e-6)
			tb.Register(req("b", "k", 0), t0)
			tc.lower(tb, a)
			if tc.before == 0 {
				_, found := tb.Lookup(a.ID, "a", t1)
				sum, until := tb.Shares("k", t1)
				require.InDelta(t, 1, sum, 1e-6, "found %v", found)
				require.Equal(t, t0.Add(ttl), until, "when a's first grant expires")
			}
			b, _ := tb.Reserve(req("b", "k", 0), t1)
			require.InDelta(t, tc.before, b.Share, 1e-6)
			sum, _ := tb.Shares("k", t1)
			require.LessOrEqual(t, sum, 1.0)

			b, _ = tb.Reserve(req("b", "k", 0), t0.Add(ttl))
			require.InDelta(t, tc.after, b.Share, 1e-6)
			sum, _ = tb.Shares("k", t0.Add(ttl))
			require.LessOrEqual(t, sum, 1.0)
		})
	}
}

// TestLingeringShareOfAnEarlierGrant: a share lowered twice counts the largest one
// until its grant's expiry, and a renewal that gives more does not hide it.
func TestLingeringShareOfAnEarlierGrant(t *testing.T) {
	tb := New(Config{})
	a, _ := tb.Reserve(req("a", "k", 0), t0)
	require.InDelta(t, 1, a.Share, 1e-6)
	tb.Register(req("b", "k", 0), t0)
	a, _ = tb.Reserve(req("a", "k", 0), t0.Add(time.Second)) // 0.5, 1 lingers until t0+ttl
	require.InDelta(t, 0.5, a.Share, 1e-6)
	a, _ = tb.Reserve(req("a", "k", 0.1), t0.Add(2*time.Second))
	require.InDelta(t, 0.1, a.Share, 1e-6, "b claims the rest")
	a, _ = tb.Reserve(req("a", "k", 0), t0.Add(3*time.Second))
	require.InDelta(t, 0.5, a.Share, 1e-6)
	for _, tc := range []struct {
		at   time.Duration
		held float64
	}{
		{ttl - time.Millisecond, 1},
		{ttl, 0.5},                     // the grant of t0+1s, until t0+1s+ttl
		{3*time.Second + ttl, 0},       // all expired
		{3*time.Second + ttl - 1, 0.5}, // the last grant
	} {
		sum, _ := tb.Shares("k", t0.Add(tc.at))
		require.InDelta(t, tc.held, sum, 1e-6, "at t0+%v", tc.at)
	}
}

// TestSharesFallingAtEveryRenewal: a holder whose share goes down at every renewal
// (its demand falls) has each share counted until its own grant's expiry, not its
// largest one for as long as it keeps falling; renewing more often than the book
// remembers shares merges the oldest, which may count longer, never less.
func TestSharesFallingAtEveryRenewal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration
		exact bool
	}{
		{"renewing at half the TTL", ttl / 2, true},
		{"renewing ten times a TTL", ttl / 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{})
			var given []held
			now := t0
			for i := range 40 {
				tk, ok := tb.Reserve(req("a", "k", 1-float64(i)/40), now)
				require.True(t, ok)
				given = append(given, held{tk.Share, now.Add(ttl)})
				require.LessOrEqual(t, len(tb.byHolder[holderKey{"a", "k"}].past), maxPast)
				for _, at := range []time.Time{now, now.Add(tc.every / 2)} {
					want := 0.0
					for _, g := range given {
						if at.Before(g.until) {
							want = max(want, g.share)
						}
					}
					sum, _ := tb.Shares("k", at)
					if tc.exact {
						require.InDelta(t, want, sum, 1e-12, "step %d", i)
					} else {
						require.GreaterOrEqual(t, sum, want, "step %d", i)
					}
				}
				now = now.Add(tc.every)
			}
			sum, _ := tb.Shares("k", now.Add(ttl))
			require.Zero(t, sum)
			tb.Prune(now.Add(ttl))
			require.Zero(t, tb.Len())
		})
	}
}

// TestAccountChangeWaitsForTheOldShare: a key whose account changed (a rotation) gets
// its holder no grant on the new account while the holder may still spend its share
// of the old one.
func TestAccountChangeWaitsForTheOldShare(t *testing.T) {
	tb := New(Config{})
	a, _ := tb.Reserve(req("a", "k", 0), t0)
	require.InDelta(t, 1, a.Share, 1e-6)
	moved := req("a", "k", 0)
	moved.Account = "new"
	_, ok := tb.Reserve(moved, t0.Add(time.Second))
	require.False(t, ok)
	_, ok = tb.Lookup(a.ID, "a", t0.Add(time.Second))
	require.False(t, ok, "the old grant ended")
	sum, _ := tb.Shares("k", t0.Add(time.Second))
	require.InDelta(t, 1, sum, 1e-6, "its share counts on the old account")
	tk, ok := tb.Reserve(moved, t0.Add(ttl))
	require.True(t, ok)
	require.InDelta(t, 1, tk.Share, 1e-6)
	sum, _ = tb.Shares("k", t0.Add(ttl))
	require.Zero(t, sum)
}

func TestBounds(t *testing.T) {
	tb := New(Config{MaxEntries: 10, MaxPerAccount: 3})
	for i := range 3 {
		_, ok := tb.Reserve(req(fmt.Sprint(i), "k", 0), t0)
		require.True(t, ok)
	}
	_, ok := tb.Reserve(req("x", "k", 0), t0)
	require.False(t, ok, "the account is full")
	tb.Register(req("y", "k", 0), t0)
	require.Equal(t, 3, tb.Len(), "nor can one register")
	_, ok = tb.Reserve(req("0", "k", 0), t0)
	require.True(t, ok, "a holder already in is topped up")
	for i := range 7 {
		_, ok := tb.Reserve(req("h", fmt.Sprint("other", i), 0), t0)
		require.True(t, ok)
	}
	_, ok = tb.Reserve(req("h", "one-more", 0), t0)
	require.False(t, ok, "the book is full")
	// A cancelled grant whose share lingers still takes its place in the account.
	require.Equal(t, 3, tb.CancelKey("k"))
	require.Equal(t, 8, tb.Len(), "k's first holder kept its share: 1 left of 3")
	for i := range 2 {
		_, ok := tb.Reserve(req(fmt.Sprint("n", i), "k", 0), t0)
		require.True(t, ok)
	}
	_, ok = tb.Reserve(req("x", "k", 0), t0)
	require.False(t, ok, "the account is full, the lingering entry included")
	_, ok = tb.Reserve(req("h", "one-more", 0), t0)
	require.False(t, ok, "the book is full")
	// Once they expire, room again.
	_, ok = tb.Reserve(req("h", "one-more", 0), t0.Add(ttl))
	require.True(t, ok)
	require.Equal(t, 1, tb.Len(), "the sweep dropped the expired")
	tb.Prune(t0.Add(2 * ttl))
	require.Zero(t, tb.Len())
}

// TestSharesNeverExceedOne drives the book with random holders, demands, renewals,
// registrations, releases (by the engine and by the holders), cancellations and time
// from many goroutines, and keeps a model of what each holder may be spending: every
// share it was answered, until that grant's expiry (the answers that lowered it may
// be lost, and it learns of releases and cancellations late), unless it released the
// grant itself. After every step the shares holders may be spending sum to at most 1,
// and the book counts at least them (so that verify's own buckets, scaled by what the
// book leaves, keep the total within the key's rate).
func TestSharesNeverExceedOne(t *testing.T) {
	type held struct {
		share float64
		until time.Time
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			tb := New(Config{MaxPerAccount: 16})
			// One step at a time, so that the model follows the book, time only goes
			// forward and a check sees every step before it; the goroutines still race
			// the book against itself (Shares' lock-free path).
			var mu sync.Mutex
			now := t0
			spending := map[string][]held{}
			step := func(r *rand.Rand) {
				mu.Lock()
				defer mu.Unlock()
				now = now.Add(time.Duration(r.IntN(200)) * time.Millisecond)
				h := fmt.Sprint("h", r.IntN(12))
				rq := req(h, "k", r.Float64()*0.6)
				switch op := r.IntN(20); {
				case op < 12:
					tk, ok := tb.Reserve(rq, now)
					if ok && tk.Share > 0 && tb.Commit(tk, 1, 0) {
						spending[h] = append(spending[h], held{tk.Share, now.Add(ttl)})
					}
				case op < 15:
					tb.Register(rq, now)
				case op < 17:
					for _, gr := range tb.Grants("k", now) {
						if gr.Holder == h {
							tb.Release(gr.ID, h, now)
						}
					}
				case op < 19:
					for _, gr := range tb.Grants("k", now) {
						if gr.Holder == h {
							tb.ReleaseByHolder(gr.ID, h, now)
							delete(spending, h)
						}
					}
				default:
					if r.IntN(5) == 0 {
						tb.CancelKey("k")
					}
				}
				want := 0.0
				for h, hs := range spending {
					most := 0.0
					live := hs[:0]
					for _, x := range hs {
						if now.Before(x.until) {
							most = max(most, x.share)
							live = append(live, x)
						}
					}
					spending[h] = live
					want += most
				}
				require.LessOrEqual(t, want, 1.0, "what the holders may spend")
				sum, _ := tb.Shares("k", now)
				require.LessOrEqual(t, sum, 1.0)
				require.GreaterOrEqual(t, sum, want-1e-12, "the book counts all the holders may spend")
			}
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(seed, uint64(g)))
					for range 2000 {
						step(r)
					}
				})
			}
			wg.Wait()
		})
	}
}
