package apikey

import (
	"testing"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

type countingSystemView struct {
	logical.StaticSystemView
	calls int
}

func (c *countingSystemView) ReplicationState() consts.ReplicationState {
	c.calls++
	return c.StaticSystemView.ReplicationState()
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
