package apikey

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/ratelimit"
	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usage"
)

// A role's limits beyond rate_limit and max_uses: named rate limits, credits that
// refill, identities, and limits shared by the keys of one identity. Like the other
// restrictions, keys copy them at issue.

const (
	// maxRateLimits bounds a key's rate limits, rate_limit's "default" included: a
	// key's limiter state is one bucket per limit.
	maxRateLimits = 8
	// maxNamedLimit bounds a named limit's count per window.
	maxNamedLimit = 1_000_000_000
	// minLimitWindow and maxLimitWindow bound a named limit's window.
	minLimitWindow = time.Millisecond
	maxLimitWindow = 366 * 24 * time.Hour
	// maxCredits bounds max_uses-style amounts (refill_amount, credits set and add, and
	// what a key may have left): far above any real quota, and exact as a JSON number.
	maxCredits = 1_000_000_000_000_000
	// defaultLimitName names rate_limit among a key's limits.
	defaultLimitName = "default"

	refillDaily   = "daily"
	refillMonthly = "monthly"

	// identityAccountPrefix starts the account that the keys of one identity share in
	// the rate limiter and the use counts (key ids are base62: no clash).
	identityAccountPrefix = "identity:"
	maxIdentityLen        = 128
)

var limitNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// namedLimit is "Limit requests per Window", kept as a token bucket of Limit tokens
// refilled at Limit/Window per second.
type namedLimit struct {
	Name   string        `json:"name"`
	Limit  int64         `json:"limit"`
	Window time.Duration `json:"window"`
}

func (l namedLimit) String() string {
	return fmt.Sprintf("%s=%d/%s", l.Name, l.Limit, formatWindow(l.Window))
}

func (l namedLimit) bucket() ratelimit.Limit {
	return ratelimit.Limit{Name: l.Name, Rate: float64(l.Limit) / l.Window.Seconds(), Burst: float64(l.Limit)}
}

// formatWindow writes d in the largest unit that divides it, in a form parseDuration
// reads back (7d, 24h is 1d, 90m, 10s, 500ms).
func formatWindow(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// parseNamedLimit reads "name=limit/window" (burst=10/1s, daily=10000/24h or 1d).
func parseNamedLimit(s string) (namedLimit, error) {
	name, rest, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return namedLimit{}, fmt.Errorf("%.60q must be name=limit/window, such as burst=10/1s or daily=10000/24h", s)
	}
	if !limitNameRE.MatchString(name) {
		return namedLimit{}, fmt.Errorf("%.60q: the name must be 1-32 of a-z, 0-9, _ and -", s)
	}
	count, window, ok := strings.Cut(rest, "/")
	if !ok {
		return namedLimit{}, fmt.Errorf("%.60q must be name=limit/window, such as burst=10/1s or daily=10000/24h", s)
	}
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil || n < 1 || n > maxNamedLimit {
		return namedLimit{}, fmt.Errorf("%.60q: the limit must be an integer from 1 to %d", s, maxNamedLimit)
	}
	w, err := parseDuration(window)
	if err != nil || w < minLimitWindow || w > maxLimitWindow {
		return namedLimit{}, fmt.Errorf("%.60q: the window must be a duration from 1ms to 366d (such as 1s, 1h, 24h or 30d)", s)
	}
	if w%time.Millisecond != 0 {
		return namedLimit{}, fmt.Errorf("%.60q: the window must be whole milliseconds", s)
	}
	return namedLimit{Name: name, Limit: n, Window: w}, nil
}

// refill is when, and by how much, a key's remaining uses are reset.
type refill struct {
	// Interval: periods of this length counted from the Unix epoch in UTC (24h starts at
	// 00:00 UTC, 1h at each full hour). Monthly: calendar months in UTC.
	Interval time.Duration `json:"interval,omitempty"`
	Monthly  bool          `json:"monthly,omitempty"`
	// Amount is the remaining uses at each refill. On a role 0 means max_uses; a key
	// carries the amount resolved at issue.
	Amount int64 `json:"amount,omitempty"`
}

func (r refill) enabled() bool { return r.Interval > 0 || r.Monthly }

