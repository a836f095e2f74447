package apikey

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

func pathKeys(b *backend) []*framework.Path {
	keyIDField := &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Public identifier of the key (key_id in the creds response).",
		Required:    true,
	}
	return []*framework.Path{
		{
			Pattern: "keys/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "keys",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathKeysList, Responses: listResponse(true)},
			},
			HelpSynopsis:    strings.TrimSpace(keysListHelpSyn),
			HelpDescription: strings.TrimSpace(keysListHelpDesc),
		},
		{
			Pattern: "keys/" + framework.GenericNameRegex("key_id"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "key-info",
			},
			Fields: map[string]*framework.FieldSchema{
				"key_id": keyIDField,
				"disabled": {
					Type:        framework.TypeBool,
					Description: "Disable (true) or re-enable (false) the key. A disabled key verifies as DISABLED; its lease is untouched.",
				},
				"name": {
					Type:        framework.TypeString,
					Description: "A label for the key.",
				},
				"metadata": {
					Type:        framework.TypeKVPairs,
					Description: "Replace the key's metadata with these pairs.",
				},
			},
			// Keys are only created through creds/, so a write to an unknown key_id is an
			// update that answers 404, never a create.
			ExistenceCheck: func(context.Context, *logical.Request, *framework.FieldData) (bool, error) { return true, nil },
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathKeyRead, Responses: okResponse(keyRecordFields)},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeyUpdate, Responses: okResponse(keyRecordFields)},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathKeyDelete, Responses: noContentResponse()},
			},
			HelpSynopsis:    strings.TrimSpace(keyHelpSyn),
			HelpDescription: strings.TrimSpace(keyHelpDesc),
		},
	}
}

func (b *backend) keyLock(keyID string) *locksutil.LockEntry {
	return locksutil.LockForKey(b.keyLocks, keyID)
}

// keyIDFrom validates the key_id path segment; on failure it returns the error response.
func keyIDFrom(d *framework.FieldData) (string, *logical.Response) {
	id := d.Get("key_id").(string)
	if !keyformat.ValidKeyID(id) {
		return "", logical.ErrorResponse("key_id must be %d base62 characters", keyformat.KeyIDLen)
	}
	return id, nil
}

func (b *backend) pathKeysList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	ids, err := req.Storage.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	info := make(map[string]interface{}, len(ids))
	listed := ids[:0]
	for _, id := range ids {
		k, err := b.inventoryKeyEntry(ctx, req.Storage, id)
		if err != nil {
			return nil, err
		}
		if k == nil { // deleted between List and Get
			continue
		}
		listed = append(listed, id)
		read := b.keyReadData(k)
		info[id] = map[string]interface{}{
			"role":         k.Role,
			"name":         k.Name,
			"expires_at":   read["expires_at"],
			"disabled":     k.Disabled,
			"use_count":    read["use_count"],
			"last_used_at": read["last_used_at"],
		}
	}
	return logical.ListResponseWithInfo(listed, info), nil
}

// keyRecordFields documents keyReadData.
var keyRecordFields = withFields(keyPublicFields, map[string]*framework.FieldSchema{
	"created_at":       {Type: framework.TypeString, Description: "When the key was issued (RFC 3339)."},
	"disabled":         {Type: framework.TypeBool, Description: "Whether the key is disabled."},
	"bound_cidrs":      {Type: framework.TypeStringSlice, Description: "Networks the key may be used from."},
	"rate_limit":       {Type: framework.TypeFloat, Description: "Requests per second allowed (0 = off)."},
	"rate_limit_burst": {Type: framework.TypeInt, Description: "Token bucket size of the rate limit."},
	"max_uses":         {Type: framework.TypeInt64, Description: "Uses allowed (0 = unlimited)."},
	"use_count":        {Type: framework.TypeInt64, Description: "Uses counted so far."},
	"last_used_at":     {Type: framework.TypeString, Description: "Last counted use (RFC 3339), or empty."},
	"remaining_uses":   {Type: framework.TypeInt64, Description: "Uses left (keys with max_uses only)."},
	"replaced_by":      {Type: framework.TypeString, Description: "key_id of the key that rotated this one out (rotated keys only)."},
})

