package usagestats

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseTag(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		in      string
		want    Tag
		wantErr string
	}{
		{"endpoint=/orders", Tag{"endpoint", "/orders"}, ""},
		{"region=eu", Tag{"region", "eu"}, ""},
		{"a.b_c-9=~!@#$%^&*()[]{}|;:',.<>?`\"", Tag{"a.b_c-9", "~!@#$%^&*()[]{}|;:',.<>?`\""}, ""},
		{long(64) + "=" + long(128), Tag{long(64), long(128)}, ""},
		{"noequals", Tag{}, `invalid tag "noequals": must be name=value`},
		{"=eu", Tag{}, `invalid tag "=eu": empty name`},
		{"region=", Tag{}, `invalid tag "region=": empty value`},
		{long(65) + "=x", Tag{}, "name longer than 64 bytes"},
		{"x=" + long(129), Tag{}, "value longer than 128 bytes"},
		{"Region=eu", Tag{}, `invalid tag "Region=eu": name byte 'R' is not one of a-z 0-9 _ . -`},
		{"reg/ion=eu", Tag{}, `invalid tag "reg/ion=eu": name byte '/' is not one of a-z 0-9 _ . -`},
		{"region=e u", Tag{}, `invalid tag "region=e u": value byte ' ' is not printable ASCII without space or '='`},
		{"q=a=b", Tag{}, `invalid tag "q=a=b": value byte '=' is not printable ASCII without space or '='`},
		{"region=eu\n", Tag{}, `invalid tag "region=eu\n": value byte '\n' is not printable ASCII without space or '='`},
		{"region=é", Tag{}, `invalid tag "region=é": value byte 'Ã' is not printable ASCII without space or '='`},
		{"region=\x7f", Tag{}, `value byte '\x7f' is not printable ASCII`},
	}
	for _, tc := range cases {
		t.Run(tc.in[:min(len(tc.in), 20)], func(t *testing.T) {
			got, err := ParseTag(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				var te *TagError
				require.ErrorAs(t, err, &te)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.in, got.String())
		})
	}
}

func TestParseTags(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		wantErr string
	}{
		{"none", nil, ""},
		{"eight", []string{"a=1", "b=1", "c=1", "d=1", "e=1", "f=1", "g=1", "h=1"}, ""},
		{"nine", []string{"a=1", "b=1", "c=1", "d=1", "e=1", "f=1", "g=1", "h=1", "i=1"}, "at most 8 tags are allowed, not 9"},
		{"duplicate name", []string{"region=eu", "region=us"}, `invalid tag "region=us": name given twice`},
		{"second is bad", []string{"region=eu", "BAD=1"}, `invalid tag "BAD=1"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tags, err := ParseTags(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, tags, len(tc.in))
		})
	}
}

func TestTagOverflow(t *testing.T) {
	cfg := Config{MaxTagValues: 3, MaxTagNames: 2}.WithDefaults()
	one := Counts{}
	one[codeValid] = 1
	cases := []struct {
		name string
		add  []Tag
		want []string // name=value:count, sorted
	}{
		{
			"within bounds",
			[]Tag{{"route", "/a"}, {"route", "/b"}, {"route", "/a"}},
			[]string{"route=/a:2", "route=/b:1"},
		},
		{
			"values overflow to other",
			[]Tag{{"route", "/a"}, {"route", "/b"}, {"route", "/c"}, {"route", "/d"}, {"route", "/e"}, {"route", "/a"}},
			[]string{"route=/a:2", "route=/b:1", "route=/c:1", "route=other:2"},
		},
		{
			"the bound is per day across names",
			[]Tag{{"route", "/a"}, {"route", "/b"}, {"region", "eu"}, {"region", "us"}, {"route", "/c"}},
			[]string{"region=eu:1", "region=other:1", "route=/a:1", "route=/b:1", "route=other:1"},
		},
		{
			"names overflow to other=other",
			[]Tag{{"a", "1"}, {"b", "1"}, {"c", "1"}, {"d", "2"}, {"a", "1"}},
			[]string{"a=1:2", "b=1:1", "other=other:2"},
		},
		{
			"a value named other takes no slot",
			[]Tag{{"a", "other"}, {"a", "1"}, {"a", "2"}, {"a", "3"}, {"a", "4"}},
			[]string{"a=1:1", "a=2:1", "a=3:1", "a=other:2"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d TagDay
			for _, tag := range tc.add {
				d.add(tag, &one, &cfg)
			}
			var got []string
			for _, tc := range d.Tags {
				got = append(got, fmt.Sprintf("%s:%d", tc.Tag, tc.Counts.Total()))
			}
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, len(d.Tags), cfg.MaxTagValues+cfg.MaxTagNames+1)
		})
	}
}
