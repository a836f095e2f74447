package apikey

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
)

// pathRotate lives under creds/<role> so that an ACL grants rotation per role, like
// issuance: key ids are not secret, so a path that rotated any key by its id would let a
// token of one role take over another role's keys.
func pathRotate(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "creds/" + framework.GenericNameRegex("role") + "/rotate",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "rotate",
			OperationSuffix: "key",
		},
		Fields: map[string]*framework.FieldSchema{
			"role": {
				Type:        framework.TypeString,
				Description: "Role of the key to rotate (lowercase).",
				Required:    true,
			},
			"key_id": {
				Type:        framework.TypeString,
				Description: "Public identifier of the key to rotate; it must be a key of this role. Give key_id or api_key.",
			},
			"api_key": {
				Type:        framework.TypeString,
				Description: "The key to rotate itself (proof of possession); it must be a key of this role. Give key_id or api_key.",
			},
			"grace_period": {
				Type:        framework.TypeDurationSecond,
				Description: "How long the old key keeps verifying (never past its own expiry). Default 0: it stops at once.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRotate},
		},
		HelpSynopsis:    strings.TrimSpace(rotateHelpSyn),
		HelpDescription: strings.TrimSpace(rotateHelpDesc),
	}
}

// pathRotate issues a replacement key (a new lease, same role, scopes, name, metadata and
// spent uses) and ends the old key's validity after the grace period.
func (b *backend) pathRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName, errResp := roleNameFrom(d, "role")
	if errResp != nil {
		return errResp, nil
	}
	grace, err := durationField("grace_period", d.Get("grace_period").(int))
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	old, errResp, err := b.rotationTarget(ctx, req, d, roleName)
	if errResp != nil || err != nil {
		return errResp, err
	}
	id := old.KeyID
	if resp := rotatable(old, id, req.ID, time.Now()); resp != nil {
		return resp, nil
	}
	r, err := b.getRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("role %q no longer exists: issue a new key from another role", roleName), nil
	}
	if missing, ok := scopes.Missing(r.Scopes, old.Scopes); ok {
		return logical.ErrorResponse("role %q no longer grants scope %.40q: issue a new key", roleName, missing), nil
	}

	useCount, lastUsed := old.UseCount, old.LastUsedAt
	if count, last, ok := b.usage.Peek(id); ok {
		useCount, lastUsed = count, last
	}
	replacement, errResp, err := b.newIssuedKey(ctx, req, issueRequest{
		roleName: roleName, role: r, scopes: old.Scopes, ttl: old.TTL, name: old.Name, metadata: old.Metadata,
		useCount: useCount, lastUsedAt: lastUsed,
	})
	if errResp != nil || err != nil {
		return errResp, err
	}
	// Store the replacement first, then retire the old key under its lock: the
	// replacement's lock entry may be the same as the old key's.
	if err := b.putKeyEntry(ctx, req.Storage, replacement.record); err != nil {
		return nil, err
	}
	newID := replacement.record.KeyID

	lock := b.keyLock(id)
	lock.Lock()
	defer lock.Unlock()
	retired, errResp, err := b.retireRotatedKey(ctx, req, id, newID, grace)
	if errResp != nil || err != nil {
		// The old key was revoked or rotated meanwhile, or the write failed: withdraw the
		// replacement. No lock is needed for it: nobody has its key_id yet.
		return errResp, errors.Join(err, b.deleteKeyEntry(ctx, req.Storage, newID))
	}
	resp := b.leaseResponse(replacement)
	resp.Data["old_key_id"] = id
	resp.Data["old_expires_at"] = retired.InvalidAfter.Format(time.RFC3339)
	return resp, nil
}

