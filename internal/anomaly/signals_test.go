package anomaly

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// monday is the start of the simulated traffic.
var monday = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func day(d float64) time.Time { return monday.Add(time.Duration(d * float64(24*time.Hour))) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// flow is evenly spaced events: perMinute of them each minute over [from, from+dur),
// from the addresses in turn.
type flow struct {
	from      time.Time
	dur       time.Duration
	perMinute float64
	code      string
	addrs     []netip.Addr
}

func (f flow) events(key string) []Event {
	step := time.Duration(float64(time.Minute) / f.perMinute)
	var out []Event
	i := 0
	for at := f.from; at.Before(f.from.Add(f.dur)); at = at.Add(step) {
		code := f.code
		if code == "" {
			code = verifyapi.CodeValid
		}
		out = append(out, Event{Key: key, Role: "web", Code: code, Client: f.addrs[i%len(f.addrs)], Time: at})
		i++
	}
	return out
}

// nets returns n addresses, one in each of n /24s of the /16 prefix a.b (IPv4).
func nets(a, b byte, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{a, b, byte(i), 10})
	}
	return out
}

// feed merges the flows in time order, feeds them to d and returns the anomalies.
func feed(d *Detector, cfg Config, key string, flows ...flow) []Anomaly {
	var evs []Event
	for _, f := range flows {
		evs = append(evs, f.events(key)...)
	}
	slices.SortStableFunc(evs, func(a, b Event) int { return a.Time.Compare(b.Time) })
	var out []Anomaly
	for _, ev := range evs {
		out = append(out, d.Observe(ev, cfg, nil)...)
	}
	return out
}

func ofKind(as []Anomaly, k Kind) []Anomaly {
	var out []Anomaly
	for _, a := range as {
		if a.Kind == k {
			out = append(out, a)
		}
	}
	return out
}

// trained learns flows once per name and returns a detector restored from the
// snapshot (as after a restart), so that each case starts from the same baselines.
func trained(name, key string, cfg Config, flows ...flow) *Detector {
	trainedMu.Lock()
	defer trainedMu.Unlock()
	b, ok := trainedState[name]
	if !ok {
		d := NewDetector(10)
		feed(d, cfg, key, flows...)
		b, _ = d.Snapshot(key)
		trainedState[name] = b
	}
	d := NewDetector(10)
	d.Observe(Event{Key: key, Code: verifyapi.CodeDisabled, Time: day(-400)}, cfg, func() []byte { return b })
	return d
}

var (
	trainedMu    sync.Mutex
	trainedState = map[string][]byte{}
)

// learned is an office key used 5 times a minute from one /24 for eight days (past the
// default learning period).
func learned(key string) (*Detector, flow) {
	office := flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 5, addrs: []netip.Addr{ip("10.1.1.10"), ip("10.1.1.11")}}
	return trained("office", key, Config{}, office), office
}

