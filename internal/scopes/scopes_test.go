package scopes

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	tooMany := make([]string, MaxCount+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("s%d", i)
	}
	cases := []struct {
		name    string
		scopes  []string
		wantErr string
	}{
		{"empty list", nil, ""},
		{"plain", []string{"orders:read", "users/list", "a.b_c-d"}, ""},
		{"wildcard", []string{"orders:*", "*"}, ""},
		{"empty scope", []string{""}, "must not be empty"},
		{"inner star", []string{"or*ders"}, "last character"},
		{"space", []string{"orders read"}, "only letters"},
		{"unicode", []string{"ördérs"}, "only letters"},
		{"control", []string{"a\x00b"}, "only letters"},
		{"too long", []string{strings.Repeat("a", MaxLen+1)}, "longer than"},
		{"duplicate", []string{"a", "a"}, "listed twice"},
		{"too many", tooMany, "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.scopes)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		granted []string
		scope   string
		want    bool
	}{
		{[]string{"orders:read"}, "orders:read", true},
		{[]string{"orders:read"}, "orders:write", false},
		{[]string{"orders:*"}, "orders:write", true},
		{[]string{"orders:*"}, "orders:", true},
		{[]string{"orders:*"}, "order", false},
		{[]string{"orders:*"}, "users:read", false},
		{[]string{"*"}, "anything", true},
		{nil, "orders:read", false},
		{[]string{"orders:read"}, "orders:*", false},
		{[]string{"orders:*"}, "orders:*", true},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, Covers(tc.granted, tc.scope), "%v covers %q", tc.granted, tc.scope)
	}
}

func TestMissing(t *testing.T) {
	missing, ok := Missing([]string{"a", "b:*"}, []string{"a", "b:x", "c"})
	require.True(t, ok)
	require.Equal(t, "c", missing)
	_, ok = Missing([]string{"a", "b:*"}, []string{"a", "b:x"})
	require.False(t, ok)
	_, ok = Missing([]string{"a"}, nil)
	require.False(t, ok)
}
