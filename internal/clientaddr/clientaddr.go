// Package clientaddr is the one home of how client addresses and networks are read and
// matched: the engine's bound_cidrs and verify client_ip, the middleware's trusted
// proxies and peer addresses, and the gateway's flags. Everything is normalised the same
// way, so an address matches a network whatever form either was written in: IPv4-mapped
// IPv6 addresses (::ffff:10.0.0.1) and networks become IPv4, zones are dropped, networks
// are masked, and a bare address is a single-host network.
package clientaddr

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseAddr parses an IP address (no port), normalised.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%.60q is not an IP address", s)
	}
	return normalizeAddr(a), nil
}

// ParseRemoteAddr parses a connection's peer address as net/http gives it ("ip:port",
// "[ip6]:port", or a bare ip from some listeners); the zero Addr when it is none of them.
func ParseRemoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalizeAddr(ap.Addr())
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalizeAddr(a)
	}
	return netip.Addr{}
}

// ParsePrefix parses a CIDR block or a bare address (a single-host block), normalised.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return NormalizePrefix(p), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = normalizeAddr(a)
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%.60q is not a CIDR block or IP address", s)
}

// ParsePrefixes parses each of list with ParsePrefix; empty entries are skipped.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// NormalizePrefix masks p and turns an IPv4-mapped network into the IPv4 one.
func NormalizePrefix(p netip.Prefix) netip.Prefix {
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits = max(bits-96, 0)
	}
	return netip.PrefixFrom(normalizeAddr(p.Addr()), bits).Masked()
}

// Contains reports whether a falls in any of networks (normalised ones, as the parsers
// here return); the zero Addr is in none.
func Contains(networks []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = normalizeAddr(a)
	for _, p := range networks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func normalizeAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }
