package apikey

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

// Limits of the usage path's group_by=key ranking.
const (
	defaultTopKeys = 10
	maxTopKeys     = 1000
)

// usageRangeFields are the fields every usage read takes.
func usageRangeFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"granularity": {
			Type:          framework.TypeString,
			Description:   "hour (default) or day.",
			Default:       "hour",
			AllowedValues: []interface{}{"hour", "day"},
		},
		"start": {
			Type:        framework.TypeString,
			Description: "Start of the range (RFC 3339 or Unix seconds). Default: end minus usage_hours (hour) or usage_days (day).",
		},
		"end": {
			Type:        framework.TypeString,
			Description: "End of the range, exclusive (RFC 3339 or Unix seconds). Default: now.",
		},
		"tag": {
			Type:        framework.TypeString,
			Description: "A tag name: adds tag_series, that tag's values per day, and keeps only that tag in tags.",
		},
	}
}

// usageSeriesFields documents what every usage read returns.
var usageSeriesFields = map[string]*framework.FieldSchema{
	"granularity": {Type: framework.TypeString, Description: "hour or day."},
	"start":       {Type: framework.TypeString, Description: "Start of the range (RFC 3339)."},
	"end":         {Type: framework.TypeString, Description: "End of the range, exclusive (RFC 3339)."},
	"series":      {Type: framework.TypeSlice, Description: "Buckets with traffic, ascending: start, total and counts by outcome code (codes with no count are left out)."},
	"totals":      {Type: framework.TypeMap, Description: "Counts by outcome code over the range."},
	"total":       {Type: framework.TypeInt64, Description: "Verifications in the range."},
	"refusals":    {Type: framework.TypeInt64, Description: "Verifications in the range that were not VALID."},
	"tags":        {Type: framework.TypeSlice, Description: "Tags counted on the days the range touches: name, value, total, counts; most used first."},
	"tag_series":  {Type: framework.TypeSlice, Description: "With tag: per day, that tag's values and their counts."},
}

func pathUsage(b *backend) []*framework.Path {
	keyFields := usageRangeFields()
	keyFields["key_id"] = &framework.FieldSchema{Type: framework.TypeString, Description: "Public identifier of the key.", Required: true}
	mountFields := usageRangeFields()
	mountFields["role"] = &framework.FieldSchema{Type: framework.TypeString, Description: "Only this role's usage. Default: the whole mount."}
	mountFields["group_by"] = &framework.FieldSchema{
		Type:          framework.TypeString,
		Description:   "outcome (default: series and totals by outcome code), tag (tags ranked by use) or key (the top keys).",
		Default:       "outcome",
		AllowedValues: []interface{}{"outcome", "tag", "key"},
	}
	mountFields["top"] = &framework.FieldSchema{
		Type:          framework.TypeString,
		Description:   "With group_by=key: rank keys by verifications (default) or refusals.",
		Default:       "verifications",
		AllowedValues: []interface{}{"verifications", "refusals"},
	}
	// A string parsed by the handler, so that a bad value gets a 400 that starts with
	// the field's name like every other.
	mountFields["limit"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "With group_by=key: how many keys (1-1000, default 10).",
	}
	return []*framework.Path{
		{
			Pattern: "keys/" + framework.GenericNameRegex("key_id") + "/usage",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "key-usage",
			},
			Fields: keyFields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathKeyUsageRead, Responses: okResponse(withFields(usageSeriesFields, map[string]*framework.FieldSchema{
					"key_id":       {Type: framework.TypeString, Description: "The key."},
					"role":         {Type: framework.TypeString, Description: "The key's role."},
					"exists":       {Type: framework.TypeBool, Description: "Whether the key still exists (usage outlives revocation until it leaves the retention)."},
					"last_used_at": {Type: framework.TypeString, Description: "Last verification of the key, whatever its outcome (RFC 3339), or empty."},
					"all_time":     {Type: framework.TypeMap, Description: "Counts by outcome code since the key was issued."},
					"networks":     {Type: framework.TypeSlice, Description: "Client networks (/24, /48) the key was presented from: network, count, refused, first_seen, last_seen; most recently seen first."},
				}))},
			},
			HelpSynopsis:    strings.TrimSpace(keyUsageHelpSyn),
			HelpDescription: strings.TrimSpace(keyUsageHelpDesc),
		},
		{
			Pattern: "usage$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "usage",
			},
			Fields: mountFields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathUsageRead, Responses: okResponse(withFields(usageSeriesFields, map[string]*framework.FieldSchema{
					"role":     {Type: framework.TypeString, Description: "The role asked for, or empty for the mount."},
					"group_by": {Type: framework.TypeString, Description: "The grouping asked for."},
					"all_time": {Type: framework.TypeMap, Description: "Counts by outcome code since counting began."},
					"top_keys": {Type: framework.TypeSlice, Description: "With group_by=key: key_id, total, refusals and counts of the top keys, highest first."},
				}))},
			},
			HelpSynopsis:    strings.TrimSpace(usageHelpSyn),
			HelpDescription: strings.TrimSpace(usageHelpDesc),
		},
	}
}

