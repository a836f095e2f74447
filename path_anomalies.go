package apikey

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

// Paging of the anomalies/ LIST, as for keys/.
const (
	defaultAnomaliesListLimit = 100
	maxAnomaliesListLimit     = 1000
	anomaliesListScanBudget   = 10_000
)

var anomalyRecordFields = map[string]*framework.FieldSchema{
	"id":              {Type: framework.TypeString, Description: "The anomaly's id (its time, then a random suffix)."},
	"key_id":          {Type: framework.TypeString, Description: "The key."},
	"role":            {Type: framework.TypeString, Description: "The key's role."},
	"kind":            {Type: framework.TypeString, Description: "new_network, many_networks, rate_spike, refusal_storm, secret_guessing or dormant_wake."},
	"at":              {Type: framework.TypeString, Description: "When it was seen (RFC 3339)."},
	"detail":          {Type: framework.TypeString, Description: "What was seen and the baseline it broke."},
	"observed":        {Type: framework.TypeFloat, Description: "The number seen (for example verifications in the window)."},
	"baseline":        {Type: framework.TypeFloat, Description: "What the key's baseline allowed."},
	"network":         {Type: framework.TypeString, Description: "The client network involved, if any."},
	"action":          {Type: framework.TypeString, Description: "logged, disabled (the role's anomaly_action=disable disabled the key) or disable_failed."},
	"acknowledged":    {Type: framework.TypeBool, Description: "Whether someone acknowledged it."},
	"acknowledged_at": {Type: framework.TypeString, Description: "When (RFC 3339), or empty."},
	"acknowledged_by": {Type: framework.TypeString, Description: "Who (the token's display name or entity), or empty."},
	"note":            {Type: framework.TypeString, Description: "The acknowledger's note."},
}

func pathAnomalies(b *backend) []*framework.Path {
	query := func(desc string) *framework.FieldSchema {
		return &framework.FieldSchema{Type: framework.TypeString, Description: desc, Query: true}
	}
	return []*framework.Path{
		{
			Pattern: "anomalies/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "anomalies",
			},
			Fields: map[string]*framework.FieldSchema{
				"role":         query("Only anomalies of keys of this role."),
				"key_id":       query("Only anomalies of this key."),
				"kind":         query("Only anomalies of this kind."),
				"since":        query("Only anomalies at or after this time (RFC 3339 or Unix seconds)."),
				"until":        query("Only anomalies before this time (RFC 3339 or Unix seconds)."),
				"acknowledged": query("true: only acknowledged anomalies; false: only those not acknowledged."),
				"after":        query("List only anomaly ids after this one (the previous page's next_after)."),
				"limit":        query(fmt.Sprintf("Most anomalies one page returns (1 to %d, default %d).", maxAnomaliesListLimit, defaultAnomaliesListLimit)),
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathAnomaliesList, Responses: pagedListResponse()},
			},
			HelpSynopsis:    strings.TrimSpace(anomaliesListHelpSyn),
			HelpDescription: strings.TrimSpace(anomaliesListHelpDesc),
		},
		{
			Pattern: "anomalies/" + framework.GenericNameRegex("id"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "anomaly",
			},
			Fields: map[string]*framework.FieldSchema{
				"id":           {Type: framework.TypeString, Description: "The anomaly's id.", Required: true},
				"acknowledged": {Type: framework.TypeBool, Description: "true acknowledges the anomaly; false withdraws the acknowledgement."},
				"note":         {Type: framework.TypeString, Description: "A note about what was found (at most 1024 bytes)."},
			},
			// Anomalies are only raised by verify: a write to an unknown id is a 404.
			ExistenceCheck: func(context.Context, *logical.Request, *framework.FieldData) (bool, error) { return true, nil },
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathAnomalyRead, Responses: okResponse(anomalyRecordFields)},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathAnomalyUpdate, Responses: okResponse(anomalyRecordFields)},
			},
			HelpSynopsis:    strings.TrimSpace(anomalyHelpSyn),
			HelpDescription: strings.TrimSpace(anomalyHelpDesc),
		},
	}
}

// anomalyFilter is the anomalies/ LIST's filters.
type anomalyFilter struct {
	role, keyID, kind string
	since, until      string // id time prefixes
	acknowledged      *bool
}

func parseAnomalyFilter(d *framework.FieldData) (*anomalyFilter, *logical.Response) {
	f := &anomalyFilter{}
	str := func(name string) string { v, _ := d.GetOk(name); s, _ := v.(string); return s }
	if f.role = str("role"); f.role != "" {
		if err := validateRoleName("role", f.role); err != nil {
			return nil, logical.ErrorResponse(err.Error())
		}
	}
	if f.keyID = str("key_id"); f.keyID != "" && !keyformat.ValidKeyID(f.keyID) {
		return nil, logical.ErrorResponse("key_id: must be %d base62 characters", keyformat.KeyIDLen)
	}
	if f.kind = str("kind"); f.kind != "" && !slices.Contains(anomaly.Kinds(), anomaly.Kind(f.kind)) {
		return nil, logical.ErrorResponse("kind: must be one of %v", anomaly.Kinds())
	}
	for _, field := range []struct {
		name string
		dst  *string
	}{{"since", &f.since}, {"until", &f.until}} {
		if raw := str(field.name); raw != "" {
			t, err := parseUsageTime(raw)
			if err != nil {
				return nil, logical.ErrorResponse("%s: %s", field.name, err)
			}
			*field.dst = t.UTC().Format(anomalyIDTime)
		}
	}
	if f.since != "" && f.until != "" && f.since >= f.until {
		return nil, logical.ErrorResponse("since: must be before until")
	}
	if raw := str("acknowledged"); raw != "" {
		v, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, logical.ErrorResponse("acknowledged: must be true or false")
		}
		f.acknowledged = &v
	}
	return f, nil
}

