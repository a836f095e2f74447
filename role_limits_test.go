package apikey

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// newLimitsEnv is the mount the credits, named limits and identities tests use.
func newLimitsEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnv(t)
}

// issueAs issues a key from role with a token of entity (as Vault sets req.EntityID).
func (e *testEnv) issueAs(entity, role string, data map[string]interface{}) issued {
	e.t.Helper()
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: logical.UpdateOperation, Path: "creds/" + role, Data: data, Storage: e.storage, EntityID: entity,
	})
	require.NoError(e.t, err)
	require.False(e.t, resp.IsError(), "%v", resp.Data)
	resp.Secret.IssueTime = time.Now()
	return issued{key: resp.Data["api_key"].(string), keyID: resp.Data["key_id"].(string), secret: resp.Secret, data: resp.Data}
}

// record reads a key's record from storage.
func (e *testEnv) record(keyID string) *keyEntry {
	e.t.Helper()
	k, err := e.b.storageKeyEntry(e.ctx, e.storage, keyID)
	require.NoError(e.t, err)
	require.NotNil(e.t, k, "key %s", keyID)
	return k
}

func TestParseNamedLimit(t *testing.T) {
	cases := []struct {
		in      string
		want    namedLimit
		wantErr string
	}{
		{in: "burst=10/1s", want: namedLimit{Name: "burst", Limit: 10, Window: time.Second}},
		{in: "daily=10000/24h", want: namedLimit{Name: "daily", Limit: 10000, Window: 24 * time.Hour}},
		{in: "monthly_x-1=5/30d", want: namedLimit{Name: "monthly_x-1", Limit: 5, Window: 30 * 24 * time.Hour}},
		{in: "m=5/60", want: namedLimit{Name: "m", Limit: 5, Window: time.Minute}},
		{in: " sub=5/100ms ", want: namedLimit{Name: "sub", Limit: 5, Window: 100 * time.Millisecond}},
		{in: "burst", wantErr: "must be name=limit/window"},
		{in: "burst=10", wantErr: "must be name=limit/window"},
		{in: "Burst=10/1s", wantErr: "the name must be"},
		{in: "=10/1s", wantErr: "the name must be"},
		{in: strings.Repeat("a", 33) + "=1/1s", wantErr: "the name must be"},
		{in: "b=0/1s", wantErr: "the limit must be an integer from 1"},
		{in: "b=-1/1s", wantErr: "the limit must be an integer from 1"},
		{in: "b=1.5/1s", wantErr: "the limit must be an integer from 1"},
		{in: "b=1000000001/1s", wantErr: "the limit must be an integer from 1"},
		{in: "b=1/0s", wantErr: "the window must be"},
		{in: "b=1/367d", wantErr: "the window must be"},
		{in: "b=1/soon", wantErr: "the window must be"},
		{in: "b=1/1500us", wantErr: "whole milliseconds"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseNamedLimit(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			again, err := parseNamedLimit(got.String())
			require.NoError(t, err, "String reads back: %s", got)
			require.Equal(t, got, again)
		})
	}
	require.Equal(t, "daily=10000/1d", namedLimit{Name: "daily", Limit: 10000, Window: 24 * time.Hour}.String())
	require.Equal(t, "b=10/90m", namedLimit{Name: "b", Limit: 10, Window: 90 * time.Minute}.String())
}

