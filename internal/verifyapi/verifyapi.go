// Package verifyapi is the one home of the verify contract between the secrets engine's
// <mount>/verify path and its callers (the apikeyauth middleware, the gateway, tests):
// the result codes in the order verify checks them, the request and response field
// names, and a typed request and response with their encoding to and from the data map
// Vault carries. It imports nothing of Vault.
package verifyapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Result codes, in the order verify checks them.
const (
	CodeMalformed         = "MALFORMED"
	CodeNotFound          = "NOT_FOUND"
	CodeDisabled          = "DISABLED"
	CodeExpired           = "EXPIRED"
	CodeForbiddenIP       = "FORBIDDEN_IP"
	CodeInsufficientScope = "INSUFFICIENT_SCOPE"
	CodeRateLimited       = "RATE_LIMITED"
	CodeUsageExceeded     = "USAGE_EXCEEDED"
	CodeValid             = "VALID"
)

// Codes returns every result code in the order verify checks them.
func Codes() []string {
	return []string{
		CodeMalformed, CodeNotFound, CodeDisabled, CodeExpired, CodeForbiddenIP,
		CodeInsufficientScope, CodeRateLimited, CodeUsageExceeded, CodeValid,
	}
}

// Request fields.
const (
	FieldAPIKey    = "api_key"
	FieldScopes    = "scopes"
	FieldClientIP  = "client_ip"
	FieldCost      = "cost"
	FieldRequestID = "request_id"
	FieldTags      = "tags"
)

// Response fields. The key's fields (key_id to ttl) come with every code after
// NOT_FOUND, identity with them for keys that belong to one; remaining_uses with keys
// that have max_uses, rate_limit with rate-limited keys, retry_after and
// rate_limit_name with RATE_LIMITED.
const (
	FieldValid         = "valid"
	FieldCode          = "code"
	FieldKeyID         = "key_id"
	FieldRole          = "role"
	FieldName          = "name"
	FieldKeyScopes     = "scopes"
	FieldMetadata      = "metadata"
	FieldExpiresAt     = "expires_at"
	FieldTTL           = "ttl"
	FieldRemainingUses = "remaining_uses"
	FieldRateLimit     = "rate_limit"
	FieldRetryAfter    = "retry_after"
	FieldRateLimitName = "rate_limit_name"
	FieldIdentity      = "identity"
)

// Request is one verify call.
type Request struct {
	APIKey string
	// Scopes the request needs; every one must be granted.
	Scopes []string
	// ClientIP is the client's address; the zero Addr when unknown.
	ClientIP netip.Addr
	// Cost is how many uses the call counts against max_uses (0 checks without counting).
	Cost int
	// RequestID makes retries of one call count once; empty for none.
	RequestID string
	// Tags label the call in the key's usage counts ("name=value", at most 8; the
	// engine refuses the call with a 400 otherwise, see usagestats.ParseTags).
	Tags []string
	// Grant, when set, asks for a report token and, for a metered key answered VALID,
	// a grant (fleet.go).
	Grant *GrantRequest
}

// Data encodes r as verify's request data.
func (r Request) Data() map[string]any {
	data := map[string]any{FieldAPIKey: r.APIKey, FieldCost: r.Cost}
	if len(r.Scopes) > 0 {
		data[FieldScopes] = r.Scopes
	}
	if r.ClientIP.IsValid() {
		data[FieldClientIP] = r.ClientIP.String()
	}
	if r.RequestID != "" {
		data[FieldRequestID] = r.RequestID
	}
	if len(r.Tags) > 0 {
		data[FieldTags] = r.Tags
	}
	if r.Grant != nil {
		r.Grant.put(data)
	}
	return data
}

// Key is what verify tells about a key it found (codes after NOT_FOUND).
type Key struct {
	KeyID     string
	Role      string
	Name      string
	Scopes    []string
	Metadata  map[string]string
	ExpiresAt time.Time
	// TTL is what was left of the key's life when verify answered, in whole seconds;
	// TTLKnown says whether the answer carried it (decoding only).
	TTL      time.Duration
	TTLKnown bool
	// Identity is who the key belongs to (a Vault entity id, or the identity given at
	// issue); empty for keys without one, and then left out of the encoding.
	Identity string
}

// Response is verify's answer.
type Response struct {
	Valid bool
	Code  string
	// Key is nil for MALFORMED and NOT_FOUND.
	Key *Key
	// RemainingUses is set for keys with max_uses.
	RemainingUses *int64
	// RateLimit is the key's rate limit in requests per second; 0 when it has none.
	RateLimit float64
	// RetryAfter is set with RATE_LIMITED, rounded up to whole seconds on the wire.
	RetryAfter time.Duration
	// RateLimitName names the limit that refused (RATE_LIMITED only): a name of the
	// role's rate_limits, or "default" for rate_limit.
	RateLimitName string
	// ReportToken lets the caller report uses of the key it served itself
	// (usage/report); set for codes after NOT_FOUND when the request had grant_holder.
	ReportToken string
	// Grant is set with VALID for a metered key when the request asked for one.
	Grant *Grant
}

