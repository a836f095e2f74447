package usagestats

import (
	"net/netip"
	"slices"
)

// Network is a client network a key was used from: the /24 of an IPv4 address or the
// /48 of an IPv6 one (an IPv4-mapped IPv6 address counts as IPv4).
type Network struct {
	Prefix netip.Prefix
	// Count is every verification from the network, Refused those not VALID.
	Count   uint64
	Refused uint64
	// FirstSeen and LastSeen are Unix seconds.
	FirstSeen int64
	LastSeen  int64
}

// NetworkOf returns the network counted for a client address; false for the zero Addr.
func NetworkOf(a netip.Addr) (netip.Prefix, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	a = a.Unmap().WithZone("")
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// addNetwork counts one verification from p at now in nets, evicting the least recently
// seen network when limit are held.
func addNetwork(nets *[]Network, p netip.Prefix, refused bool, n uint64, now int64, limit int) {
	s := *nets
	var r uint64
	if refused {
		r = n
	}
	for i := range s {
		if s[i].Prefix == p {
			s[i].Count += n
			s[i].Refused += r
			s[i].LastSeen = max(s[i].LastSeen, now)
			s[i].FirstSeen = min(s[i].FirstSeen, now)
			return
		}
	}
	e := Network{Prefix: p, Count: n, Refused: r, FirstSeen: now, LastSeen: now}
	if len(s) < limit {
		*nets = append(s, e)
		return
	}
	s[oldestNetwork(s)] = e
}

func oldestNetwork(s []Network) int {
	old := 0
	for i := range s {
		if s[i].LastSeen < s[old].LastSeen {
			old = i
		}
	}
	return old
}

// mergeNetworks adds src into dst: counts add up, first and last seen widen; then it
// keeps the limit most recently seen, dropping those last seen before floor.
func mergeNetworks(dst *[]Network, src []Network, floor int64, limit int) {
	s := *dst
	for _, n := range src {
		found := false
		for i := range s {
			if s[i].Prefix == n.Prefix {
				s[i].Count += n.Count
				s[i].Refused += n.Refused
				s[i].FirstSeen = min(s[i].FirstSeen, n.FirstSeen)
				s[i].LastSeen = max(s[i].LastSeen, n.LastSeen)
				found = true
				break
			}
		}
		if !found {
			s = append(s, n)
		}
	}
	s = deleteZero(s, func(n *Network) bool { return n.LastSeen < floor })
	sortNetworks(s)
	if len(s) > limit {
		clear(s[limit:])
		s = s[:limit]
	}
	*dst = s
}

// sortNetworks orders most recently seen first, then by prefix.
func sortNetworks(s []Network) {
	slices.SortFunc(s, func(a, b Network) int {
		if a.LastSeen != b.LastSeen {
			if a.LastSeen > b.LastSeen {
				return -1
			}
			return 1
		}
		return a.Prefix.Compare(b.Prefix)
	})
}

// subNetworks subtracts src's counts from dst, dropping networks that reach zero.
func subNetworks(dst *[]Network, src []Network) {
	s := *dst
	for _, n := range src {
		for i := range s {
			if s[i].Prefix == n.Prefix {
				s[i].Count -= min(s[i].Count, n.Count)
				s[i].Refused -= min(s[i].Refused, n.Refused)
				break
			}
		}
	}
	*dst = deleteZero(s, func(n *Network) bool { return n.Count == 0 })
}
