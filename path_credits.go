package apikey

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// pathKeyCredits is keys/<key_id>/credits: an operator sets or tops up a key's remaining
// uses. It is a write like any other, so Vault's audit devices record it.
func pathKeyCredits(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("key_id") + "/credits$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "set",
			OperationSuffix: "key-credits",
		},
		Fields: map[string]*framework.FieldSchema{
			"key_id": {
				Type:        framework.TypeString,
				Description: "Public identifier of the key.",
				Required:    true,
			},
			"set": {
				Type:        framework.TypeInt64,
				Description: fmt.Sprintf("Make the key's remaining uses exactly this (0 to %d). Give set or add.", int64(maxCredits)),
			},
			"add": {
				Type:        framework.TypeInt64,
				Description: fmt.Sprintf("Add this many uses to what the key has left (0 to %d in all). Give set or add.", int64(maxCredits)),
			},
		},
		// Credits belong to keys that exist: a write to an unknown key_id is an update that
		// answers 404, never a create.
		ExistenceCheck: func(context.Context, *logical.Request, *framework.FieldData) (bool, error) { return true, nil },
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeyCredits, Responses: okResponse(keyCreditsFields)},
		},
		HelpSynopsis:    strings.TrimSpace(keyCreditsHelpSyn),
		HelpDescription: strings.TrimSpace(keyCreditsHelpDesc),
	}
}

var keyCreditsFields = map[string]*framework.FieldSchema{
	"key_id":         {Type: framework.TypeString, Description: "The key."},
	"remaining_uses": {Type: framework.TypeInt64, Description: "Uses left now."},
	"use_count":      {Type: framework.TypeInt64, Description: "Uses counted against these credits."},
	"max_uses":       {Type: framework.TypeInt64, Description: "The key's max_uses."},
	"identity":       {Type: framework.TypeString, Description: "The key's identity, or empty."},
	"shared_limits":  {Type: framework.TypeBool, Description: "Whether the credits changed are the identity's, shared by its keys."},
	"next_refill_at": {Type: framework.TypeString, Description: "When a refill next resets remaining uses (RFC 3339), if the key refills."},
}

func (b *backend) pathKeyCredits(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := keyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	rawSet, isSet := d.GetOk("set")
	rawAdd, isAdd := d.GetOk("add")
	if isSet == isAdd {
		return logical.ErrorResponse("set, add: give exactly one of set (remaining uses) and add (uses to add)"), nil
	}
	field, n := "add", int64(0)
	if isSet {
		field, n = "set", rawSet.(int64)
	} else {
		n = rawAdd.(int64)
	}
	if n < 0 || n > maxCredits {
		return logical.ErrorResponse("%s must be between 0 and %d", field, int64(maxCredits)), nil
	}
	change := func(cur usage.State) (int64, error) {
		if isSet {
			return cur.Count + n, nil
		}
		return addCredits(cur, n)
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
	switch {
	case k.MaxUses <= 0:
		return logical.ErrorResponse("%s: key %s has no max_uses: credits apply to keys of roles with max_uses", field, id), nil
	case k.ReplacedBy != "":
		return logical.ErrorResponse("%s: key %s was rotated: its uses are charged to %s, change the credits there", field, id, k.ReplacedBy), nil
	}

	now := b.clock.now()
	account := k.creditAccount()
	var p usage.Pending
	if k.sharedCredits() {
		// The identity's credits, under the identity's lock (flushIdentity takes it too).
		// Locks are striped (256 of them): the identity's may be the key's, held already,
		// and a second Lock of it would never return.
		if idLock := b.keyLock(account); idLock != lock {
			idLock.Lock()
			defer idLock.Unlock()
		}
		seed, err := b.creditSeed(ctx, req.Storage, k, now)
		if err != nil {
			return nil, err
		}
		if p, err = b.usage.Adjust(account, k.quota(now), seed, change); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
		// A failed write is retried by the periodic flush: the change already holds here.
		if err := b.putIdentityCredits(ctx, req.Storage, k.Identity, p.State); err != nil {
			return nil, err
		}
	} else {
		if p, err = b.usage.Adjust(account, k.quota(now), k.storedState(), change); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
		next := *k
		next.UseCount = p.Count
		next.LastUsedAt = p.LastUsed.UTC()
		next.Credits = &creditState{Limit: p.Limit, Period: p.Period}
		if err := b.putKeyEntry(ctx, req.Storage, &next); err != nil {
			return nil, err
		}
	}
	b.usage.Flushed(p)
	// Grants debited before the change are cancelled (their uses stay spent), so that
	// the credits now are all there is; holders drop them on the feed's events.
	for _, other := range b.grants.CancelAccount(account) {
		if other != id {
			b.feed.Append(verifyapi.EventGrantCancelled, other)
		}
	}
	b.feed.Append(verifyapi.EventLimitsChanged, id)
	b.Logger().Info("key credits changed", "key_id", id, "role", k.Role, field, n, "remaining_uses", p.Remaining(), "identity", k.Identity, "shared", k.sharedCredits())

	data := map[string]interface{}{
		"key_id":         id,
		"remaining_uses": p.Remaining(),
		"use_count":      p.Count,
		"max_uses":       k.MaxUses,
		"identity":       k.Identity,
		"shared_limits":  k.sharedCredits(),
	}
	if k.Refill != nil && k.Refill.enabled() {
		data["next_refill_at"] = k.Refill.next(now).Format(time.RFC3339)
	}
	return &logical.Response{Data: data}, nil
}

const keyCreditsHelpSyn = `Set or top up a key's remaining uses.`

const keyCreditsHelpDesc = `
For keys of roles with max_uses. set=N makes the key's remaining uses exactly N; add=N
adds N to what is left (at most 1e15 left in all). Give one of them; a negative, too
large or missing value, or both, is a 400 naming the field. The change holds from the
next verify on this node, and lasts until the key's next refill (refill_interval), which
resets remaining uses to refill_amount as usual. For a key whose role has
shared_limits=true and which has an identity, the credits changed are the identity's,
shared by all its keys. A rotated-out key's uses are charged to its replacement: change
the replacement's credits. Quota grants on the credits (verify's grant_holder) are
cancelled, their uses staying spent, and the change feed tells their holders
(limits_changed for the key, grant_cancelled for other keys of the identity). Like every write, it is recorded by Vault's audit devices,
and logged (key_id, the change, remaining_uses).
`
