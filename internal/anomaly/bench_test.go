package anomaly

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// BenchmarkObserve is verify's hot path: a learned key, a VALID verification from one
// of its networks, the clock moving a second per call (so the minute, hour and
// 10-minute windows all turn over as in real traffic).
func BenchmarkObserve(b *testing.B) {
	d := steadyBench(b)
	ev := Event{Key: "k", Role: "web", Code: verifyapi.CodeValid, Client: ip("10.1.1.10"), Time: day(8)}
	cfg := Config{}
	b.ReportAllocs()
	for b.Loop() {
		ev.Time = ev.Time.Add(time.Second)
		d.Observe(ev, cfg, nil)
	}
}

// BenchmarkObserveParallel is verify from every core over 1000 learned keys and a few
// client networks each.
func BenchmarkObserveParallel(b *testing.B) {
	d := NewDetector(2000)
	cfg := Config{Learning: time.Hour}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
		for m := range 120 {
			d.Observe(Event{Key: keys[i], Code: verifyapi.CodeValid, Client: netip.AddrFrom4([4]byte{10, byte(i), byte(m % 3), 1}),
				Time: monday.Add(time.Duration(m) * time.Minute)}, cfg, nil)
		}
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			k := int(i % 1000)
			d.Observe(Event{Key: keys[k], Code: verifyapi.CodeValid, Client: netip.AddrFrom4([4]byte{10, byte(k), byte(i % 3), 1}),
				Time: monday.Add(3*time.Hour + time.Duration(i)*time.Millisecond)}, cfg, nil)
		}
	})
}

// BenchmarkSnapshot encodes a busy key's state and reports its size.
func BenchmarkSnapshot(b *testing.B) {
	s := busyState(b)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		size = len(s.AppendBinary(make([]byte, 0, 1536)))
	}
	b.ReportMetric(float64(size), "bytes/state")
}

func steadyBench(b *testing.B) *Detector {
	d := NewDetector(10)
	feed(d, Config{}, "k", flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 20, addrs: []netip.Addr{ip("10.1.1.10")}})
	return d
}
