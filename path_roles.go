package apikey

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
)

// role is the stored definition keys are issued from.
type role struct {
	Scopes         []string          `json:"scopes"`
	TTL            time.Duration     `json:"ttl"`
	MaxTTL         time.Duration     `json:"max_ttl"`
	KeyPrefix      string            `json:"key_prefix"`
	BoundCIDRs     []string          `json:"bound_cidrs"`
	RateLimit      float64           `json:"rate_limit"`
	RateLimitBurst int               `json:"rate_limit_burst"`
	MaxUses        int64             `json:"max_uses"`
	Metadata       map[string]string `json:"metadata"`
	// Anomaly holds the role's anomaly detection settings (role_anomaly.go). Unlike the
	// restrictions above, they apply to the role's keys as the role is now.
	Anomaly roleAnomaly `json:"anomaly"`
	// Limits holds named rate limits, refills and identity settings (role_limits.go);
	// keys copy them at issue like the restrictions above.
	Limits roleLimits `json:"limits"`
}

func (r *role) toResponseData() map[string]interface{} {
	data := map[string]interface{}{
		"scopes":           nonNilStrings(r.Scopes),
		"ttl":              int64(r.TTL.Seconds()),
		"max_ttl":          int64(r.MaxTTL.Seconds()),
		"key_prefix":       r.KeyPrefix,
		"bound_cidrs":      nonNilStrings(r.BoundCIDRs),
		"rate_limit":       r.RateLimit,
		"rate_limit_burst": r.RateLimitBurst,
		"max_uses":         r.MaxUses,
		"metadata":         nonNilMap(r.Metadata),
	}
	r.Anomaly.addResponseData(data)
	r.Limits.addResponseData(data)
	return data
}

var roleFields = withFields(withFields(anomalyRoleFields, limitsRoleFields), map[string]*framework.FieldSchema{
	"name": {
		Type:        framework.TypeString,
		Description: "Name of the role: lowercase (names are case-sensitive, like ACL paths and lease ids).",
		Required:    true,
	},
	"scopes": {
		Type:        framework.TypeCommaStringSlice,
		Description: `Scopes granted to keys of this role. A scope ending in "*" grants every scope with that prefix ("orders:*").`,
	},
	"ttl": {
		Type:        framework.TypeDurationSecond,
		Description: "Default lease TTL of issued keys. 0 uses the mount's default.",
		DisplayAttrs: &framework.DisplayAttributes{
			Name: "TTL",
		},
	},
	"max_ttl": {
		Type:        framework.TypeDurationSecond,
		Description: "Maximum lifetime of issued keys, renewals included. 0 uses the mount's maximum.",
		DisplayAttrs: &framework.DisplayAttributes{
			Name: "Max TTL",
		},
	},
	"key_prefix": {
		Type:        framework.TypeString,
		Description: fmt.Sprintf("Prefix of issued keys: a lowercase letter then 1-9 lowercase letters or digits. Default %q.", keyformat.DefaultPrefix),
		Default:     keyformat.DefaultPrefix,
	},
	"bound_cidrs": {
		Type:        framework.TypeCommaStringSlice,
		Description: "CIDR blocks (IPv4 or IPv6) clients must present keys from, checked against verify's client_ip. Empty allows any client.",
		DisplayAttrs: &framework.DisplayAttributes{
			Name: "Bound CIDRs",
		},
	},
	"rate_limit": {
		Type:        framework.TypeFloat,
		Description: "Requests per second allowed per key (per Vault node). 0 disables rate limiting.",
	},
	"rate_limit_burst": {
		Type:        framework.TypeInt,
		Description: "Token bucket size for rate_limit. 0 means max(1, ceil(rate_limit)).",
	},
	"max_uses": {
		Type:        framework.TypeInt64,
		Description: "How many uses (sum of verify costs) each key allows. 0 is unlimited. With refill_interval, the uses of the first period; keys/<key_id>/credits changes what a key has left.",
	},
	"metadata": {
		Type:        framework.TypeKVPairs,
		Description: "Key/value pairs copied into every key of this role (e.g. team=payments).",
	},
})