// period is the start, in Unix seconds, of the refill period t falls in.
func (r refill) period(t time.Time) int64 {
	if r.Monthly {
		t = t.UTC()
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Unix()
	}
	secs := int64(r.Interval / time.Second)
	if secs <= 0 {
		return 0
	}
	u := t.Unix()
	p := u / secs
	if u < 0 && u%secs != 0 {
		p-- // floor, for times before 1970 (never in practice)
	}
	return p * secs
}

// next is when the period after t's starts.
func (r refill) next(t time.Time) time.Time {
	start := time.Unix(r.period(t), 0).UTC()
	if r.Monthly {
		return start.AddDate(0, 1, 0)
	}
	return start.Add(r.Interval)
}

// String is the refill_interval that gives r: daily, monthly or a duration.
func (r refill) String() string {
	switch {
	case r.Monthly:
		return refillMonthly
	case r.Interval == 24*time.Hour:
		return refillDaily
	case r.Interval > 0:
		return formatWindow(r.Interval)
	}
	return ""
}

// parseRefillInterval reads refill_interval: daily, monthly, a duration of whole seconds
// (24h, 7d, 3600), or "" / 0 for none.
func parseRefillInterval(s string) (refill, error) {
	switch s {
	case "", "0":
		return refill{}, nil
	case refillDaily:
		return refill{Interval: 24 * time.Hour}, nil
	case refillMonthly:
		return refill{Monthly: true}, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return refill{}, fmt.Errorf("refill_interval: must be daily, monthly or a duration such as 24h or 7d: %w", err)
	}
	if d < time.Second || d%time.Second != 0 {
		return refill{}, errors.New("refill_interval: must be whole seconds, at least 1s")
	}
	return refill{Interval: d}, nil
}

// roleLimits are a role's settings for named limits, refills and identities.
type roleLimits struct {
	RateLimits []namedLimit `json:"rate_limits,omitempty"`
	Refill     refill       `json:"refill"`
	// AllowIdentity lets issuers name the key's identity (creds' identity field);
	// otherwise a key belongs to the issuing token's entity, if any.
	AllowIdentity bool `json:"allow_identity,omitempty"`
	// SharedLimits makes the rate limits and max_uses credits of keys with an identity
	// shared by all keys of that identity.
	SharedLimits bool `json:"shared_limits,omitempty"`
}

var limitsRoleFields = map[string]*framework.FieldSchema{
	"rate_limits": {
		Type: framework.TypeCommaStringSlice,
		Description: "Named rate limits, each name=limit/window (burst=10/1s, daily=10000/24h; windows 1ms to 366d, also as 7d or seconds); " +
			"names 1-32 of a-z 0-9 _ -, at most 8 limits with rate_limit (which is named default). Verify admits a request only when every limit does, " +
			"and then takes a token from each. Each limit is a token bucket of limit tokens refilled at limit/window. An empty value removes them.",
	},
	"refill_interval": {
		Type:        framework.TypeString,
		Description: "Reset each key's remaining uses to refill_amount every period: daily or monthly (calendar, UTC) or a duration (24h, 7d, 3600; periods counted from the Unix epoch in UTC). Needs max_uses. Unspent uses do not carry over. Empty or 0: no refill.",
	},
	"refill_amount": {
		Type:        framework.TypeInt64,
		Description: "Remaining uses after each refill. 0 (default): max_uses.",
	},
	"allow_identity": {
		Type:        framework.TypeBool,
		Description: "Let issuers set a key's identity (creds' identity field). Otherwise a key belongs to the Vault entity of the token that issued it, if any.",
	},
	"shared_limits": {
		Type:        framework.TypeBool,
		Description: "Share rate limits and max_uses credits among all keys of one identity (per Vault node, like every limit), instead of each key having its own. Keys without an identity keep their own.",
	},
}

