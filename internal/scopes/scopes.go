// Package scopes validates scope names and decides whether granted scopes cover requested
// ones. A granted scope ending in "*" covers every scope with that prefix ("orders:*"
// covers "orders:read"; "*" covers everything).
package scopes

import (
	"fmt"
	"strings"
)

const (
	// MaxLen is the longest scope accepted.
	MaxLen = 128
	// MaxCount is the most scopes a role, key or verify request may carry.
	MaxCount = 64
)

// Validate checks a list of scopes: charset [A-Za-z0-9_.:/-], "*" only as the last
// character, bounded length and count, no duplicates. Errors name the offending scope
// by position and quote it safely.
func Validate(list []string) error {
	if len(list) > MaxCount {
		return fmt.Errorf("at most %d scopes are allowed, got %d", MaxCount, len(list))
	}
	seen := make(map[string]struct{}, len(list))
	for i, s := range list {
		if err := validateOne(s); err != nil {
			return fmt.Errorf("scope %d (%.40q): %w", i+1, s, err)
		}
		if _, dup := seen[s]; dup {
			return fmt.Errorf("scope %d (%.40q) is listed twice", i+1, s)
		}
		seen[s] = struct{}{}
	}
	return nil
}

func validateOne(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > MaxLen {
		return fmt.Errorf("longer than %d characters", MaxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == ':', c == '/', c == '-':
		case c == '*' && i == len(s)-1:
		case c == '*':
			return fmt.Errorf("'*' is only allowed as the last character")
		default:
			return fmt.Errorf("only letters, digits and _ . : / - are allowed (and a trailing *)")
		}
	}
	return nil
}

// Covers reports whether scope is granted by one of granted.
func Covers(granted []string, scope string) bool {
	for _, g := range granted {
		if g == scope {
			return true
		}
		if n := len(g) - 1; n >= 0 && g[n] == '*' && strings.HasPrefix(scope, g[:n]) {
			return true
		}
	}
	return false
}

// Missing returns the first requested scope that granted does not cover, or "" and
// false when all are covered.
func Missing(granted, requested []string) (string, bool) {
	for _, s := range requested {
		if !Covers(granted, s) {
			return s, true
		}
	}
	return "", false
}