func TestRefillSchedule(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return tm
	}
	cases := []struct {
		interval string
		now      string
		start    string
		next     string
		display  string
	}{
		{"daily", "2026-03-10T15:04:05Z", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z", "daily"},
		{"24h", "2026-03-10T23:59:59Z", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z", "daily"},
		{"1h", "2026-03-10T15:04:05Z", "2026-03-10T15:00:00Z", "2026-03-10T16:00:00Z", "1h"},
		{"3600", "2026-03-10T15:00:00Z", "2026-03-10T15:00:00Z", "2026-03-10T16:00:00Z", "1h"},
		{"7d", "2026-03-10T15:04:05Z", "2026-03-05T00:00:00Z", "2026-03-12T00:00:00Z", "7d"}, // epoch weeks start on Thursdays
		{"monthly", "2026-02-28T23:59:59Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "monthly"},
		{"monthly", "2026-12-31T12:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", "monthly"},
		{"monthly", "2026-03-01T00:00:00+01:00", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "monthly"}, // UTC months
	}
	for _, tc := range cases {
		t.Run(tc.interval+" "+tc.now, func(t *testing.T) {
			r, err := parseRefillInterval(tc.interval)
			require.NoError(t, err)
			require.True(t, r.enabled())
			now := at(tc.now)
			require.Equal(t, at(tc.start).Unix(), r.period(now))
			require.Equal(t, at(tc.next), r.next(now))
			require.Equal(t, tc.display, r.String())
			require.Greater(t, r.period(r.next(now)), r.period(now), "the next period is a later one")
			require.Equal(t, r.period(now), r.period(r.next(now).Add(-time.Second)), "the last second is in the same period")
		})
	}
	for _, bad := range []string{"weekly", "-1h", "500ms", "1.5s", "soon"} {
		_, err := parseRefillInterval(bad)
		require.ErrorContains(t, err, "refill_interval", bad)
	}
	none, err := parseRefillInterval("0")
	require.NoError(t, err)
	require.False(t, none.enabled())
}

func TestValidIdentity(t *testing.T) {
	for id, ok := range map[string]bool{
		"5e5b3a4e-1c5d-4a57-9c39-2a1f0e0c6b7d": true,
		"acme":                                 true,
		"customer:acme.eu":                     true,
		"ops@example.com":                      true,
		"A_1-b":                                true,
		strings.Repeat("a", 128):               true,
		strings.Repeat("a", 129):               false,
		"":                                     false,
		".hidden":                              false,
		"-x":                                   false,
		"a..b":                                 false,
		"a/b":                                  false,
		"a b":                                  false,
		"ü":                                    false,
		"a\x00":                                false,
	} {
		require.Equal(t, ok, validIdentity(id), "%q", id)
		if !ok {
			require.ErrorContains(t, validateIdentity("identity", id), "identity")
		}
	}
}

func TestRoleLimitsFields(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("metered", map[string]interface{}{
		"max_uses": 100, "refill_interval": "daily", "rate_limit": 5,
		"rate_limits": "burst=10/1s,daily=10000/24h", "allow_identity": true, "shared_limits": true,
	})
	got := e.mustOK(logical.ReadOperation, "roles/metered", nil).Data
	require.Equal(t, []string{"burst=10/1s", "daily=10000/1d"}, got["rate_limits"])
	require.Equal(t, "daily", got["refill_interval"])
	require.Equal(t, int64(0), got["refill_amount"], "0: back to max_uses")
	require.Equal(t, true, got["allow_identity"])
	require.Equal(t, true, got["shared_limits"])

	// What a read shows writes back to the same role.
	e.mustOK(logical.UpdateOperation, "roles/metered", map[string]interface{}{"rate_limits": got["rate_limits"], "refill_interval": "monthly", "refill_amount": 40})
	got = e.mustOK(logical.ReadOperation, "roles/metered", nil).Data
	require.Equal(t, []string{"burst=10/1s", "daily=10000/1d"}, got["rate_limits"])
	require.Equal(t, "monthly", got["refill_interval"])
	require.Equal(t, int64(40), got["refill_amount"])

	// A JSON list works as well as the comma form; an empty value removes the limits
	// and a refill of 0 turns refills off.
	e.mustOK(logical.UpdateOperation, "roles/metered", map[string]interface{}{"rate_limits": []interface{}{"hour=100/1h"}})
	require.Equal(t, []string{"hour=100/1h"}, e.mustOK(logical.ReadOperation, "roles/metered", nil).Data["rate_limits"])
	e.mustOK(logical.UpdateOperation, "roles/metered", map[string]interface{}{"rate_limits": "", "refill_interval": "0", "refill_amount": 0})
	got = e.mustOK(logical.ReadOperation, "roles/metered", nil).Data
	require.Equal(t, []string{}, got["rate_limits"])
	require.Equal(t, "", got["refill_interval"])
}

// TestLimitsBadInput: every bad value is a 400 naming its field, and changes nothing.
func TestLimitsBadInput(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 10, "rate_limit": 1})
	e.writeRole("plain", nil)
	k := e.issue("svc", nil)
	unlimited := e.issue("plain", nil)
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = fmt.Sprintf("l%d=1/1s", i)
	}
	cases := []struct {
		path string
		data map[string]interface{}
		want string
	}{
		{"roles/svc", map[string]interface{}{"rate_limits": "burst"}, "rate_limits"},
		{"roles/svc", map[string]interface{}{"rate_limits": "a=1/1s,a=2/1s"}, "rate_limits: the name \"a\" is given twice"},
		{"roles/svc", map[string]interface{}{"rate_limits": strings.Join(nine, ",")}, "rate_limits: at most 8"},
		{"roles/svc", map[string]interface{}{"rate_limits": strings.Join(nine[:8], ",")}, "rate_limits: at most 8 limits are allowed, rate_limit included"},
		{"roles/svc", map[string]interface{}{"rate_limits": "default=1/1s"}, "rate_limits: the name \"default\" is rate_limit's"},
		{"roles/svc", map[string]interface{}{"rate_limits": []interface{}{map[string]interface{}{"name": "x"}}}, "rate_limits"},
		{"roles/svc", map[string]interface{}{"refill_interval": "weekly"}, "refill_interval"},
		{"roles/svc", map[string]interface{}{"refill_amount": 5}, "refill_amount needs refill_interval"},
		{"roles/svc", map[string]interface{}{"refill_interval": "daily", "refill_amount": -1}, "refill_amount"},
		{"roles/svc", map[string]interface{}{"refill_interval": "daily", "refill_amount": int64(maxCredits) + 1}, "refill_amount"},
		{"roles/svc", map[string]interface{}{"refill_interval": "daily", "refill_amount": "lots"}, "refill_amount"},
		{"roles/plain", map[string]interface{}{"refill_interval": "daily"}, "refill_interval needs max_uses"},
		{"roles/svc", map[string]interface{}{"allow_identity": "perhaps"}, "allow_identity"},
		{"roles/svc", map[string]interface{}{"shared_limits": "perhaps"}, "shared_limits"},
		{"creds/svc", map[string]interface{}{"identity": "acme"}, "identity: role \"svc\" does not let issuers set the identity"},
		{"keys/" + k.keyID + "/credits", nil, "set, add: give exactly one"},
		{"keys/" + k.keyID + "/credits", map[string]interface{}{"set": 1, "add": 1}, "set, add: give exactly one"},
		{"keys/" + k.keyID + "/credits", map[string]interface{}{"set": -1}, "set must be between 0 and"},
		{"keys/" + k.keyID + "/credits", map[string]interface{}{"add": -1}, "add must be between 0 and"},
		{"keys/" + k.keyID + "/credits", map[string]interface{}{"set": int64(maxCredits) + 1}, "set must be between 0 and"},
		{"keys/" + k.keyID + "/credits", map[string]interface{}{"add": "9223372036854775808"}, "add"},
		{"keys/" + k.keyID + "/credits", map[string]interface{}{"set": "many"}, "set"},
		{"keys/" + unlimited.keyID + "/credits", map[string]interface{}{"add": 1}, "add: key " + unlimited.keyID + " has no max_uses"},
		{"keys/short/credits", map[string]interface{}{"add": 1}, "key_id"},
		{"identities/a..b", nil, "identity"},
		{"identities/a..b/revoke", nil, "identity"},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+fmt.Sprint(tc.data), func(t *testing.T) {
			before := storageSnapshot(t, e)
			var op logical.Operation = logical.UpdateOperation
			if strings.HasPrefix(tc.path, "identities/") && !strings.HasSuffix(tc.path, "/revoke") {
				op = logical.ReadOperation
			}
			e.mustFail(op, tc.path, tc.data, tc.want)
			require.Equal(t, before, storageSnapshot(t, e), "storage unchanged")
		})
	}

	// Overflow: adding to what is left may not pass maxCredits.
	e.mustOK(logical.UpdateOperation, "keys/"+k.keyID+"/credits", map[string]interface{}{"set": int64(maxCredits)})
	e.mustFail(logical.UpdateOperation, "keys/"+k.keyID+"/credits", map[string]interface{}{"add": 1}, "add: the key would have more than")

	// The list filter too.
	e.mustFail(logical.ListOperation, "keys/", map[string]interface{}{"identity": "a b"}, "identity")
	e.mustFail(logical.ListOperation, "keys/", map[string]interface{}{"identity": ""}, "identity")
}

