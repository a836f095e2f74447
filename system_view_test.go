package apikey

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

type countingSystemView struct {
	logical.StaticSystemView
	calls, ttlCalls int
}

func (c *countingSystemView) ReplicationState() consts.ReplicationState {
	c.calls++
	return c.StaticSystemView.ReplicationState()
}

func (c *countingSystemView) MaxLeaseTTL() time.Duration {
	c.ttlCalls++
	return c.StaticSystemView.MaxLeaseTTL()
}

func (c *countingSystemView) DefaultLeaseTTL() time.Duration {
	c.ttlCalls++
	return c.StaticSystemView.DefaultLeaseTTL()
}

// TestLeaseTTLsAreCached: issuing asks Vault for the mount's TTLs once, not per key.
func TestLeaseTTLsAreCached(t *testing.T) {
	inner := &countingSystemView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: testDefaultTTL, MaxLeaseTTLVal: testMaxTTL}}
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.System = inner
	raw, err := Factory(t.Context(), config)
	require.NoError(t, err)
	e := &testEnv{t: t, b: raw.(*backend), storage: config.StorageView, ctx: t.Context()}
	e.writeRole("svc", nil) // ttl 0: the mount's default applies
	for range 20 {
		k := e.issue("svc", nil)
		require.Equal(t, testDefaultTTL, k.secret.TTL, "the mount's default TTL")
	}
	require.Equal(t, 2, inner.ttlCalls, "one MaxLeaseTTL and one DefaultLeaseTTL round trip, not one per key")
}

func TestReplicationStateIsCached(t *testing.T) {
	inner := &countingSystemView{StaticSystemView: logical.StaticSystemView{
		DefaultLeaseTTLVal: testDefaultTTL, MaxLeaseTTLVal: testMaxTTL,
		ReplicationStateVal: consts.ReplicationPerformanceStandby,
	}}
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.System = inner
	raw, err := Factory(t.Context(), config)
	require.NoError(t, err)
	e := &testEnv{t: t, b: raw.(*backend), storage: config.StorageView, ctx: t.Context()}

	for i := 0; i < 20; i++ {
		e.mustOK(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": "vk_nope"})
	}
	require.Equal(t, 1, inner.calls, "one round trip to Vault, not one per request")
	require.True(t, e.b.System().ReplicationState().HasState(consts.ReplicationPerformanceStandby), "the cached state is the real one")
}