// usageQuery is a parsed range and the record retention it is read with.
type usageQuery struct {
	g          usagestats.Granularity
	start, end time.Time
	tag        string
	cfg        usagestats.Config
	now        time.Time
}

// parseUsageQuery reads the range fields; on bad input it returns a 400 naming the field.
func (b *backend) parseUsageQuery(ctx context.Context, req *logical.Request, d *framework.FieldData) (*usageQuery, *logical.Response, error) {
	cur, err := b.getSettings(ctx, req.Storage)
	if err != nil {
		return nil, nil, err
	}
	q := &usageQuery{cfg: cur.usageConfig(), now: b.clock.now()}
	if q.g, err = usagestats.ParseGranularity(d.Get("granularity").(string)); err != nil {
		return nil, logical.ErrorResponse("granularity: must be hour or day"), nil
	}
	q.end = q.now
	if raw := d.Get("end").(string); raw != "" {
		if q.end, err = parseUsageTime(raw); err != nil {
			return nil, logical.ErrorResponse("end: %s", err), nil
		}
	}
	q.start = q.end.Add(-time.Duration(q.cfg.Hours) * time.Hour)
	if q.g == usagestats.Day {
		q.start = q.end.Add(-time.Duration(q.cfg.Days) * 24 * time.Hour)
	}
	if raw := d.Get("start").(string); raw != "" {
		if q.start, err = parseUsageTime(raw); err != nil {
			return nil, logical.ErrorResponse("start: %s", err), nil
		}
	}
	if err := usagestats.CheckRange(q.start, q.end); err != nil {
		return nil, logical.ErrorResponse("start: %s", err), nil
	}
	if q.tag = d.Get("tag").(string); q.tag != "" {
		if err := (usagestats.Tag{Name: q.tag, Value: "x"}).Validate(); err != nil {
			return nil, logical.ErrorResponse("tag: %.64q is not a tag name (1-%d of a-z 0-9 _ . -)", q.tag, usagestats.MaxTagNameLen), nil
		}
	}
	return q, nil, nil
}

