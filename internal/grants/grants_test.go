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
	for _, h := range holders {
		tk, _ := tb.Reserve(req(h, "k", 0), now)
		require.InDelta(t, 0.25, tk.Share, 1e-6, "after one renewal each, %s has a quarter", h)
		sum, _ := tb.Shares("k", now)
		require.LessOrEqual(t, sum, 1.0)
	}
	// A holder that asks for little leaves the rest to the others.
	tk, _ := tb.Reserve(req("a", "k", 0.1), now)
	require.InDelta(t, 0.1, tk.Share, 1e-6)
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
			for range 4 {
				for i, d := range tc.demands {
					tk, ok := tb.Reserve(req(fmt.Sprint("h", i), "k", d), now)
					require.True(t, ok)
					shares[i] = tk.Share
					sum, _ := tb.Shares("k", now)
					require.LessOrEqual(t, sum, 1.0)
				}
				now = now.Add(time.Second)
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
	require.InDelta(t, 0.5, b.Share, 1e-6)

	// Registering a holder with a grant keeps its grant and share.
	tb.Register(req("b", "k", 0.2), t0.Add(2*time.Second))
	g, ok := tb.Lookup(b.ID, "b", t0.Add(2*time.Second))
	require.True(t, ok)
	require.InDelta(t, 0.5, g.Share, 1e-6)
	require.Equal(t, t0.Add(time.Second+ttl), g.Expires)
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
	require.Equal(t, 1, tb.Len())
	require.Zero(t, tb.CancelKey("nope"))

	// A holder asking again after a cancel gets a new grant.
	again, _ := tb.Reserve(shared("h1", "k1"), t0)
	require.NotEqual(t, a.ID, again.ID)
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
	// Once they expire, room again.
	_, ok = tb.Reserve(req("h", "one-more", 0), t0.Add(ttl))
	require.True(t, ok)
	require.Equal(t, 1, tb.Len(), "the sweep dropped the expired")
	tb.Prune(t0.Add(2 * ttl))
	require.Zero(t, tb.Len())
}

// TestSharesNeverExceedOne drives the book with random holders, demands, renewals,
// registrations, releases, cancellations and time from many goroutines, and checks the
// sum of the live shares after every step.
func TestSharesNeverExceedOne(t *testing.T) {
	tb := New(Config{MaxPerAccount: 16})
	var clock sync.Mutex
	now := t0
	tick := func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 3000 {
				at := tick()
				h := fmt.Sprint("h", r.IntN(12))
				rq := req(h, "k", r.Float64()*0.6)
				switch op := r.IntN(10); {
				case op < 6:
					tk, ok := tb.Reserve(rq, at)
					if ok {
						tb.Commit(tk, 1, 0)
					}
				case op < 8:
					tb.Register(rq, at)
				case op < 9:
					for _, gr := range tb.Grants("k", at) {
						if gr.Holder == h {
							tb.Release(gr.ID, h, at)
						}
					}
				default:
					if r.IntN(20) == 0 {
						tb.CancelKey("k")
					}
				}
				sum, _ := tb.Shares("k", at)
				require.LessOrEqual(t, sum, 1.0)
			}
		}()
	}
	wg.Wait()
}
