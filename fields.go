package apikey

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/clientaddr"
)

// Field parsers and validators shared by the paths. Every error names the field and what
// is wrong with it, and never echoes more than a bounded prefix of the input.

const (
	maxNameLen       = 128
	maxMetadataPairs = 64
	maxMetadataKey   = 128
	maxMetadataValue = 512
	// maxMetadataBytes bounds a map's keys and values in all: the same bound the request
	// size check puts on one field, so every stored role already meets it.
	maxMetadataBytes = maxFieldBytes
	maxBoundCIDRs    = 64
	minRateLimit     = 1.0 / 86400
)

// parseCIDRs parses bound_cidrs (see internal/clientaddr for the forms accepted).
func parseCIDRs(list []string) ([]netip.Prefix, error) {
	if len(list) > maxBoundCIDRs {
		return nil, fmt.Errorf("at most %d blocks are allowed", maxBoundCIDRs)
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := clientaddr.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// maxDuration bounds every duration field: beyond it seconds no longer fit a
// time.Duration, and no lease should live a century.
const maxDuration = 100 * 365 * 24 * time.Hour

// durationField converts a TypeDurationSecond value, refusing negative and absurd ones.
func durationField(field string, seconds int) (time.Duration, error) {
	if seconds < 0 {
		return 0, fmt.Errorf("%s must not be negative", field)
	}
	if int64(seconds) > int64(maxDuration/time.Second) {
		return 0, fmt.Errorf("%s must be at most %d seconds (100 years)", field, int64(maxDuration/time.Second))
	}
	return time.Duration(seconds) * time.Second, nil
}

// roleNameFrom reads and checks a role name from the path; on failure it returns the
// error response.
func roleNameFrom(d *framework.FieldData, field string) (string, *logical.Response) {
	name := d.Get(field).(string)
	if err := validateRoleName(field, name); err != nil {
		return "", logical.ErrorResponse(err.Error())
	}
	return name, nil
}

// validateRoleName refuses names that are not already lowercase rather than folding
// them: Vault matches ACL paths and lease ids case-sensitively, so a name folded after
// routing would let creds/ADMIN through a policy that denies creds/admin, and its leases
// would escape "vault lease revoke -prefix apikey/creds/admin".
func validateRoleName(field, name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("%s must be at most %d characters", field, maxNameLen)
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("%s must not contain '..'", field)
	}
	if name != strings.ToLower(name) {
		return fmt.Errorf("%s %.40q must be lowercase: role names are case-sensitive", field, name)
	}
	return nil
}

// validateLabel checks free text such as a key's name: bounded, valid UTF-8, printable.
func validateLabel(field, s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("%s must be at most %d bytes", field, maxNameLen)
	}
	return validatePrintable(field, s)
}

func validatePrintable(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s must be valid UTF-8", field)
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("%s must not contain control characters", field)
		}
	}
	return nil
}

func validateMetadata(m map[string]string) error {
	if len(m) > maxMetadataPairs {
		return fmt.Errorf("at most %d pairs are allowed", maxMetadataPairs)
	}
	if n := metadataBytes(m); n > maxMetadataBytes {
		return fmt.Errorf("at most %d bytes of keys and values are allowed (%d here)", maxMetadataBytes, n)
	}
	for k, v := range m {
		if k == "" || len(k) > maxMetadataKey {
			return fmt.Errorf("keys must be 1-%d bytes", maxMetadataKey)
		}
		if err := validateLabel(fmt.Sprintf("key %.40q", k), k); err != nil {
			return err
		}
		if len(v) > maxMetadataValue {
			return fmt.Errorf("value of %.40q must be at most %d bytes", k, maxMetadataValue)
		}
		if err := validatePrintable(fmt.Sprintf("value of %.40q", k), v); err != nil {
			return err
		}
	}
	return nil
}

// metadataBytes is the size of m's keys and values, as the request size check counts it.
func metadataBytes(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
