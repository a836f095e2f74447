package apikey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

// Bulk revoke (revoke): many keys in one request, selected by role, identity,
// key_ids or the keys/ LIST filters, with a dry run.
const (
	bulkRevokePath = "revoke"

	// defaultBulkRevokeLimit and maxBulkRevokeLimit bound the keys one request revokes
	// (each is a storage delete); bulkRevokeScanBudget bounds the records it reads. When
	// either stops it early, next_after says where to go on.
	defaultBulkRevokeLimit = 1000
	maxBulkRevokeLimit     = 10_000
	bulkRevokeScanBudget   = keysListScanBudget
	maxBulkRevokeKeyIDs    = maxBulkRevokeLimit
)

func pathBulkRevoke(b *backend) *framework.Path {
	fields := keysListFields()
	for name, f := range fields {
		f.Query = false // a write: the fields travel in the body
		if strings.HasPrefix(f.Description, "Only keys") {
			f.Description = "Select keys" + strings.TrimPrefix(f.Description, "Only keys")
		}
		fields[name] = f
	}
	fields["after"].Description = "Consider only key_ids sorted after this one: the next_after of the previous answer."
	fields["limit"].Description = fmt.Sprintf("Most keys one request revokes or lists (1 to %d, default %d).", maxBulkRevokeLimit, defaultBulkRevokeLimit)
	fields["key_ids"] = &framework.FieldSchema{
		Type:        framework.TypeCommaStringSlice,
		Description: fmt.Sprintf("Select these keys (at most %d key_ids); other selectors narrow them further.", maxBulkRevokeKeyIDs),
	}
	fields["created_before"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Select keys created before this time (RFC 3339, such as 2025-01-31T00:00:00Z).",
	}
	fields["dry_run"] = &framework.FieldSchema{
		Type:        framework.TypeBool,
		Description: "List what would be revoked (key_ids, count) and change nothing.",
	}
	return &framework.Path{
		Pattern: bulkRevokePath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "revoke",
			OperationSuffix: "keys",
		},
		Fields: fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathBulkRevoke, Responses: okResponse(bulkRevokeResponseFields)},
		},
		HelpSynopsis:    strings.TrimSpace(bulkRevokeHelpSyn),
		HelpDescription: strings.TrimSpace(bulkRevokeHelpDesc),
	}
}

var bulkRevokeResponseFields = map[string]*framework.FieldSchema{
	"dry_run":    {Type: framework.TypeBool, Description: "Whether this was a dry run (nothing revoked)."},
	"key_ids":    {Type: framework.TypeStringSlice, Description: "The keys revoked (or, in a dry run, that would be)."},
	"count":      {Type: framework.TypeInt, Description: "How many keys key_ids holds."},
	"scanned":    {Type: framework.TypeInt, Description: "Key records looked at."},
	"not_found":  {Type: framework.TypeStringSlice, Description: "key_ids given that no key has (only with key_ids)."},
	"next_after": {Type: framework.TypeString, Description: "Present when more keys may match: pass it as after to go on."},
}

// bulkRevokeSelection is a parsed request: the keys/ LIST filter (role, identity,
// unused_for, ...) and the rest.
type bulkRevokeSelection struct {
	filter        *keyFilter
	keyIDs        []string
	createdBefore time.Time
	after         string
	limit         int
	dryRun        bool
}

func (sel *bulkRevokeSelection) matches(k *keyEntry, now time.Time) bool {
	if !sel.createdBefore.IsZero() && !k.CreatedAt.Before(sel.createdBefore) {
		return false
	}
	return sel.filter.matches(k, now)
}

// bulkRevokeSelectionFromFields parses the request; every error starts with the field's
// name, and a request without any selector is refused.
func bulkRevokeSelectionFromFields(d *framework.FieldData, use keyUseFunc) (*bulkRevokeSelection, error) {
	f, err := keyFilterFromFields(d, use)
	if err != nil {
		return nil, err
	}
	sel := &bulkRevokeSelection{filter: f, limit: defaultBulkRevokeLimit, dryRun: d.Get("dry_run").(bool)}
	if v, ok := d.GetOk("key_ids"); ok {
		ids := v.([]string)
		if len(ids) == 0 {
			return nil, errors.New("key_ids: must not be empty")
		}
		if len(ids) > maxBulkRevokeKeyIDs {
			return nil, fmt.Errorf("key_ids: at most %d per request (%d given)", maxBulkRevokeKeyIDs, len(ids))
		}
		for _, id := range ids {
			if !keyformat.ValidKeyID(id) {
				return nil, fmt.Errorf("key_ids: %.40q is not a key_id (%d base62 characters)", id, keyformat.KeyIDLen)
			}
		}
		sel.keyIDs = slices.Compact(slices.Sorted(slices.Values(ids)))
	}
	if v, ok := d.GetOk("created_before"); ok {
		t, err := time.Parse(time.RFC3339, v.(string))
		if err != nil {
			return nil, errors.New("created_before: must be an RFC 3339 time such as 2025-01-31T00:00:00Z")
		}
		sel.createdBefore = t
	}
	if v, ok := d.GetOk("after"); ok && v.(string) != "" {
		sel.after = v.(string)
		if !keyformat.ValidKeyID(sel.after) {
			return nil, fmt.Errorf("after: must be a key_id (%d base62 characters)", keyformat.KeyIDLen)
		}
	}
	if v, ok := d.GetOk("limit"); ok {
		n, err := strconv.Atoi(v.(string))
		if err != nil || n < 1 || n > maxBulkRevokeLimit {
			return nil, fmt.Errorf("limit: must be an integer from 1 to %d", maxBulkRevokeLimit)
		}
		sel.limit = n
	}
	if !sel.selects() {
		return nil, errors.New("role, identity, key_ids, created_before, unused_for, never_used, status, expiring_within, name or metadata: " +
			"at least one selector is required (a bulk revoke never means every key)")
	}
	return sel, nil
}

