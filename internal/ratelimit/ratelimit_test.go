package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBurstThenRefill(t *testing.T) {
	l := New(10)
	start := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		ok, _ := l.Allow("k", 1, 3, start)
		require.True(t, ok, "request %d within burst", i)
	}
	ok, wait := l.Allow("k", 1, 3, start)
	require.False(t, ok)
	require.Equal(t, time.Second, wait)

	ok, _ = l.Allow("k", 1, 3, start.Add(500*time.Millisecond))
	require.False(t, ok, "half a token is not enough")
	ok, _ = l.Allow("k", 1, 3, start.Add(time.Second))
	require.True(t, ok)
	// Refill never exceeds the burst.
	for i := 0; i < 3; i++ {
		ok, _ = l.Allow("k", 1, 3, start.Add(time.Hour))
		require.True(t, ok)
	}
	ok, _ = l.Allow("k", 1, 3, start.Add(time.Hour))
	require.False(t, ok)
}

func TestDefaults(t *testing.T) {
	cases := []struct {
		rate  float64
		burst int
		want  float64
	}{
		{0.5, 0, 1}, {2.5, 0, 3}, {10, 0, 10}, {10, 4, 4},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, Burst(tc.rate, tc.burst), "%v/%d", tc.rate, tc.burst)
	}
	ok, wait := New(1).Allow("k", 0, 0, time.Now())
	require.True(t, ok, "rate 0 is off")
	require.Zero(t, wait)
}

func TestTinyRateWaitIsClamped(t *testing.T) {
	l := New(1)
	now := time.Unix(0, 0)
	ok, _ := l.Allow("k", 1e-300, 1, now)
	require.True(t, ok)
	ok, wait := l.Allow("k", 1e-300, 1, now)
	require.False(t, ok)
	require.Equal(t, maxWait, wait)
}

func TestKeysAreIndependentAndBounded(t *testing.T) {
	l := New(2)
	now := time.Unix(0, 0)
	ok, _ := l.Allow("a", 1, 1, now)
	require.True(t, ok)
	ok, _ = l.Allow("a", 1, 1, now)
	require.False(t, ok)
	ok, _ = l.Allow("b", 1, 1, now)
	require.True(t, ok, "another key has its own bucket")
	l.Allow("c", 1, 1, now)
	require.Equal(t, 2, l.Len())
	l.Forget("c")
	require.Equal(t, 1, l.Len())
}

func TestLimitChangeClamps(t *testing.T) {
	l := New(2)
	now := time.Unix(0, 0)
	ok, _ := l.Allow("a", 100, 100, now)
	require.True(t, ok)
	// The role's limit was lowered: at most the new burst is left.
	allowed := 0
	for i := 0; i < 10; i++ {
		if ok, _ := l.Allow("a", 1, 2, now); ok {
			allowed++
		}
	}
	require.Equal(t, 2, allowed)
}

func TestConcurrentNoOverAdmission(t *testing.T) {
	l := New(100)
	now := time.Unix(0, 0) // a frozen clock: nothing refills
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if ok, _ := l.Allow("k", 5, 50, now); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(50), allowed.Load())
}

func BenchmarkAllow(b *testing.B) {
	l := New(1_000_000)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("key", i)
	}
	now := time.Now()
	i := 0
	for b.Loop() {
		l.Allow(keys[i%len(keys)], 1e6, 0, now)
		i++
	}
}