// byID reports whether an id can match, from the id alone (its time).
func (f *anomalyFilter) byID(id string) bool {
	return (f.since == "" || id >= f.since) && (f.until == "" || id < f.until)
}

func (f *anomalyFilter) matches(r *anomalyRecord) bool {
	return (f.role == "" || r.Role == f.role) &&
		(f.keyID == "" || r.KeyID == f.keyID) &&
		(f.kind == "" || r.Kind == f.kind) &&
		(f.acknowledged == nil || r.Acknowledged == *f.acknowledged)
}

func (b *backend) pathAnomaliesList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	f, errResp := parseAnomalyFilter(d)
	if errResp != nil {
		return errResp, nil
	}
	limit := defaultAnomaliesListLimit
	if raw, ok := d.GetOk("limit"); ok && raw.(string) != "" {
		n, err := strconv.Atoi(raw.(string))
		if err != nil || n < 1 || n > maxAnomaliesListLimit {
			return logical.ErrorResponse("limit: must be an integer from 1 to %d", maxAnomaliesListLimit), nil
		}
		limit = n
	}
	after := ""
	if raw, ok := d.GetOk("after"); ok {
		if after = raw.(string); after != "" && !anomalyIDPattern.MatchString(after) {
			return logical.ErrorResponse("after: is not an anomaly id"), nil
		}
	}
	ids, err := req.Storage.List(ctx, anomalyPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing anomalies: %w", err)
	}
	slices.Sort(ids)
	start, _ := slices.BinarySearch(ids, after)
	if after != "" && start < len(ids) && ids[start] == after {
		start++
	}
	listed := []string{}
	info := map[string]interface{}{}
	scanned, last := 0, ""
	for _, id := range ids[start:] {
		if len(listed) == limit || scanned == anomaliesListScanBudget {
			break
		}
		last = id
		if !f.byID(id) {
			continue
		}
		scanned++
		r, err := b.anomalyRecord(ctx, req.Storage, id)
		if err != nil {
			return nil, err
		}
		if r == nil || !f.matches(r) {
			continue
		}
		listed = append(listed, id)
		info[id] = r.responseData()
	}
	resp := logical.ListResponseWithInfo(listed, info)
	if last != "" && last != ids[len(ids)-1] {
		resp.Data["next_after"] = last
	}
	return resp, nil
}

func anomalyIDFrom(d *framework.FieldData) (string, *logical.Response) {
	id := d.Get("id").(string)
	if !anomalyIDPattern.MatchString(id) {
		return "", logical.ErrorResponse("id: is not an anomaly id (like 20260302T101500.000Z-1a2b3c4d)")
	}
	return id, nil
}

func (b *backend) pathAnomalyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := anomalyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	r, err := b.anomalyRecord(ctx, req.Storage, id)
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: r.responseData()}, nil
}

// maxAnomalyNote bounds an acknowledgement's note.
const maxAnomalyNote = 1024

func (b *backend) pathAnomalyUpdate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := anomalyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	ack, hasAck := d.GetOk("acknowledged")
	note, hasNote := d.GetOk("note")
	if !hasAck && !hasNote {
		return logical.ErrorResponse("acknowledged: set acknowledged (true or false) or note"), nil
	}
	if hasNote && len(note.(string)) > maxAnomalyNote {
		return logical.ErrorResponse("note: must be at most %d bytes", maxAnomalyNote), nil
	}
	b.anomalyLock.Lock()
	defer b.anomalyLock.Unlock()
	r, err := b.anomalyRecord(ctx, req.Storage, id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("anomaly %s does not exist", id))
	}
	if hasAck {
		r.Acknowledged = ack.(bool)
		r.AcknowledgedAt, r.AcknowledgedBy = time.Time{}, ""
		if r.Acknowledged {
			r.AcknowledgedAt = time.Now().UTC()
			r.AcknowledgedBy = req.DisplayName
			if r.AcknowledgedBy == "" {
				r.AcknowledgedBy = req.EntityID
			}
		}
	}
	if hasNote {
		r.Note = note.(string)
	}
	if err := putAnomalyRecord(ctx, req.Storage, r); err != nil {
		return nil, err
	}
	return &logical.Response{Data: r.responseData()}, nil
}

const anomaliesListHelpSyn = `List the anomalies raised for this mount's keys.`

const anomaliesListHelpDesc = `
Lists anomaly ids in time order (an id starts with its time); "vault list -detailed"
shows each one's key_id, role, kind, time, detail, action and acknowledgement. Filters
(HTTP query parameters; vault list cannot send them): role, key_id, kind, since and
until (RFC 3339 or Unix seconds), acknowledged (true/false); pages: after, limit
(1-1000, default 100), and next_after in the answer when more remain. See
docs/anomalies.md for the kinds and how they are learned.
`

const anomalyHelpSyn = `Read or acknowledge one anomaly.`

const anomalyHelpDesc = `
Reading shows what was seen (kind, at, detail, observed, network), the baseline it broke
(baseline), and what was done (action: logged, disabled, disable_failed). Writing
acknowledged=true (with an optional note) marks it as looked at, with who and when;
acknowledged=false withdraws that. Acknowledging never re-enables a key: do that through
keys/<key_id>.
`