// rotationTarget finds the key to rotate from key_id or api_key. A key of another role
// and a key that does not exist get the same answer, so the path tells a caller nothing
// about keys outside its role.
func (b *backend) rotationTarget(ctx context.Context, req *logical.Request, d *framework.FieldData, roleName string) (*keyEntry, *logical.Response, error) {
	rawID, byID := d.GetOk("key_id")
	rawKey, byKey := d.GetOk("api_key")
	if byID == byKey {
		return nil, logical.ErrorResponse("give exactly one of key_id and api_key"), nil
	}
	if byID {
		id := rawID.(string)
		if !keyformat.ValidKeyID(id) {
			return nil, logical.ErrorResponse("key_id must be %d base62 characters", keyformat.KeyIDLen), nil
		}
		k, err := b.storageKeyEntry(ctx, req.Storage, id)
		if err != nil {
			return nil, nil, err
		}
		if k == nil || k.Role != roleName {
			return nil, logical.ErrorResponse("key_id: role %q has no key %s", roleName, id), nil
		}
		return k, nil, nil
	}
	notOurs := logical.ErrorResponse("api_key: not a key of role %q", roleName)
	key := rawKey.(string)
	parsed, err := keyformat.Parse(key)
	if err != nil {
		return nil, notOurs, nil
	}
	k, err := b.storageKeyEntry(ctx, req.Storage, parsed.KeyID)
	if err != nil {
		return nil, nil, err
	}
	secret, err := b.getMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, nil, err
	}
	if k == nil || secret == nil || !hashesEqual(keyHash(secret, key), k.Hash) || k.Role != roleName {
		return nil, notOurs, nil
	}
	return k, nil, nil
}

// retireRotatedKey points the old key at its replacement and sets the end of its grace.
// The caller holds the old key's lock.
func (b *backend) retireRotatedKey(ctx context.Context, req *logical.Request, id, newID string, grace time.Duration) (*keyEntry, *logical.Response, error) {
	current, err := b.storageKeyEntry(ctx, req.Storage, id)
	if err != nil {
		return nil, nil, err
	}
	if refused := rotatable(current, id, req.ID, time.Now()); refused != nil {
		return nil, refused, nil
	}
	next := *current
	if isRotationReplay(current, req.ID) {
		// Vault replays a request once when the plugin process died under it: the first
		// attempt's replacement never reached anyone (Vault made no lease for it), so
		// withdraw it and hand out this one. The grace was set then.
		if err := b.deleteKeyEntry(ctx, req.Storage, current.ReplacedBy); err != nil {
			return nil, nil, err
		}
	} else {
		next.InvalidAfter = time.Now().UTC().Add(grace).Truncate(time.Second)
		if until := current.validUntil(); until.Before(next.InvalidAfter) {
			next.InvalidAfter = until // a grace never extends the old key's life
		}
	}
	next.ReplacedBy = newID
	next.RotationRequestID = req.ID
	if err := b.putKeyEntry(ctx, req.Storage, &next); err != nil {
		// The write may have landed although it reported an error: then the old key
		// already points at the new one, which must not be withdrawn.
		if landed, readErr := b.storageKeyEntry(ctx, req.Storage, id); readErr == nil && landed != nil && landed.ReplacedBy == newID {
			return &next, nil, nil
		}
		return nil, nil, err
	}
	return &next, nil, nil
}

// rotatable returns an error response when k cannot be rotated by request requestID.
func rotatable(k *keyEntry, id, requestID string, now time.Time) *logical.Response {
	switch {
	case k == nil:
		return logical.ErrorResponse("key %s does not exist", id)
	case isRotationReplay(k, requestID):
		return nil
	case k.ReplacedBy != "":
		return logical.ErrorResponse("key %s was already rotated (replaced by %s)", id, k.ReplacedBy)
	case k.Disabled:
		// A disabled key may be compromised: rotating it must not mint a working one.
		return logical.ErrorResponse("key %s is disabled: enable it before rotating, or issue a new key", id)
	case !now.Before(k.validUntil()):
		return logical.ErrorResponse("key %s has expired: issue a new key", id)
	}
	return nil
}

// isRotationReplay reports whether k was rotated by this very request before: Vault
// retries a request with the same ID after restarting a crashed plugin.
func isRotationReplay(k *keyEntry, requestID string) bool {
	return requestID != "" && k.ReplacedBy != "" && k.RotationRequestID == requestID
}

const rotateHelpSyn = `Issue a replacement for a key of this role, with a grace period for the old one.`

const rotateHelpDesc = `
Names the key to rotate by key_id, or by the key itself (api_key: proof of possession);
either way it must be a key of this role. Issues a new key (a new lease under
creds/<role>/rotate) with the old key's scopes, name, metadata and spent uses (max_uses
does not restart), and the role's current ttl and restrictions. The old key keeps
verifying until now + grace_period (default 0: it stops at once), then verifies as
EXPIRED; a grace longer than the old key's remaining life does not extend it. The
response carries the new key and both expiries (expires_at for the new key,
old_expires_at for the old one). A key can be rotated once, and not while disabled.
`
