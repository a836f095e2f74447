package verifyapi

import (
	"errors"
	"fmt"
	"time"
)

// The fleet contract: what callers that serve many requests per verify call (the
// apikeyauth middleware with Fleet on, and so the gateway) exchange with the engine so
// that metered keys stay exact and cached answers learn of changes quickly.
//
//   - Quota grants ride on verify: a verify with grant_holder set that answers VALID
//     for a metered key also carries a grant (uses debited at once from the key's
//     credits, and a share of each of its rate limits), renewed, returned or released
//     on <mount>/grants/renew.
//   - The change feed, <mount>/feed, returns in order every event that makes a cached
//     answer wrong, after a cursor; a cursor of another epoch answers reset.
//   - Usage reports, <mount>/usage/report, carry the uses a caller served without
//     asking verify, so the engine's counts see all traffic.

// Verify request fields that ask for a grant (and a report token).
const (
	// FieldGrantHolder names the caller process (1-64 of A-Z a-z 0-9 _ -). With it,
	// verify answers report_token for every code after NOT_FOUND, and a grant with a
	// VALID answer for a metered key.
	FieldGrantHolder = "grant_holder"
	// FieldGrantUses is how many uses the holder asks for (keys with max_uses).
	FieldGrantUses = "grant_uses"
	// FieldGrantRate is the request rate, per second, the holder asks for
	// (rate-limited keys).
	FieldGrantRate = "grant_rate"
)

// Response fields of a grant (on verify and grants/renew) and of the report token.
const (
	FieldReportToken   = "report_token"
	FieldGrantID       = "grant_id"
	FieldGrantedUses   = "granted_uses"
	FieldGrantedLimits = "granted_limits"
	FieldGrantTTL      = "grant_ttl_ms"
	// grants/renew
	FieldUnused  = "unused"
	FieldRelease = "release"
	FieldRenewed = "renewed"
)

// Fields of a granted limit (an element of granted_limits).
const (
	FieldLimitName  = "name"
	FieldLimitRate  = "rate"
	FieldLimitBurst = "burst"
	// FieldLimitTokens: tokens added to the holder's bucket of the limit by this answer
	// (taken from the engine's own bucket, so that a grant is never a free burst).
	FieldLimitTokens = "tokens"
)

// Feed fields.
const (
	FieldCursor = "cursor"
	FieldWait   = "wait"
	FieldReset  = "reset"
	FieldEvents = "events"
	FieldKind   = "kind"
)

// Report fields: usage/report takes grant_holder and entries; each entry has key_id,
// report_token, code, count, uses, and optionally tags and client_ip.
const (
	FieldEntries  = "entries"
	FieldCount    = "count"
	FieldUses     = "uses"
	FieldAccepted = "accepted"
	FieldRejected = "rejected"
)

// Bounds of the fleet contract, checked by the engine (400 beyond them).
const (
	MaxHolderLen      = 64
	MaxFeedWait       = 60 * time.Second
	MaxReportEntries  = 10_000
	MaxFeedEvents     = 1000 // events in one feed answer
	MaxGrantRate      = 1e9
	MaxGrantUses      = 1_000_000_000
	MaxReportCount    = 1 << 40
	DefaultFeedWaitS  = 20
	reportCodeAllowed = "codes after NOT_FOUND"
)

// Feed event kinds: each makes cached answers about key_id wrong.
const (
	EventRevoked        = "revoked"  // the key is gone (revoked, deleted, tidied)
	EventDisabled       = "disabled" // disabled (by an operator, an anomaly or a leak report)
	EventEnabled        = "enabled"
	EventRotated        = "rotated"        // replaced: its grace period, if any, has begun
	EventExpiryChanged  = "expiry_changed" // expires_at moved (renewal, rotation grace)
	EventLimitsChanged  = "limits_changed" // credits set or added: grants were cancelled
	EventGrantCancelled = "grant_cancelled"
	// EventUpdated: the key's name or metadata changed (verify answers show them), or its
	// record was written on another node (which change is not known there).
	EventUpdated = "updated"
)