// TestAllowAllNoPartialCharge: a request refused by one limit takes no token from the
// others, and the refusal names the limit (by index) with its own wait.
func TestAllowAllNoPartialCharge(t *testing.T) {
	start := time.Unix(1000, 0)
	limits := []Limit{
		{Name: "burst", Rate: 10, Burst: 10},         // 10/1s
		{Name: "daily", Rate: 3.0 / 86400, Burst: 3}, // 3/24h
	}
	cases := []struct {
		name        string
		at          time.Duration
		wantOK      bool
		wantRefused int
	}{
		{"first", 0, true, -1},
		{"second", 0, true, -1},
		{"third", 0, true, -1},
		{"daily spent", 0, false, 1},
		{"still spent a second later", time.Second, false, 1},
	}
	l := New(100)
	for _, tc := range cases {
		ok, refused, wait := l.AllowAll("k", limits, start.Add(tc.at))
		require.Equal(t, tc.wantOK, ok, tc.name)
		require.Equal(t, tc.wantRefused, refused, tc.name)
		if !ok {
			require.Greater(t, wait, 7*time.Hour, "%s: the daily limit's wait (a token every 8h)", tc.name)
		}
	}
	// The refusals took nothing from burst: 7 tokens are left there, and after a day
	// (daily refilled) 3 more requests pass.
	day := start.Add(24 * time.Hour)
	for i := 0; i < 3; i++ {
		ok, _, _ := l.AllowAll("k", limits, day)
		require.True(t, ok, "request %d after a day", i)
	}

	// Burst refuses first when both are empty: the longest wait is reported.
	l2 := New(100)
	for i := 0; i < 3; i++ {
		ok, _, _ := l2.AllowAll("k", []Limit{{Name: "a", Rate: 1, Burst: 1}, {Name: "b", Rate: 0.5, Burst: 3}}, start)
		require.Equal(t, i == 0, ok)
	}
	ok, refused, wait := l2.AllowAll("k", []Limit{{Name: "a", Rate: 1, Burst: 1}, {Name: "b", Rate: 0.5, Burst: 3}}, start)
	require.False(t, ok)
	require.Equal(t, 0, refused, "only a is empty")
	require.Equal(t, time.Second, wait)
}

func TestAllowAllBoundCountsEveryBucket(t *testing.T) {
	l := New(5)
	now := time.Unix(0, 0)
	two := []Limit{{Name: "a", Rate: 1, Burst: 1}, {Name: "b", Rate: 1, Burst: 1}}
	l.AllowAll("k1", two, now)
	l.AllowAll("k2", two, now)
	require.Equal(t, 4, l.Buckets())
	l.AllowAll("k3", two, now) // 6 > 5: k1 goes
	require.Equal(t, 4, l.Buckets())
	require.Equal(t, 2, l.Len())
	ok, _, _ := l.AllowAll("k1", two, now)
	require.True(t, ok, "a dropped key starts full")
	l.Forget("k1")
	l.Forget("k3")
	require.Equal(t, 0, l.Buckets())
}

func TestAllowAllLimitsChangeByName(t *testing.T) {
	l := New(10)
	now := time.Unix(0, 0)
	ok, _, _ := l.AllowAll("k", []Limit{{Name: "a", Rate: 0.001, Burst: 1}}, now)
	require.True(t, ok)
	// Another key of the same identity carries a and b: a keeps its (empty) bucket.
	ok, refused, _ := l.AllowAll("k", []Limit{{Name: "b", Rate: 0.001, Burst: 5}, {Name: "a", Rate: 0.001, Burst: 1}}, now)
	require.False(t, ok)
	require.Equal(t, 1, refused)
	require.Equal(t, 2, l.Buckets())
	ok, _, _ = l.AllowAll("k", nil, now)
	require.True(t, ok, "no limits: nothing to check")
}

func TestAllowAllConcurrentNoOverAdmission(t *testing.T) {
	l := New(100)
	now := time.Unix(0, 0)
	limits := []Limit{{Name: "burst", Rate: 5, Burst: 50}, {Name: "hour", Rate: 40.0 / 3600, Burst: 40}}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if ok, _, _ := l.AllowAll("k", limits, now); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(40), allowed.Load())
}

func BenchmarkAllowAllTwoLimits(b *testing.B) {
	l := New(1_000_000)
	limits := []Limit{{Name: "burst", Rate: 1e6, Burst: 1e6}, {Name: "daily", Rate: 1e9 / 86400, Burst: 1e9}}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.AllowAll("key", limits, now)
	}
}

