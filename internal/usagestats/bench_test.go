package usagestats

import (
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// BenchmarkRecord is the verify hot path: a repeat of an existing key (with its role and
// the mount), with a client address, without tags.
func BenchmarkRecord(b *testing.B) {
	r := newRecorder(b, Config{})
	ip := netip.MustParseAddr("192.0.2.10")
	now := at(1, 0)
	require.NoError(b, r.Record("key-1", "web", verifyapi.CodeValid, nil, ip, now))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Record("key-1", "web", verifyapi.CodeValid, nil, ip, now)
	}
}

// BenchmarkRecordTags adds two tags already counted today.
func BenchmarkRecordTags(b *testing.B) {
	r := newRecorder(b, Config{})
	ip := netip.MustParseAddr("2001:db8::10")
	now := at(1, 0)
	tags := []Tag{{"route", "/orders/{id}"}, {"region", "eu"}}
	require.NoError(b, r.Record("key-1", "web", verifyapi.CodeValid, tags, ip, now))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Record("key-1", "web", verifyapi.CodeValid, tags, ip, now)
	}
}

// BenchmarkRecordParallel spreads verifies over 1000 keys of one role from every core.
func BenchmarkRecordParallel(b *testing.B) {
	r := newRecorder(b, Config{})
	ip := netip.MustParseAddr("192.0.2.10")
	now := at(1, 0)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
		require.NoError(b, r.Record(keys[i], "web", verifyapi.CodeValid, nil, ip, now))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_ = r.Record(keys[i%len(keys)], "web", verifyapi.CodeValid, nil, ip, now)
			i++
		}
	})
}

// BenchmarkFlush is the periodic function's in-memory part for 10k active keys:
// Dirty, then Flushed for each delta (storage left out).
func BenchmarkFlush(b *testing.B) {
	r := newRecorder(b, Config{})
	ip := netip.MustParseAddr("192.0.2.10")
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, k := range keys {
			_ = r.Record(k, "web", verifyapi.CodeValid, nil, ip, at(1, 0))
		}
		b.StartTimer()
		for _, d := range r.Dirty() {
			r.Flushed(d)
		}
	}
}

// BenchmarkTopKeys ranks 10k keys with a week of traffic.
func BenchmarkTopKeys(b *testing.B) {
	records := make(map[string]*Record, 10000)
	for i := range 10000 {
		rec := weekRecord(i)
		records[fmt.Sprintf("key-%d", i)] = &rec
	}
	b.ReportAllocs()
	for b.Loop() {
		top := TopKeys(maps.All(records), Day, at(0, 0), at(7*24, 0), Refusals, 10)
		if len(top) != 10 {
			b.Fatal(len(top))
		}
	}
}

// weekRecord is a key's stored record after a week of traffic in every hour: 48 hourly
// and 7 daily buckets, two tags a day, two networks.
func weekRecord(seed int) Record {
	cfg := Config{}.WithDefaults()
	var rec Record
	ips := []netip.Addr{netip.AddrFrom4([4]byte{10, byte(seed), 0, 1}), netip.MustParseAddr("2001:db8::1")}
	tags := []Tag{{"route", "/orders"}, {"region", "eu"}}
	for h := range 7 * 24 {
		for v := range 1 + (seed+h)%5 {
			code := codeValid
			if v == 3 {
				code = 6
			}
			now := at(h, v).Unix()
			rec.count(code, 1, now, &cfg)
			rec.countTags(tags, code, 1, now, &cfg)
			p, _ := NetworkOf(ips[v%2])
			addNetwork(&rec.Networks, p, code != codeValid, 1, now, cfg.MaxNetworks)
		}
	}
	return rec
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory reports bytes per key: "active-B/key" for a Recorder holding the keys
// used since the last flush (a few verifies in one hour), "week-unflushed-B/key" for a
// Recorder that never flushed a week of hourly traffic (its bound), "stored-B/key" for
// the encoded Record of a key with a week of traffic, and "decoded-B/key" for that
// Record in memory. Figures are quoted in the package doc.
func BenchmarkMemory(b *testing.B) {
	const n = 10000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%016d", i)
	}
	var active, week, stored, decoded float64
	for b.Loop() {
		before := heapAlloc()
		r := newRecorder(b, Config{})
		for i, k := range keys {
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
			for m := range 3 {
				_ = r.Record(k, "web", verifyapi.CodeValid, nil, ip, at(1, m))
			}
		}
		active = float64(heapAlloc()-before) / n
		runtime.KeepAlive(r)

		before = heapAlloc()
		r = newRecorder(b, Config{})
		for h := range 7 * 24 {
			for i, k := range keys[:n/10] {
				ip := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
				_ = r.Record(k, "web", verifyapi.CodeValid, nil, ip, at(h, 0))
			}
		}
		week = float64(heapAlloc()-before) / (n / 10)
		runtime.KeepAlive(r)

		encs := make([][]byte, n/10)
		var size int
		for i := range encs {
			w := weekRecord(i)
			enc, err := w.MarshalBinary()
			require.NoError(b, err)
			size += len(enc)
			encs[i] = enc
		}
		before = heapAlloc()
		recs := make([]Record, len(encs))
		for i, enc := range encs {
			require.NoError(b, recs[i].UnmarshalBinary(enc))
		}
		decoded = float64(heapAlloc()-before) / float64(len(recs))
		runtime.KeepAlive(recs)
		stored = float64(size) / float64(len(encs))
	}
	b.ReportMetric(active, "active-B/key")
	b.ReportMetric(week, "week-unflushed-B/key")
	b.ReportMetric(stored, "stored-B/key")
	b.ReportMetric(decoded, "decoded-B/key")
}
