package apikey

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const secretTypeAPIKey = "api_key"

// secretAPIKey is the lease type of issued keys. Everything revocation needs is in the
// lease's InternalData (key_id), so a lease revokes even after its role was deleted.
func secretAPIKey(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeAPIKey,
		Fields: map[string]*framework.FieldSchema{
			"api_key": {Type: framework.TypeString, Description: "The API key. Returned once; only its HMAC is stored."},
			"key_id":  {Type: framework.TypeString, Description: "Public identifier of the key."},
		},
		Renew:  b.secretAPIKeyRenew,
		Revoke: b.secretAPIKeyRevoke,
	}
}

func leaseKeyID(req *logical.Request) string {
	if req.Secret == nil {
		return ""
	}
	id, _ := req.Secret.InternalData["key_id"].(string)
	return id
}

func (b *backend) secretAPIKeyRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if ids, ok := importBatchKeyIDs(req); ok {
		return b.renewImportBatch(ctx, req, ids)
	}
	keyID := leaseKeyID(req)
	if keyID == "" {
		return logical.ErrorResponse("lease has no key_id: it cannot be renewed"), nil
	}
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()

	k, err := b.storageKeyEntry(ctx, req.Storage, keyID)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return logical.ErrorResponse("key %s no longer exists", keyID), nil
	}
	ttl, warnings, err := framework.CalculateTTL(b.System(), req.Secret.Increment, k.TTL, 0, k.MaxTTL, 0, req.Secret.IssueTime)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if !k.InvalidAfter.IsZero() {
		// A rotated-out key stops verifying at the end of its grace period whatever its
		// lease does: renewing extends nothing a client could use.
		resp := &logical.Response{Secret: req.Secret}
		resp.Secret.TTL = max(time.Until(k.InvalidAfter), time.Second)
		resp.Secret.MaxTTL = k.MaxTTL
		resp.AddWarning("key " + keyID + " was rotated; it stops verifying at " + k.InvalidAfter.UTC().Format(time.RFC3339))
		return resp, nil
	}
	next := *k
	next.ExpiresAt = time.Now().UTC().Add(ttl).Truncate(time.Second)
	if err := b.putKeyEntry(ctx, req.Storage, &next); err != nil {
		return nil, err
	}

	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = k.MaxTTL
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

// secretAPIKeyRevoke deletes the key record. It is idempotent: a record that is already
// gone (deleted through keys/<key_id>, tidied, or revoked before) is a success. A storage
// failure is returned as a plain error so that Vault retries the revocation; it is never
// logical.ErrInvalidRequest, which would make the lease irrevocable.
func (b *backend) secretAPIKeyRevoke(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if ids, ok := importBatchKeyIDs(req); ok {
		return b.revokeImportBatch(ctx, req, ids)
	}
	keyID := leaseKeyID(req)
	if keyID == "" {
		b.Logger().Warn("revoking a lease without key_id: nothing to delete")
		return nil, nil
	}
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	if err := b.deleteKeyEntry(ctx, req.Storage, keyID); err != nil {
		return nil, err
	}
	// Vault calls revoke again only after a failure, so each lease counts once.
	role, _ := req.Secret.InternalData["role"].(string)
	b.counters.revoked(role)
	return nil, nil
}