func TestAllowAllScaled(t *testing.T) {
	now := time.Unix(1000, 0)
	limits := []Limit{{Name: "default", Rate: 10, Burst: 20}}
	l := New(100)
	admitted := 0
	for range 100 {
		if ok, _, _ := l.AllowAllScaled("k", limits, 0.25, now); ok {
			admitted++
		}
	}
	require.Equal(t, 5, admitted, "a quarter of the burst")
	now = now.Add(2 * time.Second)
	admitted = 0
	for range 100 {
		if ok, _, _ := l.AllowAllScaled("k", limits, 0.25, now); ok {
			admitted++
		}
	}
	require.Equal(t, 5, admitted, "refilled at a quarter of the rate: 2s × 2.5/s, up to the burst of 5")

	// The scale moves: the bucket follows, its tokens clamped to the new burst of 2.
	now = now.Add(time.Hour)
	admitted = 0
	for range 10 {
		if ok, _, _ := l.AllowAllScaled("k", limits, 0.1, now); ok {
			admitted++
		}
	}
	require.Equal(t, 2, admitted)

	// Scale 0 refuses (a rate of 0 would mean unlimited), with a wait; NaN too.
	for _, s := range []float64{0, -1, math.NaN()} {
		ok, refused, wait := l.AllowAllScaled("fresh", limits, s, now)
		require.False(t, ok)
		require.Equal(t, 0, refused)
		require.Equal(t, 100*time.Millisecond, wait)
	}
	require.Equal(t, 1, l.Len(), "a refusal at scale 0 keeps no bucket")

	// A burst scaled below 1 is 1: the bucket can admit.
	ok, _, _ := l.AllowAllScaled("small", []Limit{{Name: "d", Rate: 1, Burst: 1}}, 0.01, now)
	require.True(t, ok)
	// Scale 1 is AllowAll exactly; more than 1 is 1.
	a, b := New(10), New(10)
	for i := range 50 {
		at := now.Add(time.Duration(i) * 30 * time.Millisecond)
		ok1, _, w1 := a.AllowAll("k", limits, at)
		ok2, _, w2 := b.AllowAllScaled("k", limits, 3, at)
		require.Equal(t, ok1, ok2)
		require.Equal(t, w1, w2)
	}
}

// TestScaledTokensConserved: whatever the sequence of scales and handovers, the tokens
// the buckets admit plus those handed over never exceed what one unscaled bucket would
// have had: the burst plus the rate times the time elapsed.
func TestScaledTokensConserved(t *testing.T) {
	limits := []Limit{{Name: "default", Rate: 100.0 / 60, Burst: 100}}
	type step struct {
		at       time.Duration
		handover bool    // else AllowAllScaled until refused
		scale    float64 // the scale after the handover, or of the direct requests
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"lone holder: grant, release, grant again", []step{
			{0, true, 0}, {5 * time.Second, false, 1}, {6 * time.Second, true, 0},
			{11 * time.Second, false, 1}, {30 * time.Second, true, 0}, {31 * time.Second, false, 1},
			{60 * time.Second, false, 1},
		}},
		{"direct requests between two holders' grants", []step{
			{0, false, 1}, {time.Second, true, 0.5}, {2 * time.Second, false, 0.5},
			{3 * time.Second, true, 0}, {20 * time.Second, false, 0}, {21 * time.Second, false, 1},
			{40 * time.Second, true, 0.25}, {41 * time.Second, false, 0.25}, {60 * time.Second, false, 0.25},
		}},
		{"scale grows without a handover", []step{
			{0, true, 0.1}, {10 * time.Second, false, 0.1}, {11 * time.Second, false, 1},
			{30 * time.Second, false, 1}, {31 * time.Second, true, 0.5}, {60 * time.Second, false, 0.5},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := New(10)
			start := time.Unix(1000, 0)
			total := 0.0
			for _, s := range tc.steps {
				now := start.Add(s.at)
				if s.handover {
					given := l.Handover("k", limits, s.scale, now)
					require.Len(t, given, 1)
					require.GreaterOrEqual(t, given[0], 0.0)
					total += given[0]
				} else {
					for range 1000 {
						ok, _, _ := l.AllowAllScaled("k", limits, s.scale, now)
						if !ok {
							break
						}
						total++
					}
				}
				bound := limits[0].Burst + limits[0].Rate*s.at.Seconds()
				require.LessOrEqual(t, total, bound+1e-9, "at %v", s.at)
			}
		})
	}
}

