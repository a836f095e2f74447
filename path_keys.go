package apikey

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
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
			Fields: keysListFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathKeysList, Responses: pagedListResponse()},
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

// keysListFields are the filters and paging of the keys/ LIST. All but metadata are
// TypeString because key_filter.go parses them: see there.
func keysListFields() map[string]*framework.FieldSchema {
	statuses := make([]interface{}, 0, 4)
	for _, s := range keyStatusNames() {
		statuses = append(statuses, s)
	}
	return map[string]*framework.FieldSchema{
		"role": {
			Type:        framework.TypeString,
			Description: "Only keys issued from this role.",
			Query:       true,
		},
		"status": {
			Type: framework.TypeString,
			Description: "Only keys with this status: disabled, else expired (past expires_at), " +
				"else rotated (rotated out, still in its grace period), else active.",
			AllowedValues: statuses,
			Query:         true,
		},
		"expiring_within": {
			Type:        framework.TypeString,
			Description: "Only keys not yet expired that expire within this duration (such as 168h, 7d, or seconds).",
			Query:       true,
		},
		"unused_for": {
			Type:        framework.TypeString,
			Description: "Only keys not used for this duration (such as 2160h, 90d, or seconds); a key never used counts from its creation.",
			Query:       true,
		},
		"never_used": {
			Type:        framework.TypeString,
			Description: "true: only keys never used; false: only keys used at least once.",
			Query:       true,
		},
		"name": {
			Type:        framework.TypeString,
			Description: "Only keys with this name; '*' matches any run of characters (as in ci-*).",
			Query:       true,
		},
		"metadata": {
			Type:        framework.TypeKVPairs,
			Description: "Only keys whose metadata has every one of these pairs (key=value, repeatable).",
			Query:       true,
		},
		"identity": {
			Type:        framework.TypeString,
			Description: "Only keys that belong to this identity (a Vault entity id, or the identity given at issue).",
			Query:       true,
		},
		"after": {
			Type:        framework.TypeString,
			Description: "List only key_ids sorted after this one: the next_after of the previous page.",
			Query:       true,
		},
		"limit": {
			Type:        framework.TypeString,
			Description: fmt.Sprintf("Most keys one page returns (1 to %d, default %d).", maxKeysListLimit, defaultKeysListLimit),
			Query:       true,
		},
	}
}

func (b *backend) pathKeysList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	filter, err := keyFilterFromFields(d, b.keyUse)
	if err != nil {
		return logical.ErrorResponse("%s", err), nil
	}
	page, err := keyPageFromFields(d)
	if err != nil {
		return logical.ErrorResponse("%s", err), nil
	}
	ids, err := req.Storage.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	// Folders are not keys; sorting makes pages stable whatever order storage lists in
	// (Vault's storage has no paged List, so every page lists all ids).
	ids = slices.DeleteFunc(ids, func(id string) bool { return strings.HasSuffix(id, "/") })
	slices.Sort(ids)
	start, found := slices.BinarySearch(ids, page.after)
	if found {
		start++
	}

	budget := keysListScanBudget
	if !page.paged {
		page.limit, budget = len(ids), len(ids)
	}
	now := b.clock.now()
	keys := make([]string, 0, min(page.limit, len(ids)-start))
	info := make(map[string]interface{}, cap(keys))
	next := start
	// The budget bounds the records read, so a filter that matches little still answers
	// in bounded time; the client goes on from next_after.
	for scanned := 0; next < len(ids) && scanned < budget && len(keys) < page.limit; scanned++ {
		id := ids[next]
		next++
		k, err := b.inventoryKeyEntry(ctx, req.Storage, id)
		if err != nil {
			return nil, err
		}
		if k == nil || !filter.matches(k, now) { // nil: deleted between List and Get
			continue
		}
		keys = append(keys, id)
		info[id] = b.keyListInfo(k, now)
	}
	resp := logical.ListResponseWithInfo(keys, info)
	if next < len(ids) {
		resp.Data["next_after"] = ids[next-1]
	}
	return resp, nil
}