// Data encodes r as verify's response data, with the Go types Vault's JSON encoding
// of a plugin response expects.
func (r Response) Data() map[string]any {
	data := map[string]any{FieldValid: r.Valid, FieldCode: r.Code}
	if r.Key != nil {
		for field, value := range r.Key.Data() {
			data[field] = value
		}
	}
	if r.RemainingUses != nil {
		data[FieldRemainingUses] = *r.RemainingUses
	}
	if r.RateLimit > 0 {
		data[FieldRateLimit] = r.RateLimit
	}
	if r.Code == CodeRateLimited {
		data[FieldRetryAfter] = int64(math.Ceil(r.RetryAfter.Seconds()))
		if r.RateLimitName != "" {
			data[FieldRateLimitName] = r.RateLimitName
		}
	}
	if r.ReportToken != "" {
		data[FieldReportToken] = r.ReportToken
	}
	if r.Grant != nil {
		r.Grant.put(data)
	}
	return data
}

// Data encodes k's fields, as verify and the engine's key reads show them.
func (k Key) Data() map[string]any {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	metadata := k.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	data := map[string]any{
		FieldKeyID:     k.KeyID,
		FieldRole:      k.Role,
		FieldName:      k.Name,
		FieldKeyScopes: scopes,
		FieldMetadata:  metadata,
		FieldExpiresAt: k.ExpiresAt.UTC().Format(time.RFC3339),
		FieldTTL:       int64(max(k.TTL, 0) / time.Second),
	}
	if k.Identity != "" {
		data[FieldIdentity] = k.Identity
	}
	return data
}

// DecodeResponse reads verify's response data as Vault's API client delivers it
// (numbers as json.Number; float64 and ints are accepted too). It refuses data that
// breaks the contract: no valid or code, valid disagreeing with the code, VALID without
// a key_id, or an unreadable expires_at.
func DecodeResponse(d map[string]any) (Response, error) {
	if d == nil {
		return Response{}, errors.New("verify returned no data")
	}
	valid, ok := d[FieldValid].(bool)
	if !ok {
		return Response{}, errors.New("verify response has no boolean valid")
	}
	code, ok := d[FieldCode].(string)
	if !ok || code == "" {
		return Response{}, errors.New("verify response has no code")
	}
	if valid != (code == CodeValid) {
		return Response{}, fmt.Errorf("verify response is inconsistent: valid=%v with code %.40q", valid, code)
	}
	res := Response{Valid: valid, Code: code}
	if keyID, _ := d[FieldKeyID].(string); keyID != "" {
		k := &Key{KeyID: keyID}
		k.Role, _ = d[FieldRole].(string)
		k.Name, _ = d[FieldName].(string)
		if raw, ok := d[FieldKeyScopes].([]any); ok {
			for _, s := range raw {
				if s, ok := s.(string); ok {
					k.Scopes = append(k.Scopes, s)
				}
			}
		}
		if raw, ok := d[FieldMetadata].(map[string]any); ok && len(raw) > 0 {
			k.Metadata = make(map[string]string, len(raw))
			for name, v := range raw {
				if v, ok := v.(string); ok {
					k.Metadata[name] = v
				}
			}
		}
		if raw, _ := d[FieldExpiresAt].(string); raw != "" {
			t, err := time.Parse(time.RFC3339Nano, raw)
			if err != nil {
				return Response{}, fmt.Errorf("verify response has an invalid expires_at: %.40q", raw)
			}
			k.ExpiresAt = t
		}
		if secs, ok := Number(d[FieldTTL]); ok {
			k.TTL, k.TTLKnown = seconds(secs), true
		}
		k.Identity, _ = d[FieldIdentity].(string)
		res.Key = k
	}
	if valid && res.Key == nil {
		return Response{}, errors.New("verify answered VALID without key_id")
	}
	if uses, ok := Number(d[FieldRemainingUses]); ok {
		n := int64(uses)
		res.RemainingUses = &n
	}
	if rate, ok := Number(d[FieldRateLimit]); ok && rate > 0 {
		res.RateLimit = rate
	}
	if secs, ok := Number(d[FieldRetryAfter]); ok && secs > 0 {
		res.RetryAfter = seconds(secs)
	}
	res.RateLimitName, _ = d[FieldRateLimitName].(string)
	res.ReportToken, _ = d[FieldReportToken].(string)
	grant, err := decodeGrant(d)
	if err != nil {
		return Response{}, err
	}
	if grant != nil && !valid {
		return Response{}, fmt.Errorf("verify response carries a grant with code %.40q", code)
	}
	res.Grant = grant
	return res, nil
}

// Number reads a JSON number in any of the forms a decoder may give it.
func Number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