// ValidHolder reports whether h is a valid grant_holder.
func ValidHolder(h string) bool {
	if len(h) == 0 || len(h) > MaxHolderLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// GrantRequest asks for a grant: sent with verify, and with grants/renew.
type GrantRequest struct {
	Holder string
	// Uses wanted (keys with max_uses); Rate wanted in requests per second
	// (rate-limited keys). The engine grants at most what is free.
	Uses int64
	Rate float64
}

func (g GrantRequest) put(data map[string]any) {
	data[FieldGrantHolder] = g.Holder
	if g.Uses > 0 {
		data[FieldGrantUses] = g.Uses
	}
	if g.Rate > 0 {
		data[FieldGrantRate] = g.Rate
	}
}

// GrantLimit is the holder's share of one of the key's rate limits: a token bucket of
// Burst tokens refilled at Rate per second.
type GrantLimit struct {
	Name  string
	Rate  float64
	Burst float64
	// Tokens are the tokens this answer ADDS to the holder's bucket (the holder clamps
	// the bucket to Burst): what the engine's bucket handed over. A new grant's bucket
	// starts with them, not full. Absent on decode: 0.
	Tokens float64
}

// Grant is what a holder may admit for a key without asking the engine, until TTL has
// passed since the answer that carried it.
type Grant struct {
	ID string
	// Uses is how many uses were debited for the holder; nil when the key has no
	// max_uses (uses are not limited).
	Uses *int64
	// Limits are the holder's shares of the key's rate limits; empty when it has none.
	Limits []GrantLimit
	TTL    time.Duration
}

func (g Grant) put(data map[string]any) {
	data[FieldGrantID] = g.ID
	if g.Uses != nil {
		data[FieldGrantedUses] = *g.Uses
	}
	if len(g.Limits) > 0 {
		limits := make([]map[string]any, len(g.Limits))
		for i, l := range g.Limits {
			limits[i] = map[string]any{FieldLimitName: l.Name, FieldLimitRate: l.Rate, FieldLimitBurst: l.Burst, FieldLimitTokens: l.Tokens}
		}
		data[FieldGrantedLimits] = limits
	}
	data[FieldGrantTTL] = g.TTL.Milliseconds()
}

func decodeGrant(d map[string]any) (*Grant, error) {
	id, _ := d[FieldGrantID].(string)
	if id == "" {
		return nil, nil
	}
	g := &Grant{ID: id}
	if n, ok := Number(d[FieldGrantedUses]); ok {
		if n < 0 {
			return nil, errors.New("grant has negative granted_uses")
		}
		u := int64(n)
		g.Uses = &u
	}
	if raw, ok := d[FieldGrantedLimits].([]any); ok {
		for _, e := range raw {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, errors.New("grant has a granted_limits element that is not an object")
			}
			var l GrantLimit
			l.Name, _ = m[FieldLimitName].(string)
			rate, ok1 := Number(m[FieldLimitRate])
			burst, ok2 := Number(m[FieldLimitBurst])
			if !ok1 || !ok2 || rate < 0 || burst < 0 {
				return nil, errors.New("grant has a granted_limits element without a rate and burst")
			}
			l.Rate, l.Burst = rate, burst
			if raw, present := m[FieldLimitTokens]; present {
				tokens, ok := Number(raw)
				if !ok || !(tokens >= 0) {
					return nil, errors.New("grant has a granted_limits element with tokens that are not a number of at least 0")
				}
				l.Tokens = tokens
			}
			g.Limits = append(g.Limits, l)
		}
	}
	ms, ok := Number(d[FieldGrantTTL])
	if !ok || ms <= 0 {
		return nil, errors.New("grant has no positive grant_ttl_ms")
	}
	g.TTL = time.Duration(ms) * time.Millisecond
	return g, nil
}

