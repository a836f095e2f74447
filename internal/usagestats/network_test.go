package usagestats

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNetworkOf(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"192.0.2.77", "192.0.2.0/24"},
		{"10.1.2.3", "10.1.2.0/24"},
		{"::ffff:192.0.2.77", "192.0.2.0/24"},
		{"2001:db8:abcd:12::1", "2001:db8:abcd::/48"},
		{"fe80::1%eth0", "fe80::/48"},
		{"::1", "::/48"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			p, ok := NetworkOf(netip.MustParseAddr(tc.in))
			require.True(t, ok)
			require.Equal(t, netip.MustParsePrefix(tc.want), p)
		})
	}
	_, ok := NetworkOf(netip.Addr{})
	require.False(t, ok)
}

func TestNetworksBounded(t *testing.T) {
	net := func(s string) netip.Prefix { p, _ := NetworkOf(netip.MustParseAddr(s)); return p }
	var s []Network
	addNetwork(&s, net("192.0.2.1"), false, 1, 100, 2)
	addNetwork(&s, net("198.51.100.1"), true, 1, 200, 2)
	addNetwork(&s, net("192.0.2.9"), false, 1, 300, 2) // same /24: refreshes it
	addNetwork(&s, net("203.0.113.1"), false, 1, 400, 2)
	require.Equal(t, []Network{
		{Prefix: net("192.0.2.1"), Count: 2, FirstSeen: 100, LastSeen: 300},
		{Prefix: net("203.0.113.1"), Count: 1, FirstSeen: 400, LastSeen: 400},
	}, s, "198.51.100.0/24 was the least recently seen")

	// Merging keeps the most recently seen, widens first/last seen and drops the expired.
	mergeNetworks(&s, []Network{
		{Prefix: net("192.0.2.1"), Count: 3, Refused: 1, FirstSeen: 50, LastSeen: 500},
		{Prefix: net("2001:db8::1"), Count: 1, FirstSeen: 450, LastSeen: 450},
		{Prefix: net("198.51.100.1"), Count: 1, FirstSeen: 10, LastSeen: 20},
	}, 0, 2)
	require.Equal(t, []Network{
		{Prefix: net("192.0.2.1"), Count: 5, Refused: 1, FirstSeen: 50, LastSeen: 500},
		{Prefix: net("2001:db8::1"), Count: 1, FirstSeen: 450, LastSeen: 450},
	}, s)
	mergeNetworks(&s, nil, 460, 2)
	require.Len(t, s, 1, "a network last seen before the floor is dropped")
}