// selects reports whether the request narrows the keys at all.
func (sel *bulkRevokeSelection) selects() bool {
	f := sel.filter
	return f.identity != "" || len(sel.keyIDs) > 0 || !sel.createdBefore.IsZero() ||
		f.role != "" || f.status != "" || f.expiringWithin != nil || f.unusedFor != nil ||
		f.neverUsed != nil || f.name != "" || len(f.metadata) > 0
}

func (b *backend) pathBulkRevoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	sel, err := bulkRevokeSelectionFromFields(d, b.keyUse)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	ids := sel.keyIDs
	switch {
	case ids != nil:
	case sel.filter.identity != "":
		// The identity's index holds its keys (and maybe some revoked since: each
		// record is read and checked like any other).
		if ids, err = b.identityKeyIDs(ctx, req.Storage, sel.filter.identity); err != nil {
			return nil, err
		}
	default:
		if ids, err = req.Storage.List(ctx, keyPrefix); err != nil {
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return strings.HasSuffix(id, "/") })
		slices.Sort(ids)
	}
	start, found := slices.BinarySearch(ids, sel.after)
	if found {
		start++
	}

	now := b.clock.now()
	selected := make([]string, 0, min(sel.limit, len(ids)-start))
	var notFound []string
	next := start
	scanned := 0
	for ; next < len(ids) && scanned < bulkRevokeScanBudget && len(selected) < sel.limit; scanned++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := ids[next]
		next++
		var exists, match bool
		if sel.dryRun {
			k, err := b.inventoryKeyEntry(ctx, req.Storage, id)
			if err != nil {
				return nil, err
			}
			exists, match = k != nil, k != nil && sel.matches(k, now)
		} else if exists, match, err = b.bulkRevokeOne(ctx, req.Storage, id, sel, now); err != nil {
			// Keys revoked so far stay revoked (each one was logged): report, then fail.
			b.Logger().Error("bulk revoke stopped by an error", "revoked", len(selected), "error", err)
			return nil, err
		}
		if !exists && sel.keyIDs != nil {
			notFound = append(notFound, id)
		}
		if match {
			selected = append(selected, id)
		}
	}

	data := map[string]interface{}{
		"dry_run": sel.dryRun,
		"key_ids": selected,
		"count":   len(selected),
		"scanned": scanned,
	}
	if sel.keyIDs != nil {
		data["not_found"] = nonNilStrings(notFound)
	}
	if next < len(ids) {
		data["next_after"] = ids[next-1]
	}
	resp := &logical.Response{Data: data}
	if !sel.dryRun {
		b.Logger().Info("bulk revoke", "revoked", len(selected), "scanned", scanned)
	}
	return resp, nil
}

// bulkRevokeOne revokes keyID when it matches, under its lock so that what is checked is
// what is deleted: the record goes at once (verify refuses the key on the next request,
// on every node) and the key's lease later revokes as a no-op, as after keys/<key_id>
// DELETE.
func (b *backend) bulkRevokeOne(ctx context.Context, s logical.Storage, keyID string, sel *bulkRevokeSelection, now time.Time) (exists, revoked bool, err error) {
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, s, keyID)
	if err != nil || k == nil {
		return false, false, err
	}
	if !sel.matches(k, now) {
		return true, false, nil
	}
	if err := b.deleteImportedKey(ctx, s, keyID); err != nil {
		return true, false, err
	}
	b.Logger().Info("key revoked by bulk revoke", "key_id", keyID)
	return true, true, nil
}

const bulkRevokeHelpSyn = `Revoke many keys in one request, with a dry run.`

const bulkRevokeHelpDesc = `
Revokes the keys that match every selector given: role, identity, key_ids (a list),
created_before (RFC 3339), and the filters of the keys/ LIST (unused_for, never_used,
status, expiring_within, name, metadata). At least one selector is required. With
dry_run=true it lists what would go (key_ids, count) and changes nothing.

A revoked key stops verifying at once (its record is deleted, as keys/<key_id> DELETE
does); its lease later revokes as a no-op. Each key revoked is logged by key_id. One
request revokes at most limit keys (default 1000, at most 10000) and reads at most 10000
records; when more may match, the answer has next_after: send the same request with
after=<next_after> until an answer has none. Every bad value is a 400 naming the field.
`
