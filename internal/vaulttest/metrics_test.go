//go:build unix

package vaulttest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMetrics(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want Metrics
		err  string
	}{
		{name: "empty", text: "", want: Metrics{}},
		{
			name: "comments, labels, no labels, timestamp",
			text: "# HELP a_total A.\n# TYPE a_total counter\na_total{call=\"verify\"} 12\na_total{call=\"feed\"} 3\n\nb 1.5 1700000000000\nc_seconds_bucket{le=\"+Inf\"} 7\n",
			want: Metrics{`a_total{call="verify"}`: 12, `a_total{call="feed"}`: 3, "b": 1.5, `c_seconds_bucket{le="+Inf"}`: 7},
		},
		{
			name: "label values with spaces, braces and escaped quotes",
			text: `x{path="/a b}",q="say \"hi\""} 2` + "\n",
			want: Metrics{`x{path="/a b}",q="say \"hi\""}`: 2},
		},
		{name: "special values", text: "n NaN\np +Inf\n", want: nil},
		{name: "no value", text: "lonely\n", err: "line 1: no value"},
		{name: "bad value", text: "a 1\nb x\n", err: "line 2: value"},
		{name: "unclosed labels", text: `a{b="c" 1` + "\n", err: "closing brace"},
		{name: "too many fields", text: "a 1 2 3\n", err: "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMetrics(tc.text)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if tc.want != nil {
				require.Equal(t, tc.want, got)
			}
		})
	}
}

func TestMetricsSum(t *testing.T) {
	m := Metrics{`a_total{call="verify"}`: 12, `a_total{call="feed"}`: 3, "a_total_other": 100, "b": 2}
	require.Equal(t, 15.0, m.Sum("a_total"))
	require.Equal(t, 2.0, m.Sum("b"))
	require.Zero(t, m.Sum("missing"))
}

func TestStartGatewaysAndScrape(t *testing.T) {
	t.Setenv(fakeEnv, "gateway")
	dir := t.TempDir()
	gws, err := StartGateways(context.Background(), 3, GatewayOptions{
		Bin:             selfBin(t),
		Name:            "replica",
		Dir:             dir,
		Args:            []string{"-upstream", "http://127.0.0.1:2"},
		MetricsListener: true,
		Cleaner:         t,
	})
	require.NoError(t, err)
	require.Len(t, gws, 3)
	seen := map[string]bool{}
	for i, g := range gws {
		require.Equal(t, "replica-"+string(rune('0'+i)), g.Name)
		require.False(t, seen[g.Addr], "each replica has its own port")
		seen[g.Addr] = true
		m, err := g.Metrics(context.Background())
		require.NoError(t, err)
		require.Equal(t, 3.0, m[`fake_calls_total{call="verify"}`])
		require.Equal(t, 5.0, m.Sum("fake_calls_total"))
	}

	_, err = StartGateways(context.Background(), 0, GatewayOptions{Bin: selfBin(t), Dir: dir, Cleaner: t})
	require.Error(t, err)
	noMetrics, err := StartGateway(context.Background(), GatewayOptions{Bin: selfBin(t), Dir: dir, Name: "plain", Cleaner: t})
	require.NoError(t, err)
	_, err = noMetrics.Metrics(context.Background())
	require.ErrorContains(t, err, "no metrics listener")
}