// update applies the fields present in d; a bad value is an error naming the field.
func (l *roleLimits) update(d *framework.FieldData) error {
	if v, ok := d.GetOk("rate_limits"); ok {
		l.RateLimits = nil
		for _, s := range v.([]string) {
			if strings.TrimSpace(s) == "" {
				continue
			}
			nl, err := parseNamedLimit(s)
			if err != nil {
				return fmt.Errorf("rate_limits: %w", err)
			}
			for _, have := range l.RateLimits {
				if have.Name == nl.Name {
					return fmt.Errorf("rate_limits: the name %q is given twice", nl.Name)
				}
			}
			if len(l.RateLimits) == maxRateLimits {
				return fmt.Errorf("rate_limits: at most %d limits are allowed", maxRateLimits)
			}
			l.RateLimits = append(l.RateLimits, nl)
		}
	}
	if v, ok := d.GetOk("refill_interval"); ok {
		r, err := parseRefillInterval(v.(string))
		if err != nil {
			return err
		}
		r.Amount = l.Refill.Amount
		l.Refill = r
	}
	if v, ok := d.GetOk("refill_amount"); ok {
		l.Refill.Amount = v.(int64)
	}
	if v, ok := d.GetOk("allow_identity"); ok {
		l.AllowIdentity = v.(bool)
	}
	if v, ok := d.GetOk("shared_limits"); ok {
		l.SharedLimits = v.(bool)
	}
	return nil
}

// validate checks the settings against the role's other fields.
func (l *roleLimits) validate(maxUses int64, rateLimit float64) error {
	n := len(l.RateLimits)
	if rateLimit > 0 {
		n++
	}
	if n > maxRateLimits {
		return fmt.Errorf("rate_limits: at most %d limits are allowed, rate_limit included", maxRateLimits)
	}
	for _, nl := range l.RateLimits {
		if rateLimit > 0 && nl.Name == defaultLimitName {
			return fmt.Errorf("rate_limits: the name %q is rate_limit's: choose another", defaultLimitName)
		}
	}
	if l.Refill.Amount < 0 || l.Refill.Amount > maxCredits {
		return fmt.Errorf("refill_amount must be between 0 (max_uses) and %d", int64(maxCredits))
	}
	if l.Refill.Amount > 0 && !l.Refill.enabled() {
		return errors.New("refill_amount needs refill_interval")
	}
	if l.Refill.enabled() && maxUses <= 0 {
		return errors.New("refill_interval needs max_uses: credits refill only on keys with a quota")
	}
	if maxUses > maxCredits {
		return fmt.Errorf("max_uses must be at most %d", int64(maxCredits))
	}
	return nil
}

// addResponseData shows the settings as they can be written back.
func (l *roleLimits) addResponseData(data map[string]interface{}) {
	limits := make([]string, 0, len(l.RateLimits))
	for _, nl := range l.RateLimits {
		limits = append(limits, nl.String())
	}
	data["rate_limits"] = limits
	data["refill_interval"] = l.Refill.String()
	data["refill_amount"] = l.Refill.Amount
	data["allow_identity"] = l.AllowIdentity
	data["shared_limits"] = l.SharedLimits
}

// validateIdentity checks an identity: 1-128 of A-Z a-z 0-9 . _ @ : -, starting with a
// letter or digit, without "..": safe in paths, ACLs and logs.
func validateIdentity(field, s string) error {
	if s == "" || len(s) > maxIdentityLen {
		return fmt.Errorf("%s must be 1-%d characters", field, maxIdentityLen)
	}
	if !validIdentity(s) {
		return fmt.Errorf("%s must start with a letter or digit and contain only A-Z, a-z, 0-9, '.', '_', '@', ':' and '-' (no '..')", field)
	}
	return nil
}

