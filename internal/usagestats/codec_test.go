package usagestats

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func sampleRecord() Record {
	net4, _ := NetworkOf(netip.MustParseAddr("192.0.2.7"))
	net6, _ := NetworkOf(netip.MustParseAddr("2001:db8:1:2::3"))
	return Record{
		LastUsed: at(30, 5).Unix(),
		Total:    Counts{1, 0, 0, 0, 2, 0, 300, 0, 1 << 40},
		Hours: []Bucket{
			{Start: at(5, 0).Unix(), Counts: valid(3)},
			{Start: at(30, 0).Unix(), Counts: Counts{1, 0, 0, 0, 2, 0, 300, 0, 7}},
		},
		Days: []Bucket{{Start: t0.Unix(), Counts: valid(3)}, {Start: at(24, 0).Unix(), Counts: valid(1 << 40)}},
		Tags: []TagDay{
			{Start: t0.Unix(), Tags: []TagCount{{Tag{"region", "eu"}, valid(2)}, {Tag{"route", "/orders/{id}"}, Counts{0, 0, 1}}}},
			{Start: at(24, 0).Unix(), Tags: []TagCount{{Tag{"route", Other}, valid(9)}}},
		},
		Networks: []Network{
			{Prefix: net6, Count: 5, Refused: 2, FirstSeen: at(1, 0).Unix(), LastSeen: at(30, 5).Unix()},
			{Prefix: net4, Count: 1, FirstSeen: at(2, 0).Unix(), LastSeen: at(2, 0).Unix()},
		},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		rec  Record
	}{
		{"empty", Record{}},
		{"full", sampleRecord()},
		{"before 1970", Record{LastUsed: -7200, Hours: []Bucket{{Start: -7200, Counts: valid(1)}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.rec.MarshalBinary()
			require.NoError(t, err)
			var got Record
			require.NoError(t, got.UnmarshalBinary(b))
			require.Equal(t, tc.rec, got)
		})
	}
}

func TestCodecIsCompact(t *testing.T) {
	rec := sampleRecord()
	b, err := rec.MarshalBinary()
	require.NoError(t, err)
	require.Less(t, len(b), 150, "got %d bytes", len(b))
}

func TestCodecRefuses(t *testing.T) {
	rec := sampleRecord()
	good, err := rec.MarshalBinary()
	require.NoError(t, err)
	cases := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "unknown format"},
		{"other version", []byte{2}, "unknown format"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing bytes"},
		{"huge length", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, "truncated or corrupt"},
		{"bad count mask", []byte{1, 0, 0xff, 0x7f}, "truncated or corrupt"},
	}
	for i := 1; i < len(good); i++ {
		cases = append(cases, struct {
			name    string
			in      []byte
			wantErr string
		}{"truncated", good[:i], ""})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Record
			err := r.UnmarshalBinary(tc.in)
			require.Error(t, err)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
			}
		})
	}

	bad := []struct {
		name    string
		rec     Record
		wantErr string
	}{
		{"unaligned bucket", Record{Hours: []Bucket{{Start: 5}}}, "not aligned"},
		{"unsorted buckets", Record{Days: []Bucket{{Start: 86400}, {Start: 0}}}, "is not after"},
		{"odd network", Record{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}, "not an IPv4 /24"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.rec.MarshalBinary()
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	rec := sampleRecord()
	good, _ := rec.MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if r.UnmarshalBinary(b) != nil {
			return
		}
		// Whatever decodes re-encodes to the same record.
		again, err := r.MarshalBinary()
		if err != nil {
			return // e.g. a network whose span overflows
		}
		var r2 Record
		require.NoError(t, r2.UnmarshalBinary(again))
		require.Equal(t, r, r2)
	})
}
