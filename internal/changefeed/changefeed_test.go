package changefeed

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newFeed(t *testing.T, capacity int) *Feed {
	t.Helper()
	return New(capacity)
}

func TestReadInOrderAndResume(t *testing.T) {
	f := newFeed(t, 100)
	start := f.Cursor()
	for i := range 10 {
		f.Append("disabled", fmt.Sprintf("k%d", i))
	}
	r := f.Read(context.Background(), start, 4, 0)
	require.False(t, r.Reset)
	require.Equal(t, []Event{{"disabled", "k0"}, {"disabled", "k1"}, {"disabled", "k2"}, {"disabled", "k3"}}, r.Events)
	r = f.Read(context.Background(), r.Cursor, 100, 0)
	require.Len(t, r.Events, 6)
	require.Equal(t, "k4", r.Events[0].KeyID)
	require.Equal(t, "k9", r.Events[5].KeyID)
	require.Equal(t, f.Cursor(), r.Cursor)

	// Nothing new and no wait: an empty answer with the same cursor.
	again := f.Read(context.Background(), r.Cursor, 100, 0)
	require.False(t, again.Reset)
	require.Empty(t, again.Events)
	require.Equal(t, r.Cursor, again.Cursor)

	// The same cursor reads the same events again (a reader that lost an answer).
	require.Equal(t, r.Events, f.Read(context.Background(), strings.Replace(r.Cursor, ".10", ".4", 1), 100, 0).Events)
}

func TestReadResets(t *testing.T) {
	f := newFeed(t, 4)
	other := newFeed(t, 4)
	require.NotEqual(t, f.Epoch(), other.Epoch(), "every feed has its own epoch")
	start := f.Cursor()
	for i := range 6 {
		f.Append("revoked", fmt.Sprintf("k%d", i))
	}
	for name, cursor := range map[string]string{
		"empty":        "",
		"other epoch":  other.Cursor(),
		"too old":      start, // events 0 and 1 were overwritten
		"ahead":        f.Epoch() + ".99",
		"garbage":      "x",
		"garbage seq":  f.Epoch() + ".-1",
		"no separator": f.Epoch(),
		"empty seq":    f.Epoch() + ".",
	} {
		t.Run(name, func(t *testing.T) {
			r := f.Read(context.Background(), cursor, 10, time.Hour)
			require.True(t, r.Reset)
			require.Empty(t, r.Events)
			require.Equal(t, f.Cursor(), r.Cursor)
		})
	}
	// The oldest event still held is readable.
	r := f.Read(context.Background(), f.Epoch()+".2", 10, 0)
	require.False(t, r.Reset)
	require.Len(t, r.Events, 4)
	require.Equal(t, "k2", r.Events[0].KeyID)
}

// waitForWaiters spins (yielding) until n reads are waiting: no sleeps to guess at.
func waitForWaiters(t *testing.T, f *Feed, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.Waiters() != n {
		require.True(t, time.Now().Before(deadline), "readers never waited")
		time.Sleep(time.Millisecond)
	}
}

func TestLongPollReturnsWhenAnEventArrives(t *testing.T) {
	f := newFeed(t, 16)
	cursor := f.Cursor()
	got := make(chan Result, 3)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got <- f.Read(context.Background(), cursor, 10, time.Hour)
		}()
	}
	waitForWaiters(t, f, 3)
	start := time.Now()
	f.Append("rotated", "k1")
	wg.Wait()
	require.Less(t, time.Since(start), 5*time.Second)
	for range 3 {
		r := <-got
		require.Equal(t, []Event{{"rotated", "k1"}}, r.Events)
	}
	require.Equal(t, 0, f.Waiters())
}

func TestLongPollEndsOnContextAndTimeout(t *testing.T) {
	f := newFeed(t, 16)
	cursor := f.Cursor()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Result, 1)
	go func() { got <- f.Read(ctx, cursor, 10, time.Hour) }()
	waitForWaiters(t, f, 1)
	cancel()
	r := <-got
	require.False(t, r.Reset)
	require.Empty(t, r.Events)
	require.Equal(t, cursor, r.Cursor)

	start := time.Now()
	r = f.Read(context.Background(), cursor, 10, 20*time.Millisecond)
	require.Empty(t, r.Events)
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
}

// TestConcurrentAppendsAreAllSeenInOrder: many writers, one reader following the
// cursor: every event is read exactly once, and each writer's events in its order.
func TestConcurrentAppendsAreAllSeenInOrder(t *testing.T) {
	const writers, each = 8, 500
	f := newFeed(t, writers*each)
	cursor := f.Cursor()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				f.Append(fmt.Sprintf("w%d", w), fmt.Sprintf("%d", i))
			}
		}()
	}
	next := make(map[string]int)
	seen := 0
	for seen < writers*each {
		r := f.Read(context.Background(), cursor, 1000, time.Second)
		require.False(t, r.Reset)
		for _, e := range r.Events {
			require.Equal(t, fmt.Sprintf("%d", next[e.Kind]), e.KeyID, "writer %s out of order", e.Kind)
			next[e.Kind]++
		}
		seen += len(r.Events)
		cursor = r.Cursor
	}
	wg.Wait()
	require.Equal(t, writers*each, seen)
}
