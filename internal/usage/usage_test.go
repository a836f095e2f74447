package usage

import (
	"math"
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
				ok, remaining = tr.Use("k", cost, tc.max, tc.stored, time.Time{}, now)
				require.Equal(t, tc.wantAllowed[i], ok, "use %d", i)
			}
			require.Equal(t, tc.wantRemaining, remaining)
			require.Equal(t, tc.wantRemaining, tr.Remaining("k", tc.max, tc.stored))
		})
	}
}

func TestDirtyFlushedAndDrop(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(100, 0)
	tr.Use("a", 2, 0, 10, time.Time{}, now)
	dirty := tr.Dirty()
	require.Equal(t, []Pending{{Key: "a", Count: 12, LastUsed: now}}, dirty)

	tr.Use("a", 1, 0, 0, time.Time{}, now.Add(time.Second)) // used while flushing
	tr.Flushed(dirty[0])
	require.Len(t, tr.Dirty(), 1, "a use after the snapshot keeps it dirty")

	tr.Flushed(Pending{Key: "a", Count: 13})
	require.Empty(t, tr.Dirty())
	require.Equal(t, 0, tr.Len(), "idle counters are dropped after a clean flush round")

	// A dropped counter restarts from what storage holds.
	ok, remaining := tr.Use("a", 1, 20, 13, time.Time{}, now)
	require.True(t, ok)
	require.Equal(t, int64(6), remaining)

	// Counters of keys with a quota stay, even when idle.
	for _, p := range tr.Dirty() {
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
				if ok, _ := tr.Use("k", 1, 1000, 0, time.Time{}, time.Now()); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	require.Equal(t, int64(1000), allowed.Load())
}
