package apikey

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

// The leaked path is unauthenticated (PathsSpecial.Unauthenticated): anyone who holds
// a key may kill it, the way GitHub's credential revocation API lets whoever finds a
// token report it. Bounds keep it from being a lever against the mount.
const (
	leakedPath = "leaked"
	// maxLeakedKeys bounds one report.
	maxLeakedKeys = 100
	// leakedRate and leakedBurst bound reports per mount and node: a flood costs a
	// bounded number of key lookups per second.
	leakedRate  = 5.0
	leakedBurst = 20
	// leakedLimiterKey is the rate-limit bucket of the path (not a key_id: those are
	// 16 base62 characters, so it cannot collide with one).
	leakedLimiterKey = "leaked-reports"
)

// What a leak report does to a valid key (config leaked_action).
const (
	leakedActionRevoke  = "revoke"
	leakedActionDisable = "disable"
)

func pathLeaked(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: leakedPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "report",
			OperationSuffix: "leaked-keys",
		},
		Fields: map[string]*framework.FieldSchema{
			"keys": {
				Type:        framework.TypeStringSlice,
				Description: fmt.Sprintf("Keys found where they should not be (at most %d).", maxLeakedKeys),
				Required:    true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathLeakedReport,
				Responses: okResponse(map[string]*framework.FieldSchema{
					"received": {Type: framework.TypeInt, Description: "How many keys the report held (never how many were valid)."},
				}),
			},
		},
		HelpSynopsis:    strings.TrimSpace(leakedHelpSyn),
		HelpDescription: strings.TrimSpace(leakedHelpDesc),
	}
}

// pathLeakedCheck answers whether a key a secret scanner found is live, without counting
// a use or a verification: trufflehog's custom-detector webhook posts
// {"<detector>": {"<group>": ["<match>", ...]}}, and treats a 200 as "verified". Any
// string in the body that is a live key of this mount makes it a 200; otherwise 404.
func pathLeakedCheck(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: leakedPath + "/check$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "check",
			OperationSuffix: "leaked-keys",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathLeakedCheck,
				Responses: map[int][]framework.Response{
					http.StatusOK:       {{Description: "A live key was found (raw body: {\"live\":true})."}},
					http.StatusNotFound: {{Description: "No live key was found (raw body: {\"live\":false})."}},
				},
			},
		},
		HelpSynopsis:    strings.TrimSpace(leakedCheckHelpSyn),
		HelpDescription: strings.TrimSpace(leakedCheckHelpDesc),
	}
}

func (b *backend) pathLeakedCheck(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	var candidates []string
	collectStrings(req.Data, &candidates, maxLeakedKeys)
	secret, err := b.getMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	live := false
	now := b.clock.now()
	for _, key := range candidates {
		parsed, err := keyformat.Parse(key)
		if err != nil || secret == nil {
			continue
		}
		k, err := b.inventoryKeyEntry(ctx, req.Storage, parsed.KeyID)
		if err != nil {
			return nil, err
		}
		if k != nil && hashesEqual(keyHash(secret, key), k.Hash) && !k.Disabled && now.Before(k.validUntil()) {
			live = true
			break
		}
	}
	status, body := http.StatusNotFound, `{"live":false}`
	if live {
		status, body = http.StatusOK, `{"live":true}`
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPContentType: "application/json",
		logical.HTTPRawBody:     []byte(body),
		logical.HTTPStatusCode:  status,
	}}, nil
}

// collectStrings appends the strings nested in v to out, at most limit of them.
func collectStrings(v interface{}, out *[]string, limit int) {
	if len(*out) >= limit {
		return
	}
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []interface{}:
		for _, item := range x {
			collectStrings(item, out, limit)
		}
	case []string:
		for _, item := range x {
			collectStrings(item, out, limit)
		}
	case map[string]interface{}:
		for _, item := range x {
			collectStrings(item, out, limit)
		}
	}
}

func (b *backend) pathLeakedReport(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	reported := d.Get("keys").([]string)
	if len(reported) == 0 {
		return logical.ErrorResponse("keys: at least one key is required"), nil
	}
	if len(reported) > maxLeakedKeys {
		return logical.ErrorResponse("keys: at most %d keys per report", maxLeakedKeys), nil
	}
	if ok, wait := b.leakedLimiter.Allow(leakedLimiterKey, leakedRate, leakedBurst, b.clock.now()); !ok {
		resp := logical.ErrorResponse("too many leak reports: retry in %d seconds", int(wait.Seconds())+1)
		return logical.RespondWithStatusCode(resp, req, http.StatusTooManyRequests)
	}
	cfg, err := b.getSettings(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	secret, err := b.getMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	for _, key := range reported {
		if err := b.killLeakedKey(ctx, req.Storage, secret, key, cfg.leakedAction()); err != nil {
			return nil, err
		}
	}
	// The answer is the same whatever the keys were: a report teaches nothing.
	return &logical.Response{Data: map[string]interface{}{"received": len(reported)}}, nil
}

// killLeakedKey revokes or disables key when it is a live key of this mount, and does
// nothing otherwise.
func (b *backend) killLeakedKey(ctx context.Context, s logical.Storage, secret []byte, key, action string) error {
	parsed, err := keyformat.Parse(key)
	if err != nil || secret == nil {
		return nil
	}
	lock := b.keyLock(parsed.KeyID)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, s, parsed.KeyID)
	if err != nil || k == nil || !hashesEqual(keyHash(secret, key), k.Hash) {
		return err
	}
	switch action {
	case leakedActionDisable:
		if !k.Disabled {
			next := *k
			next.Disabled = true
			if err := b.putKeyEntry(ctx, s, &next); err != nil {
				return err
			}
		}
	default:
		// The key stops verifying at once; its lease later revokes as a no-op, as after
		// a delete through keys/<key_id>.
		if err := b.deleteKeyEntry(ctx, s, k.KeyID); err != nil {
			return err
		}
	}
	b.counters.leaked(k.Role, action)
	b.Logger().Warn("leaked key reported", "key_id", k.KeyID, "role", k.Role, "action", action)
	return nil
}

const leakedCheckHelpSyn = `Tell a secret scanner whether a key it found is live, counting nothing.`

const leakedCheckHelpDesc = `
For secret scanners' verification calls (trufflehog's custom detector webhook): POST any
JSON; every string in it (at most 100) is tried as a key. 200 {"live":true} when one is
a live key of this mount (exists, right secret, not disabled, not expired), else 404
{"live":false}. Nothing is counted: no use, no verification, no usage. Needs a token
with update on this path (policies/scanner.hcl). See docs/leaked-keys.md.
`

const leakedHelpSyn = `Report keys found where they should not be: valid ones are revoked.`

const leakedHelpDesc = `
Needs no token. POST keys (a list of at most 100 keys) found in a repository, a log or a
paste: each one that is a live key of this mount is revoked at once (or disabled, when
config leaked_action=disable), logged (key_id only) and counted; anything else is
ignored. The answer is the same whatever the keys were ("received": n), so a report
teaches nothing about any key. Reports are rate-limited per mount and node (429 with a
retry time). Secret scanners (gitleaks, trufflehog) can send what they find here; see
docs/leaked-keys.md.
`