// RenewRequest is one call to grants/renew: return Unused uses of the grant and, unless
// Release, ask for a new grant of Want under the same id.
type RenewRequest struct {
	GrantID string
	Want    GrantRequest // Holder must be the grant's holder
	Unused  int64
	Release bool
}

// Data encodes r as grants/renew's request data.
func (r RenewRequest) Data() map[string]any {
	data := map[string]any{FieldGrantID: r.GrantID, FieldUnused: r.Unused}
	r.Want.put(data)
	if r.Release {
		data[FieldRelease] = true
	}
	return data
}

// RenewResponse is grants/renew's answer: Renewed with the new grant, or not (the
// grant is unknown: released, cancelled, expired, or the engine restarted; the holder
// drops it and asks verify again).
type RenewResponse struct {
	Renewed bool
	Grant   *Grant
}

// Data encodes r as grants/renew's response data.
func (r RenewResponse) Data() map[string]any {
	data := map[string]any{FieldRenewed: r.Renewed && r.Grant != nil}
	if r.Renewed && r.Grant != nil {
		r.Grant.put(data)
	}
	return data
}

// DecodeRenewResponse reads grants/renew's response data.
func DecodeRenewResponse(d map[string]any) (RenewResponse, error) {
	renewed, ok := d[FieldRenewed].(bool)
	if !ok {
		return RenewResponse{}, errors.New("grants/renew response has no boolean renewed")
	}
	if !renewed {
		return RenewResponse{}, nil
	}
	g, err := decodeGrant(d)
	if err != nil {
		return RenewResponse{}, err
	}
	if g == nil {
		return RenewResponse{}, errors.New("grants/renew answered renewed without grant_id")
	}
	return RenewResponse{Renewed: true, Grant: g}, nil
}

// FeedEvent is one change.
type FeedEvent struct {
	Kind  string
	KeyID string
}

// FeedResponse is feed's answer: the events after the cursor asked for, in order, and
// the cursor to ask with next. Reset says the cursor was of another epoch (the engine
// restarted or another node became active) or too old: every cached answer may be
// wrong, and grants the holder has are unknown to the engine.
type FeedResponse struct {
	Cursor string
	Reset  bool
	Events []FeedEvent
}

// Data encodes r as feed's response data.
func (r FeedResponse) Data() map[string]any {
	events := make([]map[string]any, len(r.Events))
	for i, e := range r.Events {
		events[i] = map[string]any{FieldKind: e.Kind, FieldKeyID: e.KeyID}
	}
	return map[string]any{FieldCursor: r.Cursor, FieldReset: r.Reset, FieldEvents: events}
}

// DecodeFeedResponse reads feed's response data.
func DecodeFeedResponse(d map[string]any) (FeedResponse, error) {
	var r FeedResponse
	var ok bool
	if r.Cursor, ok = d[FieldCursor].(string); !ok || r.Cursor == "" {
		return FeedResponse{}, errors.New("feed response has no cursor")
	}
	if r.Reset, ok = d[FieldReset].(bool); !ok {
		return FeedResponse{}, errors.New("feed response has no boolean reset")
	}
	raw, _ := d[FieldEvents].([]any)
	for i, e := range raw {
		m, ok := e.(map[string]any)
		if !ok {
			return FeedResponse{}, fmt.Errorf("feed event %d is not an object", i)
		}
		kind, _ := m[FieldKind].(string)
		keyID, _ := m[FieldKeyID].(string)
		if kind == "" || keyID == "" {
			return FeedResponse{}, fmt.Errorf("feed event %d has no kind or key_id", i)
		}
		r.Events = append(r.Events, FeedEvent{Kind: kind, KeyID: keyID})
	}
	return r, nil
}

// ReportEntry is what a holder served for one key, outcome, tag set and client address
// without asking verify: Count requests, Uses uses (the sum of their costs).
type ReportEntry struct {
	KeyID       string
	ReportToken string
	Code        string
	Count       int64
	Uses        int64
	Tags        []string
	// ClientIP is one client address of the requests (they are grouped per network);
	// the zero Addr when unknown.
	ClientIP string
}