// keyListInfo is what "vault list -detailed" shows about a key.
func (b *backend) keyListInfo(k *keyEntry, now time.Time) map[string]interface{} {
	count, lastUsed := b.keyUse(k)
	return map[string]interface{}{
		"role":         k.Role,
		"name":         k.Name,
		"status":       keyStatus(k, now),
		"created_at":   k.CreatedAt.UTC().Format(time.RFC3339),
		"expires_at":   k.validUntil().UTC().Format(time.RFC3339),
		"disabled":     k.Disabled,
		"use_count":    count,
		"last_used_at": formatLastUsed(lastUsed),
		"identity":     k.Identity,
	}
}

// keyUse returns k's use count and last use, counting uses kept in memory since the
// last flush.
func (b *backend) keyUse(k *keyEntry) (count int64, lastUsed time.Time) {
	// Effective, not Peek: a counter started from a stale record shows what the record
	// holds plus its own uses, never less than is stored.
	s := b.usage.Effective(k.KeyID, usage.Quota{}, usage.State{Count: k.UseCount, LastUsed: k.LastUsedAt})
	return s.Count, s.LastUsed
}

// formatLastUsed is RFC 3339, or empty for a key never used.
func formatLastUsed(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// keyRecordFields documents keyReadData.
var keyRecordFields = withFields(keyPublicFields, map[string]*framework.FieldSchema{
	"created_at":       {Type: framework.TypeString, Description: "When the key was issued (RFC 3339)."},
	"disabled":         {Type: framework.TypeBool, Description: "Whether the key is disabled."},
	"bound_cidrs":      {Type: framework.TypeStringSlice, Description: "Networks the key may be used from."},
	"rate_limit":       {Type: framework.TypeFloat, Description: "Requests per second allowed (0 = off)."},
	"rate_limit_burst": {Type: framework.TypeInt, Description: "Token bucket size of the rate limit."},
	"rate_limits":      {Type: framework.TypeStringSlice, Description: "Named rate limits (name=limit/window)."},
	"max_uses":         {Type: framework.TypeInt64, Description: "Uses allowed (0 = unlimited)."},
	"use_count":        {Type: framework.TypeInt64, Description: "Uses counted so far."},
	"last_used_at":     {Type: framework.TypeString, Description: "Last counted use (RFC 3339), or empty."},
	"remaining_uses":   {Type: framework.TypeInt64, Description: "Uses left (keys with max_uses only): its identity's shared credits for keys with shared_limits."},
	"refill_interval":  {Type: framework.TypeString, Description: "How often remaining uses are reset (daily, monthly or a duration), or empty."},
	"refill_amount":    {Type: framework.TypeInt64, Description: "Remaining uses after each refill (keys with refill_interval only)."},
	"next_refill_at":   {Type: framework.TypeString, Description: "When remaining uses are next reset (RFC 3339; keys with refill_interval only)."},
	"identity":         {Type: framework.TypeString, Description: "Who the key belongs to: a Vault entity id, the identity given at issue, or empty."},
	"shared_limits":    {Type: framework.TypeBool, Description: "Whether the key's rate limits and credits are shared by its identity's keys."},
	"replaced_by":      {Type: framework.TypeString, Description: "key_id of the key that rotated this one out (rotated keys only)."},
	"hash_origin":      {Type: framework.TypeString, Description: "Imported keys only: plaintext, or sha256 for a key imported from its SHA-256 (weaker)."},
})

func (b *backend) keyReadData(ctx context.Context, s logical.Storage, k *keyEntry) (map[string]interface{}, error) {
	now := b.clock.now()
	data := k.publicData(now)
	data["created_at"] = k.CreatedAt.UTC().Format(time.RFC3339)
	data["disabled"] = k.Disabled
	data["bound_cidrs"] = nonNilStrings(k.BoundCIDRs)
	data["rate_limit"] = k.RateLimit
	data["rate_limit_burst"] = k.RateLimitBurst
	limits := make([]string, 0, len(k.RateLimits))
	for _, nl := range k.RateLimits {
		limits = append(limits, nl.String())
	}
	data["rate_limits"] = limits
	data["max_uses"] = k.MaxUses
	count, lastUsed := b.keyUse(k)
	data["use_count"] = count
	data["last_used_at"] = formatLastUsed(lastUsed)
	data["identity"] = k.Identity
	data["shared_limits"] = k.limits.shared
	if k.MaxUses > 0 {
		seed, err := b.creditSeed(ctx, s, k, now)
		if err != nil {
			return nil, err
		}
		data["remaining_uses"] = b.usage.Remaining(k.creditAccount(), k.quota(now), seed)
	}
	data["refill_interval"] = ""
	if k.Refill != nil && k.Refill.enabled() {
		data["refill_interval"] = k.Refill.String()
		data["refill_amount"] = k.Refill.Amount
		data["next_refill_at"] = k.Refill.next(now).Format(time.RFC3339)
	}
	if k.ReplacedBy != "" {
		data["replaced_by"] = k.ReplacedBy
	}
	origin, err := b.importedHashOrigin(ctx, s, k.KeyID)
	if err != nil {
		return nil, err
	}
	if origin != "" {
		data["hash_origin"] = origin
	}
	return data, nil
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
	data, err := b.keyReadData(ctx, req.Storage, k)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: data}, nil
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
	data, err := b.keyReadData(ctx, req.Storage, &next)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: data}, nil
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