// TestZeroScaleAccruesNothing: while the holders own the whole rate (scale 0) the
// buckets neither admit nor refill; the time before it accrued at the old scale, and
// the time after it at the new one.
func TestZeroScaleAccruesNothing(t *testing.T) {
	limits := []Limit{{Name: "default", Rate: 1, Burst: 10}}
	cases := []struct {
		name string
		// zeroBy makes the scale 0 at start: a handover to a lone holder, or a direct
		// request refused at scale 0 (what verify does while the shares sum to 1).
		zeroBy func(l *Limiter, now time.Time)
	}{
		{"handover", func(l *Limiter, now time.Time) {
			given := l.Handover("k", limits, 0, now)
			require.InDelta(t, 2, given[0], 1e-9, "4s at scale 0.5: 2 tokens, all handed over")
		}},
		{"refused at scale 0", func(l *Limiter, now time.Time) {
			ok, refused, wait := l.AllowAllScaled("k", limits, 0, now)
			require.False(t, ok, "a zero scale refuses, never unlimited")
			require.Equal(t, 0, refused)
			require.Equal(t, time.Second, wait)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := New(10)
			start := time.Unix(1000, 0)
			for range 5 { // the scale-0.5 bucket of 5, emptied
				ok, _, _ := l.AllowAllScaled("k", limits, 0.5, start)
				require.True(t, ok)
			}
			zero := start.Add(4 * time.Second)
			tc.zeroBy(l, zero)
			for i := range 30 {
				ok, _, _ := l.AllowAllScaled("k", limits, 0, zero.Add(time.Duration(i)*time.Second))
				require.False(t, ok, "second %d at scale 0", i)
			}
			// Back to scale 1 at zero+30s: the 30s at scale 0 refilled nothing; the
			// bucket starts with the one token it gets back from a zero scale (so the
			// first request is not refused for a wait rounded up on the wire), and the
			// next second refills one token at the full rate.
			back := zero.Add(30 * time.Second)
			ok, _, _ := l.AllowAllScaled("k", limits, 1, back)
			require.True(t, ok, "the one starting token")
			ok, _, wait := l.AllowAllScaled("k", limits, 1, back)
			require.False(t, ok, "nothing accrued at scale 0")
			require.Equal(t, time.Second, wait)
			ok, _, _ = l.AllowAllScaled("k", limits, 1, back.Add(time.Second))
			require.True(t, ok)
			ok, _, _ = l.AllowAllScaled("k", limits, 1, back.Add(time.Second))
			require.False(t, ok)
		})
	}
}

// TestHandover: a fresh entry hands over the whole burst times the share; an existing
// one what no longer fits its new capacity; a larger scale takes nothing.
func TestHandover(t *testing.T) {
	two := []Limit{{Name: "minute", Rate: 100.0 / 60, Burst: 100}, {Name: "second", Rate: 10, Burst: 10}}
	now := time.Unix(1000, 0)
	cases := []struct {
		name    string
		prepare func(l *Limiter)
		scale   float64
		want    []float64
		// direct is what the buckets admit right after, at scale.
		direct int
	}{
		{"fresh, lone holder", func(*Limiter) {}, 0, []float64{100, 10}, 0},
		{"fresh, a quarter share", func(*Limiter) {}, 0.75, []float64{25, 2.5}, 7},
		{"after 3 direct requests", func(l *Limiter) {
			for range 3 {
				ok, _, _ := l.AllowAll("k", two, now)
				require.True(t, ok)
			}
		}, 0.5, []float64{47, 2}, 5},
		{"scale grows: nothing given", func(l *Limiter) {
			l.Handover("k", two, 0.5, now)
		}, 0.8, []float64{0, 0}, 5},
		{"NaN is 0", func(*Limiter) {}, math.NaN(), []float64{100, 10}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := New(10)
			tc.prepare(l)
			given := l.Handover("k", two, tc.scale, now)
			require.Len(t, given, len(tc.want))
			for i := range tc.want {
				require.InDelta(t, tc.want[i], given[i], 1e-9, "limit %d", i)
			}
			admitted := 0
			for range 200 {
				if ok, _, _ := l.AllowAllScaled("k", two, tc.scale, now); ok {
					admitted++
				}
			}
			require.Equal(t, tc.direct, admitted)
		})
	}
	require.Equal(t, []float64{0}, New(1).Handover("k", []Limit{{Name: "off"}}, 0.5, now), "an inactive limit gives nothing")
}
