package verifyapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// throughJSON sends data the way Vault's API client delivers it: JSON with numbers as
// json.Number.
func throughJSON(t *testing.T, data map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(data)
	require.NoError(t, err)
	dec := json.NewDecoder(bytesReader(b))
	dec.UseNumber()
	var out map[string]any
	require.NoError(t, dec.Decode(&out))
	return out
}

func TestResponseRoundTrip(t *testing.T) {
	uses := int64(7)
	expires := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	cases := []Response{
		{Code: CodeMalformed},
		{Code: CodeNotFound},
		{Valid: true, Code: CodeValid, Key: &Key{KeyID: "0123456789abcdef", Role: "r", Name: "n", Scopes: []string{"a"}, Metadata: map[string]string{"k": "v"}, ExpiresAt: expires, TTL: 90 * time.Second}, RemainingUses: &uses, RateLimit: 2.5},
		{Code: CodeRateLimited, Key: &Key{KeyID: "0123456789abcdef", ExpiresAt: expires, TTL: time.Second}, RateLimit: 1, RetryAfter: 1500 * time.Millisecond},
		{Code: CodeRateLimited, Key: &Key{KeyID: "0123456789abcdef", ExpiresAt: expires, TTL: time.Second, Identity: "ent-1"}, RateLimit: 0.5, RetryAfter: 1500 * time.Millisecond, RateLimitName: "daily"},
	}
	for i, want := range cases {
		t.Run(fmt.Sprint(i, want.Code), func(t *testing.T) {
			data := want.Data()
			got, err := DecodeResponse(throughJSON(t, data))
			require.NoError(t, err)
			require.Equal(t, want.Valid, got.Valid)
			require.Equal(t, want.Code, got.Code)
			require.Equal(t, want.RemainingUses, got.RemainingUses)
			require.Equal(t, want.RateLimit, got.RateLimit)
			require.Equal(t, want.RateLimitName, got.RateLimitName)
			if want.RateLimitName == "" {
				require.NotContains(t, data, FieldRateLimitName, "left out when unnamed")
			}
			if want.Code == CodeRateLimited {
				require.Equal(t, 2*time.Second, got.RetryAfter, "rounded up to whole seconds")
			}
			if want.Key == nil {
				require.Nil(t, got.Key)
				require.Equal(t, map[string]any{FieldValid: false, FieldCode: want.Code}, data, "nothing but valid and code")
				return
			}
			require.Equal(t, want.Key.KeyID, got.Key.KeyID)
			require.Equal(t, want.Key.Scopes, got.Key.Scopes)
			require.Equal(t, want.Key.Metadata, got.Key.Metadata)
			require.True(t, want.Key.ExpiresAt.Equal(got.Key.ExpiresAt))
			require.Equal(t, want.Key.TTL, got.Key.TTL)
			require.True(t, got.Key.TTLKnown)
			require.Equal(t, want.Key.Identity, got.Key.Identity)
			if want.Key.Identity == "" {
				require.NotContains(t, data, FieldIdentity, "keys without an identity answer as before")
			}
		})
	}
}

func TestDecodeResponseRefusesBrokenContracts(t *testing.T) {
	cases := map[string]map[string]any{
		"no data":             nil,
		"no valid":            {FieldCode: CodeValid},
		"no code":             {FieldValid: false},
		"valid with refusal":  {FieldValid: true, FieldCode: CodeNotFound},
		"VALID not valid":     {FieldValid: false, FieldCode: CodeValid},
		"VALID without key":   {FieldValid: true, FieldCode: CodeValid},
		"unreadable expiry":   {FieldValid: false, FieldCode: CodeExpired, FieldKeyID: "k", FieldExpiresAt: "soon"},
		"valid not a boolean": {FieldValid: "true", FieldCode: CodeValid},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeResponse(data)
			require.Error(t, err)
		})
	}
}

// TestRequestData: optional fields are sent only when set, so that a caller without
// scopes, address, request id or tags sends what older engines already accept.
func TestRequestData(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  Request
		want map[string]any
	}{
		{name: "key only", req: Request{APIKey: "k"}, want: map[string]any{FieldAPIKey: "k", FieldCost: 0}},
		{name: "empty scopes and tags are left out", req: Request{APIKey: "k", Scopes: []string{}, Tags: []string{}}, want: map[string]any{FieldAPIKey: "k", FieldCost: 0}},
		{name: "tags only", req: Request{APIKey: "k", Cost: 1, Tags: []string{"route=/orders/{id}"}}, want: map[string]any{FieldAPIKey: "k", FieldCost: 1, FieldTags: []string{"route=/orders/{id}"}}},
		{
			name: "every field",
			req:  Request{APIKey: "k", Scopes: []string{"a"}, ClientIP: netip.MustParseAddr("10.0.0.1"), Cost: 3, RequestID: "r1", Tags: []string{"region=eu", "route=/orders"}},
			want: map[string]any{FieldAPIKey: "k", FieldCost: 3, FieldScopes: []string{"a"}, FieldClientIP: "10.0.0.1", FieldRequestID: "r1", FieldTags: []string{"region=eu", "route=/orders"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.req.Data())
		})
	}
	// On the wire, tags are a JSON array under "tags", in the order given.
	b, err := json.Marshal(Request{APIKey: "k", Tags: []string{"b=2", "a=1"}}.Data())
	require.NoError(t, err)
	require.JSONEq(t, `{"api_key":"k","cost":0,"tags":["b=2","a=1"]}`, string(b))
}

func TestCodesAreInCheckOrder(t *testing.T) {
	codes := Codes()
	require.Len(t, codes, 9)
	require.Equal(t, CodeMalformed, codes[0])
	require.Equal(t, CodeValid, codes[len(codes)-1])
	codes[0] = "changed"
	require.Equal(t, CodeMalformed, Codes()[0], "callers get their own copy")
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
