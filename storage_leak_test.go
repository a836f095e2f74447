package apikey

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

// TestNoPlaintextKeyOrSecretLeaks runs a full flow and then proves that neither any
// plaintext key nor the mount secret appears in a stored value (except the seal-wrapped
// secret entry itself) or in any response other than the issuing one.
func TestNoPlaintextKeyOrSecretLeaks(t *testing.T) {
	e := newTestEnv(t)
	var logs bytes.Buffer
	e.b.Backend.Setup(e.ctx, &logical.BackendConfig{ //nolint:errcheck // re-Setup only swaps the logger
		StorageView: e.storage, System: e.b.System(),
		Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace}),
	})
	var responses []*logical.Response
	record := func(r *logical.Response) *logical.Response { responses = append(responses, r); return r }

	e.writeRole("svc", map[string]interface{}{"scopes": "a:*", "max_uses": 5, "bound_cidrs": "10.0.0.0/8"})
	var keys []issued
	for i := 0; i < 3; i++ {
		keys = append(keys, e.issue("svc", map[string]interface{}{"name": fmt.Sprint("k", i)}))
	}
	for _, k := range keys {
		record(e.mustOK(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": k.key, "client_ip": "10.0.0.1", "scopes": "a:b"}))
		record(e.mustOK(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": k.key}))
		record(e.mustOK(logical.ReadOperation, "keys/"+k.keyID, nil))
	}
	record(e.mustOK(logical.UpdateOperation, "keys/"+keys[0].keyID, map[string]interface{}{"disabled": true}))
	record(e.mustOK(logical.UpdateOperation, "verify", map[string]interface{}{"api_key": keys[0].key}))
	record(e.renew(keys[1], time.Minute))
	record(e.mustOK(logical.ListOperation, "keys/", nil))
	record(e.mustOK(logical.ReadOperation, "config", nil))
	record(e.mustOK(logical.ReadOperation, "roles/svc", nil))
	require.NoError(t, e.revoke(keys[2]))
	require.NoError(t, e.revoke(issued{secret: &logical.Secret{InternalData: map[string]interface{}{"secret_type": secretTypeAPIKey}}}))
	e.mustOK(logical.UpdateOperation, "creds/svc/rotate", map[string]interface{}{"key_id": keys[1].keyID})
	require.NoError(t, e.b.periodic(e.ctx, &logical.Request{Storage: e.storage}))
	e.mustOK(logical.UpdateOperation, "tidy", nil)
	// Error paths: bad fields echo nothing of a key.
	for _, k := range keys {
		secretPart := k.key[len("vk_")+16 : len(k.key)-6]
		resp, _ := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: e.storage,
			Data: map[string]interface{}{"api_key": k.key, "client_ip": k.key}})
		record(resp)
		for field, value := range map[string]interface{}{"scopes": k.key, "ttl": k.key, "name": k.key + "\n", "metadata": k.key} {
			resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "creds/svc", Storage: e.storage,
				Data: map[string]interface{}{field: value}})
			require.True(t, resp.IsError() || err != nil, field)
			if err != nil {
				require.NotContains(t, err.Error(), secretPart[:12], field)
			}
			record(resp)
		}
	}
	require.NotEmpty(t, logs.String(), "the flow logged something, so the scan below means something")

	secret, err := e.b.getMountSecret(e.ctx, e.storage)
	require.NoError(t, err)
	require.Len(t, secret, hmacKeyLen)

	forbidden := []string{string(secret), fmt.Sprintf("%x", secret)}
	secretJSON, _ := json.Marshal(secret) // base64, as JSON stores []byte
	forbidden = append(forbidden, strings.Trim(string(secretJSON), `"`))
	for _, k := range keys {
		secretPart := k.key[len("vk_")+16 : len(k.key)-6]
		forbidden = append(forbidden, k.key, secretPart, secretPart[:12], k.key[:len("vk_")+16+4])
	}

	storedKeys, err := logical.CollectKeys(e.ctx, e.storage)
	require.NoError(t, err)
	require.Contains(t, storedKeys, configSecretKey)
	for _, path := range storedKeys {
		entry, err := e.storage.Get(e.ctx, path)
		require.NoError(t, err)
		for i, f := range forbidden {
			if path == configSecretKey && i < 3 {
				continue // the secret entry holds the secret (seal-wrapped by Vault)
			}
			require.NotContains(t, string(entry.Value), f, "stored value %s leaks forbidden item %d", path, i)
		}
	}
	for _, r := range responses {
		dump := fmt.Sprintf("%#v %#v", r.Data, r.Secret)
		for i, f := range forbidden {
			require.NotContains(t, dump, f, "response leaks forbidden item %d", i)
		}
	}
	for i, f := range forbidden {
		require.NotContains(t, logs.String(), f, "plugin log leaks forbidden item %d", i)
	}
}