// roleResponseFields documents role.toResponseData: every role field but the name.
var roleResponseFields = withFields(roleFields, map[string]*framework.FieldSchema{"name": nil})

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathRoleList, Responses: listResponse(false)},
			},
			HelpSynopsis:    strings.TrimSpace(roleListHelpSyn),
			HelpDescription: strings.TrimSpace(roleListHelpDesc),
		},
		{
			Pattern: "roles/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "role",
			},
			Fields:         roleFields,
			ExistenceCheck: b.pathRoleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathRoleRead, Responses: okResponse(roleResponseFields)},
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathRoleWrite, Responses: noContentResponse()},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRoleWrite, Responses: noContentResponse()},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathRoleDelete, Responses: noContentResponse()},
			},
			HelpSynopsis:    strings.TrimSpace(roleHelpSyn),
			HelpDescription: strings.TrimSpace(roleHelpDesc),
		},
	}
}

// getRole returns the role, from the cache when it can. The returned role is shared:
// callers must not modify it.
func (b *backend) getRole(ctx context.Context, s logical.Storage, name string) (*role, error) {
	if r, ok := b.roleCache.Get(name); ok {
		return r, nil
	}
	generation := b.roleCache.Generation()
	entry, err := s.Get(ctx, rolePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading role: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	var r role
	if err := entry.DecodeJSON(&r); err != nil {
		return nil, fmt.Errorf("decoding role: %w", err)
	}
	b.roleCache.AddIfUnchanged(name, &r, generation)
	return &r, nil
}

func (b *backend) pathRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if validateRoleName("name", name) != nil {
		return false, nil // the handler answers 400
	}
	r, err := b.getRole(ctx, req.Storage, name)
	return r != nil, err
}

func (b *backend) pathRoleList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, rolePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := roleNameFrom(d, "name")
	if errResp != nil {
		return errResp, nil
	}
	r, err := b.getRole(ctx, req.Storage, name)
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: r.toResponseData()}, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := roleNameFrom(d, "name")
	if errResp != nil {
		return errResp, nil
	}

	b.roleLock.Lock()
	defer b.roleLock.Unlock()

	stored, err := b.getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	r := &role{KeyPrefix: keyformat.DefaultPrefix}
	if stored != nil {
		*r = *stored // a copy: the stored role is shared with readers
	} else if req.Operation == logical.UpdateOperation {
		return logical.ErrorResponse("role %q does not exist", name), nil
	}

	// Only fields present in the request change: an update that sets ttl keeps scopes.
	if v, ok := d.GetOk("scopes"); ok {
		r.Scopes = v.([]string)
	}
	for field, target := range map[string]*time.Duration{"ttl": &r.TTL, "max_ttl": &r.MaxTTL} {
		if v, ok := d.GetOk(field); ok {
			if *target, err = durationField(field, v.(int)); err != nil {
				return logical.ErrorResponse(err.Error()), nil
			}
		}
	}
	if v, ok := d.GetOk("key_prefix"); ok {
		r.KeyPrefix = v.(string)
	}
	if v, ok := d.GetOk("bound_cidrs"); ok {
		r.BoundCIDRs = v.([]string)
	}
	if v, ok := d.GetOk("rate_limit"); ok {
		r.RateLimit = v.(float64)
	}
	if v, ok := d.GetOk("rate_limit_burst"); ok {
		r.RateLimitBurst = v.(int)
	}
	if v, ok := d.GetOk("max_uses"); ok {
		r.MaxUses = v.(int64)
	}
	if v, ok := d.GetOk("metadata"); ok {
		r.Metadata = v.(map[string]string)
	}
	if err := r.Anomaly.update(d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := r.Limits.update(d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := r.validate(); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}

	entry, err := logical.StorageEntryJSON(rolePrefix+name, r)
	if err != nil {
		return nil, err
	}
	b.roleCache.Remove(name) // also invalidates loads in flight
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, fmt.Errorf("storing role: %w", err)
	}
	b.roleCache.Add(name, r)
	return nil, nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := roleNameFrom(d, "name")
	if errResp != nil {
		return errResp, nil
	}
	b.roleLock.Lock()
	defer b.roleLock.Unlock()
	// Keys already issued keep working until their leases end: revocation needs only the
	// lease's InternalData, and verify only the key record.
	b.roleCache.Remove(name)
	if err := req.Storage.Delete(ctx, rolePrefix+name); err != nil {
		return nil, fmt.Errorf("deleting role: %w", err)
	}
	b.roleCache.Remove(name)
	return nil, nil
}

