package verifyapi

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidHolder(t *testing.T) {
	for h, want := range map[string]bool{
		"gw-1": true, "A_b-9": true, strings.Repeat("h", MaxHolderLen): true,
		"": false, strings.Repeat("h", MaxHolderLen+1): false, "a b": false, "a/b": false, "ü": false, "a.b": false,
	} {
		require.Equal(t, want, ValidHolder(h), "%q", h)
	}
}

func TestGrantRequestData(t *testing.T) {
	data := Request{APIKey: "k", Grant: &GrantRequest{Holder: "gw"}}.Data()
	require.Equal(t, map[string]any{FieldAPIKey: "k", FieldCost: 0, FieldGrantHolder: "gw"}, data, "no uses or rate asked: left out")
	data = Request{APIKey: "k", Cost: 1, Grant: &GrantRequest{Holder: "gw", Uses: 50, Rate: 12.5}}.Data()
	require.Equal(t, map[string]any{FieldAPIKey: "k", FieldCost: 1, FieldGrantHolder: "gw", FieldGrantUses: int64(50), FieldGrantRate: 12.5}, data)
}

func TestGrantResponseRoundTrip(t *testing.T) {
	uses, none := int64(16), int64(0)
	key := &Key{KeyID: "0123456789abcdef", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	for name, want := range map[string]*Grant{
		"uses only":       {ID: strings.Repeat("a", 32), Uses: &uses, TTL: 5 * time.Second},
		"nothing left":    {ID: strings.Repeat("b", 32), Uses: &none, TTL: 5 * time.Second},
		"limits only":     {ID: strings.Repeat("c", 32), Limits: []GrantLimit{{Name: "default", Rate: 2.5, Burst: 5, Tokens: 5}, {Name: "minute", Rate: 0.25, Burst: 1, Tokens: 0.5}}, TTL: 1500 * time.Millisecond},
		"uses and limits": {ID: strings.Repeat("d", 32), Uses: &uses, Limits: []GrantLimit{{Name: "default", Rate: 250, Burst: 250}} /* no tokens handed over */, TTL: time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			resp := Response{Valid: true, Code: CodeValid, Key: key, ReportToken: "tok", Grant: want}
			got, err := DecodeResponse(throughJSON(t, resp.Data()))
			require.NoError(t, err)
			require.Equal(t, "tok", got.ReportToken)
			require.Equal(t, want, got.Grant)

			renew, err := DecodeRenewResponse(throughJSON(t, RenewResponse{Renewed: true, Grant: want}.Data()))
			require.NoError(t, err)
			require.Equal(t, RenewResponse{Renewed: true, Grant: want}, renew)
		})
	}
	// tokens is optional: an answer without it adds nothing to the holder's bucket.
	old, err := DecodeResponse(map[string]any{FieldValid: true, FieldCode: CodeValid, FieldKeyID: "k", FieldGrantID: strings.Repeat("e", 32), FieldGrantTTL: 5000,
		FieldGrantedLimits: []any{map[string]any{FieldLimitName: "default", FieldLimitRate: 1.5, FieldLimitBurst: 3}}})
	require.NoError(t, err)
	require.Equal(t, []GrantLimit{{Name: "default", Rate: 1.5, Burst: 3}}, old.Grant.Limits)
	// A report token comes with refusals too; a grant never does.
	got, err := DecodeResponse(throughJSON(t, Response{Code: CodeRateLimited, Key: key, ReportToken: "tok", RetryAfter: time.Second}.Data()))
	require.NoError(t, err)
	require.Equal(t, "tok", got.ReportToken)
	require.Nil(t, got.Grant)
	// Without a grant_holder nothing of the fleet contract is sent.
	data := Response{Valid: true, Code: CodeValid, Key: key}.Data()
	for _, f := range []string{FieldReportToken, FieldGrantID, FieldGrantedUses, FieldGrantedLimits, FieldGrantTTL} {
		require.NotContains(t, data, f)
	}
}