func TestNewNetwork(t *testing.T) {
	thief := []netip.Addr{ip("203.0.113.9")}
	cases := []struct {
		name  string
		flows func(office flow) []flow
		fires bool
	}{
		{"a stolen key used while the office keeps working", func(office flow) []flow {
			office.from, office.dur = day(8), 2*time.Hour
			return []flow{office, {from: day(8).Add(30 * time.Minute), dur: time.Hour, perMinute: 1, addrs: thief}}
		}, true},
		{"the office moves: its traffic switches to a new network", func(office flow) []flow {
			office.from, office.dur = day(8), 10*time.Hour
			moved := flow{from: day(8).Add(10 * time.Hour), dur: 2 * 24 * time.Hour, perMinute: 5, addrs: []netip.Addr{ip("10.9.9.10")}}
			return []flow{office, moved}
		}, false},
		{"one call from elsewhere while the owner is quiet", func(office flow) []flow {
			office.from, office.dur, office.perMinute = day(8), 12*time.Hour, 1.0/30
			return []flow{office, {from: day(8).Add(6*time.Hour + 10*time.Minute), dur: time.Minute, perMinute: 1, addrs: thief}}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, office := learned("k")
			got := ofKind(feed(d, Config{}, "k", tc.flows(office)...), NewNetwork)
			if !tc.fires {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			require.Equal(t, "203.0.113.0/24", got[0].Network)
			require.Equal(t, "web", got[0].Role)
			require.WithinDuration(t, day(8).Add(30*time.Minute), got[0].At, 5*time.Minute)
			require.Contains(t, got[0].Detail, "203.0.113.0/24")
		})
	}

	t.Run("during the learning period", func(t *testing.T) {
		d := NewDetector(10)
		office := flow{from: monday, dur: 4 * 24 * time.Hour, perMinute: 5, addrs: []netip.Addr{ip("10.1.1.10")}}
		got := feed(d, Config{}, "k", office, flow{from: day(3), dur: time.Hour, perMinute: 1, addrs: thief})
		require.Empty(t, ofKind(got, NewNetwork))
	})

	t.Run("after a move, a thief next to the new office", func(t *testing.T) {
		d, office := learned("k")
		office.from, office.dur = day(8), 10*time.Hour
		moved := flow{from: day(8).Add(10 * time.Hour), dur: 2 * 24 * time.Hour, perMinute: 5, addrs: []netip.Addr{ip("10.9.9.10")}}
		require.Empty(t, feed(d, Config{}, "k", office, moved))
		moved.from, moved.dur = day(10).Add(10*time.Hour), 2*time.Hour
		got := feed(d, Config{}, "k", moved, flow{from: day(10).Add(11 * time.Hour), dur: time.Hour, perMinute: 2, addrs: thief})
		require.Len(t, ofKind(got, NewNetwork), 1)
	})

	t.Run("one of two offices moves while the other keeps working", func(t *testing.T) {
		d := NewDetector(10)
		two := flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 6, addrs: []netip.Addr{ip("10.1.1.10"), ip("172.16.5.10")}}
		feed(d, Config{}, "k", two)
		stays := flow{from: day(8), dur: 24 * time.Hour, perMinute: 3, addrs: []netip.Addr{ip("172.16.5.10")}}
		moved := flow{from: day(8), dur: 24 * time.Hour, perMinute: 3, addrs: []netip.Addr{ip("192.168.77.10")}}
		require.Empty(t, ofKind(feed(d, Config{}, "k", stays, moved), NewNetwork))
	})

	t.Run("a mobile key roams within its wider networks", func(t *testing.T) {
		d := NewDetector(10)
		carriers := append(nets(100, 64, 100), nets(100, 65, 100)...)
		feed(d, Config{}, "m", flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 5, addrs: carriers})
		// New /24s, all inside the learned /16s.
		roam := append(nets(100, 64, 250)[100:], nets(100, 65, 250)[100:]...)
		require.Empty(t, feed(d, Config{}, "m", flow{from: day(8), dur: 24 * time.Hour, perMinute: 5, addrs: roam}))
		// A new wider network while the users keep roaming is theft.
		got := feed(d, Config{}, "m", flow{from: day(9), dur: time.Hour, perMinute: 5, addrs: carriers},
			flow{from: day(9).Add(10 * time.Minute), dur: 30 * time.Minute, perMinute: 1, addrs: []netip.Addr{ip("198.51.100.4")}})
		require.Len(t, got, 1)
		require.Equal(t, NewNetwork, got[0].Kind)
		require.Equal(t, "198.51.0.0/16", got[0].Network)
	})
}

