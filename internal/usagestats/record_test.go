package usagestats

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

var t0 = time.Date(2026, 5, 10, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time { return t0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }

func valid(n uint64) Counts {
	var c Counts
	c[codeValid] = n
	return c
}

func starts(bs []Bucket) []time.Time {
	var out []time.Time
	for _, b := range bs {
		out = append(out, time.Unix(b.Start, 0).UTC())
	}
	return out
}

func TestBucketRollover(t *testing.T) {
	cases := []struct {
		name      string
		times     []time.Time
		wantHours []time.Time
		wantDays  []time.Time
	}{
		{"same hour", []time.Time{at(3, 0), at(3, 59)}, []time.Time{at(3, 0)}, []time.Time{t0}},
		{"hour boundary", []time.Time{at(3, 59), at(4, 0)}, []time.Time{at(3, 0), at(4, 0)}, []time.Time{t0}},
		{"last second of the hour", []time.Time{at(4, 0).Add(-time.Second), at(4, 0)}, []time.Time{at(3, 0), at(4, 0)}, []time.Time{t0}},
		{"day boundary", []time.Time{at(23, 59), at(24, 0)}, []time.Time{at(23, 0), at(24, 0)}, []time.Time{t0, at(24, 0)}},
		{"sparse: hours without traffic cost nothing", []time.Time{at(1, 0), at(9, 0)}, []time.Time{at(1, 0), at(9, 0)}, []time.Time{t0}},
		{"out of order goes in its bucket", []time.Time{at(5, 0), at(3, 0), at(4, 0), at(3, 30)}, []time.Time{at(3, 0), at(4, 0), at(5, 0)}, []time.Time{t0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}.WithDefaults()
			var r Record
			for _, tm := range tc.times {
				r.count(codeValid, 1, tm.Unix(), &cfg)
			}
			require.Equal(t, tc.wantHours, starts(r.Hours))
			require.Equal(t, tc.wantDays, starts(r.Days))
			var sum Counts
			for _, b := range r.Hours {
				sum.Add(&b.Counts)
			}
			require.Equal(t, valid(uint64(len(tc.times))), sum)
			require.Equal(t, valid(uint64(len(tc.times))), r.Total)
			require.Equal(t, slicesMax(tc.times).Unix(), r.LastUsed)
		})
	}
}

func slicesMax(ts []time.Time) time.Time {
	m := ts[0]
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

func TestRetention(t *testing.T) {
	cfg := Config{Hours: 3, Days: 2}.WithDefaults()
	var r Record
	for h := 0; h < 24*5; h++ { // every hour for five days
		r.count(codeValid, 1, at(h, 10).Unix(), &cfg)
		require.LessOrEqual(t, len(r.Hours), cfg.Hours+1)
		require.LessOrEqual(t, len(r.Days), cfg.Days+1)
	}
	require.Equal(t, []time.Time{at(117, 0), at(118, 0), at(119, 0)}, starts(r.Hours))
	require.Equal(t, []time.Time{at(72, 0), at(96, 0)}, starts(r.Days))
	require.Equal(t, valid(24*5), r.Total, "the lifetime total keeps everything")

	// A time older than retention still counts in the total but in no bucket.
	r.count(codeValid, 1, at(100, 0).Unix(), &cfg)
	require.Equal(t, []time.Time{at(117, 0), at(118, 0), at(119, 0)}, starts(r.Hours))

	// Prune drops what has aged out since.
	r.Prune(cfg, at(24*5+3, 0))
	require.Empty(t, r.Hours)
	require.Equal(t, []time.Time{at(96, 0)}, starts(r.Days))
}

func TestMerge(t *testing.T) {
	cfg := Config{}
	c := cfg.WithDefaults()
	client := netip.MustParseAddr("192.0.2.10")
	var stored, delta Record
	stored.count(codeValid, 1, at(1, 0).Unix(), &c)
	stored.count(0, 1, at(2, 0).Unix(), &c)
	stored.countTags([]Tag{{"route", "/a"}}, codeValid, 1, at(1, 0).Unix(), &c)
	p, _ := NetworkOf(client)
	addNetwork(&stored.Networks, p, false, 1, at(1, 0).Unix(), c.MaxNetworks)

	delta.count(codeValid, 1, at(2, 0).Unix(), &c)
	delta.count(codeValid, 1, at(26, 0).Unix(), &c)
	delta.countTags([]Tag{{"route", "/a"}, {"region", "eu"}}, codeValid, 1, at(26, 0).Unix(), &c)
	delta.countTags([]Tag{{"route", "/a"}}, codeValid, 1, at(2, 0).Unix(), &c)
	addNetwork(&delta.Networks, p, true, 1, at(26, 0).Unix(), c.MaxNetworks)

	Merge(&stored, &delta, cfg, at(26, 5))
	require.Equal(t, at(26, 0).Unix(), stored.LastUsed)
	require.Equal(t, uint64(4), stored.Total.Total())
	require.Equal(t, []time.Time{at(1, 0), at(2, 0), at(26, 0)}, starts(stored.Hours))
	require.Equal(t, Counts{1, 0, 0, 0, 0, 0, 0, 0, 1}, stored.Hours[1].Counts)
	require.Equal(t, []time.Time{t0, at(24, 0)}, starts(stored.Days))
	require.Equal(t, []TagDay{
		{Start: t0.Unix(), Tags: []TagCount{{Tag{"route", "/a"}, valid(2)}}},
		{Start: at(24, 0).Unix(), Tags: []TagCount{{Tag{"region", "eu"}, valid(1)}, {Tag{"route", "/a"}, valid(1)}}},
	}, stored.Tags)
	require.Equal(t, []Network{{Prefix: p, Count: 2, Refused: 1, FirstSeen: at(1, 0).Unix(), LastSeen: at(26, 0).Unix()}}, stored.Networks)

	// Two days later the hourly buckets have aged out of a 48-hour window.
	Merge(&stored, &Record{}, cfg, at(24*3+3, 0))
	require.Empty(t, stored.Hours)
	require.Len(t, stored.Days, 2)

	// Merging applies the tag bounds to the union.
	small := Config{MaxTagValues: 1}
	var a, b Record
	a.Tags = []TagDay{{Start: t0.Unix(), Tags: []TagCount{{Tag{"route", "/a"}, valid(1)}}}}
	b.Tags = []TagDay{{Start: t0.Unix(), Tags: []TagCount{{Tag{"route", "/b"}, valid(2)}}}}
	Merge(&a, &b, small, at(1, 0))
	require.Equal(t, []TagCount{{Tag{"route", "/a"}, valid(1)}, {Tag{"route", Other}, valid(2)}}, a.Tags[0].Tags)
}

func TestRecordCodes(t *testing.T) {
	c := Config{}.WithDefaults()
	var r Record
	for i, code := range verifyapi.Codes() {
		idx, _ := CodeIndex(code)
		for range i + 1 {
			r.count(idx, 1, at(0, 0).Unix(), &c)
		}
	}
	require.Equal(t, Counts{1, 2, 3, 4, 5, 6, 7, 8, 9}, r.Hours[0].Counts)
	require.Equal(t, uint64(45), r.Total.Total())
	require.Equal(t, uint64(36), r.Total.Refusals())
}
