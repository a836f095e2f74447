package apikeyauth

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkCacheHit is the middleware's decision for a request answered from the cache
// (Verify: no HTTP around it), as the fleet changes it:
//
//   - fleet-off: an unmetered key, as without Fleet (the baseline);
//   - fleet-unmetered: the same with Fleet on and the feed healthy (the freshness checks
//     and the usage report count per request);
//   - fleet-metered: a key with max_uses and a rate limit, whose cached VALID spends the
//     middleware's grant (uses and a token of its share) per request.
func BenchmarkCacheHit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		fleet bool
		key   func(key string) *fakeKey
	}{
		{name: "fleet-off", key: func(key string) *fakeKey { return &fakeKey{key: key} }},
		{name: "fleet-unmetered", fleet: true, key: func(key string) *fakeKey { return &fakeKey{key: key} }},
		{name: "fleet-metered", fleet: true, key: func(key string) *fakeKey {
			return &fakeKey{key: key, remaining: int64p(1 << 50), grantUses: 1 << 40, rate: 1e9, burst: 1e9}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarnessWith(b, Config{Fleet: bc.fleet}, hooks{noLoops: true, feedWait: time.Millisecond})
			h.vault.set(func(fv *fakeVault) { fv.clock = h.clock })
			engine := newFakeEngine(b, h.vault, DefaultMount)
			key := newKey(b)
			engine.addKey(bc.key(key))
			if bc.fleet {
				_, err := h.mw.fleet.pollFeed(context.Background(), "")
				require.NoError(b, err)
			}
			ctx, ip := context.Background(), netip.MustParseAddr("198.51.100.7")
			res, err := h.mw.Verify(ctx, key, nil, ip, 1)
			require.NoError(b, err)
			require.True(b, res.Valid)
			calls := h.vault.calls.Load()
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if res, _ := h.mw.Verify(ctx, key, nil, ip, 1); !res.Valid {
						b.Fatal(res.Code)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if res, _ := h.mw.Verify(ctx, key, nil, ip, 1); !res.Valid {
							b.Fatal(res.Code)
						}
					}
				})
			})
			require.Equal(b, calls, h.vault.calls.Load(), "every request answered from the cache")
		})
	}
}
