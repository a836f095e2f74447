package apikey

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
)

// Identities: who keys belong to. A key's identity is set at issue (role_limits.go);
// identities/<id> lists an identity's keys with totals and its shared credits, and
// identities/<id>/revoke deletes all its keys.
//
// Storage, under identities/ (local to the cluster, like keys/):
//
//	identities/<id>/keys/<key_id>  an index entry per key of the identity, written before
//	                               the key record and deleted after it, so the index
//	                               never misses a key (an entry whose record is gone is
//	                               skipped)
//	identities/<id>/credits        the identity's shared credits (shared_limits keys with
//	                               max_uses), flushed from memory like a key's use count

const identityPrefix = "identities/"

func identityKeysPrefix(identity string) string { return identityPrefix + identity + "/keys/" }

func identityKeyPath(identity, keyID string) string { return identityKeysPrefix(identity) + keyID }

func identityCreditsPath(identity string) string { return identityPrefix + identity + "/credits" }

// identityCredits is an identity's shared credit state as stored (see usage.State).
type identityCredits struct {
	UseCount   int64     `json:"use_count"`
	LastUsedAt time.Time `json:"last_used_at,omitempty"`
	Limit      int64     `json:"limit"`
	Period     int64     `json:"period,omitempty"`
}

func (c identityCredits) state() usage.State {
	return usage.State{Count: c.UseCount, LastUsed: c.LastUsedAt, Limit: c.Limit, Period: c.Period}
}

// putNewKeyEntry stores the record of a key that is being created (issue, rotation,
// import): its identity's index entry first, so no key of an identity is ever missing
// from the index.
func (b *backend) putNewKeyEntry(ctx context.Context, s logical.Storage, k *keyEntry) error {
	if k.Identity != "" {
		if err := s.Put(ctx, &logical.StorageEntry{Key: identityKeyPath(k.Identity, k.KeyID), Value: []byte("{}")}); err != nil {
			return fmt.Errorf("storing the identity index entry: %w", err)
		}
	}
	return b.putKeyEntry(ctx, s, k)
}

// identityKeyIDs lists the key ids the index holds for identity (entries of deleted
// keys may remain: callers read each record and check its identity).
func (b *backend) identityKeyIDs(ctx context.Context, s logical.Storage, identity string) ([]string, error) {
	ids, err := s.List(ctx, identityKeysPrefix(identity))
	if err != nil {
		return nil, fmt.Errorf("listing the keys of an identity: %w", err)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return strings.HasSuffix(id, "/") })
	slices.Sort(ids)
	return ids, nil
}

// storedIdentityCredits reads an identity's shared credits; found is false when none
// were stored.
func (b *backend) storedIdentityCredits(ctx context.Context, s logical.Storage, identity string) (c identityCredits, found bool, err error) {
	entry, err := s.Get(ctx, identityCreditsPath(identity))
	if err != nil {
		return c, false, fmt.Errorf("reading an identity's credits: %w", err)
	}
	if entry == nil {
		return c, false, nil
	}
	if err := entry.DecodeJSON(&c); err != nil {
		return c, false, fmt.Errorf("decoding an identity's credits: %w", err)
	}
	return c, true, nil
}

// creditSeed is the stored state of the credits k spends, for the use counts to start
// from when they hold none: the key's own record, or for credits shared by an identity,
// the identity's stored credits (a storage read, only while this node holds no count
// for the identity). An identity without stored credits starts with the key's max_uses.
func (b *backend) creditSeed(ctx context.Context, s logical.Storage, k *keyEntry, now time.Time) (usage.State, error) {
	if !k.sharedCredits() {
		return k.storedState(), nil
	}
	if b.usage.HasQuota(k.limits.sharedAccount) {
		return usage.State{}, nil // not read
	}
	c, found, err := b.storedIdentityCredits(ctx, s, k.Identity)
	if err != nil {
		return usage.State{}, err
	}
	if !found {
		return usage.State{Limit: k.MaxUses, Period: k.quota(now).Period}, nil
	}
	return c.state(), nil
}

// flushIdentity writes an identity's shared credits from memory to storage.
func (b *backend) flushIdentity(ctx context.Context, s logical.Storage, identity string) error {
	account := identityAccountPrefix + identity
	lock := b.keyLock(account)
	lock.Lock()
	defer lock.Unlock()
	p, ok := b.usage.Snapshot(account)
	if !ok {
		return nil
	}
	if err := b.putIdentityCredits(ctx, s, identity, p.State); err != nil {
		return err
	}
	b.usage.Flushed(p)
	return nil
}

func (b *backend) putIdentityCredits(ctx context.Context, s logical.Storage, identity string, st usage.State) error {
	entry, err := logical.StorageEntryJSON(identityCreditsPath(identity), identityCredits{
		UseCount: st.Count, LastUsedAt: st.LastUsed.UTC(), Limit: st.Limit, Period: st.Period,
	})
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing an identity's credits: %w", err)
	}
	return nil
}

