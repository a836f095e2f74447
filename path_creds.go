package apikey

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func pathCreds(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "creds/" + framework.GenericNameRegex("role"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "issue",
			OperationSuffix: "key",
		},
		Fields: map[string]*framework.FieldSchema{
			"role": {
				Type:        framework.TypeString,
				Description: "Role to issue the key from (lowercase).",
				Required:    true,
			},
			"scopes": {
				Type:        framework.TypeCommaStringSlice,
				Description: "Narrow the key to these scopes; each must be granted by the role. Default: the role's scopes.",
			},
			"ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Lease TTL of the key, capped by the role's max_ttl. Default: the role's ttl.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "TTL",
				},
			},
			"name": {
				Type:        framework.TypeString,
				Description: "A label for the key (who or what uses it).",
			},
			"metadata": {
				Type:        framework.TypeKVPairs,
				Description: "Key/value pairs added to the role's metadata. The role's own pairs are authoritative: a pair that would change one is refused.",
			},
			"identity": {
				Type:        framework.TypeString,
				Description: "Who the key belongs to (1-128 of A-Z a-z 0-9 . _ @ : -), where the role has allow_identity=true. Default: the Vault entity of the issuing token, if any.",
			},
		},
		// No ExistenceCheck: creds is never "created", every write issues a new key, so
		// both read and update need the same capability shape as other secrets engines.
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   &framework.PathOperation{Callback: b.pathCredsIssue, Responses: okResponse(issuedKeyFields)},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathCredsIssue, Responses: okResponse(issuedKeyFields)},
		},
		HelpSynopsis:    strings.TrimSpace(credsHelpSyn),
		HelpDescription: strings.TrimSpace(credsHelpDesc),
	}
}

// issuedKeyFields documents leaseResponse: the key's public fields (the lease carries
// the TTL) and the key itself.
var issuedKeyFields = withFields(keyPublicFields, map[string]*framework.FieldSchema{
	"api_key":               {Type: framework.TypeString, Description: "The API key. Returned this once; only its HMAC is stored."},
	"ttl":                   nil,
	verifyapi.FieldIdentity: {Type: framework.TypeString, Description: "Who the key belongs to (keys with an identity only)."},
})

// issueRequest is what a new key is made of, after the role's defaults were applied.
type issueRequest struct {
	roleName string
	role     *role
	scopes   []string
	ttl      time.Duration
	name     string
	metadata map[string]string
	// issueMetadata are the pairs added to the role's (part of metadata).
	issueMetadata map[string]string
	// identity is who the key belongs to ("" for none).
	identity string
	// useCount, lastUsedAt and credits carry a rotated key's spent uses and credit state
	// over to its replacement, so that rotation never restarts max_uses; credits nil
	// gives the role's max_uses (less useCount).
	useCount   int64
	lastUsedAt time.Time
	credits    *creditState
}

