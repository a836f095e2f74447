package apikeyauth

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the address of the client of r as the middleware sends it to verify:
// the connection's peer, or, when the peer is a trusted proxy, the right-most address of
// X-Forwarded-For that is not a trusted proxy. The zero Addr means unknown.
func (m *Middleware) ClientIP(r *http.Request) netip.Addr {
	peer := parseHostAddr(r.RemoteAddr)
	if !peer.IsValid() || !m.isTrustedProxy(peer) {
		return peer
	}
	hops := forwardedHops(r.Header.Values("X-Forwarded-For"))
	if len(hops) == 0 {
		return peer
	}
	var leftmost netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		hop := parseForwardedAddr(hops[i])
		if !hop.IsValid() {
			// A trusted proxy wrote garbage (or a misconfigured network is trusted): do
			// not guess, and let verify refuse keys bound to CIDRs.
			return netip.Addr{}
		}
		if !m.isTrustedProxy(hop) {
			return hop
		}
		leftmost = hop
	}
	// Every hop is a trusted proxy: the farthest one is the closest we know to the client.
	return leftmost
}

func (m *Middleware) isTrustedProxy(a netip.Addr) bool {
	for _, p := range m.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedHops splits all X-Forwarded-For lines, in order, into their entries.
func forwardedHops(lines []string) []string {
	var hops []string
	for _, line := range lines {
		for _, hop := range strings.Split(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// parseHostAddr parses a RemoteAddr ("ip:port", "[ip6]:port" or a bare ip). IPv4-mapped
// IPv6 addresses become IPv4 and zones are dropped, so that they match plain networks.
func parseHostAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// parseForwardedAddr parses one X-Forwarded-For entry; some proxies add a port or
// bracket IPv6 addresses. Zones are refused: they name an interface of the proxy.
func parseForwardedAddr(s string) netip.Addr {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	if strings.Contains(s, "%") {
		return netip.Addr{}
	}
	return parseHostAddr(s)
}
