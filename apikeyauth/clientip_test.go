package apikeyauth

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func ipv4(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("::ffff:192.168.0.0/112"), // mapped form: matches plain 192.168.x.x
	}
	for _, tc := range []struct {
		name       string
		trusted    []netip.Prefix
		remoteAddr string
		xff        []string // header lines
		want       string   // "" = unknown
	}{
		{name: "no proxies: peer", remoteAddr: "203.0.113.9:5000", want: "203.0.113.9"},
		{name: "no proxies: forwarded-for ignored", remoteAddr: "203.0.113.9:5000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "untrusted peer: forwarded-for ignored", trusted: trusted, remoteAddr: "203.0.113.9:5000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "trusted peer without header: peer", trusted: trusted, remoteAddr: "10.1.2.3:5000", want: "10.1.2.3"},
		{name: "trusted peer: last hop", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "forged left entries are skipped", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "chain of trusted proxies", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"1.1.1.1, 198.51.100.1, 10.9.9.9, 10.8.8.8"}, want: "198.51.100.1"},
		{name: "several header lines are one list", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"1.1.1.1, 198.51.100.1", "10.9.9.9"}, want: "198.51.100.1"},
		{name: "all hops trusted: left-most", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"10.7.7.7, 10.9.9.9"}, want: "10.7.7.7"},
		{name: "garbage hop: unknown", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"198.51.100.1, nonsense"}, want: ""},
		{name: "garbage left of the client does not matter", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"nonsense, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "empty hop: unknown", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"198.51.100.1,"}, want: ""},
		{name: "hop with port", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"198.51.100.1:4711"}, want: "198.51.100.1"},
		{name: "ipv6 hop, bracketed", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"[2001:db8:2::7]"}, want: "2001:db8:2::7"},
		{name: "ipv6 hop with port", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"[2001:db8:2::7]:443"}, want: "2001:db8:2::7"},
		{name: "hop with zone: unknown", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"fe80::1%eth0"}, want: ""},
		{name: "ipv6 trusted peer", trusted: trusted, remoteAddr: "[2001:db8:1::5]:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "ipv4-mapped peer matches ipv4 network", trusted: trusted, remoteAddr: "[::ffff:10.1.2.3]:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "mapped-form network matches plain peer", trusted: trusted, remoteAddr: "192.168.4.4:5000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "ipv4-mapped hop is unmapped", trusted: trusted, remoteAddr: "10.1.2.3:5000", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "unparsable peer: unknown", trusted: trusted, remoteAddr: "@", xff: []string{"198.51.100.1"}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw, err := New(Config{Client: testClient(t, "http://127.0.0.1:1"), TrustedProxies: tc.trusted})
			require.NoError(t, err)
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remoteAddr
			for _, line := range tc.xff {
				r.Header.Add("X-Forwarded-For", line)
			}
			got := mw.ClientIP(r)
			if tc.want == "" {
				require.False(t, got.IsValid(), "got %v", got)
				return
			}
			require.Equal(t, netip.MustParseAddr(tc.want), got)
		})
	}
}

// TestClientIPReachesVerify: the address chosen is the one verify checks.
func TestClientIPReachesVerify(t *testing.T) {
	h := newHarness(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	h.vault.set(func(fv *fakeVault) { fv.data = validData(h.clock.Now(), time.Hour) })
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:5000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.1")
	r.Header.Set("X-API-Key", newKey(t))
	require.Equal(t, 200, h.serve(r).Code)
	require.Equal(t, "198.51.100.1", h.vault.lastRequest().ClientIP)
}

// TestClientIPForMatchesTheMiddleware: the function for code without a Middleware (the
// gateway with authentication off) follows the same rules.
func TestClientIPForMatchesTheMiddleware(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104"), netip.MustParsePrefix("192.0.2.0/24")}
	mw, err := New(Config{Client: testClient(t, "http://127.0.0.1:1"), TrustedProxies: trusted})
	require.NoError(t, err)
	for _, tc := range []struct{ remote, xff string }{
		{"198.51.100.1:1", "6.6.6.6"},
		{"10.0.0.1:1", "6.6.6.6, 203.0.113.5"},
		{"10.0.0.1:1", "203.0.113.5, 192.0.2.9"},
		{"192.0.2.1:1", "garbage"},
		{"192.0.2.1:1", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		require.Equal(t, mw.ClientIP(r), ClientIPFor(r, trusted), "%+v", tc)
	}
}