func (b *backend) keyReadData(k *keyEntry) map[string]interface{} {
	data := k.publicData(time.Now())
	data["created_at"] = k.CreatedAt.UTC().Format(time.RFC3339)
	data["disabled"] = k.Disabled
	data["bound_cidrs"] = nonNilStrings(k.BoundCIDRs)
	data["rate_limit"] = k.RateLimit
	data["rate_limit_burst"] = k.RateLimitBurst
	data["max_uses"] = k.MaxUses
	// Uses counted in memory since the last flush are included.
	count, lastUsed := k.UseCount, k.LastUsedAt
	if c, last, ok := b.usage.Peek(k.KeyID); ok {
		count, lastUsed = c, last
	}
	data["use_count"] = count
	data["last_used_at"] = ""
	if !lastUsed.IsZero() {
		data["last_used_at"] = lastUsed.UTC().Format(time.RFC3339)
	}
	if k.MaxUses > 0 {
		data["remaining_uses"] = max(k.MaxUses-count, 0)
	}
	if k.ReplacedBy != "" {
		data["replaced_by"] = k.ReplacedBy
	}
	return data
}

func (b *backend) pathKeyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := keyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	k, err := b.cachedKeyEntry(ctx, req.Storage, id)
	if err != nil || k == nil {
		return nil, err
	}
	return &logical.Response{Data: b.keyReadData(k)}, nil
}

func (b *backend) pathKeyUpdate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := keyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	lock := b.keyLock(id)
	lock.Lock()
	defer lock.Unlock()

	k, err := b.storageKeyEntry(ctx, req.Storage, id)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("key %s does not exist", id))
	}
	next := *k
	if v, ok := d.GetOk("disabled"); ok {
		next.Disabled = v.(bool)
	}
	if v, ok := d.GetOk("name"); ok {
		next.Name = v.(string)
		if err := validateLabel("name", next.Name); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	if v, ok := d.GetOk("metadata"); ok {
		next.Metadata = nonNilMap(v.(map[string]string))
		// The operator's pairs replace the issuer's; a rotation still lets the role's win.
		next.IssueMetadata = next.Metadata
		if err := validateMetadata(next.Metadata); err != nil {
			return logical.ErrorResponse("metadata: %s", err), nil
		}
	}
	if err := b.putKeyEntry(ctx, req.Storage, &next); err != nil {
		return nil, err
	}
	return &logical.Response{Data: b.keyReadData(&next)}, nil
}

// pathKeyDelete makes the key invalid at once. Its lease stays until it ends and then
// revokes as a no-op (revocation is idempotent).
func (b *backend) pathKeyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := keyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	lock := b.keyLock(id)
	lock.Lock()
	defer lock.Unlock()
	return nil, b.deleteKeyEntry(ctx, req.Storage, id)
}

const keysListHelpSyn = `List issued keys by key_id.`

const keysListHelpDesc = `
Lists the key_id of every key this mount has issued and not yet revoked or tidied.
"vault list -detailed" also shows each key's role, name, expires_at, disabled flag,
use_count and last_used_at.
`

const keyHelpSyn = `Read, update or delete one key's record (never the key itself).`

const keyHelpDesc = `
Reading shows a key's metadata: role, name, scopes, metadata, created_at, expires_at,
ttl, disabled, its restrictions, use_count, last_used_at and (with max_uses)
remaining_uses. Use counts are kept in memory and written to storage in the background,
so a read on the node that counted them is exact. Neither the key nor its hash is ever returned.
Updating may set disabled (true/false), name and metadata. Deleting makes the key invalid
at once; its lease later revokes as a no-op.
`