// validate checks every field; the message names the field and what is wrong.
func (r *role) validate() error {
	if err := scopes.Validate(r.Scopes); err != nil {
		return fmt.Errorf("scopes: %w", err)
	}
	if r.MaxTTL > 0 && r.TTL > r.MaxTTL {
		return fmt.Errorf("ttl (%s) must not be greater than max_ttl (%s)", r.TTL, r.MaxTTL)
	}
	if !keyformat.ValidPrefix(r.KeyPrefix) {
		return fmt.Errorf("key_prefix %.40q must be a lowercase letter followed by 1-9 lowercase letters or digits", r.KeyPrefix)
	}
	if _, err := parseCIDRs(r.BoundCIDRs); err != nil {
		return fmt.Errorf("bound_cidrs: %w", err)
	}
	if r.RateLimit != 0 && !(r.RateLimit >= minRateLimit && r.RateLimit <= 1e9) {
		return fmt.Errorf("rate_limit must be 0 (off) or between %g (one a day) and 1e9 requests per second", minRateLimit)
	}
	if r.RateLimitBurst < 0 || r.RateLimitBurst > 1_000_000_000 {
		return fmt.Errorf("rate_limit_burst must be between 0 and 1e9")
	}
	if r.RateLimitBurst > 0 && r.RateLimit == 0 {
		return fmt.Errorf("rate_limit_burst needs rate_limit to be set")
	}
	if r.MaxUses < 0 {
		return fmt.Errorf("max_uses must not be negative (0 is unlimited)")
	}
	if err := validateMetadata(r.Metadata); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if err := r.Limits.validate(r.MaxUses, r.RateLimit); err != nil {
		return err
	}
	return r.Anomaly.validate()
}

const roleListHelpSyn = `List the roles of this mount.`

const roleListHelpDesc = `Lists role names. Read roles/<name> for a role's definition.`

const roleHelpSyn = `Manage a role: the template keys are issued from.`

const roleHelpDesc = `
A role fixes what keys issued from it may do: scopes, lease ttl and max_ttl, the key
prefix, and restrictions checked by verify (bound_cidrs, rate_limit with
rate_limit_burst, max_uses). metadata is copied into every key.

Limits: rate_limits adds named limits (rate_limits=burst=10/1s,daily=10000/24h; at most
8 with rate_limit, which is named "default"); verify admits a request only when all of
them do, and refuses with RATE_LIMITED naming the limit (rate_limit_name). Each is a
token bucket of limit tokens refilled at limit/window: a full bucket admits limit
requests at once, so over any window at most twice the limit passes (as with fixed
windows at their boundary). refill_interval (daily, monthly, or a duration such as 24h;
UTC) resets each key's remaining uses to refill_amount (default max_uses) at every
period start; unspent uses do not carry over. Keys belong to the Vault entity of the
token that issued them; allow_identity=true lets issuers name the identity instead, and
shared_limits=true makes the rate limits and credits of one identity's keys shared (see
identities/).

The anomaly_* fields
set how the role's keys are watched for unusual use, and anomaly_action=disable
disables a key at once when one is seen (see anomalies/).

Keys take the role's values at the moment they are issued; changing or deleting a role
does not change keys already issued (rotate them to apply new settings). Deleting a role
does not revoke its keys: their leases still revoke normally.
`
