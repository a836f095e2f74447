package usagestats

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSeriesAndSums(t *testing.T) {
	rec := sampleRecord()
	cases := []struct {
		name     string
		g        Granularity
		from, to int // hours from t0
		want     []int64
		sum      uint64
	}{
		{"all hours", Hour, 0, 48, []int64{at(5, 0).Unix(), at(30, 0).Unix()}, 3 + 310},
		{"one hour", Hour, 5, 6, []int64{at(5, 0).Unix()}, 3},
		{"end is exclusive", Hour, 0, 5, nil, 0},
		{"a range starting inside a bucket includes it", Day, 12, 25, []int64{t0.Unix(), at(24, 0).Unix()}, 3 + 1<<40},
		{"second day", Day, 24, 48, []int64{at(24, 0).Unix()}, 1 << 40},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			for _, b := range rec.Series(tc.g, at(tc.from, 0), at(tc.to, 0)) {
				got = append(got, b.Start)
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.sum, rec.Sum(tc.g, at(tc.from, 0), at(tc.to, 0)).Total())
		})
	}
	require.Equal(t, uint64(303), rec.Sum(Hour, at(0, 0), at(48, 0)).Refusals())
	require.NoError(t, CheckRange(at(0, 0), at(1, 0)))
	require.EqualError(t, CheckRange(at(1, 0), at(1, 0)), "start must be before end (2026-05-10T01:00:00Z, 2026-05-10T01:00:00Z)")
}

func TestTagQueries(t *testing.T) {
	rec := sampleRecord()
	require.Len(t, rec.TagSeries(at(0, 0), at(48, 0), ""), 2)
	route := rec.TagSeries(at(0, 0), at(24, 0), "route")
	require.Equal(t, []TagDay{{Start: t0.Unix(), Tags: []TagCount{{Tag{"route", "/orders/{id}"}, Counts{0, 0, 1}}}}}, route)
	require.Empty(t, rec.TagSeries(at(0, 0), at(48, 0), "missing"))

	totals := rec.TagTotals(at(0, 0), at(48, 0), "")
	require.Equal(t, []TagCount{
		{Tag{"route", Other}, valid(9)},
		{Tag{"region", "eu"}, valid(2)},
		{Tag{"route", "/orders/{id}"}, Counts{0, 0, 1}},
	}, totals)

	// The same tag on several days adds up.
	rec.Tags[1].Tags = append(rec.Tags[1].Tags, TagCount{Tag{"region", "eu"}, valid(1)})
	require.Equal(t, []TagCount{{Tag{"region", "eu"}, valid(3)}}, rec.TagTotals(at(0, 0), at(48, 0), "region"))
}

func TestTopKeys(t *testing.T) {
	mk := func(validN, refused uint64) *Record {
		c := valid(validN)
		c[6] = refused
		return &Record{Days: []Bucket{{Start: t0.Unix(), Counts: c}}, Hours: []Bucket{{Start: at(3, 0).Unix(), Counts: c}}}
	}
	records := map[string]*Record{
		"a": mk(10, 0),
		"b": mk(5, 50),
		"c": mk(30, 1),
		"d": mk(0, 0),
		"e": mk(1, 5),
		"f": mk(5, 50), // ties with b: by key
	}
	cases := []struct {
		name string
		by   Metric
		g    Granularity
		n    int
		to   int
		want []string
	}{
		{"by verifications", Verifications, Day, 3, 24, []string{"b", "f", "c"}},
		{"by refusals", Refusals, Day, 10, 24, []string{"b", "f", "e", "c"}},
		{"hourly range", Verifications, Hour, 2, 24, []string{"b", "f"}},
		{"range without traffic", Verifications, Hour, 2, 3, nil},
		{"n zero", Verifications, Day, 0, 24, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			top := TopKeys(maps.All(records), tc.g, at(0, 0), at(tc.to, 0), tc.by, tc.n)
			var got []string
			for _, k := range top {
				got = append(got, k.Key)
				require.Equal(t, records[k.Key].Days[0].Counts, k.Counts)
			}
			require.Equal(t, tc.want, got)
		})
	}
	m, err := ParseMetric("refusals")
	require.NoError(t, err)
	require.Equal(t, Refusals, m)
	_, err = ParseMetric("errors")
	require.EqualError(t, err, `top must be verifications or refusals, not "errors"`)
}
