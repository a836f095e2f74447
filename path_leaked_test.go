package apikey

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestLeakedReportRevokesValidKeysAndTeachesNothing(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", nil)
	leaked, bystander := e.issue("orders", nil), e.issue("orders", nil)
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(leaked.key), "warms the cache")

	answers := map[string]map[string]interface{}{}
	for name, keys := range map[string][]string{
		"valid and junk":       {leaked.key, "not-a-key", "vk_short"},
		"wrong secret":         {forgeSameKeyID(t, bystander.key), "also junk", "x"},
		"already revoked":      {leaked.key, "junk", "more junk"},
		"nothing valid at all": {"a", "b", "c"},
	} {
		answers[name] = e.mustOK(logical.UpdateOperation, "leaked", map[string]interface{}{"keys": keys}).Data
	}
	for name, data := range answers {
		require.Equal(t, map[string]interface{}{"received": 3}, data, "%s: the same answer whatever the keys", name)
	}
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(leaked.key), "revoked at once, cache included")
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(bystander.key), "a wrong secret for its id kills nothing")
	require.Contains(t, metricsBody(t, e), `apikey_keys_leaked_total{mount="apikey/",role="orders",action="revoke"} 1`+"\n")
}

func TestLeakedReportCanDisableInstead(t *testing.T) {
	e := newTestEnv(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"leaked_action": "disable"})
	e.writeRole("orders", nil)
	k := e.issue("orders", nil)
	e.mustOK(logical.UpdateOperation, "leaked", map[string]interface{}{"keys": []string{k.key}})
	require.Equal(t, verifyapi.CodeDisabled, e.verifyCode(k.key))
	require.Equal(t, true, e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil).Data["disabled"])
}

func TestLeakedReportBounds(t *testing.T) {
	e := newTestEnv(t)
	tooMany := make([]string, maxLeakedKeys+1)
	for i := range tooMany {
		tooMany[i] = "k"
	}
	e.mustFail(logical.UpdateOperation, "leaked", map[string]interface{}{"keys": tooMany}, "keys: at most 100")
	e.mustFail(logical.UpdateOperation, "leaked", map[string]interface{}{}, "keys")
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"leaked_action": "shred"}, "leaked_action")

	// The burst passes, then reports are refused with 429 until the bucket refills.
	var refused *logical.Response
	for range leakedBurst + 1 {
		resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "leaked", Storage: e.storage, Data: map[string]interface{}{"keys": []string{"junk"}}})
		require.NoError(t, err)
		if resp.Data[logical.HTTPStatusCode] == 429 {
			refused = resp
			break
		}
	}
	require.NotNil(t, refused, "a flood is rate-limited")
	require.Contains(t, refused.Data[logical.HTTPRawBody], "too many leak reports")
}

func TestLeakedCheckAnswersLiveWithoutCounting(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("orders", map[string]interface{}{"max_uses": 5})
	live, off := e.issue("orders", nil), e.issue("orders", nil)
	e.mustOK(logical.UpdateOperation, "keys/"+off.keyID, map[string]interface{}{"disabled": true})
	check := func(body map[string]interface{}) (int, string) {
		resp := e.mustOK(logical.UpdateOperation, "leaked/check", body)
		return resp.Data[logical.HTTPStatusCode].(int), string(resp.Data[logical.HTTPRawBody].([]byte))
	}
	tests := []struct {
		name string
		body map[string]interface{}
		want int
	}{
		{"trufflehog's shape, live key", map[string]interface{}{"vault-apikey": map[string]interface{}{"key": []interface{}{live.key}}}, 200},
		{"disabled key", map[string]interface{}{"vault-apikey": map[string]interface{}{"key": []interface{}{off.key}}}, 404},
		{"wrong secret", map[string]interface{}{"k": forgeSameKeyID(t, live.key)}, 404},
		{"junk", map[string]interface{}{"k": "vk_nope", "n": 3}, 404},
		{"empty", map[string]interface{}{}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := check(tt.body)
			require.Equal(t, tt.want, status, body)
			require.NotContains(t, body, live.keyID)
		})
	}
	// Nothing was counted: no use, no verification.
	rec := e.mustOK(logical.ReadOperation, "keys/"+live.keyID, nil).Data
	require.EqualValues(t, 0, rec["use_count"])
	require.EqualValues(t, 5, rec["remaining_uses"])
	require.EqualValues(t, 0, e.mustOK(logical.ReadOperation, "usage", nil).Data["total"])
}
