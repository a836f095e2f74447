package anomaly

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// traffic returns n events over keys, in time order, with anomalies in them.
func traffic(keys, n int, seed uint64) []Event {
	r := rand.New(rand.NewPCG(seed, 7))
	at := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	out := make([]Event, 0, n)
	codes := []string{verifyapi.CodeValid, verifyapi.CodeValid, verifyapi.CodeValid, verifyapi.CodeValid,
		verifyapi.CodeNotFound, verifyapi.CodeInsufficientScope}
	for i := range n {
		at = at.Add(time.Duration(r.IntN(20)) * time.Second)
		k := r.IntN(keys)
		ip := netip.AddrFrom4([4]byte{10, byte(k), byte(r.IntN(2)), 1})
		if i > n*3/4 && r.IntN(10) == 0 {
			ip = netip.AddrFrom4([4]byte{byte(20 + r.IntN(200)), byte(r.IntN(256)), 1, 1})
		}
		out = append(out, Event{Key: fmt.Sprintf("key-%d", k), Role: "r", Code: codes[r.IntN(len(codes))],
			Client: ip, Time: at})
	}
	return out
}

func TestEvictionLosesNothing(t *testing.T) {
	cfg := Config{Learning: 2 * time.Hour, RefusalBurst: 5}
	evs := traffic(5, 60000, 1)
	whole := NewDetector(100)
	var want []Anomaly
	for _, ev := range evs {
		want = append(want, whole.Observe(ev, cfg, nil)...)
	}
	require.NotEmpty(t, want)

	// Two of five keys held: most events reload, from the evicted encodings or from
	// the storage a flush wrote; the flush runs when evicted states pile up.
	small := NewDetector(2)
	store := map[string][]byte{}
	flush := func() {
		for _, k := range small.Dirty() {
			b, ok := small.Snapshot(k)
			require.True(t, ok)
			store[k] = b
		}
	}
	var got []Anomaly
	for i, ev := range evs {
		got = append(got, small.Observe(ev, cfg, func() []byte { return store[ev.Key] })...)
		if i%97 == 0 || small.Stats().Evicted >= 2 {
			flush()
		}
	}
	require.Equal(t, want, got)
	require.Zero(t, small.Stats().Dropped)
	require.Zero(t, small.Stats().DecodeErrors)

	// A restart: a new detector that reads the flushed states decides as the old one.
	flush()
	restarted := NewDetector(100)
	more := traffic(5, 20000, 2)
	shift := evs[len(evs)-1].Time.Sub(more[0].Time) + time.Minute
	for i := range more {
		more[i].Time = more[i].Time.Add(shift)
	}
	var a, b []Anomaly
	for _, ev := range more {
		a = append(a, whole.Observe(ev, cfg, nil)...)
		b = append(b, restarted.Observe(ev, cfg, func() []byte { return store[ev.Key] })...)
	}
	require.NotEmpty(t, a)
	require.Equal(t, a, b)
}

// TestStateBounded feeds one key a million distinct networks (IPv4 and IPv6, many wider
// networks) with every code: its state stays the same fixed-size struct and its
// encoding stays under a fixed bound.
func TestStateBounded(t *testing.T) {
	const bound = 2600 // bytes; the largest encoding possible is about 2.3 KB
	require.Less(t, int(unsafe.Sizeof(state{})), 3000, "the state is fixed-size arrays, no slices or maps")
	d := NewDetector(10)
	codes := verifyapi.Codes()
	at := monday
	for i := range 1_000_000 {
		var a netip.Addr
		if i%3 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, byte(i >> 16), byte(i >> 8), byte(i), byte(i * 7), 15: 1})
		} else {
			a = netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1})
		}
		at = at.Add(time.Second)
		d.Observe(Event{Key: "k", Code: codes[i%len(codes)], Client: a, Time: at}, Config{}, nil)
		if i%100_000 == 0 {
			b, _ := d.Snapshot("k")
			require.Less(t, len(b), bound)
		}
	}
	b, ok := d.Snapshot("k")
	require.True(t, ok)
	require.Less(t, len(b), bound)
	t.Logf("state %d bytes in memory, %d encoded", unsafe.Sizeof(state{}), len(b))
}

// TestConcurrent runs Observe from many goroutines on shared and own keys with a small
// LRU, with flushes and Forget beside them (run with -race).
func TestConcurrent(t *testing.T) {
	d := NewDetector(8)
	var store sync.Map
	load := func(k string) func() []byte {
		return func() []byte {
			if b, ok := store.Load(k); ok {
				return b.([]byte)
			}
			return nil
		}
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, ev := range traffic(12, 5000, uint64(g)) {
				if i%3 == 0 {
					ev.Key = "shared"
				}
				d.Observe(ev, Config{Learning: time.Hour}, load(ev.Key))
				if i%500 == 0 && g == 0 {
					for _, k := range d.Dirty() {
						if b, ok := d.Snapshot(k); ok {
							store.Store(k, b)
						}
					}
				}
				if i%1000 == 0 && g == 1 {
					d.Forget("key-3")
				}
			}
		}()
	}
	wg.Wait()
	st := d.Stats()
	require.LessOrEqual(t, st.Keys, 8)
	require.Zero(t, st.DecodeErrors)
}

func TestForget(t *testing.T) {
	d := NewDetector(1)
	ev := Event{Key: "a", Code: verifyapi.CodeValid, Client: ip("192.0.2.1"), Time: monday}
	d.Observe(ev, Config{}, nil)
	ev.Key = "b"
	d.Observe(ev, Config{}, nil) // evicts a, dirty: kept for Snapshot
	require.ElementsMatch(t, []string{"a", "b"}, d.Dirty())
	d.Forget("a")
	d.Forget("b")
	require.Empty(t, d.Dirty())
	_, ok := d.Snapshot("a")
	require.False(t, ok)
	require.Equal(t, Stats{}, d.Stats())
}

// TestCountedEventIsManyEvents: one event with Count n leaves the state n events at
// the same moment leave, and fires what they fire.
func TestCountedEventIsManyEvents(t *testing.T) {
	at := monday.Add(3 * time.Hour)
	for _, code := range []string{verifyapi.CodeValid, verifyapi.CodeRateLimited, verifyapi.CodeInsufficientScope, verifyapi.CodeNotFound} {
		t.Run(code, func(t *testing.T) {
			var one, batch state
			cfg := Config{}.WithDefaults()
			ev := Event{Key: "k", Code: code, Client: ip("192.0.2.7"), Time: at}
			var fired []Kind
			for range 300 {
				for _, a := range one.observe(ev, classify(code), cfg, cfg.offMask()) {
					fired = append(fired, a.Kind)
				}
			}
			ev.Count = 300
			var firedBatch []Kind
			for _, a := range batch.observe(ev, classify(code), cfg, cfg.offMask()) {
				firedBatch = append(firedBatch, a.Kind)
			}
			require.Equal(t, one, batch)
			require.Equal(t, slices.Compact(fired), firedBatch)
		})
	}
}

func TestHugeCountsSaturate(t *testing.T) {
	var s state
	cfg := Config{}.WithDefaults()
	ev := Event{Key: "k", Code: verifyapi.CodeRateLimited, Time: monday, Count: 1 << 62}
	for range 10 {
		s.observe(ev, classify(ev.Code), cfg, cfg.offMask())
	}
	require.LessOrEqual(t, s.sum(cRate), uint32(math.MaxUint32-1), "no overflow")
	require.Greater(t, s.sum(cRate), uint32(MaxCount))
}