func pathIdentities(b *backend) []*framework.Path {
	identityField := &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "The identity: a Vault entity id, or the identity given at issue.",
		Required:    true,
	}
	return []*framework.Path{
		{
			Pattern: "identities/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "identities",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathIdentitiesList, Responses: listResponse(false)},
			},
			HelpSynopsis:    strings.TrimSpace(identitiesListHelpSyn),
			HelpDescription: strings.TrimSpace(identitiesListHelpDesc),
		},
		{
			Pattern: "identities/" + identityPattern + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "identity",
			},
			Fields: map[string]*framework.FieldSchema{"identity": identityField},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathIdentityRead, Responses: okResponse(identityReadFields)},
			},
			HelpSynopsis:    strings.TrimSpace(identityHelpSyn),
			HelpDescription: strings.TrimSpace(identityHelpDesc),
		},
		{
			Pattern: "identities/" + identityPattern + "/revoke$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationVerb:   "revoke",
				OperationSuffix: "identity-keys",
			},
			Fields: map[string]*framework.FieldSchema{"identity": identityField},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathIdentityRevoke, Responses: okResponse(identityRevokeFields)},
			},
			HelpSynopsis:    strings.TrimSpace(identityRevokeHelpSyn),
			HelpDescription: strings.TrimSpace(identityRevokeHelpDesc),
		},
	}
}

var identityReadFields = map[string]*framework.FieldSchema{
	"identity":         {Type: framework.TypeString, Description: "The identity."},
	"keys":             {Type: framework.TypeStringSlice, Description: "key_id of each of its keys (issued, not revoked or tidied)."},
	"key_info":         {Type: framework.TypeMap, Description: "Per key_id: role, name, status, use_count, last_used_at, shared_limits."},
	"key_count":        {Type: framework.TypeInt, Description: "How many keys it has."},
	"use_count":        {Type: framework.TypeInt64, Description: "Uses of all its keys."},
	"shared_limits":    {Type: framework.TypeBool, Description: "Whether any of its keys shares limits with the others."},
	"remaining_uses":   {Type: framework.TypeInt64, Description: "Shared credits left (identities with shared_limits keys that have max_uses)."},
	"shared_use_count": {Type: framework.TypeInt64, Description: "Uses counted against the shared credits."},
	"next_refill_at":   {Type: framework.TypeString, Description: "When the shared credits refill next (RFC 3339), if they do."},
}

var identityRevokeFields = map[string]*framework.FieldSchema{
	"identity": {Type: framework.TypeString, Description: "The identity."},
	"revoked":  {Type: framework.TypeInt, Description: "How many keys were revoked (0 when none were left)."},
	"key_ids":  {Type: framework.TypeStringSlice, Description: "key_id of each revoked key."},
}

// identityFrom validates the identity path segment.
func identityFrom(d *framework.FieldData) (string, *logical.Response) {
	id := d.Get("identity").(string)
	if err := validateIdentity("identity", id); err != nil {
		return "", logical.ErrorResponse(err.Error())
	}
	return id, nil
}

func (b *backend) pathIdentitiesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	entries, err := req.Storage.List(ctx, identityPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing identities: %w", err)
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, strings.TrimSuffix(e, "/"))
	}
	slices.Sort(ids)
	return logical.ListResponse(slices.Compact(ids)), nil
}