// TestLimitPathsAreDocumented: every field of the new paths has a description and every
// operation its response (as TestEveryPathHasHelp and the OpenAPI test check for the
// registered paths).
func TestLimitPathsAreDocumented(t *testing.T) {
	e := newLimitsEnv(t)
	for _, p := range pathLimits(e.b) {
		require.NotEmpty(t, p.HelpSynopsis, p.Pattern)
		require.NotEmpty(t, p.HelpDescription, p.Pattern)
		for name, f := range p.Fields {
			require.NotEmpty(t, f.Description, "%s field %s", p.Pattern, name)
		}
		for op, h := range p.Operations {
			po, ok := h.(*framework.PathOperation)
			require.True(t, ok)
			require.NotEmpty(t, po.Responses, "%s %s", p.Pattern, op)
		}
	}
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.HelpOperation, Path: "roles/x", Storage: e.storage})
	require.NoError(t, err)
	for _, field := range []string{"rate_limits", "refill_interval", "refill_amount", "allow_identity", "shared_limits"} {
		require.Contains(t, resp.Data["help"], field)
	}
}

// TestLimitResponsesAreDocumented: every field the new and changed answers carry is in
// the path's documented response (what Vault's OpenAPI document shows), as
// integration/openapi_test.go checks for the other paths against a real server.
func TestLimitResponsesAreDocumented(t *testing.T) {
	e := newLimitsEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_uses": 10, "refill_interval": "daily", "rate_limits": "burst=1/1h", "shared_limits": true, "allow_identity": true})
	k := e.issueAs(testEntity, "svc", map[string]interface{}{"identity": "acme"})
	e.verifyCode(k.key)
	cases := []struct {
		op   logical.Operation
		path string
		data map[string]interface{}
	}{
		{logical.UpdateOperation, "creds/svc", map[string]interface{}{"identity": "acme"}},
		{logical.UpdateOperation, "verify", map[string]interface{}{"api_key": k.key}},
		{logical.ReadOperation, "keys/" + k.keyID, nil},
		{logical.UpdateOperation, "keys/" + k.keyID + "/credits", map[string]interface{}{"add": 1}},
		{logical.ReadOperation, "identities/acme", nil},
		{logical.ReadOperation, "roles/svc", nil},
		{logical.UpdateOperation, "identities/acme/revoke", nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.op)+" "+tc.path, func(t *testing.T) {
			p := e.b.Route(tc.path)
			require.NotNil(t, p, tc.path)
			documented := p.Operations[tc.op].(*framework.PathOperation).Responses[200][0].Fields
			resp := e.mustOK(tc.op, tc.path, tc.data)
			require.NotEmpty(t, resp.Data)
			for field := range resp.Data {
				require.Contains(t, documented, field, "%s %s returns %q", tc.op, tc.path, field)
			}
			if tc.path == "verify" {
				require.Equal(t, verifyapi.CodeRateLimited, resp.Data["code"], "rate_limit_name is among the fields")
			}
		})
	}
}