func TestManyNetworks(t *testing.T) {
	cases := []struct {
		name  string
		leak  int
		fires bool
	}{
		{"a key leaked to 15 networks", 15, true},
		{"8 networks, under the floor", 8, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, office := learned("k")
			office.from, office.dur = day(8), time.Hour
			leak := flow{from: day(8).Add(10 * time.Minute), dur: 10 * time.Minute, perMinute: float64(tc.leak) / 10,
				addrs: nets(198, 18, 0)[:0]}
			for i := range tc.leak {
				leak.addrs = append(leak.addrs, netip.AddrFrom4([4]byte{byte(20 + i), 7, 7, 7}))
			}
			got := ofKind(feed(d, Config{}, "k", office, leak), ManyNetworks)
			if !tc.fires {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "once, not once per network")
			require.WithinDuration(t, day(8).Add(10*time.Minute), got[0].At, 10*time.Minute)
			require.GreaterOrEqual(t, got[0].Observed, got[0].Baseline)
		})
	}

	t.Run("a mobile key's hundreds of /24s are its usual", func(t *testing.T) {
		d := NewDetector(10)
		carriers := append(nets(100, 64, 200), nets(100, 65, 200)...)
		got := feed(d, Config{}, "m", flow{from: monday, dur: 10 * 24 * time.Hour, perMinute: 10, addrs: carriers})
		require.Empty(t, got)
	})
}

// steady is a key used 20 times a minute from one network for eight days.
func steady(t *testing.T, cfg Config) *Detector {
	return trained(fmt.Sprint("steady", cfg.Off), "k", cfg,
		flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 20, addrs: []netip.Addr{ip("10.1.1.10")}})
}

func TestRateSpike(t *testing.T) {
	cases := []struct {
		name      string
		perMinute float64
		fires     bool
	}{
		{"×5 for half an hour", 100, true},
		{"×1.5 for half an hour (a busy hour)", 30, false},
		{"×2 for half an hour", 40, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := steady(t, Config{})
			got := ofKind(feed(d, Config{}, "k", flow{from: day(8), dur: 2 * time.Hour, perMinute: 20, addrs: []netip.Addr{ip("10.1.1.10")}},
				flow{from: day(8).Add(time.Hour), dur: 30 * time.Minute, perMinute: tc.perMinute - 20, addrs: []netip.Addr{ip("10.1.1.10")}}), RateSpike)
			if !tc.fires {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "one per cooldown")
			require.WithinDuration(t, day(8).Add(time.Hour), got[0].At, 5*time.Minute, "within 5 minutes")
			require.GreaterOrEqual(t, got[0].Observed, got[0].Baseline)
		})
	}

	t.Run("a quiet key under the floor, then over it", func(t *testing.T) {
		d := NewDetector(10)
		a := []netip.Addr{ip("10.1.1.10")}
		feed(d, Config{}, "q", flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 0.5, addrs: a})
		// 25 a minute for 5 minutes: 125 in the window, under the floor of 150.
		require.Empty(t, feed(d, Config{}, "q", flow{from: day(8), dur: 5 * time.Minute, perMinute: 25, addrs: a}))
		got := feed(d, Config{}, "q", flow{from: day(8).Add(time.Hour), dur: 10 * time.Minute, perMinute: 40, addrs: a})
		require.Len(t, ofKind(got, RateSpike), 1)
	})

	t.Run("during the learning period", func(t *testing.T) {
		d := NewDetector(10)
		a := []netip.Addr{ip("10.1.1.10")}
		got := feed(d, Config{}, "k", flow{from: monday, dur: 3 * 24 * time.Hour, perMinute: 20, addrs: a},
			flow{from: day(2), dur: time.Hour, perMinute: 200, addrs: a})
		require.Empty(t, got)
	})

	t.Run("turned off", func(t *testing.T) {
		cfg := Config{Off: []Kind{RateSpike}}
		d := steady(t, cfg)
		got := feed(d, cfg, "k", flow{from: day(8), dur: 30 * time.Minute, perMinute: 200, addrs: []netip.Addr{ip("10.1.1.10")}})
		require.Empty(t, got)
	})

	t.Run("a key that grew keeps its seasonal slots: night and day", func(t *testing.T) {
		d := NewDetector(10)
		a := []netip.Addr{ip("10.1.1.10")}
		var flows []flow
		for dd := range 9 {
			flows = append(flows, flow{from: day(float64(dd)), dur: 8 * time.Hour, perMinute: 1, addrs: a},
				flow{from: day(float64(dd)).Add(8 * time.Hour), dur: 10 * time.Hour, perMinute: 40, addrs: a},
				flow{from: day(float64(dd)).Add(18 * time.Hour), dur: 6 * time.Hour, perMinute: 1, addrs: a})
		}
		require.Empty(t, feed(d, Config{}, "s", flows...), "the daily rise is the key's usual")
		// Daytime traffic at night is a spike.
		got := feed(d, Config{}, "s", flow{from: day(9), dur: time.Hour, perMinute: 40, addrs: a})
		require.Len(t, ofKind(got, RateSpike), 1)
	})
}