const keysListHelpSyn = `List issued keys by key_id, with filters and pages.`

const keysListHelpDesc = `
Lists the key_id of every key this mount has issued and not yet revoked or tidied, in
key_id order. "vault list -detailed" also shows each key's role, name, status,
created_at, expires_at, disabled flag, use_count, last_used_at and identity.

Filters (all optional; a key must pass every one given):
  role=<name>            keys issued from this role
  status=<status>        active, disabled, expired or rotated: disabled if disabled, else
                         expired once past expires_at, else rotated if rotated out and in
                         its grace period, else active (the order verify checks in)
  expiring_within=<d>    keys not yet expired that expire within d (168h, 7d, seconds)
  unused_for=<d>         keys whose last use (or creation, if never used) is older than d
  never_used=true|false  keys never used / used at least once
  name=<pattern>         the key's name, exactly; '*' matches any run of characters
  metadata=<k>=<v>       keys whose metadata has this pair (repeat for more pairs)
  identity=<id>          keys that belong to this identity (see identities/)
Uses counted in memory on this node and not yet flushed count as uses.

Without limit or after the list is complete (what "vault list" shows) and reads every
record. Pages: limit=<n> (1-1000; default 100 when only after is given) keys per page.
A page reads at most 10000 records,
so a filter that matches few keys answers in bounded time. When more keys may follow,
the response has next_after; pass it as after=<key_id> for the next page, until a
response has no next_after. A page may hold fewer than limit keys, or none, and still
have a next_after. Every bad value is refused with a 400 naming the field.

"vault list" cannot send these fields: send them as query parameters, for example

  curl -H "X-Vault-Token: $VAULT_TOKEN" \
    "$VAULT_ADDR/v1/apikey/keys?list=true&role=ci&unused_for=2160h&limit=500"
`

const keyHelpSyn = `Read, update or delete one key's record (never the key itself).`

const keyHelpDesc = `
Reading shows a key's metadata: role, name, scopes, metadata, created_at, expires_at,
ttl, disabled, its restrictions (rate_limit, rate_limits, max_uses, refill_interval,
refill_amount), identity, shared_limits, use_count, last_used_at, and with max_uses
remaining_uses (the identity's shared credits for keys with shared_limits) and
next_refill_at when the key refills. keys/<key_id>/credits sets or tops up
remaining_uses. Use counts are kept in memory and written to storage in the background,
so a read on the node that counted them is exact. Neither the key nor its hash is ever returned.
Updating may set disabled (true/false), name and metadata. Deleting makes the key invalid
at once; its lease later revokes as a no-op.
`
