package apikeyauth

import (
	"net/netip"
	"sync"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/lru"
)

// failureBudget counts, per client network, the refusals that say "this is not a usable
// key". The key format's checksum is public, so anyone can mint well-formed keys that
// only Vault can refuse; without a budget each of them costs a Vault call.
//
// Each client network has a fixed window that starts with its first counted refusal.
// Networks are kept in a bounded LRU: beyond the bound the least recently seen one is
// forgotten and starts again with a full budget, so memory wins over exactness under a
// flood from very many addresses.
type failureBudget struct {
	limit  int
	window time.Duration

	mu      sync.Mutex // makes a read and the following write of one network atomic
	clients *lru.Cache[netip.Prefix, failureWindow]
}

type failureWindow struct {
	start    time.Time
	failures int
}

func newFailureBudget(limit int, window time.Duration, maxClients int) *failureBudget {
	return &failureBudget{limit: limit, window: window, clients: lru.New[netip.Prefix, failureWindow](maxClients)}
}

// countsAgainstBudget: the codes that mean the presented key is no usable key at all.
// Refusals of a real, valid key (scope, address, rate, uses) are its owner's business
// and Vault limits them already.
func countsAgainstBudget(code string) bool {
	switch code {
	case CodeMalformed, CodeNotFound, CodeDisabled, CodeExpired:
		return true
	}
	return false
}

// clientNetwork is what a budget is kept for: the address itself for IPv4, its /64 for
// IPv6 (one host usually holds a whole /64, so single IPv6 addresses cost it nothing),
// and the zero Prefix for an unknown address (all unknown clients share one budget).
func clientNetwork(a netip.Addr) netip.Prefix {
	switch {
	case !a.IsValid():
		return netip.Prefix{}
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// exhausted reports whether client has spent its budget at now, and when it may try
// again.
func (b *failureBudget) exhausted(client netip.Addr, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w, ok := b.clients.Get(clientNetwork(client))
	if !ok || w.failures < b.limit {
		return 0, false
	}
	left := w.start.Add(b.window).Sub(now)
	if left <= 0 {
		return 0, false
	}
	return left, true
}

// record counts one refusal for client at now.
func (b *failureBudget) record(client netip.Addr, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	network := clientNetwork(client)
	w, ok := b.clients.Get(network)
	if !ok || !now.Before(w.start.Add(b.window)) {
		w = failureWindow{start: now}
	}
	w.failures++
	b.clients.Add(network, w)
}
