package apikey

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

// Filters and paging of the keys/ LIST. The fields are TypeString and parsed here rather
// than typed in the schema: over HTTP they are query parameters, and parsing them here
// lets every refusal start with the field's name instead of the framework's
// "Field validation failed".

// A key's status, as verify sees it.
const (
	keyStatusActive   = "active"
	keyStatusDisabled = "disabled"
	keyStatusExpired  = "expired"
	keyStatusRotated  = "rotated"
)

// keyStatusNames lists the statuses for messages and the OpenAPI enum.
func keyStatusNames() []string {
	return []string{keyStatusActive, keyStatusDisabled, keyStatusExpired, keyStatusRotated}
}

// keyStatus checks in verify's order, so a key listed as active is one verify accepts
// (scopes, networks and limits aside).
func keyStatus(k *keyEntry, now time.Time) string {
	switch {
	case k.Disabled:
		return keyStatusDisabled
	case !now.Before(k.validUntil()):
		return keyStatusExpired
	case k.ReplacedBy != "":
		// Rotated out and still in its grace period.
		return keyStatusRotated
	default:
		return keyStatusActive
	}
}

// Paging of the keys/ LIST.
const (
	defaultKeysListLimit = 100
	maxKeysListLimit     = 1000
	// keysListScanBudget bounds the records one page reads, so that a filter matching
	// few of 100k keys still answers in bounded time: the client continues from
	// next_after.
	keysListScanBudget = 10_000
)

// keyUseFunc returns a key's use count and last use, uses not yet flushed included.
type keyUseFunc func(k *keyEntry) (count int64, lastUsed time.Time)

// keyFilter selects keys for the keys/ LIST; a nil or zero field does not filter.
type keyFilter struct {
	role           string
	status         string
	expiringWithin *time.Duration
	unusedFor      *time.Duration
	neverUsed      *bool
	name           string
	metadata       map[string]string
	identity       string
	use            keyUseFunc
}

// keyPage is where a keys/ LIST page starts and how many keys it may return.
type keyPage struct {
	after string
	limit int
	// paged is set when after or limit was given. A list without either is complete, as
	// "vault list" (which cannot send fields) expects; it reads every record.
	paged bool
}