func TestRefusalStorm(t *testing.T) {
	scope := verifyapi.CodeInsufficientScope
	cases := []struct {
		name      string
		code      string
		perMinute float64
		fires     bool
	}{
		{"30 INSUFFICIENT_SCOPE in 3 minutes", scope, 10, true},
		{"15 INSUFFICIENT_SCOPE in 3 minutes, under the burst", scope, 5, false},
		{"30 FORBIDDEN_IP in 3 minutes", verifyapi.CodeForbiddenIP, 10, true},
		{"120 RATE_LIMITED in 3 minutes, under the rate floor", verifyapi.CodeRateLimited, 40, false},
		{"240 RATE_LIMITED in 3 minutes", verifyapi.CodeRateLimited, 80, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, office := learned("k")
			office.from, office.dur = day(8), time.Hour
			got := ofKind(feed(d, Config{}, "k", office, flow{from: day(8).Add(10 * time.Minute), dur: 3 * time.Minute,
				perMinute: tc.perMinute, code: tc.code, addrs: []netip.Addr{ip("10.1.1.10")}}), RefusalStorm)
			if !tc.fires {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			require.Contains(t, got[0].Detail, tc.code)
		})
	}

	t.Run("a key with routine refusals", func(t *testing.T) {
		d := NewDetector(10)
		a := []netip.Addr{ip("10.1.1.10")}
		feed(d, Config{}, "k", flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 20, addrs: a},
			flow{from: monday, dur: 8 * 24 * time.Hour, perMinute: 3, code: scope, addrs: a})
		// 15 routine refusals in 5 minutes plus 10 more: its usual busiest 5 minutes.
		got := feed(d, Config{}, "k", flow{from: day(8), dur: 5 * time.Minute, perMinute: 5, code: scope, addrs: a})
		require.Empty(t, got)
		got = feed(d, Config{}, "k", flow{from: day(8).Add(time.Hour), dur: 5 * time.Minute, perMinute: 12, code: scope, addrs: a})
		require.Len(t, got, 1)
	})

	t.Run("during the learning period", func(t *testing.T) {
		d := NewDetector(10)
		got := feed(d, Config{}, "k", flow{from: day(1), dur: 10 * time.Minute, perMinute: 20, code: scope, addrs: []netip.Addr{ip("10.1.1.10")}})
		require.Empty(t, got, "a developer integrating a new key")
	})

	t.Run("cooldown: a storm of three hours is three anomalies", func(t *testing.T) {
		d, _ := learned("k")
		got := feed(d, Config{}, "k", flow{from: day(8), dur: 3*time.Hour - time.Minute, perMinute: 30, code: scope, addrs: []netip.Addr{ip("198.51.100.1")}})
		require.Len(t, ofKind(got, RefusalStorm), 3)
	})
}