// Times before this or after maxUsageTime are refused rather than overflowing.
var maxUsageTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// parseUsageTime reads RFC 3339 or Unix seconds.
func parseUsageTime(s string) (time.Time, error) {
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		if sec < 0 || sec > maxUsageTime.Unix() {
			return time.Time{}, errUsageTime
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Before(time.Unix(0, 0)) || t.After(maxUsageTime) {
		return time.Time{}, errUsageTime
	}
	return t, nil
}

var errUsageTime = usageTimeError{}

type usageTimeError struct{}

func (usageTimeError) Error() string {
	return "must be an RFC 3339 time or Unix seconds between 1970 and 9999"
}

// seriesData answers the range part of a usage read from r (nil: no traffic).
func (q *usageQuery) seriesData(r *usagestats.Record) map[string]interface{} {
	if r == nil {
		r = &usagestats.Record{}
	}
	sum := r.Sum(q.g, q.start, q.end)
	series := []map[string]interface{}{}
	for _, bk := range r.Series(q.g, q.start, q.end) {
		series = append(series, map[string]interface{}{
			"start":  time.Unix(bk.Start, 0).UTC().Format(time.RFC3339),
			"total":  bk.Counts.Total(),
			"counts": bk.Counts.Map(),
		})
	}
	data := map[string]interface{}{
		"granularity": q.g.String(),
		"start":       q.start.UTC().Format(time.RFC3339),
		"end":         q.end.UTC().Format(time.RFC3339),
		"series":      series,
		"totals":      sum.Map(),
		"total":       sum.Total(),
		"refusals":    sum.Refusals(),
		"all_time":    r.Total.Map(),
		"tags":        tagCountsData(r.TagTotals(q.start, q.end, q.tag)),
	}
	if q.tag != "" {
		days := []map[string]interface{}{}
		for _, day := range r.TagSeries(q.start, q.end, q.tag) {
			days = append(days, map[string]interface{}{
				"start": time.Unix(day.Start, 0).UTC().Format(time.RFC3339),
				"tags":  tagCountsData(day.Tags),
			})
		}
		data["tag_series"] = days
	}
	return data
}

func tagCountsData(tags []usagestats.TagCount) []map[string]interface{} {
	out := make([]map[string]interface{}, 0, len(tags))
	for _, t := range tags {
		out = append(out, map[string]interface{}{
			"name":   t.Name,
			"value":  t.Value,
			"total":  t.Counts.Total(),
			"counts": t.Counts.Map(),
		})
	}
	return out
}

func (b *backend) pathKeyUsageRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, errResp := keyIDFrom(d)
	if errResp != nil {
		return errResp, nil
	}
	q, errResp, err := b.parseUsageQuery(ctx, req, d)
	if errResp != nil || err != nil {
		return errResp, err
	}
	k, err := b.inventoryKeyEntry(ctx, req.Storage, id)
	if err != nil {
		return nil, err
	}
	u, err := b.currentUsage(ctx, req.Storage, usagestats.ScopeKey, id, q.cfg, q.now)
	if err != nil {
		return nil, err
	}
	if k == nil && u == nil {
		return nil, nil // 404: no such key, and no usage of one
	}
	var rec *usagestats.Record
	role := ""
	if u != nil {
		rec, role = &u.Record, u.Role
	}
	if k != nil {
		role = k.Role
	}
	data := q.seriesData(rec)
	data["key_id"] = id
	data["role"] = role
	data["exists"] = k != nil
	data["last_used_at"] = ""
	networks := []map[string]interface{}{}
	if rec != nil {
		if rec.LastUsed != 0 {
			data["last_used_at"] = time.Unix(rec.LastUsed, 0).UTC().Format(time.RFC3339)
		}
		for _, n := range rec.Networks {
			networks = append(networks, map[string]interface{}{
				"network":    n.Prefix.String(),
				"count":      n.Count,
				"refused":    n.Refused,
				"first_seen": time.Unix(n.FirstSeen, 0).UTC().Format(time.RFC3339),
				"last_seen":  time.Unix(n.LastSeen, 0).UTC().Format(time.RFC3339),
			})
		}
	}
	data["networks"] = networks
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathUsageRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	q, errResp, err := b.parseUsageQuery(ctx, req, d)
	if errResp != nil || err != nil {
		return errResp, err
	}
	role := d.Get("role").(string)
	if role != "" {
		if err := validateRoleName("role", role); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	groupBy := d.Get("group_by").(string)
	switch groupBy {
	case "outcome", "tag", "key":
	default:
		return logical.ErrorResponse("group_by: must be outcome, tag or key"), nil
	}
	by, err := usagestats.ParseMetric(d.Get("top").(string))
	if err != nil {
		return logical.ErrorResponse("top: must be verifications or refusals"), nil
	}
	limit := defaultTopKeys
	if raw := d.Get("limit").(string); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxTopKeys {
			return logical.ErrorResponse("limit: must be an integer from 1 to %d", maxTopKeys), nil
		}
		limit = n
	}

	scope, name := usagestats.ScopeMount, ""
	if role != "" {
		scope, name = usagestats.ScopeRole, role
	}
	u, err := b.currentUsage(ctx, req.Storage, scope, name, q.cfg, q.now)
	if err != nil {
		return nil, err
	}
	var rec *usagestats.Record
	if u != nil {
		rec = &u.Record
	}
	if groupBy == "tag" && role == "" {
		// Tags are counted per role and per key, not for the mount: the mount's tags are
		// its roles' together.
		if rec, err = b.mountTags(ctx, req.Storage, rec, q); err != nil {
			return nil, err
		}
	}
	data := q.seriesData(rec)
	data["role"] = role
	data["group_by"] = groupBy
	if groupBy != "tag" {
		delete(data, "tags")
		delete(data, "tag_series")
	}
	if groupBy == "key" {
		var walkErr error
		top := usagestats.TopKeys(b.keyUsageRecords(ctx, req.Storage, role, q.cfg, q.now, &walkErr), q.g, q.start, q.end, by, limit)
		if walkErr != nil {
			return nil, walkErr
		}
		keys := make([]map[string]interface{}, 0, len(top))
		for _, kc := range top {
			keys = append(keys, map[string]interface{}{
				"key_id":   kc.Key,
				"total":    kc.Counts.Total(),
				"refusals": kc.Counts.Refusals(),
				"counts":   kc.Counts.Map(),
			})
		}
		data["top_keys"] = keys
	}
	return &logical.Response{Data: data}, nil
}