// keyFilterFromFields parses the filter fields; every error starts with the field's name.
func keyFilterFromFields(d *framework.FieldData, use keyUseFunc) (*keyFilter, error) {
	f := &keyFilter{use: use}
	if v, ok := d.GetOk("role"); ok {
		f.role = v.(string)
		if f.role == "" {
			return nil, errors.New("role: must not be empty")
		}
		if err := validateRoleName("role", f.role); err != nil {
			return nil, err
		}
	}
	if v, ok := d.GetOk("status"); ok {
		f.status = v.(string)
		if !slices.Contains(keyStatusNames(), f.status) {
			return nil, fmt.Errorf("status: must be one of %s", strings.Join(keyStatusNames(), ", "))
		}
	}
	var err error
	if f.expiringWithin, err = optionalDuration(d, "expiring_within"); err != nil {
		return nil, err
	}
	if f.unusedFor, err = optionalDuration(d, "unused_for"); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("never_used"); ok {
		never, err := strconv.ParseBool(v.(string))
		if err != nil {
			return nil, errors.New("never_used: must be true or false")
		}
		f.neverUsed = &never
	}
	if v, ok := d.GetOk("name"); ok {
		f.name = v.(string)
		if f.name == "" {
			return nil, errors.New("name: must not be empty")
		}
		if err := validateLabel("name", f.name); err != nil {
			return nil, err
		}
	}
	if v, ok := d.GetOk("metadata"); ok {
		f.metadata = v.(map[string]string)
		if err := validateMetadata(f.metadata); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	if v, ok := d.GetOk("identity"); ok {
		f.identity = v.(string)
		if err := validateIdentity("identity", f.identity); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// optionalDuration parses a duration field ("168h", "7d" or seconds, as Vault's
// duration fields take them); nil when absent.
func optionalDuration(d *framework.FieldData, field string) (*time.Duration, error) {
	v, ok := d.GetOk(field)
	if !ok {
		return nil, nil
	}
	dur, err := parseDuration(v.(string))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return &dur, nil
}

func parseDuration(s string) (time.Duration, error) {
	unit, digits := time.Second, s
	if strings.HasSuffix(s, "d") {
		unit, digits = 24*time.Hour, strings.TrimSuffix(s, "d")
	}
	var dur time.Duration
	if n, err := strconv.ParseInt(digits, 10, 64); err == nil {
		// Range-checked before multiplying, which could overflow.
		switch {
		case n < 0:
			return 0, errors.New("must not be negative")
		case n > int64(maxDuration/unit):
			return 0, errDurationTooLong()
		}
		dur = time.Duration(n) * unit
	} else if dur, err = time.ParseDuration(s); err != nil {
		// time.ParseDuration refuses values past ~292 years the same way.
		return 0, errors.New("must be a duration such as 168h, 7d or a number of seconds")
	}
	switch {
	case dur < 0:
		return 0, errors.New("must not be negative")
	case dur > maxDuration:
		return 0, errDurationTooLong()
	}
	return dur, nil
}

func errDurationTooLong() error {
	return fmt.Errorf("must be at most %d seconds (100 years)", int64(maxDuration/time.Second))
}

// keyPageFromFields parses after and limit; every error starts with the field's name.
func keyPageFromFields(d *framework.FieldData) (keyPage, error) {
	page := keyPage{limit: defaultKeysListLimit}
	// An empty after is the first page, so a script can pass the previous next_after
	// without a special case for the start.
	if _, ok := d.GetOk("after"); ok {
		page.paged = true
	}
	if v, ok := d.GetOk("after"); ok && v.(string) != "" {
		page.after = v.(string)
		if !keyformat.ValidKeyID(page.after) {
			return keyPage{}, fmt.Errorf("after: must be a key_id (%d base62 characters)", keyformat.KeyIDLen)
		}
	}
	if v, ok := d.GetOk("limit"); ok {
		n, err := strconv.Atoi(v.(string))
		if err != nil || n < 1 || n > maxKeysListLimit {
			return keyPage{}, fmt.Errorf("limit: must be an integer from 1 to %d", maxKeysListLimit)
		}
		page.limit = n
		page.paged = true
	}
	return page, nil
}

// needsUse reports whether matching asks for use counts, which cost a lock per key.
func (f *keyFilter) needsUse() bool { return f.unusedFor != nil || f.neverUsed != nil }

// matches reports whether k passes every filter given. Cheap checks come first.
func (f *keyFilter) matches(k *keyEntry, now time.Time) bool {
	if f.role != "" && k.Role != f.role {
		return false
	}
	if f.identity != "" && k.Identity != f.identity {
		return false
	}
	if f.name != "" && !matchGlob(f.name, k.Name) {
		return false
	}
	for key, want := range f.metadata {
		if got, ok := k.Metadata[key]; !ok || got != want {
			return false
		}
	}
	if f.status != "" && keyStatus(k, now) != f.status {
		return false
	}
	if f.expiringWithin != nil {
		until := k.validUntil()
		if !now.Before(until) || until.After(now.Add(*f.expiringWithin)) {
			return false
		}
	}
	if !f.needsUse() {
		return true
	}
	count, lastUsed := f.use(k)
	used := count > 0 || !lastUsed.IsZero()
	if f.neverUsed != nil && used == *f.neverUsed {
		return false
	}
	if f.unusedFor != nil {
		// A key never used has been idle since it was issued.
		idleSince := lastUsed
		if idleSince.IsZero() {
			idleSince = k.CreatedAt
		}
		if !idleSince.Before(now.Add(-*f.unusedFor)) {
			return false
		}
	}
	return true
}

// matchGlob matches s against pattern, where '*' matches any run of bytes and every
// other byte only itself. It backtracks only to the last '*', so it takes at most
// len(pattern)*len(s) steps, and both are bounded by maxNameLen.
func matchGlob(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	p, i := 0, 0
	star, resume := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, resume = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			// Let the last '*' swallow one more byte and retry from there.
			resume++
			p, i = star+1, resume
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
