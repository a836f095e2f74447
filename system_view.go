package apikey

import (
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// systemViewTTL is how long a value fetched from Vault's system view is reused.
const systemViewTTL = 5 * time.Second

// cachedSystemView answers the system-view calls made on every request from memory for
// a few seconds; for an external plugin each is a gRPC round trip to Vault.
//
//   - ReplicationState: the SDK asks for it on every request (to decide forwarding for
//     operations that ask to be forwarded, which none of ours do): about 8% of a
//     verify's cost. A node's replication state changes only on events (promotion,
//     demotion) after which Vault sets the mount up again anyway.
//   - DefaultLeaseTTL and MaxLeaseTTL: every issue and renewal computes its TTL with
//     them. A mount tuned meanwhile is seen within systemViewTTL; until then Vault itself
//     still caps the lease with the tuned values when it registers it, and the key's
//     record, which would show a later expires_at than its lease, is deleted when the
//     lease is revoked.
type cachedSystemView struct {
	logical.SystemView

	mu         sync.Mutex
	state      cachedValue[consts.ReplicationState]
	defaultTTL cachedValue[time.Duration]
	maxTTL     cachedValue[time.Duration]
}

// cachedValue is one value and when it was fetched.
type cachedValue[T any] struct {
	value   T
	fetched time.Time
}

// get returns the cached value, fetching it when it is older than systemViewTTL. The
// caller holds the view's mutex.
func (c *cachedValue[T]) get(fetch func() T) T {
	if now := time.Now(); c.fetched.IsZero() || now.Sub(c.fetched) > systemViewTTL {
		c.value = fetch()
		c.fetched = now
	}
	return c.value
}

func (s *cachedSystemView) ReplicationState() consts.ReplicationState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.get(s.SystemView.ReplicationState)
}

func (s *cachedSystemView) DefaultLeaseTTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.defaultTTL.get(s.SystemView.DefaultLeaseTTL)
}

func (s *cachedSystemView) MaxLeaseTTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxTTL.get(s.SystemView.MaxLeaseTTL)
}