// mountTags returns mount (the mount's record, or nil) with the tags of every role's
// record added.
func (b *backend) mountTags(ctx context.Context, s logical.Storage, mount *usagestats.Record, q *usageQuery) (*usagestats.Record, error) {
	out := &usagestats.Record{}
	if mount != nil {
		clone := mount.Clone()
		out = &clone
	}
	roles, err := s.List(ctx, usageRolePrefix)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(roles))
	add := func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		u, err := b.currentUsage(ctx, s, usagestats.ScopeRole, name, q.cfg, q.now)
		if err != nil || u == nil {
			return err
		}
		tagsOnly := usagestats.Record{Tags: u.Record.Tags}
		// Tags only: the mount's own series already count every verification once.
		usagestats.Merge(out, &tagsOnly, q.cfg, q.now)
		return nil
	}
	for _, name := range roles {
		if err := add(name); err != nil {
			return nil, err
		}
	}
	// Roles counted on this node but never flushed have no record yet.
	for _, name := range b.stats.Names(usagestats.ScopeRole) {
		if err := add(name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const keyUsageHelpSyn = `Read one key's verifications over time.`

const keyUsageHelpDesc = `
Counts of the key's verifications by outcome code in hourly or daily buckets
(granularity=hour|day) over a range (start, end: RFC 3339 or Unix seconds; by default
the whole retention, see config usage_hours and usage_days), with totals, the counts
since the key was issued (all_time), its last verification, the client networks it was
presented from (/24 for IPv4, /48 for IPv6, with counts; from verify's client_ip), and
the tags it was verified with per day (tag=<name> adds that tag's values per day).
Presenting a known key_id with a wrong secret counts as NOT_FOUND here.

Counts are kept in memory on the node that answered verify and written to storage about
once a minute (and by tidy); a read includes this node's unwritten counts. A failover
loses at most the counts not yet written. Usage outlives revocation until it leaves the
retention; exists says whether the key still exists. Never returns the key.
`

const usageHelpSyn = `Read verifications over time for the mount or one role.`

const usageHelpDesc = `
Counts of verifications by outcome code over a range (granularity, start, end as for
keys/<key_id>/usage), for the whole mount or one role (role=<name>). The mount's counts
include keys that were not found (MALFORMED, NOT_FOUND), which no role has.

group_by=outcome (default) returns the series and totals. group_by=tag also ranks the
tags verify was called with (tag=<name> keeps one tag name and adds its values per day).
group_by=key ranks keys by verifications or refusals (top=verifications|refusals,
limit=1-1000, default 10) from the stored per-key counts: it reads every key's usage
record, so it costs one storage read per key that has any.
`
