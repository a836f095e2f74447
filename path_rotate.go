package apikey

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRotate, Responses: okResponse(rotatedKeyFields)},
		},
		HelpSynopsis:    strings.TrimSpace(rotateHelpSyn),
		HelpDescription: strings.TrimSpace(rotateHelpDesc),
	}
}

// rotatedKeyFields documents pathRotate's answer: the new key, and the old key's id and end.
var rotatedKeyFields = withFields(issuedKeyFields, map[string]*framework.FieldSchema{
	"old_key_id":     {Type: framework.TypeString, Description: "The rotated key's key_id."},
	"old_expires_at": {Type: framework.TypeString, Description: "When the rotated key stops verifying (RFC 3339): now + grace_period, or its own expiry if sooner."},
})

// pathRotate issues a replacement key (a new lease, same role, scopes, name, metadata and
// spent uses) and ends the old key's validity after the grace period. Its two writes are
// covered by a WAL entry (rotation_wal.go).
func (b *backend) pathRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName, errResp := roleNameFrom(d, "role")
	if errResp != nil {
		return errResp, nil
	}
	grace, err := durationField("grace_period", d.Get("grace_period").(int))
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	target, errResp, err := b.rotationTarget(ctx, req, d, roleName)
	if errResp != nil || err != nil {
		return errResp, err
	}
	id := target.KeyID

	lock := b.keyLock(id)
	lock.Lock()
	defer lock.Unlock()
	old, err := b.storageKeyEntry(ctx, req.Storage, id)
	if err != nil {
		return nil, err
	}
	if old != nil {
		rolledBack, err := b.rollBackDeadRotation(ctx, req.Storage, old)
		if err != nil {
			return nil, err
		}
		if !rolledBack {
			if rolledBack, err = b.rollBackUndeliveredRotation(ctx, req, old); err != nil {
				return nil, err
			}
		}
		if rolledBack {
			if old, err = b.storageKeyEntry(ctx, req.Storage, id); err != nil {
				return nil, err
			}
		}
	}
	if resp := rotatable(old, id, time.Now()); resp != nil {
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

	replacement, errResp, err := b.newReplacement(ctx, req, r, old)
	if errResp != nil || err != nil {
		return errResp, err
	}
	retired, err := b.writeRotation(ctx, req.Storage, old, replacement.record, grace)
	if err != nil {
		return nil, err
	}
	b.counters.rotated(roleName)
	resp := b.leaseResponse(replacement)
	resp.Data["old_key_id"] = id
	resp.Data["old_expires_at"] = retired.InvalidAfter.Format(time.RFC3339)
	return resp, nil
}

// rollBackUndeliveredRotation undoes a completed rotation of old by this very request:
// Vault sends a request again, with the same id, only when the plugin died while
// handling it, so the first attempt's answer, and its key, reached nobody. The
// replacement's key_id, derived from the request id, tells that it was this request.
func (b *backend) rollBackUndeliveredRotation(ctx context.Context, req *logical.Request, old *keyEntry) (bool, error) {
	if old.ReplacedBy == "" || old.RotationToken == "" || req.ID == "" {
		return false, nil
	}
	secret, err := b.getMountSecret(ctx, req.Storage)
	if err != nil || secret == nil {
		return false, err
	}
	if old.ReplacedBy != requestKeyID(secret, req.ID) {
		return false, nil
	}
	return true, b.undoRotation(ctx, req.Storage, rotationWAL{OldKeyID: old.KeyID, NewKeyID: old.ReplacedBy, Token: old.RotationToken})
}

// newReplacement builds the replacement for old from role r; it stores nothing. The
// replacement belongs to old's identity and keeps its spent uses and credit state:
// credits left, top-ups and refill period included, with a change of the role's
// max_uses since old was issued applied as a difference.
func (b *backend) newReplacement(ctx context.Context, req *logical.Request, r *role, old *keyEntry) (*issuedKey, *logical.Response, error) {
	now := b.clock.now()
	// One snapshot of the old key's state: uses counted in memory included.
	st := b.usage.Effective(old.KeyID, old.quota(now), old.storedState())
	useCount, lastUsed := st.Count, st.LastUsed
	var credits *creditState
	if r.MaxUses > 0 && old.MaxUses > 0 && !old.sharedCredits() {
		credits = &creditState{Limit: st.Limit + r.MaxUses - old.MaxUses, Period: st.Period}
		if !r.Limits.Refill.enabled() {
			credits.Period = 0
		} else if old.Refill == nil || !old.Refill.enabled() {
			credits.Period = r.Limits.Refill.period(now)
		}
	}
	metadata, added, dropped := rotationMetadata(r.Metadata, old)
	replacement, errResp, err := b.newIssuedKey(ctx, req, issueRequest{
		roleName: old.Role, role: r, scopes: old.Scopes, ttl: old.TTL, name: old.Name,
		metadata: metadata, issueMetadata: added, useCount: useCount, lastUsedAt: lastUsed,
		identity: old.Identity, credits: credits,
	})
	if errResp != nil || err != nil {
		return nil, errResp, err
	}
	for _, k := range dropped {
		replacement.warnings = append(replacement.warnings, fmt.Sprintf("metadata %.40q now comes from the role: the key's own value was not kept", k))
	}
	token, err := newRotationToken()
	if err != nil {
		return nil, nil, err
	}
	replacement.record.RotationToken = token
	return replacement, nil, nil
}