func (b *backend) pathCredsIssue(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName, errResp := roleNameFrom(d, "role")
	if errResp != nil {
		return errResp, nil
	}
	r, err := b.getRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("role %q does not exist", roleName), nil
	}

	issue := issueRequest{roleName: roleName, role: r, scopes: r.Scopes, ttl: r.TTL, metadata: r.Metadata}
	// By default a key belongs to the issuing token's entity (none for a root token
	// without one). Entity ids are UUIDs; anything else is not taken as an identity.
	if validIdentity(req.EntityID) {
		issue.identity = req.EntityID
	}
	if v, ok := d.GetOk("identity"); ok {
		if !r.Limits.AllowIdentity {
			return logical.ErrorResponse("identity: role %q does not let issuers set the identity (allow_identity is false)", roleName), nil
		}
		issue.identity = v.(string)
		if err := validateIdentity("identity", issue.identity); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	if v, ok := d.GetOk("scopes"); ok {
		requested := v.([]string)
		if err := scopes.Validate(requested); err != nil {
			return logical.ErrorResponse("scopes: %s", err), nil
		}
		if missing, ok := scopes.Missing(r.Scopes, requested); ok {
			return logical.ErrorResponse("scopes: %.40q is not granted by role %q", missing, roleName), nil
		}
		issue.scopes = requested
	}
	if v, ok := d.GetOk("ttl"); ok {
		if issue.ttl, err = durationField("ttl", v.(int)); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	if v, ok := d.GetOk("name"); ok {
		issue.name = v.(string)
		if err := validateLabel("name", issue.name); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	if v, ok := d.GetOk("metadata"); ok {
		issue.issueMetadata = v.(map[string]string)
		if issue.metadata, err = mergeMetadata(r.Metadata, issue.issueMetadata); err != nil {
			return logical.ErrorResponse("metadata: %s", err), nil
		}
	}
	return b.issueKey(ctx, req, issue)
}

// mergeMetadata adds issue-time pairs to the role's. The role's pairs are authoritative
// (services may authorise on them), so a pair that would change one is refused; the
// merged map is bounded as a whole, because it travels in the lease Vault stores and
// sends back on renew and revoke.
func mergeMetadata(fromRole, requested map[string]string) (map[string]string, error) {
	merged := maps.Clone(fromRole)
	if merged == nil {
		merged = map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(requested)) {
		v := requested[k]
		if roleValue, ok := fromRole[k]; ok && roleValue != v {
			return nil, fmt.Errorf("%.40q is set by the role and cannot be changed at issue", k)
		}
		merged[k] = v
	}
	if len(merged) > maxMetadataPairs {
		return nil, fmt.Errorf("at most %d pairs are allowed, the role's included (%d here)", maxMetadataPairs, len(merged))
	}
	if n := metadataBytes(merged); n > maxMetadataBytes {
		return nil, fmt.Errorf("at most %d bytes of keys and values are allowed, the role's included (%d here)", maxMetadataBytes, n)
	}
	if err := validateMetadata(merged); err != nil {
		return nil, err
	}
	return merged, nil
}

// issuedKey is a new key and its record, before the record is stored.
type issuedKey struct {
	key      string
	record   *keyEntry
	ttl      time.Duration
	maxTTL   time.Duration
	warnings []string
}

// issueKey creates a key, stores its record and returns it as a leased secret.
func (b *backend) issueKey(ctx context.Context, req *logical.Request, issue issueRequest) (*logical.Response, error) {
	ik, errResp, err := b.newIssuedKey(ctx, req, issue)
	if errResp != nil || err != nil {
		return errResp, err
	}
	if err := b.putNewKeyEntry(ctx, req.Storage, ik.record); err != nil {
		return nil, err
	}
	b.counters.issued(ik.record.Role)
	return b.leaseResponse(ik), nil
}

// newIssuedKey generates a key and builds its record; it stores nothing.
func (b *backend) newIssuedKey(ctx context.Context, req *logical.Request, issue issueRequest) (*issuedKey, *logical.Response, error) {
	ttl, warnings, err := framework.CalculateTTL(b.System(), 0, issue.ttl, 0, issue.role.MaxTTL, 0, time.Time{})
	if err != nil {
		return nil, logical.ErrorResponse("ttl: %s", err), nil
	}
	secret, err := b.ensureMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, nil, err
	}

	key, keyID, err := newKey(secret, issue.role.KeyPrefix, req.ID)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	record := &keyEntry{
		KeyID:          keyID,
		Hash:           keyHash(secret, key),
		Role:           issue.roleName,
		Name:           issue.name,
		Scopes:         nonNilStrings(issue.scopes),
		Metadata:       nonNilMap(issue.metadata),
		IssueMetadata:  nonNilMap(issue.issueMetadata),
		BoundCIDRs:     issue.role.BoundCIDRs,
		RateLimit:      issue.role.RateLimit,
		RateLimitBurst: issue.role.RateLimitBurst,
		MaxUses:        issue.role.MaxUses,
		TTL:            issue.ttl,
		MaxTTL:         issue.role.MaxTTL,
		CreatedAt:      now,
		ExpiresAt:      now.Add(ttl),
		UseCount:       issue.useCount,
		LastUsedAt:     issue.lastUsedAt,
		Identity:       issue.identity,
		SharedLimits:   issue.role.Limits.SharedLimits,
		RateLimits:     issue.role.Limits.RateLimits,
		Refill:         keyRefill(issue.role),
	}
	// Credits shared by an identity live under identities/, not on the key.
	if !(record.SharedLimits && record.Identity != "") {
		record.Credits = issue.credits
		if record.Credits == nil {
			record.Credits = initialCredits(issue.role, b.clock.now())
		}
	}
	if err := record.prepare(); err != nil {
		return nil, nil, err
	}
	return &issuedKey{key: key, record: record, ttl: ttl, maxTTL: issue.role.MaxTTL, warnings: warnings}, nil, nil
}

// newKey makes a key whose key_id is derived from the Vault request id (under the mount
// secret, so nobody can predict it). Vault replays a request once when the plugin died
// under it; the replay then writes the same record again instead of leaving the first
// attempt's record, whose key reached nobody and has no lease, in the inventory. There is
// no check that the key_id is unused: it has about 95 bits, so among a billion keys the
// chance that any two share one is about 1e-11.
func newKey(secret []byte, prefix, requestID string) (key, keyID string, err error) {
	if requestID == "" {
		return keyformat.Generate(prefix)
	}
	keyID = requestKeyID(secret, requestID)
	key, err = keyformat.GenerateWithKeyID(prefix, keyID)
	return key, keyID, err
}

// requestKeyID is the key_id a key issued by Vault request requestID gets.
func requestKeyID(secret []byte, requestID string) string {
	return keyformat.KeyIDFromSeed(keyHash(secret, "key_id\x00"+requestID))
}

// leaseResponse is the one response that carries the key.
func (b *backend) leaseResponse(ik *issuedKey) *logical.Response {
	data := ik.record.publicData(ik.record.CreatedAt)
	delete(data, "ttl") // the lease carries the TTL
	data["api_key"] = ik.key
	resp := b.Secret(secretTypeAPIKey).Response(data, map[string]interface{}{
		"key_id": ik.record.KeyID,
		"role":   ik.record.Role,
	})
	resp.Secret.TTL = ik.ttl
	resp.Secret.MaxTTL = ik.maxTTL
	for _, w := range ik.warnings {
		resp.AddWarning(w)
	}
	return resp
}

const credsHelpSyn = `Issue a new API key from a role.`

const credsHelpDesc = `
Reading creds/<role> issues a new key with the role's defaults; writing may narrow it:
scopes (a subset of the role's), ttl (capped by max_ttl), name (a label) and metadata
(added to the role's, which cannot be changed; at most 64 pairs and 16 KiB in all).
The key belongs to the Vault entity of the issuing token (none for a token without an
entity), or to identity when the role has allow_identity=true; the response shows it as
identity. The response carries the key (api_key) exactly once: it is
never stored, only its HMAC is. The key is a Vault lease: renew it up to max_ttl with
"vault lease renew", revoke it with "vault lease revoke".
`