// identityKeys reads the records of identity's keys, skipping index entries whose
// record is gone or belongs to no longer this identity.
func (b *backend) identityKeys(ctx context.Context, s logical.Storage, identity string) ([]*keyEntry, error) {
	ids, err := b.identityKeyIDs(ctx, s, identity)
	if err != nil {
		return nil, err
	}
	keys := make([]*keyEntry, 0, len(ids))
	for _, id := range ids {
		k, err := b.inventoryKeyEntry(ctx, s, id)
		if err != nil {
			return nil, err
		}
		if k != nil && k.Identity == identity {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (b *backend) pathIdentityRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	identity, errResp := identityFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	keys, err := b.identityKeys(ctx, req.Storage, identity)
	if err != nil {
		return nil, err
	}
	stored, hasCredits, err := b.storedIdentityCredits(ctx, req.Storage, identity)
	if err != nil {
		return nil, err
	}
	account := identityAccountPrefix + identity
	_, inMemory := b.usage.State(account)
	if len(keys) == 0 && !hasCredits && !inMemory {
		return nil, nil // 404
	}

	now := b.clock.now()
	ids := make([]string, 0, len(keys))
	info := make(map[string]interface{}, len(keys))
	var total int64
	shared := false
	var creditKey *keyEntry // a key whose quota says how the shared credits refill
	for _, k := range keys {
		count, lastUsed := b.keyUse(k)
		total += count
		ids = append(ids, k.KeyID)
		info[k.KeyID] = map[string]interface{}{
			"role":          k.Role,
			"name":          k.Name,
			"status":        keyStatus(k, now),
			"use_count":     count,
			"last_used_at":  formatLastUsed(lastUsed),
			"shared_limits": k.limits.shared,
		}
		if k.limits.shared {
			shared = true
			if creditKey == nil && k.sharedCredits() {
				creditKey = k
			}
		}
	}
	data := map[string]interface{}{
		"identity":      identity,
		"keys":          ids,
		"key_info":      info,
		"key_count":     len(ids),
		"use_count":     total,
		"shared_limits": shared,
	}
	if hasCredits || inMemory || creditKey != nil {
		seed := stored.state()
		q := usage.Quota{Limited: true}
		if creditKey != nil {
			q = creditKey.quota(now)
			if !hasCredits {
				seed = usage.State{Limit: creditKey.MaxUses, Period: q.Period}
			}
		}
		st := b.usage.Effective(account, q, seed)
		data["remaining_uses"] = st.Remaining()
		data["shared_use_count"] = st.Count
		if creditKey != nil && creditKey.Refill != nil && creditKey.Refill.enabled() {
			data["next_refill_at"] = creditKey.Refill.next(now).Format(time.RFC3339)
		}
	}
	return &logical.Response{Data: data}, nil
}

// pathIdentityRevoke deletes the records of all keys of the identity, as keys/<key_id>
// DELETE does: each stops verifying at once and its lease later revokes as a no-op.
// The identity's shared credits stay (a new key of the identity does not get its spent
// credits back). Repeating it revokes nothing more and succeeds.
func (b *backend) pathIdentityRevoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	identity, errResp := identityFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	ids, err := b.identityKeyIDs(ctx, req.Storage, identity)
	if err != nil {
		return nil, err
	}
	revoked := make([]string, 0, len(ids))
	for _, id := range ids {
		role, gone, err := b.revokeIdentityKey(ctx, req.Storage, identity, id)
		if err != nil {
			if len(revoked) > 0 {
				b.Logger().Error("identity revoke stopped by an error", "identity", identity, "revoked", len(revoked), "error", err)
			}
			return nil, err
		}
		if gone {
			revoked = append(revoked, id)
			b.counters.revoked(role)
			b.Logger().Info("key revoked with its identity", "key_id", id, "role", role, "identity", identity)
		}
	}
	b.Logger().Warn("identity keys revoked", "identity", identity, "revoked", len(revoked))
	return &logical.Response{Data: map[string]interface{}{
		"identity": identity,
		"revoked":  len(revoked),
		"key_ids":  revoked,
	}}, nil
}

// revokeIdentityKey deletes key id if it (still) belongs to identity; a stale index
// entry is removed.
func (b *backend) revokeIdentityKey(ctx context.Context, s logical.Storage, identity, id string) (role string, deleted bool, err error) {
	lock := b.keyLock(id)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, s, id)
	if err != nil {
		return "", false, err
	}
	if k == nil || k.Identity != identity {
		return "", false, s.Delete(ctx, identityKeyPath(identity, id))
	}
	return k.Role, true, b.deleteKeyEntry(ctx, s, id)
}

const identitiesListHelpSyn = `List the identities that have keys or shared credits.`

const identitiesListHelpDesc = `
Lists the identities keys were issued to (Vault entity ids, or identities given at
issue where the role has allow_identity=true), and those with shared credits stored.
Read identities/<id> for an identity's keys and totals.
`

const identityHelpSyn = `An identity's keys and totals.`

const identityHelpDesc = `
Shows the keys that belong to the identity (keys, and key_info with each one's role,
name, status, use_count, last_used_at and shared_limits), key_count, use_count (uses of
all its keys), and for identities whose keys share limits (role shared_limits=true)
with max_uses: remaining_uses and shared_use_count of the shared credits, and
next_refill_at when they refill. Counts kept in memory on this node and not yet flushed
are included. An identity with no keys and no shared credits answers 404.
identities/<id>/revoke revokes all its keys.
`

const identityRevokeHelpSyn = `Revoke every key of an identity.`

const identityRevokeHelpDesc = `
Deletes the record of every key that belongs to the identity, as keys/<key_id> DELETE
does: each key stops verifying at once, and its lease later revokes as a no-op. Each
revoked key is logged (key_id, role, identity) and counted as revoked. The answer has
revoked (how many) and key_ids. The identity's shared credits are kept, so spent
credits do not come back with a new key. Revoking again revokes nothing and succeeds.
`

// pathLimits are the paths of credits and identities, for backend.go's PathAppend.
func pathLimits(b *backend) []*framework.Path {
	return append([]*framework.Path{pathKeyCredits(b)}, pathIdentities(b)...)
}
