package apikey

import (
	"context"
	"crypto/subtle"
	"maps"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/scopes"
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
				Type:        framework.TypeLowerCaseString,
				Description: "Role to issue the key from.",
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
				Description: "Key/value pairs merged over the role's metadata.",
			},
		},
		// No ExistenceCheck: creds is never "created", every write issues a new key, so
		// both read and update need the same capability shape as other secrets engines.
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   &framework.PathOperation{Callback: b.pathCredsIssue},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathCredsIssue},
		},
		HelpSynopsis:    strings.TrimSpace(credsHelpSyn),
		HelpDescription: strings.TrimSpace(credsHelpDesc),
	}
}

// issueRequest is what a new key is made of, after the role's defaults were applied.
type issueRequest struct {
	roleName string
	role     *role
	scopes   []string
	ttl      time.Duration
	name     string
	metadata map[string]string
}

func (b *backend) pathCredsIssue(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName := d.Get("role").(string)
	r, err := b.getRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("role %q does not exist", roleName), nil
	}

	issue := issueRequest{roleName: roleName, role: r, scopes: r.Scopes, ttl: r.TTL, metadata: r.Metadata}
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
		merged := maps.Clone(r.Metadata)
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, v.(map[string]string))
		if err := validateMetadata(merged); err != nil {
			return logical.ErrorResponse("metadata: %s", err), nil
		}
		issue.metadata = merged
	}
	return b.issueKey(ctx, req, issue)
}

// issueKey creates a key, stores its record and returns it as a leased secret.
func (b *backend) issueKey(ctx context.Context, req *logical.Request, issue issueRequest) (*logical.Response, error) {
	ttl, warnings, err := framework.CalculateTTL(b.System(), 0, issue.ttl, 0, issue.role.MaxTTL, 0, time.Time{})
	if err != nil {
		return logical.ErrorResponse("ttl: %s", err), nil
	}
	secret, err := b.ensureMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	// No check that the key_id is unused: it has about 95 random bits, so among a billion
	// keys the chance that any two share one is about 1e-11. A storage read per issue
	// would buy nothing measurable.
	key, keyID, err := keyformat.Generate(issue.role.KeyPrefix)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	record := &keyEntry{
		KeyID:          keyID,
		Hash:           keyHash(secret, key),
		Role:           issue.roleName,
		Name:           issue.name,
		Scopes:         nonNilStrings(issue.scopes),
		Metadata:       nonNilMap(issue.metadata),
		BoundCIDRs:     issue.role.BoundCIDRs,
		RateLimit:      issue.role.RateLimit,
		RateLimitBurst: issue.role.RateLimitBurst,
		MaxUses:        issue.role.MaxUses,
		TTL:            issue.ttl,
		MaxTTL:         issue.role.MaxTTL,
		CreatedAt:      now,
		ExpiresAt:      now.Add(ttl),
	}
	if err := b.putKeyEntry(ctx, req.Storage, record); err != nil {
		return nil, err
	}

	data := record.publicData(now)
	delete(data, "ttl") // the lease carries the TTL
	data["api_key"] = key
	resp := b.Secret(secretTypeAPIKey).Response(data, map[string]interface{}{
		"key_id": record.KeyID,
		"role":   record.Role,
	})
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = issue.role.MaxTTL
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

// hashesEqual compares two HMACs in constant time.
func hashesEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

const credsHelpSyn = `Issue a new API key from a role.`

const credsHelpDesc = `
Reading creds/<role> issues a new key with the role's defaults; writing may narrow it:
scopes (a subset of the role's), ttl (capped by max_ttl), name (a label) and metadata
(merged over the role's). The response carries the key (api_key) exactly once: it is
never stored, only its HMAC is. The key is a Vault lease: renew it up to max_ttl with
"vault lease renew", revoke it with "vault lease revoke".
`
