package clientaddr

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFormsAgree: the forms the three former copies disagreed on match each other.
func TestFormsAgree(t *testing.T) {
	cases := []struct {
		network, addr string
		in            bool
	}{
		{"10.0.0.0/8", "10.1.2.3", true},
		{"10.0.0.0/8", "::ffff:10.1.2.3", true},
		{"::ffff:10.0.0.0/104", "10.1.2.3", true},
		{"::ffff:10.0.0.1", "10.0.0.1", true},
		{"10.0.0.1", "::ffff:10.0.0.1", true},
		{"10.0.0.1", "10.0.0.2", false},
		{"2001:db8::/32", "2001:db8::1", true},
		{"2001:db8::/32", "2001:db9::1", false},
		{"fe80::1", "fe80::1%eth0", true},
		{"10.0.0.0/8", "11.0.0.1", false},
		{" 10.0.0.0/8 ", "10.0.0.1", true},
		{"10.9.9.9/8", "10.0.0.1", true}, // masked
	}
	for _, tc := range cases {
		t.Run(tc.network+" "+tc.addr, func(t *testing.T) {
			p, err := ParsePrefix(tc.network)
			require.NoError(t, err)
			a, err := ParseAddr(tc.addr)
			require.NoError(t, err)
			require.Equal(t, tc.in, Contains([]netip.Prefix{p}, a))
		})
	}
}

func TestParseRemoteAddr(t *testing.T) {
	cases := map[string]string{
		"10.0.0.1:1234":            "10.0.0.1",
		"[::ffff:10.0.0.1]:80":     "10.0.0.1",
		"[2001:db8::1]:443":        "2001:db8::1",
		"[fe80::1%eth0]:443":       "fe80::1",
		"10.0.0.1":                 "10.0.0.1",
		"::ffff:10.0.0.1":          "10.0.0.1",
		"not an address":           "invalid IP",
		"":                         "invalid IP",
		"example.com:80":           "invalid IP",
		"[2001:db8::1]":            "invalid IP",
		"10.0.0.1:99999":           "invalid IP",
		"2001:db8::1:443:extra:no": "invalid IP",
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			require.Equal(t, want, ParseRemoteAddr(in).String())
		})
	}
}

func TestParseErrorsNameTheInput(t *testing.T) {
	_, err := ParsePrefix("10.0.0.0/33")
	require.ErrorContains(t, err, `"10.0.0.0/33" is not a CIDR block or IP address`)
	_, err = ParseAddr("localhost")
	require.ErrorContains(t, err, `"localhost" is not an IP address`)
	_, err = ParsePrefixes([]string{"10.0.0.0/8", "", "x"})
	require.ErrorContains(t, err, `"x"`)
	got, err := ParsePrefixes([]string{"10.0.0.0/8", " ", "::ffff:192.168.0.0/112"})
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}, got)
	require.False(t, Contains(got, netip.Addr{}), "an unknown address is in no network")
}
