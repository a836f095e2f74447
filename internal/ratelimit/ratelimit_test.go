package ratelimit

import (
	"fmt"
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