func TestSecretGuessing(t *testing.T) {
	nf := verifyapi.CodeNotFound
	elsewhere := []netip.Addr{ip("198.51.100.7")}
	cases := []struct {
		name      string
		at        time.Time
		perMinute float64
		fires     bool
	}{
		{"25 wrong secrets in 3 minutes from elsewhere", day(8), 25.0 / 3, true},
		{"the same during the learning period", day(2), 25.0 / 3, true},
		{"15 wrong secrets in 5 minutes", day(8), 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := learned("k")
			got := feed(d, Config{}, "k", flow{from: tc.at.Add(8 * 24 * time.Hour * 0), dur: 3 * time.Minute,
				perMinute: tc.perMinute, code: nf, addrs: elsewhere})
			if tc.at.Before(day(8)) { // replay on a new key
				d = NewDetector(10)
				got = feed(d, Config{}, "k", flow{from: tc.at, dur: 3 * time.Minute, perMinute: tc.perMinute, code: nf, addrs: elsewhere})
			}
			got = ofKind(got, SecretGuessing)
			if !tc.fires {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			require.Equal(t, "198.51.100.0/24", got[0].Network)
		})
	}

	t.Run("a client left with a rotated secret on the key's own network", func(t *testing.T) {
		d := steady(t, Config{})
		a := []netip.Addr{ip("10.1.1.10")}
		got := feed(d, Config{}, "k", flow{from: day(8), dur: 2 * time.Hour, perMinute: 10, addrs: a},
			flow{from: day(8), dur: 2 * time.Hour, perMinute: 10, code: nf, addrs: a})
		require.Empty(t, got)
	})
}

func TestDormantWake(t *testing.T) {
	a := []netip.Addr{ip("10.1.1.10")}
	week := flow{from: monday, dur: 7 * 24 * time.Hour, perMinute: 1, addrs: a}
	cases := []struct {
		name    string
		silence float64 // days
		fires   bool
	}{
		{"50 days of silence", 50, true},
		{"40 days of silence", 40, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetector(10)
			feed(d, Config{}, "k", week)
			got := feed(d, Config{}, "k", flow{from: day(7 + tc.silence), dur: 10 * time.Minute, perMinute: 1, addrs: a})
			if !tc.fires {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			require.Equal(t, DormantWake, got[0].Kind)
			require.Equal(t, day(7+tc.silence), got[0].At, "on the first use")
			require.InDelta(t, tc.silence, got[0].Observed, 0.01)
			require.Equal(t, 45.0, got[0].Baseline)
		})
	}

	t.Run("a periodic key: its first long gap only", func(t *testing.T) {
		d := NewDetector(10)
		use := func(at float64) []Anomaly {
			return feed(d, Config{}, "p", flow{from: day(at), dur: 2 * time.Hour, perMinute: 1, addrs: a})
		}
		require.Empty(t, use(0))
		require.Len(t, use(60), 1, "indistinguishable from a dormant key")
		require.Empty(t, use(125), "a gap it has shown before")
		require.Empty(t, use(190))
		require.Len(t, use(400), 1, "more than twice its longest gap")
	})

	t.Run("a configured dormancy", func(t *testing.T) {
		d := NewDetector(10)
		cfg := Config{Dormancy: 10 * 24 * time.Hour}
		feed(d, cfg, "k", week)
		require.Len(t, feed(d, cfg, "k", flow{from: day(18), dur: time.Minute, perMinute: 1, addrs: a}), 1)
	})
}

func TestRestartKeepsBaselines(t *testing.T) {
	a := []netip.Addr{ip("10.1.1.10")}
	d := steady(t, Config{})
	b, ok := d.Snapshot("k")
	require.True(t, ok)
	require.Empty(t, d.Dirty())

	spike := flow{from: day(8), dur: 30 * time.Minute, perMinute: 100, addrs: a}
	want := feed(d, Config{}, "k", spike)
	require.Len(t, want, 1)

	restarted := NewDetector(10)
	loads := 0
	var got []Anomaly
	for _, ev := range spike.events("k") {
		got = append(got, restarted.Observe(ev, Config{}, func() []byte { loads++; return b })...)
	}
	require.Equal(t, want, got)
	require.Equal(t, 1, loads, "load is called only when the key is not held")

	// The cooldown survives a restart too.
	b, _ = restarted.Snapshot("k")
	again := NewDetector(10)
	more := flow{from: day(8).Add(30 * time.Minute), dur: 10 * time.Minute, perMinute: 100, addrs: a}
	var after []Anomaly
	for _, ev := range more.events("k") {
		after = append(after, again.Observe(ev, Config{}, func() []byte { return b })...)
	}
	require.Empty(t, after)
}

