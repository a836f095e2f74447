package promtext

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/vaulttest"
)

// hostile are label values a caller might pass through from user input (role names are
// validated by the engine, but the writer must not rely on it).
var hostile = []string{
	`say "hi"`,
	`C:\path\`,
	"two\nlines",
	`\n is not a newline`,
	"bad utf8 \xff\xfe end",
	"\xc3", // a truncated two-byte sequence
	"cr\rtab\tnul\x00",
	`"}` + "\n" + `injected_metric 1` + "\n",
	"é 日本 😀",
	"",
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		fams []Family
		want string
	}{
		{
			name: "counter with labels",
			fams: []Family{{
				Name: "apikey_verifications_total", Help: "Verify outcomes.", Type: Counter,
				Samples: []Sample{{Labels: []Label{L("mount", "apikey/"), L("role", "app"), L("code", "VALID")}, Value: 3}},
			}},
			want: "# HELP apikey_verifications_total Verify outcomes.\n" +
				"# TYPE apikey_verifications_total counter\n" +
				`apikey_verifications_total{mount="apikey/",role="app",code="VALID"} 3` + "\n",
		},
		{
			name: "gauge without labels",
			fams: []Family{{Name: "up", Help: "Up.", Type: Gauge, Samples: []Sample{{Value: 1}}}},
			want: "# HELP up Up.\n# TYPE up gauge\nup 1\n",
		},
		{
			name: "family without samples keeps its help and type",
			fams: []Family{{Name: "apikey_keys", Help: "Keys.", Type: Gauge}},
			want: "# HELP apikey_keys Keys.\n# TYPE apikey_keys gauge\n",
		},
		{
			name: "no families",
			want: "",
		},
		{
			name: "families sorted by name, samples by labels in the order written",
			fams: []Family{
				{Name: "b", Help: "B.", Type: Gauge, Samples: []Sample{
					{Labels: []Label{L("mount", "m2/"), L("role", "a")}, Value: 4},
					{Labels: []Label{L("mount", "m1/"), L("role", "b")}, Value: 3},
					{Labels: []Label{L("mount", "m1/"), L("role", "a")}, Value: 2},
					{Labels: []Label{L("mount", "m1/")}, Value: 1},
				}},
				{Name: "a", Help: "A.", Type: Gauge, Samples: []Sample{{Value: 0}}},
			},
			want: "# HELP a A.\n# TYPE a gauge\na 0\n" +
				"# HELP b B.\n# TYPE b gauge\n" +
				`b{mount="m1/"} 1` + "\n" +
				`b{mount="m1/",role="a"} 2` + "\n" +
				`b{mount="m1/",role="b"} 3` + "\n" +
				`b{mount="m2/",role="a"} 4` + "\n",
		},
		{
			name: "families of the same name are merged and written once",
			fams: []Family{
				{Name: "x_total", Help: "X.", Type: Counter, Samples: []Sample{{Labels: []Label{L("role", "b")}, Value: 2}}},
				{Name: "y", Help: "Y.", Type: Gauge, Samples: []Sample{{Value: 9}}},
				{Name: "x_total", Help: "X.", Type: Counter, Samples: []Sample{{Labels: []Label{L("role", "a")}, Value: 1}}},
			},
			want: "# HELP x_total X.\n# TYPE x_total counter\n" +
				`x_total{role="a"} 1` + "\n" +
				`x_total{role="b"} 2` + "\n" +
				"# HELP y Y.\n# TYPE y gauge\ny 9\n",
		},
		{
			name: "label values escaped, invalid UTF-8 replaced",
			fams: []Family{{Name: "m", Help: "M.", Type: Gauge, Samples: []Sample{
				{Labels: []Label{L("v", `say "hi"`)}, Value: 1},
				{Labels: []Label{L("v", `C:\path\`)}, Value: 2},
				{Labels: []Label{L("v", "two\nlines")}, Value: 3},
				{Labels: []Label{L("v", "bad \xff end")}, Value: 4},
				{Labels: []Label{L("v", "cr\rtab\t")}, Value: 5},
			}}},
			want: "# HELP m M.\n# TYPE m gauge\n" +
				`m{v="C:\\path\\"} 2` + "\n" +
				"m{v=\"bad \uFFFD end\"} 4\n" +
				"m{v=\"cr\rtab\t\"} 5\n" +
				`m{v="say \"hi\""} 1` + "\n" +
				`m{v="two\nlines"} 3` + "\n",
		},
		{
			name: "help escaped: backslash and newline, not quotes",
			fams: []Family{{Name: "h", Help: "a \\ b\nc \"d\" \xff", Type: Gauge}},
			want: "# HELP h a \\\\ b\\nc \"d\" \uFFFD\n# TYPE h gauge\n",
		},
		{
			name: "special and large values",
			fams: []Family{{Name: "f", Help: "F.", Type: Gauge, Samples: []Sample{
				{Labels: []Label{L("k", "a")}, Value: math.Inf(1)},
				{Labels: []Label{L("k", "b")}, Value: math.Inf(-1)},
				{Labels: []Label{L("k", "c")}, Value: math.NaN()},
				{Labels: []Label{L("k", "d")}, Value: 1764390000},
				{Labels: []Label{L("k", "e")}, Value: 0.25},
			}}},
			want: "# HELP f F.\n# TYPE f gauge\n" +
				`f{k="a"} +Inf` + "\n" +
				`f{k="b"} -Inf` + "\n" +
				`f{k="c"} NaN` + "\n" +
				`f{k="d"} 1764390000` + "\n" +
				`f{k="e"} 0.25` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, Write(&buf, tc.fams))
			require.Equal(t, tc.want, buf.String())
			parse(t, buf.Bytes())
		})
	}
}

func TestWriteDoesNotModifyItsInput(t *testing.T) {
	samples := []Sample{
		{Labels: []Label{L("b", "2"), L("a", "1")}, Value: 2},
		{Labels: []Label{L("a", "0")}, Value: 1},
	}
	fams := []Family{{Name: "z", Help: "Z.", Type: Gauge, Samples: samples}, {Name: "a", Help: "A.", Type: Gauge}}
	require.NoError(t, Write(&bytes.Buffer{}, fams))
	require.Equal(t, "z", fams[0].Name)
	require.Equal(t, 2.0, samples[0].Value)
	require.Equal(t, []Label{L("b", "2"), L("a", "1")}, samples[0].Labels)
}

func TestAdd(t *testing.T) {
	f := Family{Name: "apikey_keys_issued_total", Help: "Keys issued.", Type: Counter}
	f.Add(2, L("mount", "apikey/"), L("role", "b"))
	f.Add(1, L("mount", "apikey/"), L("role", "a"))
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, []Family{f}))
	require.Equal(t, "# HELP apikey_keys_issued_total Keys issued.\n# TYPE apikey_keys_issued_total counter\n"+
		`apikey_keys_issued_total{mount="apikey/",role="a"} 1`+"\n"+
		`apikey_keys_issued_total{mount="apikey/",role="b"} 2`+"\n", buf.String())
}

func TestWriteRejects(t *testing.T) {
	ok := func(name string, labels ...Label) Family {
		return Family{Name: name, Help: "H.", Type: Gauge, Samples: []Sample{{Labels: labels, Value: 1}}}
	}
	for _, tc := range []struct {
		name string
		fams []Family
		err  string
	}{
		{"empty metric name", []Family{ok("")}, `invalid metric name ""`},
		{"metric name starting with a digit", []Family{ok("1x")}, `invalid metric name "1x"`},
		{"metric name with a dash", []Family{ok("a-b")}, `invalid metric name "a-b"`},
		{"metric name with a dot", []Family{ok("a.b")}, `invalid metric name "a.b"`},
		{"metric name with a space", []Family{ok("a b")}, `invalid metric name "a b"`},
		{"metric name not ASCII", []Family{ok("é")}, `invalid metric name "é"`},
		{"label name empty", []Family{ok("m", L("", "v"))}, `metric m: invalid label name ""`},
		{"label name with a colon", []Family{ok("m", L("a:b", "v"))}, `invalid label name "a:b"`},
		{"label name with a dash", []Family{ok("m", L("a-b", "v"))}, `invalid label name "a-b"`},
		{"label name starting with a digit", []Family{ok("m", L("0a", "v"))}, `invalid label name "0a"`},
		{"reserved label name", []Family{ok("m", L("__name__", "v"))}, `invalid label name "__name__"`},
		{"reserved label prefix", []Family{ok("m", L("__x", "v"))}, `invalid label name "__x"`},
		{"label given twice", []Family{ok("m", L("a", "1"), L("a", "2"))}, "metric m: label a given twice"},
		{"unknown type", []Family{{Name: "m", Help: "H.", Type: "histogram"}}, `metric m: unsupported type "histogram"`},
		{"no type", []Family{{Name: "m", Help: "H."}}, `metric m: unsupported type ""`},
		{"no help", []Family{{Name: "m", Type: Gauge}}, "metric m: no help text"},
		{
			"same name, other type",
			[]Family{{Name: "m", Help: "H.", Type: Gauge}, {Name: "m", Help: "H.", Type: Counter}},
			"metric m given twice with different help or type",
		},
		{
			"same name, other help",
			[]Family{{Name: "m", Help: "H.", Type: Gauge}, {Name: "m", Help: "Other.", Type: Gauge}},
			"metric m given twice with different help or type",
		},
		{
			"duplicate series",
			[]Family{ok("m", L("a", "1"), L("b", "2")), ok("m", L("b", "2"), L("a", "1"))},
			`metric m: two samples with labels {a="1",b="2"}`,
		},
		{
			"duplicate series once invalid UTF-8 is replaced",
			[]Family{ok("m", L("a", "\xff")), ok("m", L("a", "\xfe"))},
			"metric m: two samples with labels",
		},
		{
			"duplicate series without labels",
			[]Family{{Name: "m", Help: "H.", Type: Gauge, Samples: []Sample{{Value: 1}, {Value: 2}}}},
			"metric m: two samples with labels {}",
		},
		{
			"an invalid family after valid ones",
			[]Family{ok("a"), ok("b"), ok("c", L("bad-name", "x"))},
			`invalid label name "bad-name"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, tc.fams)
			require.ErrorContains(t, err, tc.err)
			require.True(t, strings.HasPrefix(err.Error(), "promtext: "), err.Error())
			require.Zero(t, buf.Len(), "nothing is written when the input is invalid")
		})
	}
}

func TestWriteReturnsTheWritersError(t *testing.T) {
	broken := errors.New("connection reset")
	err := Write(failingWriter{broken}, []Family{{Name: "m", Help: "H.", Type: Gauge}})
	require.ErrorIs(t, err, broken)
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestFormatFloat(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-7, "-7"},
		{42, "42"},
		{1e6, "1000000"},
		{1764390000, "1764390000"},
		{math.MaxUint32, "4294967295"},
		{1 << 53, "9007199254740992"},
		{1e20, "100000000000000000000"},
		{1e21, "1e+21"},
		{1e300, "1e+300"},
		{-1e300, "-1e+300"},
		{0.5, "0.5"},
		{0.1, "0.1"},
		{-2.75, "-2.75"},
		{1764390000.5, "1.7643900005e+09"},
		{1e-7, "1e-07"},
		{math.SmallestNonzeroFloat64, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	} {
		got := FormatFloat(tc.in)
		require.Equal(t, tc.want, got, "FormatFloat(%v)", tc.in)
		if !math.IsNaN(tc.in) {
			// What Prometheus parses back is the value given.
			back, err := parseFloat(got)
			require.NoError(t, err, got)
			require.Equal(t, tc.in, back, got)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name          string
		metric, label bool
	}{
		{"a", true, true},
		{"_", true, true},
		{"apikey_keys_issued_total", true, true},
		{"A1_b2", true, true},
		{"job:rate5m", true, false},
		{":x", true, false},
		{"__name__", true, false},
		{"__", true, false},
		{"_x", true, true},
		{"", false, false},
		{"1a", false, false},
		{"a-b", false, false},
		{"a b", false, false},
		{"a.b", false, false},
		{"a\n", false, false},
		{"ä", false, false},
	} {
		require.Equal(t, tc.metric, ValidMetricName(tc.name), "ValidMetricName(%q)", tc.name)
		require.Equal(t, tc.label, ValidLabelName(tc.name), "ValidLabelName(%q)", tc.name)
	}
}

// TestHostileLabelValuesRoundTrip writes every hostile value, parses the output as
// Prometheus does and gets each value back (invalid UTF-8 replaced), with no sample
// injected.
func TestHostileLabelValuesRoundTrip(t *testing.T) {
	f := Family{Name: "apikey_verifications_total", Help: "Verify outcomes \\ \"by\"\nrole.", Type: Counter}
	for i, v := range hostile {
		f.Add(float64(i), L("mount", "apikey/"), L("role", v), L("code", "VALID"))
	}
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, []Family{f}))

	fams := parse(t, buf.Bytes())
	require.Len(t, fams, 1, "no metric injected:\n%s", buf.String())
	mf := fams["apikey_verifications_total"]
	require.NotNil(t, mf)
	require.Equal(t, "Verify outcomes \\ \"by\"\nrole.", mf.GetHelp())
	require.Equal(t, dto.MetricType_COUNTER, mf.GetType())
	got := map[string]float64{}
	for _, m := range mf.GetMetric() {
		require.Len(t, m.GetLabel(), 3)
		got[labelValue(m, "role")] = m.GetCounter().GetValue()
	}
	want := map[string]float64{}
	for i, v := range hostile {
		want[strings.ToValidUTF8(v, "\uFFFD")] = float64(i)
	}
	require.Equal(t, want, got)
}

// TestPromtoolAcceptsTheExposition runs `promtool check metrics` on an exposition
// shaped like the plugin's metrics path, hostile label values included. It fails, and
// does not skip, when promtool is missing (.ci/run installs it).
func TestPromtoolAcceptsTheExposition(t *testing.T) {
	promtool, err := vaulttest.Promtool("../..")
	require.NoError(t, err)

	mount := L("mount", "apikey/")
	verifications := Family{Name: "apikey_verifications_total", Help: "Verify outcomes by role and code.", Type: Counter}
	for i, code := range []string{"MALFORMED", "NOT_FOUND", "VALID", "RATE_LIMITED", "USAGE_EXCEEDED"} {
		verifications.Add(float64(i*10), mount, L("role", "app"), L("code", code))
	}
	verifications.Add(3, mount, L("role", ""), L("code", "NOT_FOUND"))
	for _, v := range hostile {
		verifications.Add(1, mount, L("role", v), L("code", "VALID"))
	}
	keys := Family{Name: "apikey_keys", Help: "Keys by role and status.", Type: Gauge}
	for _, st := range []string{"active", "disabled", "expired", "rotated"} {
		keys.Add(2, mount, L("role", "app"), L("status", st))
	}
	fams := []Family{
		verifications,
		keys,
		{Name: "apikey_usage_last_flush_timestamp_seconds", Help: "Unix time of the last flush.", Type: Gauge,
			Samples: []Sample{{Labels: []Label{mount}, Value: float64(time.Now().Unix())}}},
		{Name: "apikey_inventory_timestamp_seconds", Help: "When the key gauges were computed.", Type: Gauge,
			Samples: []Sample{{Labels: []Label{mount}, Value: 1764390000.123}}},
		{Name: "apikey_build_info", Help: "Build information \\ with \"quotes\"\nand a newline \xff.", Type: Gauge,
			Samples: []Sample{{Labels: []Label{mount, L("version", "v0.1.0")}, Value: 1}}},
		{Name: "apikey_anomalies_total", Help: "Anomalies (none yet).", Type: Counter},
		{Name: "special_values", Help: "Inf and NaN.", Type: Gauge, Samples: []Sample{
			{Labels: []Label{L("k", "a")}, Value: math.Inf(1)},
			{Labels: []Label{L("k", "b")}, Value: math.Inf(-1)},
			{Labels: []Label{L("k", "c")}, Value: math.NaN()},
		}},
	}
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, fams))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, vaulttest.CheckMetrics(ctx, promtool, buf.Bytes()), "exposition:\n%s", buf.String())

	// The check is not vacuous: promtool refuses what the writer repairs.
	raw := []byte("# HELP m M.\n# TYPE m gauge\nm{v=\"\xff\"} 1\n")
	require.Error(t, vaulttest.CheckMetrics(ctx, promtool, raw))
}

// parse parses an exposition with Prometheus's own text parser and fails on any error
// (a second HELP or TYPE line for a family included).
func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	require.NoError(t, err, "exposition:\n%s", b)
	return fams
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return "<missing>"
}

// parseFloat parses a sample value as Prometheus's text parser does.
func parseFloat(s string) (float64, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader("# TYPE v untyped\nv " + s + "\n"))
	if err != nil {
		return 0, err
	}
	return fams["v"].GetMetric()[0].GetUntyped().GetValue(), nil
}
