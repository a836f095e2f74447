package apikey

import (
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// replicationStateTTL is how long a fetched replication state is reused.
const replicationStateTTL = 5 * time.Second

// cachedSystemView answers ReplicationState from memory for a few seconds. The SDK asks
// for it on every request (to decide forwarding for operations that ask to be forwarded,
// which none of ours do), and for an external plugin each ask is a gRPC round trip to
// Vault: about 8% of a verify's cost. A node's replication state changes only on events
// (promotion, demotion) after which Vault sets the mount up again anyway.
type cachedSystemView struct {
	logical.SystemView

	mu      sync.Mutex
	state   consts.ReplicationState
	fetched time.Time
}

func (s *cachedSystemView) ReplicationState() consts.ReplicationState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); s.fetched.IsZero() || now.Sub(s.fetched) > replicationStateTTL {
		s.state = s.SystemView.ReplicationState()
		s.fetched = now
	}
	return s.state
}