func TestObserveIgnores(t *testing.T) {
	d := NewDetector(10)
	require.Nil(t, d.Observe(Event{Key: "k", Code: verifyapi.CodeMalformed, Time: monday}, Config{}, nil))
	require.Nil(t, d.Observe(Event{Key: "k", Code: "SOMETHING", Time: monday}, Config{}, nil))
	require.Nil(t, d.Observe(Event{Code: verifyapi.CodeValid, Time: monday}, Config{}, nil))
	require.Zero(t, d.Stats().Keys)
	// A zero time is now; a zero client address has no network.
	require.Nil(t, d.Observe(Event{Key: "k", Code: verifyapi.CodeValid}, Config{}, nil))
	require.Equal(t, []string{"k"}, d.Dirty())
	// A corrupt stored state starts the key over.
	require.Nil(t, d.Observe(Event{Key: "k2", Code: verifyapi.CodeValid, Time: monday}, Config{}, func() []byte { return []byte{1, 2, 3} }))
	require.Equal(t, uint64(1), d.Stats().DecodeErrors)
}

func TestNetIDs(t *testing.T) {
	for _, tc := range []struct{ addr, n24, wide string }{
		{"192.0.2.77", "192.0.2.0/24", "192.0.0.0/16"},
		{"::ffff:192.0.2.77", "192.0.2.0/24", "192.0.0.0/16"},
		{"2001:db8:abcd:12::1", "2001:db8:abcd::/48", "2001:db8::/32"},
		{"fe80::1%eth0", "fe80::/48", "fe80::/32"},
	} {
		n, w := netIDs(ip(tc.addr))
		require.True(t, validNetID(n) && validNetID(w))
		require.Equal(t, tc.n24, netPrefix(n).String(), tc.addr)
		require.Equal(t, tc.wide, netPrefix(w).String(), tc.addr)
	}
	n, w := netIDs(netip.Addr{})
	require.Zero(t, n+w)
}

func ExampleDetector_Observe() {
	d := NewDetector(1000)
	cfg := Config{Learning: 24 * time.Hour}
	office := flow{from: monday, dur: 2 * 24 * time.Hour, perMinute: 2, addrs: []netip.Addr{ip("192.0.2.10")}}
	thief := flow{from: day(2).Add(time.Hour), dur: 10 * time.Minute, perMinute: 1, addrs: []netip.Addr{ip("203.0.113.5")}}
	office2 := office
	office2.from = day(2)
	feed(d, cfg, "key-1", office)
	for _, a := range feed(d, cfg, "key-1", office2, thief) {
		fmt.Println(a.Kind, a.Network)
	}
	// Output: new_network 203.0.113.0/24
}

// TestShortLearning is what an integration test can script with a test clock: a one-hour
// learning period, a key used from one network over an hour, then from a new one while
// the first is still used.
func TestShortLearning(t *testing.T) {
	d := NewDetector(10)
	cfg := Config{Learning: time.Hour}
	office := []netip.Addr{ip("192.0.2.10")}
	require.Empty(t, feed(d, cfg, "k", flow{from: monday, dur: 70 * time.Minute, perMinute: 0.2, addrs: office}))
	// A new network alone is pending (an office might have moved)...
	require.Empty(t, feed(d, cfg, "k", flow{from: monday.Add(2 * time.Hour), dur: time.Minute, perMinute: 1, addrs: []netip.Addr{ip("198.51.100.7")}}))
	// ...until the old one is used within 5 minutes of it.
	got := feed(d, cfg, "k", flow{from: monday.Add(2*time.Hour + 2*time.Minute), dur: time.Minute, perMinute: 1, addrs: office})
	require.Len(t, got, 1)
	require.Equal(t, NewNetwork, got[0].Kind)
	require.Equal(t, "198.51.100.0/24", got[0].Network)
}
