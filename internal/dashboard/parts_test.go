package dashboard

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFmtSeconds(t *testing.T) {
	for sec, want := range map[int64]string{
		0: "0", 45: "45s", 90: "1m30s", 1800: "30m", 3600: "1h", 5400: "1h30m", 86400: "24h", 3661: "1h1m1s", 36000: "10h",
	} {
		require.Equal(t, want, fmtSeconds(sec), sec)
		// What the form shows is what the engine reads back.
		if sec > 0 {
			d, err := time.ParseDuration(want)
			require.NoError(t, err)
			require.Equal(t, time.Duration(sec)*time.Second, d)
		}
	}
}

func TestParseKeyGauges(t *testing.T) {
	text := `# HELP apikey_keys Keys by role and status.
# TYPE apikey_keys gauge
apikey_keys{mount="apikey/",role="demo",status="active"} 3
apikey_keys{mount="apikey/",role="demo",status="disabled"} 1
apikey_keys{mount="apikey/",role="we\"ird\\x",status="active"} 2
apikey_keys_expiring{mount="apikey/",role="demo",within="24h"} 9
apikey_keys{mount="apikey/",role="broken
apikey_inventory_timestamp_seconds{mount="apikey/"} 1.7e+09
`
	counts, at := parseKeyGauges([]byte(text))
	require.Equal(t, keyStatusCount{
		"demo":     {"active": 3, "disabled": 1},
		`we"ird\x`: {"active": 2},
	}, counts)
	require.Equal(t, time.Unix(1_700_000_000, 0).UTC(), at)
}

func TestSplitPairsAndMetadata(t *testing.T) {
	require.Equal(t, []string{"a=1", "b=2", "c=3"}, splitPairs(" a=1, b=2\nc=3 ,"))
	md, err := parseMetadata("a=1\n\n b = x=y \r\n")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "1", "b ": " x=y"}, md)
	_, err = parseMetadata("ok=1\nnot-a-pair")
	require.ErrorContains(t, err, "line 2")
	_, err = parseMetadata("=v")
	require.Error(t, err)
	require.Equal(t, []string{"a", "b", "c"}, splitList("a, b\tc,,"))
	require.Equal(t, []string{}, splitList(" "))
}

func TestChart(t *testing.T) {
	u := usageData{Granularity: "hour", Start: "2026-11-27T12:30:00Z", End: "2026-11-29T12:30:00Z", Total: 7, Refusals: 3,
		Series: []usageBucket{
			{Start: "2026-11-28T10:00:00Z", Total: 4, Counts: map[string]int64{"VALID": 3, "RATE_LIMITED": 1}},
			{Start: "2026-11-29T12:00:00Z", Total: 3, Counts: map[string]int64{"VALID": 1, "NOT_FOUND": 1, "<svg>": 1}},
		}}
	c := newChart("t", u)
	require.False(t, c.Empty)
	require.Len(t, c.Bars, 2)
	require.Equal(t, []string{"c-VALID", "c-RATE_LIMITED"}, []string{c.Bars[0].Segs[0].Class, c.Bars[0].Segs[1].Class}, "VALID at the bottom")
	require.Equal(t, "c-other", c.Bars[1].Segs[2].Class, "an unknown code is drawn, not trusted as a class")
	require.Equal(t, "2026-11-28 10:00 UTC: 4, VALID 3, RATE_LIMITED 1", c.Bars[0].Label)
	var legend []string
	for _, l := range c.Legend {
		legend = append(legend, l.Code)
	}
	require.Equal(t, []string{"VALID", "NOT_FOUND", "RATE_LIMITED", "other"}, legend)
	require.Equal(t, "5", c.YTicks[len(c.YTicks)-1].Label, "the scale ends at a round number")
	require.NotEmpty(t, c.XTicks)

	// Bars are in time order and inside the plot.
	prev := -1.0
	for _, b := range c.Bars {
		x := parseF(t, b.Segs[0].X)
		require.Greater(t, x, prev)
		require.GreaterOrEqual(t, x, float64(plotLeft))
		require.LessOrEqual(t, x, float64(chartW-plotRight))
		prev = x
	}

	empty := newChart("t", usageData{Granularity: "day", Start: "2026-09-01T00:00:00Z", End: "2026-11-30T00:00:00Z"})
	require.True(t, empty.Empty)
	require.Empty(t, empty.Bars)
	require.True(t, newChart("t", usageData{}).Empty, "no range")

	require.Equal(t, int64(1), niceCeil(0))
	require.Equal(t, int64(5), niceCeil(4))
	require.Equal(t, int64(100), niceCeil(51))
	require.Equal(t, int64(2000), niceCeil(1001))

	h := hbar(map[string]int64{"VALID": 3, "DISABLED": 1}, 8)
	require.Len(t, h.Segs, 2)
	require.Equal(t, "37.5", h.Segs[0].W)
	require.Equal(t, "12.5", h.Segs[1].W)
	require.Equal(t, "37.5", h.Segs[1].X)
}

func parseF(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return f
}

func TestSessionStore(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := newSessionStore(2, clock)
	a := st.create(&session{token: "a", expires: now.Add(time.Hour)})
	b := st.create(&session{token: "b", expires: now.Add(time.Minute)})
	require.NotEqual(t, a, b)
	require.Len(t, a, 43)
	require.Equal(t, "a", st.get(a).token)
	require.Nil(t, st.get("nope"))
	require.Nil(t, st.get(""))
	require.Nil(t, st.get(strings.Repeat("x", 200)))
	for k := range st.byKey {
		require.NotEqual(t, a, string(k[:]), "the map holds hashes, not ids")
	}
	now = now.Add(2 * time.Minute)
	require.Nil(t, st.get(b), "expired")
	require.Equal(t, 1, st.len())
	c := st.create(&session{token: "c", expires: now.Add(time.Hour)})
	d := st.create(&session{token: "d", expires: now.Add(time.Hour)}) // over the bound: a goes
	require.Nil(t, st.get(a))
	require.NotNil(t, st.get(c))
	require.NotNil(t, st.get(d))
	require.Equal(t, "d", st.remove(d).token)
	require.Nil(t, st.remove(d))

	s := &session{csrf: "abc"}
	require.True(t, s.validCSRF("abc"))
	require.False(t, s.validCSRF("abd"))
	require.False(t, s.validCSRF(""))
	require.False(t, s.validCSRF("abcd"))
}

func TestPolicyPath(t *testing.T) {
	require.Equal(t, "apikey/keys/+", policyPath("apikey/keys/AAAAAAAAAAAAAAAA"))
	require.Equal(t, "team/apikey/keys/+/usage", policyPath("team/apikey/keys/AAAAAAAAAAAAAAAA/usage"))
	require.Equal(t, "apikey/keys/", policyPath("apikey/keys/"))
	require.Equal(t, "apikey/creds/demo", policyPath("apikey/creds/demo"))
}
