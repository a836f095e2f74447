package apikey

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

const usageReportPath = "usage/report"

// pathUsageReport is usage/report: a grant holder reports the answers it served without
// asking verify (cache hits, grant spends, local refusals), so that the usage counts,
// the metrics, anomaly detection and use counts see all traffic.
func pathUsageReport(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: usageReportPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "report",
			OperationSuffix: "usage",
		},
		Fields: map[string]*framework.FieldSchema{
			verifyapi.FieldGrantHolder: {
				Type:        framework.TypeString,
				Description: "The reporting process, as it asks verify (grant_holder). Required.",
				Required:    true,
			},
			verifyapi.FieldEntries: {
				Type: framework.TypeSlice,
				Description: "What was served, at most 10000 entries: each an object with key_id, report_token (as verify answered it for the key), code " +
					"(a code after NOT_FOUND), count (requests, 1 to 2^40), uses (the sum of their costs, default 0), and optionally tags and client_ip (one client address of the requests).",
				Required: true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathUsageReport,
				Responses: okResponse(map[string]*framework.FieldSchema{
					verifyapi.FieldAccepted: {Type: framework.TypeInt64, Description: "Entries counted."},
					verifyapi.FieldRejected: {Type: framework.TypeInt64, Description: "Entries not counted: the key does not exist (any more) or the report_token is not its."},
				}),
			},
		},
		HelpSynopsis:    strings.TrimSpace(usageReportHelpSyn),
		HelpDescription: strings.TrimSpace(usageReportHelpDesc),
	}
}

// reportItem is one entry, checked.
type reportItem struct {
	verifyapi.ReportEntry
	tags   []usagestats.Tag
	client netip.Addr
}

func (b *backend) pathUsageReport(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	holder := d.Get(verifyapi.FieldGrantHolder).(string)
	if !verifyapi.ValidHolder(holder) {
		return logical.ErrorResponse("%s must be 1-%d characters of A-Z, a-z, 0-9, _ and -", verifyapi.FieldGrantHolder, verifyapi.MaxHolderLen), nil
	}
	raw, ok := d.GetOk(verifyapi.FieldEntries)
	if !ok {
		return logical.ErrorResponse("%s is required", verifyapi.FieldEntries), nil
	}
	entries, err := verifyapi.DecodeReportEntries(raw.([]interface{}))
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	// Every entry is checked before any is counted: a 400 counts nothing.
	items := make([]reportItem, len(entries))
	var total int64
	for i, e := range entries {
		items[i].ReportEntry = e
		// Bounds that keep counts from ever wrapping, whatever a verifier sends: no more
		// uses than the requests' largest cost, and no more requests in one report than
		// one entry may carry.
		if e.Count < maxCost && e.Uses > e.Count*maxCost { // below 2^62: no overflow
			return logical.ErrorResponse("%s[%d].%s: at most %d per request counted (the largest cost)", verifyapi.FieldEntries, i, verifyapi.FieldUses, int64(maxCost)), nil
		}
		if total += e.Count; total > verifyapi.MaxReportCount {
			return logical.ErrorResponse("%s: the counts of one report add up to more than %d", verifyapi.FieldEntries, int64(verifyapi.MaxReportCount)), nil
		}
		if len(e.Tags) > 0 {
			if items[i].tags, err = usagestats.ParseTags(e.Tags); err != nil {
				return logical.ErrorResponse("%s[%d].%s: %s", verifyapi.FieldEntries, i, verifyapi.FieldTags, err), nil
			}
		}
		if e.ClientIP != "" {
			if items[i].client, err = clientaddr.ParseAddr(e.ClientIP); err != nil {
				return logical.ErrorResponse("%s[%d].%s: %s", verifyapi.FieldEntries, i, verifyapi.FieldClientIP, err), nil
			}
		}
	}
	secret, err := b.getMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := b.clock.now()
	var accepted, rejected int64
	for i := range items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ok, err := b.reportOne(ctx, req.Storage, secret, &items[i], now)
		if err != nil {
			return nil, err
		}
		if ok {
			accepted++
		} else {
			rejected++
		}
	}
	if rejected > 0 {
		b.Logger().Debug("usage report entries rejected", "grant_holder", holder, "rejected", rejected, "accepted", accepted)
	}
	return &logical.Response{Data: map[string]interface{}{verifyapi.FieldAccepted: accepted, verifyapi.FieldRejected: rejected}}, nil
}

// reportOne counts one entry if its key exists and its report token is the key's. It
// tells a reporter nothing more about a key than whether its entry was counted.
func (b *backend) reportOne(ctx context.Context, s logical.Storage, secret []byte, it *reportItem, now time.Time) (bool, error) {
	if !keyformat.ValidKeyID(it.KeyID) {
		return false, nil
	}
	k, err := b.cachedKeyEntry(ctx, s, it.KeyID)
	if err != nil || k == nil {
		return false, err
	}
	if !reportTokenValid(secret, k.KeyID, it.ReportToken) {
		return false, nil
	}
	count := uint64(it.Count)
	if !b.countingOff.Load() {
		if idx, ok := usagestats.CodeIndex(it.Code); ok {
			b.counters.verifiedN(k.Role, idx, count)
		}
		// RecordN refuses only unknown codes and invalid tags, and both were checked.
		_ = b.stats.RecordN(k.KeyID, k.Role, it.Code, it.tags, it.client, now, count)
	}
	b.detectN(ctx, s, k, it.Code, it.client, now, count)
	if it.Code == verifyapi.CodeValid {
		account, err := b.accountKey(ctx, s, k)
		if err != nil {
			return true, err
		}
		b.countReportedUses(account, it.Uses, now)
	}
	return true, nil
}

// countReportedUses counts uses served from a grant or a cache as verify counts its
// own (chargeKey): on the key that bears them. A key with its own max_uses was debited
// when its grant was given, so only its last use moves; other keys count the uses
// (keys without max_uses, and keys whose credits are their identity's, which count
// their own uses beside the identity's credits).
func (b *backend) countReportedUses(account *keyEntry, uses int64, now time.Time) {
	own := usage.State{Count: account.UseCount, LastUsed: account.LastUsedAt}
	if account.MaxUses > 0 && !account.sharedCredits() {
		b.usage.Touch(account.KeyID, account.storedState(), now)
		return
	}
	if uses > 0 {
		b.usage.Use(account.KeyID, uses, usage.Quota{}, own, now)
	} else {
		b.usage.Touch(account.KeyID, own, now)
	}
}

const usageReportHelpSyn = `Report the verify answers a caller served itself.`

const usageReportHelpDesc = `
For callers that hold quota grants and cache answers (verify's grant_holder; the
apikeyauth middleware and the gateway with fleet mode on). grant_holder and entries:
each entry has key_id, report_token (as verify answered it for that key), code (a
verify code after NOT_FOUND), count (requests), uses (the sum of their costs), and
optionally tags and client_ip. A malformed entry is a 400 naming entries[i] and the
field, and nothing is counted. An entry whose key does not exist or whose report_token
is not the key's is rejected (counted in rejected, nothing else said). Accepted entries
count in the usage series, the metrics and anomaly detection like verify outcomes; VALID
uses of keys without max_uses raise use_count (keys with max_uses were debited when
their grants were given: only last_used_at moves).
`