func validIdentity(s string) bool {
	if s == "" || len(s) > maxIdentityLen || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if i == 0 && !alnum {
			return false
		}
		if !alnum && c != '.' && c != '_' && c != '@' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// identityPattern matches an identity in a path (validIdentity checks the rest).
const identityPattern = `(?P<identity>[A-Za-z0-9][A-Za-z0-9._@:-]*)`

// creditState is a key's credits as last stored: uses are allowed while UseCount+cost
// <= Limit; Period is the refill period Limit belongs to (see usage.State).
type creditState struct {
	Limit  int64 `json:"limit"`
	Period int64 `json:"period,omitempty"`
}

// keyLimits is what verify needs of a key's limits, computed once when the record is
// loaded so that verify's hot path only reads it.
type keyLimits struct {
	// buckets are the key's rate limits: rate_limit as "default", then rate_limits.
	buckets []ratelimit.Limit
	// meteredRate is verify's rate_limit: rate_limit, or the slowest rate among the
	// named limits (callers that cache answers only look at whether it is > 0).
	meteredRate float64
	// shared is set when the key's limits are its identity's, whose account is
	// sharedAccount.
	shared        bool
	sharedAccount string
}

func (k *keyEntry) prepareLimits() {
	var kl keyLimits
	if k.RateLimit > 0 {
		kl.buckets = append(kl.buckets, ratelimit.Limit{Name: defaultLimitName, Rate: k.RateLimit, Burst: ratelimit.Burst(k.RateLimit, k.RateLimitBurst)})
		kl.meteredRate = k.RateLimit
	}
	for _, nl := range k.RateLimits {
		b := nl.bucket()
		kl.buckets = append(kl.buckets, b)
		if k.RateLimit <= 0 && (kl.meteredRate == 0 || b.Rate < kl.meteredRate) {
			kl.meteredRate = b.Rate
		}
	}
	if k.SharedLimits && k.Identity != "" {
		kl.shared = true
		kl.sharedAccount = identityAccountPrefix + k.Identity
	}
	k.limits = kl
}

// limiterAccount is whose buckets a use of k takes tokens from.
func (k *keyEntry) limiterAccount() string {
	if k.limits.shared {
		return k.limits.sharedAccount
	}
	return k.KeyID
}

// sharedCredits reports whether k's max_uses credits are its identity's.
func (k *keyEntry) sharedCredits() bool { return k.limits.shared && k.MaxUses > 0 }

// creditAccount is whose credits a use of k spends.
func (k *keyEntry) creditAccount() string {
	if k.sharedCredits() {
		return k.limits.sharedAccount
	}
	return k.KeyID
}

// quota is k's quota at now: none without max_uses; with a refill, the period now is in.
func (k *keyEntry) quota(now time.Time) usage.Quota {
	if k.MaxUses <= 0 {
		return usage.Quota{}
	}
	q := usage.Quota{Limited: true}
	if k.Refill != nil && k.Refill.enabled() {
		q.Refill, q.Period = k.Refill.Amount, k.Refill.period(now)
	}
	return q
}

// storedState is k's own use state as its record holds it. A record without credits
// (from before they existed) has max_uses of credits and no refill.
func (k *keyEntry) storedState() usage.State {
	s := usage.State{Count: k.UseCount, LastUsed: k.LastUsedAt, Limit: k.MaxUses}
	if k.Credits != nil {
		s.Limit, s.Period = k.Credits.Limit, k.Credits.Period
	}
	return s
}

// initialCredits is the credit state of a new key of role r issued at now: max_uses
// uses in the period it is issued in. (A replacement that inherits spent uses without
// credits of its own has max_uses minus those left, as before credits existed.)
func initialCredits(r *role, now time.Time) *creditState {
	if r.MaxUses <= 0 {
		return nil
	}
	c := &creditState{Limit: r.MaxUses}
	if r.Limits.Refill.enabled() {
		c.Period = r.Limits.Refill.period(now)
	}
	return c
}

// keyRefill is the refill schedule a key of role r carries: the amount resolved.
func keyRefill(r *role) *refill {
	if !r.Limits.Refill.enabled() || r.MaxUses <= 0 {
		return nil
	}
	kr := r.Limits.Refill
	if kr.Amount == 0 {
		kr.Amount = r.MaxUses
	}
	return &kr
}

// addCredits returns limit+add, refusing what would leave more than maxCredits.
func addCredits(current usage.State, add int64) (int64, error) {
	if add > maxCredits || current.Remaining()+add > maxCredits || current.Limit > math.MaxInt64-add {
		return 0, fmt.Errorf("add: the key would have more than %d uses left", int64(maxCredits))
	}
	return max(current.Limit, current.Count) + add, nil
}
