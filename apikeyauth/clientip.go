package apikeyauth

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
)

// ClientIP returns the address of the client of r as the middleware sends it to verify:
// the connection's peer, or, when the peer is a trusted proxy, the right-most address of
// X-Forwarded-For that is not a trusted proxy. The zero Addr means unknown.
func (m *Middleware) ClientIP(r *http.Request) netip.Addr {
	return clientIP(r, m.trusted)
}

// ClientIPFor is Middleware.ClientIP for code without a Middleware: the same rules, with
// trustedProxies as Config.TrustedProxies (invalid networks are ignored).
func ClientIPFor(r *http.Request, trustedProxies []netip.Prefix) netip.Addr {
	trusted := make([]netip.Prefix, 0, len(trustedProxies))
	for _, p := range trustedProxies {
		if p.IsValid() {
			trusted = append(trusted, clientaddr.NormalizePrefix(p))
		}
	}
	return clientIP(r, trusted)
}

// clientIP implements ClientIP for trusted networks that are valid and unmapped.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := clientaddr.ParseRemoteAddr(r.RemoteAddr)
	if !peer.IsValid() || !clientaddr.Contains(trusted, peer) {
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
		if !clientaddr.Contains(trusted, hop) {
			return hop
		}
		leftmost = hop
	}
	// Every hop is a trusted proxy: the farthest one is the closest we know to the client.
	return leftmost
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

// parseForwardedAddr parses one X-Forwarded-For entry; some proxies add a port or
// bracket IPv6 addresses. Zones are refused: they name an interface of the proxy.
func parseForwardedAddr(s string) netip.Addr {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	if strings.Contains(s, "%") {
		return netip.Addr{}
	}
	return clientaddr.ParseRemoteAddr(s)
}