// Report is one call to usage/report.
type Report struct {
	Holder  string
	Entries []ReportEntry
}

// Data encodes r as usage/report's request data.
func (r Report) Data() map[string]any {
	entries := make([]map[string]any, len(r.Entries))
	for i, e := range r.Entries {
		m := map[string]any{FieldKeyID: e.KeyID, FieldReportToken: e.ReportToken, FieldCode: e.Code, FieldCount: e.Count, FieldUses: e.Uses}
		if len(e.Tags) > 0 {
			m[FieldTags] = e.Tags
		}
		if e.ClientIP != "" {
			m[FieldClientIP] = e.ClientIP
		}
		entries[i] = m
	}
	return map[string]any{FieldGrantHolder: r.Holder, FieldEntries: entries}
}

// DecodeReportEntries reads usage/report's entries as the engine receives them (a list
// of objects). Errors name the entry and field; they never contain a report_token.
func DecodeReportEntries(raw []any) ([]ReportEntry, error) {
	if len(raw) > MaxReportEntries {
		return nil, fmt.Errorf("entries: at most %d per report", MaxReportEntries)
	}
	out := make([]ReportEntry, 0, len(raw))
	for i, e := range raw {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("entries[%d]: must be an object", i)
		}
		var r ReportEntry
		r.KeyID, _ = m[FieldKeyID].(string)
		r.ReportToken, _ = m[FieldReportToken].(string)
		r.Code, _ = m[FieldCode].(string)
		if r.KeyID == "" {
			return nil, fmt.Errorf("entries[%d].key_id: required", i)
		}
		if r.ReportToken == "" {
			return nil, fmt.Errorf("entries[%d].report_token: required", i)
		}
		if !reportableCode(r.Code) {
			return nil, fmt.Errorf("entries[%d].code: must be one of the %s", i, reportCodeAllowed)
		}
		count, ok := Number(m[FieldCount])
		if !ok || count < 1 || count > MaxReportCount || count != float64(int64(count)) {
			return nil, fmt.Errorf("entries[%d].count: must be an integer from 1 to %d", i, int64(MaxReportCount))
		}
		r.Count = int64(count)
		if v, present := m[FieldUses]; present {
			uses, ok := Number(v)
			if !ok || uses < 0 || uses > MaxReportCount || uses != float64(int64(uses)) {
				return nil, fmt.Errorf("entries[%d].uses: must be an integer from 0 to %d", i, int64(MaxReportCount))
			}
			r.Uses = int64(uses)
		}
		if v, present := m[FieldTags]; present {
			list, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("entries[%d].tags: must be a list of strings", i)
			}
			for _, t := range list {
				s, ok := t.(string)
				if !ok {
					return nil, fmt.Errorf("entries[%d].tags: must be a list of strings", i)
				}
				r.Tags = append(r.Tags, s)
			}
		}
		if v, present := m[FieldClientIP]; present {
			if r.ClientIP, ok = v.(string); !ok {
				return nil, fmt.Errorf("entries[%d].client_ip: must be a string", i)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// reportableCode: reports carry answers about keys that were found (codes after
// NOT_FOUND); a holder never learns more about an unknown key.
func reportableCode(code string) bool {
	switch code {
	case CodeDisabled, CodeExpired, CodeForbiddenIP, CodeInsufficientScope, CodeRateLimited, CodeUsageExceeded, CodeValid:
		return true
	}
	return false
}

// DecodeReportResponse reads usage/report's answer.
func DecodeReportResponse(d map[string]any) (accepted, rejected int64, err error) {
	a, ok1 := Number(d[FieldAccepted])
	r, ok2 := Number(d[FieldRejected])
	if !ok1 || !ok2 {
		return 0, 0, errors.New("usage/report response has no accepted and rejected counts")
	}
	return int64(a), int64(r), nil
}
