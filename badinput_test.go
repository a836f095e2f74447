package apikey

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// storageSnapshot is every stored key and value, to prove a refused request changed nothing.
func storageSnapshot(t *testing.T, e *testEnv) map[string]string {
	t.Helper()
	keys, err := logical.CollectKeys(e.ctx, e.storage)
	require.NoError(t, err)
	sort.Strings(keys)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		entry, err := e.storage.Get(e.ctx, k)
		require.NoError(t, err)
		out[k] = string(entry.Value)
	}
	return out
}

// TestBadInputMatrix sends bad values to every path and field. Each must get a 4xx whose
// message names the field, and storage must be unchanged.
func TestBadInputMatrix(t *testing.T) {
	mib := strings.Repeat("a", 1<<20)
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"scopes": "orders:*", "ttl": "1h", "max_ttl": "2h"})
	k := e.issue("svc", nil)
	keyPath := "keys/" + k.keyID

	type input struct {
		op    logical.Operation
		path  string
		field string // the field the error must name ("" = the path's name segment)
		value interface{}
	}
	var cases []input
	add := func(op logical.Operation, path, field string, values ...interface{}) {
		for _, v := range values {
			cases = append(cases, input{op, path, field, v})
		}
	}
	durations := []interface{}{"-1s", "soon", "1e400", 1 << 62, "100000000h", []string{"1h"}, map[string]interface{}{"a": 1}, mib}
	texts := []interface{}{mib, "a\x00b", "line\nbreak", "\u202eevil", []int{1}}
	// Vault's field decoding is weakly typed on purpose (1.5 → 1, 7 → true for a bool), so
	// those are not bad input here; values that cannot be converted are.
	ints := []interface{}{-1, "many", []int{1}, "1e400"}

	for _, path := range []string{"roles/svc", "roles/new"} {
		var op logical.Operation = logical.UpdateOperation
		if path == "roles/new" {
			op = logical.CreateOperation
		}
		add(op, path, "ttl", durations...)
		add(op, path, "max_ttl", durations...)
		add(op, path, "scopes", "a b", "a,a", "or*ders", mib, "ü", []interface{}{1, map[string]interface{}{}}, "a\x00")
		add(op, path, "key_prefix", "", "A", "a", "toolongprefix", "a_b", "../", mib, 12)
		add(op, path, "bound_cidrs", "10.0.0.0/33", "x", "::1/129", "10.0.0.1/8/8", mib, []interface{}{true})
		add(op, path, "rate_limit", -1, "NaN", "fast", "1e400", []int{1})
		add(op, path, "rate_limit_burst", ints...)
		add(op, path, "max_uses", -1, "many", []int{1})
		add(op, path, "metadata", "novalue", map[string]interface{}{"k": mib}, map[string]interface{}{"": "v"}, map[string]interface{}{"k": "a\x00"}, 5)
	}
	add(logical.UpdateOperation, "creds/svc", "scopes", "users:read", "*", "a b", "orders:a,orders:a", mib)
	add(logical.UpdateOperation, "creds/svc", "ttl", durations...)
	add(logical.UpdateOperation, "creds/svc", "name", texts...)
	add(logical.UpdateOperation, "creds/svc", "metadata", "novalue", map[string]interface{}{"k": mib}, 5)
	add(logical.UpdateOperation, keyPath, "disabled", "maybe", "2", []int{1})
	add(logical.UpdateOperation, keyPath, "name", texts...)
	add(logical.UpdateOperation, keyPath, "metadata", "novalue", map[string]interface{}{"k": mib}, map[string]interface{}{"": "v"})
	add(logical.UpdateOperation, "creds/svc/rotate", "grace_period", durations...)
	add(logical.UpdateOperation, "creds/svc/rotate", "key_id", "short", strings.Repeat("A", 17), "0000000000000000", []int{1}, mib)
	add(logical.UpdateOperation, "creds/svc/rotate", "api_key", "vk_nope", mib, []int{1})
	add(logical.UpdateOperation, "verify", "request_id", "a b", strings.Repeat("r", 65), mib, []int{1})
	add(logical.UpdateOperation, "verify", "api_key", "", []int{1}, map[string]interface{}{})
	add(logical.UpdateOperation, "verify", "scopes", "a b", "a,a", mib, []interface{}{map[string]interface{}{}})
	add(logical.UpdateOperation, "verify", "client_ip", "300.0.0.1", "10.0.0.0/8", "localhost", mib, 12)
	add(logical.UpdateOperation, "verify", "cost", ints...)
	add(logical.UpdateOperation, "verify", verifyapi.FieldGrantHolder, "a b", strings.Repeat("h", 65), mib, []int{1})
	add(logical.UpdateOperation, "verify", verifyapi.FieldGrantUses, ints...)
	add(logical.UpdateOperation, "verify", verifyapi.FieldGrantRate, -1, "NaN", "fast", "1e400", []int{1})
	add(logical.UpdateOperation, grantsRenewPath, verifyapi.FieldGrantID, "", "nope", strings.Repeat("a", 33), mib, []int{1})
	add(logical.UpdateOperation, grantsRenewPath, verifyapi.FieldGrantHolder, "", "a b", mib, []int{1})
	add(logical.UpdateOperation, grantsRenewPath, verifyapi.FieldUnused, -1, "many", []int{1}, 1<<40)
	add(logical.UpdateOperation, grantsRenewPath, verifyapi.FieldGrantUses, ints...)
	add(logical.UpdateOperation, grantsRenewPath, verifyapi.FieldGrantRate, -1, "NaN", []int{1})
	add(logical.UpdateOperation, grantsRenewPath, verifyapi.FieldRelease, "maybe", []int{1})
	add(logical.ReadOperation, "feed", verifyapi.FieldWait, -1, 61, "soon", "1e400", mib)
	add(logical.ReadOperation, "feed", verifyapi.FieldCursor, mib)
	add(logical.UpdateOperation, usageReportPath, verifyapi.FieldGrantHolder, "", "a b", mib, []int{1})
	add(logical.UpdateOperation, usageReportPath, verifyapi.FieldEntries, "x", []interface{}{map[string]interface{}{}}, []interface{}{mib}, 5,
		[]interface{}{map[string]interface{}{"key_id": k.keyID, "report_token": "t", "code": "VALID", "count": 1, "client_ip": "x"}},
		[]interface{}{map[string]interface{}{"key_id": k.keyID, "report_token": "t", "code": "VALID", "count": 1, "tags": []interface{}{"a"}}})
	add(logical.UpdateOperation, "config", "grant_ttl", append([]interface{}{0, "100ms", "6m"}, durations...)...)
	add(logical.UpdateOperation, "config", "cache_size", 0, -1, "big", 1<<40, []int{1})
	add(logical.UpdateOperation, "config", "tidy_safety_buffer", durations...)
	add(logical.UpdateOperation, "config", "tidy_interval", durations...)
	// Bad names in the path itself.
	for _, name := range []string{"a..b", strings.Repeat("r", 200), "x..", "..x", "Svc", "SVC"} {
		add(logical.CreateOperation, "roles/"+name, "name", nil)
		add(logical.ReadOperation, "creds/"+name, "role", nil)
		add(logical.UpdateOperation, "creds/"+name+"/rotate", "role", nil)
	}
	for _, id := range []string{"short", "a..b", strings.Repeat("A", 17), "0000000000000000"} {
		add(logical.ReadOperation, "keys/"+id, "key_id", nil)
		add(logical.UpdateOperation, "keys/"+id, "key", nil)
	}

	for i, tc := range cases {
		name := fmt.Sprintf("%d %s %s %.30v", i, tc.path, tc.field, tc.value)
		t.Run(name, func(t *testing.T) {
			before := storageSnapshot(t, e)
			data := map[string]interface{}{}
			if tc.value != nil {
				data[tc.field] = tc.value
			}
			if tc.path == "verify" && tc.field != "api_key" {
				data["api_key"] = k.key
				if tc.field != verifyapi.FieldGrantHolder {
					data[verifyapi.FieldGrantHolder] = "gw" // grant_uses and grant_rate need it
				}
			}
			// The fleet paths' other required fields, so that the bad one is what fails.
			for _, base := range [][2]string{{verifyapi.FieldGrantID, "0123456789abcdef0123456789abcdef"}, {verifyapi.FieldGrantHolder, "gw"}} {
				if tc.path == grantsRenewPath && tc.field != base[0] {
					data[base[0]] = base[1]
				}
			}
			if tc.path == usageReportPath && tc.field != verifyapi.FieldGrantHolder {
				data[verifyapi.FieldGrantHolder] = "gw"
			}
			if tc.path == usageReportPath && tc.field != verifyapi.FieldEntries {
				data[verifyapi.FieldEntries] = []interface{}{}
			}
			req := &logical.Request{Operation: tc.op, Path: tc.path, Data: data, Storage: e.storage}
			resp, err := e.b.HandleRequest(e.ctx, req)
			if errors.Is(err, logical.ErrUnsupportedPath) {
				// A name the path pattern does not match: Vault answers 404 "unsupported path".
				require.Contains(t, []string{"name", "role"}, tc.field)
			} else if tc.value == nil && (tc.field == "key_id" || tc.field == "key") && resp == nil && err == nil {
				// A read of an unknown key_id is a plain 404 (no data), which is right.
				require.Equal(t, string(logical.ReadOperation), string(tc.op), "only a read may answer nothing")
			} else {
				require.True(t, resp == nil || resp.IsError() || err != nil, "accepted: %v", resp)
				code, respErr := logical.RespondErrorCommon(req, resp, err)
				var coded logical.HTTPCodedError
				if asCoded(err, &coded) {
					code, respErr = coded.Code(), err
				}
				require.True(t, code >= 400 && code < 500, "status %d: %v", code, respErr)
				require.Contains(t, respErr.Error(), tc.field, "the message names the field")
				require.Less(t, len(respErr.Error()), 600, "the message does not echo huge input")
			}
			require.Equal(t, before, storageSnapshot(t, e), "storage unchanged")
		})
	}
	require.Equal(t, verifyapi.CodeValid, e.verifyCode(k.key), "the key issued before still verifies")
}
