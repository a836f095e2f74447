package apikey

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/grants"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

const grantsRenewPath = "grants/renew"

// pathGrantsRenew is grants/renew: a grant holder returns what it did not use and gets
// a new grant under the same id, or releases it (fleet_grants.go).
func pathGrantsRenew(b *backend) *framework.Path {
	fields := grantFields()
	fields[verifyapi.FieldGrantHolder].Required = true
	fields[verifyapi.FieldGrantID] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "The grant, as verify answered it (grant_id). Required.",
		Required:    true,
	}
	fields[verifyapi.FieldUnused] = &framework.FieldSchema{
		Type:        framework.TypeInt64,
		Description: "Uses of the grant the holder did not spend and gives back: at most what the grant has outstanding (granted less returned). Default 0.",
	}
	fields[verifyapi.FieldRelease] = &framework.FieldSchema{
		Type:        framework.TypeBool,
		Description: "End the grant after taking back unused (the holder no longer needs it).",
	}
	return &framework.Path{
		Pattern: grantsRenewPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "renew",
			OperationSuffix: "grant",
		},
		Fields: fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathGrantsRenew,
				Responses: okResponse(map[string]*framework.FieldSchema{
					verifyapi.FieldRenewed:       {Type: framework.TypeBool, Description: "Whether the holder has the grant now; false when it was unknown (released, cancelled, expired, or forgotten in a restart) or released: the holder drops it."},
					verifyapi.FieldGrantID:       {Type: framework.TypeString, Description: "The grant (renewed only)."},
					verifyapi.FieldGrantedUses:   {Type: framework.TypeInt64, Description: "Uses added to the grant by this answer (keys with max_uses)."},
					verifyapi.FieldGrantedLimits: {Type: framework.TypeSlice, Description: "The holder's share of each of the key's rate limits now."},
					verifyapi.FieldGrantTTL:      {Type: framework.TypeInt64, Description: "Milliseconds the grant lasts from this answer."},
				}),
			},
		},
		HelpSynopsis:    strings.TrimSpace(grantsRenewHelpSyn),
		HelpDescription: strings.TrimSpace(grantsRenewHelpDesc),
	}
}

// notRenewed is grants/renew's answer for a grant the holder must drop.
func notRenewed() *logical.Response {
	return &logical.Response{Data: verifyapi.RenewResponse{}.Data()}
}

func (b *backend) pathGrantsRenew(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id := d.Get(verifyapi.FieldGrantID).(string)
	if id == "" {
		return logical.ErrorResponse("%s is required", verifyapi.FieldGrantID), nil
	}
	if !grants.ValidID(id) {
		return logical.ErrorResponse("%s must be the 32 hexadecimal digits verify answered", verifyapi.FieldGrantID), nil
	}
	ask, errResp := parseGrantAsk(d, true)
	if errResp != nil {
		return errResp, nil
	}
	unused := d.Get(verifyapi.FieldUnused).(int64)
	if unused < 0 || unused > verifyapi.MaxGrantUses {
		return logical.ErrorResponse("%s must be between 0 and %d", verifyapi.FieldUnused, int64(verifyapi.MaxGrantUses)), nil
	}
	release := d.Get(verifyapi.FieldRelease).(bool)

	now := b.clock.now()
	g, ok := b.grants.Lookup(id, ask.holder, now)
	if !ok {
		return notRenewed(), nil
	}
	k, err := b.cachedKeyEntry(ctx, req.Storage, g.KeyID)
	if err != nil {
		return nil, err
	}
	if k == nil {
		// Revoked: deleting the record cancelled the grant, unless this raced it.
		b.grants.Release(id, ask.holder, now)
		return notRenewed(), nil
	}
	account, err := b.accountKey(ctx, req.Storage, k)
	if err != nil {
		return nil, err
	}
	if g.Account != account.limiterAccount() {
		// The key's uses are charged elsewhere now (a rotation began or was rolled
		// back): its unused uses were debited from another account and are not
		// refunded to this one (they stay spent), and the holder asks verify again.
		b.grants.Release(id, ask.holder, now)
		return notRenewed(), nil
	}
	if errResp, err := b.returnUnused(id, ask.holder, unused, account, now); errResp != nil || err != nil {
		return errResp, err
	}
	if release {
		// The holder itself gave it back: its share is free at once (the engine's own
		// releases keep a share counted until it expires, as the holder may still use it).
		b.grants.ReleaseByHolder(id, ask.holder, now)
		return notRenewed(), nil
	}
	if k.Disabled || !now.Before(k.validUntil()) {
		b.grants.Release(id, ask.holder, now)
		return notRenewed(), nil
	}
	seed, err := b.creditSeed(ctx, req.Storage, account, now)
	if err != nil {
		return nil, err
	}
	grant, _, err := b.topUp(ctx, req.Storage, ask, k, account, seed, now)
	if err != nil {
		return nil, err
	}
	if grant == nil {
		// No longer grantable, or no share free: the holder asks verify again.
		b.grants.Release(id, ask.holder, now)
		return notRenewed(), nil
	}
	return &logical.Response{Data: verifyapi.RenewResponse{Renewed: true, Grant: grant}.Data()}, nil
}

// returnUnused takes back unused uses of grant id and refunds those of the current
// refill period to account's credits. More than the grant has outstanding is a 400
// naming unused; a grant cancelled meanwhile answers not renewed.
func (b *backend) returnUnused(id, holder string, unused int64, account *keyEntry, now time.Time) (*logical.Response, error) {
	if unused == 0 {
		return nil, nil
	}
	q := account.quota(now)
	refund, found, err := b.grants.Return(id, holder, unused, q.Period, now)
	switch {
	case errors.Is(err, grants.ErrTooManyUnused):
		return logical.ErrorResponse("%s: %d is %s", verifyapi.FieldUnused, unused, err), nil
	case err != nil:
		return nil, err
	case !found:
		return notRenewed(), nil
	}
	if refund > 0 && account.MaxUses > 0 {
		// Not stored at once, unlike a debit: the periodic flush (or the top-up that
		// follows) stores it, and a refund lost in a crash only leaves uses unusable,
		// never admits them twice.
		b.usage.Refund(account.creditAccount(), refund, q, q.Period)
	}
	return nil, nil
}

const grantsRenewHelpSyn = `Renew, return or release a quota grant.`

const grantsRenewHelpDesc = `
For callers that hold quota grants (verify's grant_holder; the apikeyauth middleware and
the gateway with fleet mode on). With grant_id and grant_holder as verify answered and
asked them: unused (uses of the grant not spent; at most what it has outstanding, else
a 400) goes back to the key's credits while still in the same refill period; then,
unless release=true, the grant is topped up as verify does (grant_uses, grant_rate: new
uses debited at once, a new share of each rate limit, the TTL reset) and the answer has
renewed=true with grant_id, granted_uses, granted_limits and grant_ttl_ms. A grant that
is unknown (released, cancelled by a revoke, disable, rotation or credits change,
expired, or forgotten by a restart) answers renewed=false, never an error: the holder
drops it and asks verify again.
`
