package usagestats

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

func TestCodeIndexFollowsVerifyapi(t *testing.T) {
	codes := verifyapi.Codes()
	require.Len(t, codes, NumCodes)
	for i, code := range codes {
		got, ok := CodeIndex(code)
		require.True(t, ok, code)
		require.Equal(t, i, got, code)
	}
	_, ok := CodeIndex("valid")
	require.False(t, ok)
	require.Equal(t, verifyapi.CodeValid, codes[codeValid])
}

func TestCountsTotals(t *testing.T) {
	var c Counts
	c[0], c[6], c[codeValid] = 1, 2, 5
	require.Equal(t, uint64(8), c.Total())
	require.Equal(t, uint64(3), c.Refusals())
	require.Equal(t, uint64(2), c.Get(verifyapi.CodeRateLimited))
	require.Equal(t, map[string]uint64{verifyapi.CodeMalformed: 1, verifyapi.CodeRateLimited: 2, verifyapi.CodeValid: 5}, c.Map())
	var o Counts
	o[0] = 7
	c.sub(&o)
	require.Equal(t, uint64(0), c[0], "subtraction saturates at zero")
}

func TestGranularity(t *testing.T) {
	cases := []struct {
		in      string
		want    Granularity
		wantErr string
	}{
		{"hour", Hour, ""},
		{"day", Day, ""},
		{"week", 0, `granularity must be hour or day, not "week"`},
		{"", 0, `granularity must be hour or day, not ""`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			g, err := ParseGranularity(tc.in)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, g)
			require.Equal(t, tc.in, g.String())
		})
	}
	// Buckets are aligned on UTC whatever the time's location.
	paris := time.FixedZone("UTC+2", 2*3600)
	tm := time.Date(2026, 3, 1, 1, 30, 0, 0, paris) // 2026-02-28T23:30Z
	require.Equal(t, time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC).Unix(), Hour.Start(tm))
	require.Equal(t, time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC).Unix(), Day.Start(tm))
	require.Equal(t, int64(-3600), Hour.Start(time.Unix(-1, 0)), "before 1970 floors down")
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"custom", Config{Hours: 24, Days: 7, MaxTagValues: 4, MaxTagNames: 2, MaxNetworks: 3}, ""},
		{"negative hours", Config{Hours: -1}, "hours must be between 1 and 744, not -1"},
		{"too many days", Config{Days: 5000}, "days must be between 1 and 1098, not 5000"},
		{"too many tag values", Config{MaxTagValues: 2000}, "max_tag_values must be between 1 and 1024, not 2000"},
		{"too many tag names", Config{MaxTagNames: 65}, "max_tag_names must be between 1 and 64, not 65"},
		{"too many networks", Config{MaxNetworks: 1025}, "max_networks must be between 1 and 1024, not 1025"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				_, err = NewRecorder(tc.cfg)
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tc.wantErr)
			_, err = NewRecorder(tc.cfg)
			require.EqualError(t, err, tc.wantErr)
		})
	}
	d := Config{}.WithDefaults()
	require.Equal(t, Config{Hours: 48, Days: 90, MaxTagValues: 32, MaxTagNames: 8, MaxNetworks: 64}, d)
}
