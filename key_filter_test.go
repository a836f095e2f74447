package apikey

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFilterKeyStatusOrder(t *testing.T) {
	now := time.Now()
	future, past := now.Add(time.Hour), now.Add(-time.Hour)
	cases := []struct {
		name string
		key  keyEntry
		want string
	}{
		{"active", keyEntry{ExpiresAt: future}, keyStatusActive},
		{"disabled wins over expired and rotated", keyEntry{Disabled: true, ExpiresAt: past, ReplacedBy: "x", InvalidAfter: past}, keyStatusDisabled},
		{"expired wins over rotated", keyEntry{ExpiresAt: future, ReplacedBy: "x", InvalidAfter: past}, keyStatusExpired},
		{"expired at the very instant", keyEntry{ExpiresAt: now}, keyStatusExpired},
		{"lease ended before the grace", keyEntry{ExpiresAt: past, ReplacedBy: "x", InvalidAfter: future}, keyStatusExpired},
		{"rotated in its grace period", keyEntry{ExpiresAt: future, ReplacedBy: "x", InvalidAfter: now.Add(time.Minute)}, keyStatusRotated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, keyStatus(&tc.key, now))
		})
	}
}

func TestFilterMatchGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"ci-build", "ci-build", true},
		{"ci-build", "ci-buil", false},
		{"ci-build", "CI-build", false},
		{"*", "", true},
		{"*", "anything", true},
		{"ci-*", "ci-", true},
		{"ci-*", "ci-build", true},
		{"ci-*", "xci-build", false},
		{"*-old", "web-old", true},
		{"*-old", "web-older", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYc-", false},
		{"a**b", "ab", true},
		{"*a*a*a*b", strings.Repeat("a", 100), false},
		// Only '*' is special.
		{"a?c", "abc", false},
		{"a?c", "a?c", true},
		{"[ab]", "a", false},
		{"[ab]", "[ab]", true},
		{"é*", "été", true},
		{"*té", "été", true},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, matchGlob(tc.pattern, tc.s), "%q ~ %q", tc.pattern, tc.s)
	}
}

func TestFilterParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0":      0,
		"3600":   time.Hour,
		"168h":   168 * time.Hour,
		"1h30m":  90 * time.Minute,
		"7d":     7 * 24 * time.Hour,
		"36500d": maxDuration,
	} {
		got, err := parseDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for in, msg := range map[string]string{
		"":            "must be a duration",
		"soon":        "must be a duration",
		"d":           "must be a duration",
		"-1":          "must not be negative",
		"-1d":         "must not be negative",
		"-1s":         "must not be negative",
		"36501d":      "must be at most",
		"876001h":     "must be at most",
		"10000000000": "must be at most",
	} {
		_, err := parseDuration(in)
		require.ErrorContains(t, err, msg, in)
	}
}