// rotationMetadata is a replacement's metadata: the role's pairs of now, which are
// authoritative as at issue, plus the pairs added to the old key (at issue or by an
// operator) that do not collide with them; dropped names those that did. A record
// written before issue-time pairs were kept apart counts all its pairs as added.
func rotationMetadata(fromRole map[string]string, old *keyEntry) (merged, added map[string]string, dropped []string) {
	own := old.IssueMetadata
	if own == nil {
		own = old.Metadata
	}
	merged = maps.Clone(fromRole)
	if merged == nil {
		merged = map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(own)) {
		roleValue, set := fromRole[k]
		switch {
		case !set:
			if added == nil {
				added = map[string]string{}
			}
			added[k] = own[k]
			merged[k] = own[k]
		case roleValue != own[k]:
			dropped = append(dropped, k)
		}
	}
	return merged, added, dropped
}

// rotationCleanupTimeout bounds undoing a rotation that failed before it answered.
const rotationCleanupTimeout = 30 * time.Second

// writeRotation stores the replacement and retires old, under a WAL entry that is
// deleted only once both writes landed. On failure it undoes what it wrote. The caller
// holds old's lock.
func (b *backend) writeRotation(ctx context.Context, s logical.Storage, old, replacement *keyEntry, grace time.Duration) (*keyEntry, error) {
	w := rotationWAL{OldKeyID: old.KeyID, NewKeyID: replacement.KeyID, Token: replacement.RotationToken}
	walID, err := framework.PutWAL(ctx, s, walKindRotation, w)
	if err != nil {
		return nil, fmt.Errorf("writing rotation WAL entry: %w", err)
	}
	abandon := func(cause error) error {
		// The request's context may be what failed (the client went away, the request
		// timed out): clean up with one of our own.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), rotationCleanupTimeout)
		defer cancel()
		if err := b.undoRotation(cleanup, s, w); err != nil {
			return errors.Join(cause, err) // the periodic rollback finishes it
		}
		return errors.Join(cause, framework.DeleteWAL(cleanup, s, walID))
	}
	if err := b.putNewKeyEntry(ctx, s, replacement); err != nil {
		return nil, abandon(err)
	}

	retired := *old
	retired.InvalidAfter = time.Now().UTC().Add(grace).Truncate(time.Second)
	if until := old.validUntil(); until.Before(retired.InvalidAfter) {
		retired.InvalidAfter = until // a grace never extends the old key's life
	}
	retired.ReplacedBy = replacement.KeyID
	retired.RotationToken = w.Token
	if err := b.putKeyEntry(ctx, s, &retired); err != nil {
		// The write may have landed although it reported an error: then the rotation
		// is complete.
		landed, readErr := b.storageKeyEntry(ctx, s, old.KeyID)
		if readErr != nil || landed == nil || landed.RotationToken != w.Token {
			return nil, abandon(err)
		}
	}
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		// Left in place, the entry would make the periodic rollback undo a rotation
		// whose key the client holds: undo it now and say so.
		return nil, abandon(errors.Join(errRotationLost, err))
	}
	return &retired, nil
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

// rotatable returns an error response when k cannot be rotated.
func rotatable(k *keyEntry, id string, now time.Time) *logical.Response {
	switch {
	case k == nil:
		return logical.ErrorResponse("key %s does not exist", id)
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

const rotateHelpSyn = `Issue a replacement for a key of this role, with a grace period for the old one.`

const rotateHelpDesc = `
Names the key to rotate by key_id, or by the key itself (api_key: proof of possession);
either way it must be a key of this role. Issues a new key (a new lease under
creds/<role>/rotate) with the old key's scopes, name, metadata, identity, spent uses and
credits (max_uses does not restart; remaining uses, top-ups and the refill period carry
over, a change of the role's max_uses applies as a difference), and the role's current
ttl and restrictions. The old key keeps
verifying until now + grace_period (default 0: it stops at once), then verifies as
EXPIRED; a grace longer than the old key's remaining life does not extend it. The
response carries the new key and both expiries (expires_at for the new key,
old_expires_at for the old one). A key can be rotated once, and not while disabled.
A rotation that dies before it answers is rolled back (the old key restored, the
replacement deleted) by the next rotation of the key or by Vault's rollback manager.
`