func TestDecodeGrantRefusesBrokenContracts(t *testing.T) {
	key := map[string]any{FieldValid: true, FieldCode: CodeValid, FieldKeyID: "k"}
	with := func(extra map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range key {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	id := strings.Repeat("a", 32)
	for name, data := range map[string]map[string]any{
		"grant with a refusal":  {FieldValid: false, FieldCode: CodeRateLimited, FieldKeyID: "k", FieldGrantID: id, FieldGrantTTL: 5000},
		"no ttl":                with(map[string]any{FieldGrantID: id}),
		"zero ttl":              with(map[string]any{FieldGrantID: id, FieldGrantTTL: 0}),
		"negative uses":         with(map[string]any{FieldGrantID: id, FieldGrantTTL: 5000, FieldGrantedUses: -1}),
		"limit not an object":   with(map[string]any{FieldGrantID: id, FieldGrantTTL: 5000, FieldGrantedLimits: []any{"x"}}),
		"limit without a rate":  with(map[string]any{FieldGrantID: id, FieldGrantTTL: 5000, FieldGrantedLimits: []any{map[string]any{FieldLimitName: "d", FieldLimitBurst: 1}}}),
		"limit with a negative": with(map[string]any{FieldGrantID: id, FieldGrantTTL: 5000, FieldGrantedLimits: []any{map[string]any{FieldLimitName: "d", FieldLimitRate: -1, FieldLimitBurst: 1}}}),
		"negative tokens":       with(map[string]any{FieldGrantID: id, FieldGrantTTL: 5000, FieldGrantedLimits: []any{map[string]any{FieldLimitName: "d", FieldLimitRate: 1, FieldLimitBurst: 1, FieldLimitTokens: -1}}}),
		"tokens not a number":   with(map[string]any{FieldGrantID: id, FieldGrantTTL: 5000, FieldGrantedLimits: []any{map[string]any{FieldLimitName: "d", FieldLimitRate: 1, FieldLimitBurst: 1, FieldLimitTokens: "x"}}}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeResponse(data)
			require.Error(t, err)
		})
	}
}

func TestRenewRoundTrip(t *testing.T) {
	r := RenewRequest{GrantID: "g", Want: GrantRequest{Holder: "gw", Uses: 10, Rate: 2}, Unused: 3, Release: true}
	require.Equal(t, map[string]any{FieldGrantID: "g", FieldUnused: int64(3), FieldGrantHolder: "gw", FieldGrantUses: int64(10), FieldGrantRate: 2.0, FieldRelease: true}, r.Data())
	r.Release = false
	require.NotContains(t, r.Data(), FieldRelease)

	for _, notRenewed := range []RenewResponse{{}, {Renewed: true}, {Grant: &Grant{ID: "x", TTL: time.Second}}} {
		data := notRenewed.Data()
		require.Equal(t, map[string]any{FieldRenewed: false}, data, "not renewed says nothing else")
		got, err := DecodeRenewResponse(throughJSON(t, data))
		require.NoError(t, err)
		require.Equal(t, RenewResponse{}, got)
	}
	for name, data := range map[string]map[string]any{
		"no renewed":              {},
		"renewed not a boolean":   {FieldRenewed: "true"},
		"renewed without a grant": {FieldRenewed: true},
		"renewed with a bad ttl":  {FieldRenewed: true, FieldGrantID: "g"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeRenewResponse(data)
			require.Error(t, err)
		})
	}
}

func TestFeedRoundTrip(t *testing.T) {
	for _, want := range []FeedResponse{
		{Cursor: "e.1", Reset: true},
		{Cursor: "e.3", Events: []FeedEvent{{Kind: EventDisabled, KeyID: "k1"}, {Kind: EventRevoked, KeyID: "k2"}}},
	} {
		got, err := DecodeFeedResponse(throughJSON(t, want.Data()))
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for name, data := range map[string]map[string]any{
		"no cursor":           {FieldReset: false},
		"no reset":            {FieldCursor: "c"},
		"event not an object": {FieldCursor: "c", FieldReset: false, FieldEvents: []any{"x"}},
		"event without kind":  {FieldCursor: "c", FieldReset: false, FieldEvents: []any{map[string]any{FieldKeyID: "k"}}},
		"event without key":   {FieldCursor: "c", FieldReset: false, FieldEvents: []any{map[string]any{FieldKind: EventRevoked}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeFeedResponse(data)
			require.Error(t, err)
		})
	}
}

func TestReportRoundTrip(t *testing.T) {
	want := Report{Holder: "gw", Entries: []ReportEntry{
		{KeyID: "k1", ReportToken: "t1", Code: CodeValid, Count: 10, Uses: 12, Tags: []string{"route=/a"}, ClientIP: "192.0.2.1"},
		{KeyID: "k2", ReportToken: "t2", Code: CodeRateLimited, Count: MaxReportCount},
	}}
	data := throughJSON(t, want.Data())
	require.Equal(t, "gw", data[FieldGrantHolder])
	got, err := DecodeReportEntries(data[FieldEntries].([]any))
	require.NoError(t, err)
	require.Equal(t, want.Entries, got)

	good := func() map[string]any {
		return map[string]any{FieldKeyID: "k", FieldReportToken: "secret-token", FieldCode: CodeValid, FieldCount: 1}
	}
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{FieldKeyID, nil, "entries[1].key_id"},
		{FieldKeyID, 5, "entries[1].key_id"},
		{FieldReportToken, nil, "entries[1].report_token"},
		{FieldCode, CodeNotFound, "entries[1].code"},
		{FieldCode, CodeMalformed, "entries[1].code"},
		{FieldCode, nil, "entries[1].code"},
		{FieldCount, nil, "entries[1].count"},
		{FieldCount, 0, "entries[1].count"},
		{FieldCount, 2.5, "entries[1].count"},
		{FieldCount, float64(MaxReportCount) * 2, "entries[1].count"},
		{FieldUses, -1, "entries[1].uses"},
		{FieldUses, "x", "entries[1].uses"},
		{FieldTags, "a=b", "entries[1].tags"},
		{FieldTags, []any{1}, "entries[1].tags"},
		{FieldClientIP, 1, "entries[1].client_ip"},
	} {
		t.Run(fmt.Sprint(tc.field, tc.value), func(t *testing.T) {
			bad := good()
			if tc.value == nil {
				delete(bad, tc.field)
			} else {
				bad[tc.field] = tc.value
			}
			_, err := DecodeReportEntries([]any{good(), bad})
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "secret-token", "errors never carry a report token")
		})
	}
	_, err = DecodeReportEntries([]any{"x"})
	require.ErrorContains(t, err, "entries[0]")
	_, err = DecodeReportEntries(make([]any, MaxReportEntries+1))
	require.ErrorContains(t, err, "entries")
	got, err = DecodeReportEntries([]any{good()})
	require.NoError(t, err)
	require.Zero(t, got[0].Uses, "uses default to 0")

	a, r, err := DecodeReportResponse(throughJSON(t, map[string]any{FieldAccepted: int64(3), FieldRejected: int64(1)}))
	require.NoError(t, err)
	require.Equal(t, [2]int64{3, 1}, [2]int64{a, r})
	_, _, err = DecodeReportResponse(map[string]any{FieldAccepted: 1})
	require.Error(t, err)
}
