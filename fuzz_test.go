package apikey

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// requireNoServerError fails on anything Vault would answer with a 5xx.
func requireNoServerError(t *testing.T, req *logical.Request, resp *logical.Response, err error) {
	t.Helper()
	code, _ := logical.RespondErrorCommon(req, resp, err)
	var coded logical.HTTPCodedError
	if asCoded(err, &coded) {
		code = coded.Code()
	}
	require.Less(t, code, http.StatusInternalServerError, "status %d for %v: %v", code, req.Data, err)
}

func asCoded(err error, target *logical.HTTPCodedError) bool {
	if c, ok := err.(logical.HTTPCodedError); ok {
		*target = c
		return true
	}
	return false
}

func FuzzVerify(f *testing.F) {
	e := newTestEnv(&testing.T{})
	e.t = nil
	mustHandle(f, e, logical.CreateOperation, "roles/svc", map[string]interface{}{
		"scopes": "orders:*", "bound_cidrs": "10.0.0.0/8", "max_uses": 1000, "rate_limit": 1000,
	})
	resp := mustHandle(f, e, logical.ReadOperation, "creds/svc", nil)
	key := resp.Data["api_key"].(string)

	f.Add(key, "orders:read", "10.0.0.1", "1")
	f.Add(key, "", "", "")
	f.Add(key[:len(key)-1], "orders:*", "::1", "0")
	f.Add("", "a,,b", "300.1.1.1", "-1")
	f.Add("vk_"+key[3:], "\x00", "10.0.0.0/8", "1e9")
	f.Fuzz(func(t *testing.T, apiKey, scopes, clientIP, cost string) {
		data := map[string]interface{}{"api_key": apiKey, "scopes": scopes, "client_ip": clientIP}
		if cost != "" {
			data["cost"] = cost
		}
		req := &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Data: data, Storage: e.storage}
		resp, err := e.b.HandleRequest(e.ctx, req)
		requireNoServerError(t, req, resp, err)
		if resp != nil && !resp.IsError() {
			require.Contains(t, []string{verifyapi.CodeMalformed, verifyapi.CodeNotFound, verifyapi.CodeDisabled, verifyapi.CodeExpired, verifyapi.CodeForbiddenIP,
				verifyapi.CodeInsufficientScope, verifyapi.CodeRateLimited, verifyapi.CodeUsageExceeded, verifyapi.CodeValid}, resp.Data["code"])
			if apiKey != "" {
				require.NotContains(t, fmt.Sprint(resp.Data), apiKey)
			}
		}
	})
}

func FuzzRoleWrite(f *testing.F) {
	f.Add("svc", "orders:read,orders:*", "1h", "24h", "vk", "10.0.0.0/8", "1.5", "2", "10", "team=a")
	f.Add("a..b", "", "-1", "soon", "VK", "::1/129", "NaN", "-1", "-5", "=")
	f.Add("x", "*,*", "0", "0", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, name, scopes, ttl, maxTTL, prefix, cidrs, rate, burst, maxUses, metadata string) {
		e := newTestEnv(t)
		mustHandle(t, e, logical.CreateOperation, "roles/keep", map[string]interface{}{"scopes": "a", "ttl": "1h"})
		before := mustHandle(t, e, logical.ReadOperation, "roles/keep", nil).Data

		data := map[string]interface{}{}
		for field, v := range map[string]string{"scopes": scopes, "ttl": ttl, "max_ttl": maxTTL, "key_prefix": prefix,
			"bound_cidrs": cidrs, "rate_limit": rate, "rate_limit_burst": burst, "max_uses": maxUses, "metadata": metadata} {
			if v != "" {
				data[field] = v
			}
		}
		for _, path := range []string{"roles/" + name, "roles/keep"} {
			req := &logical.Request{Operation: logical.UpdateOperation, Path: path, Data: data, Storage: e.storage}
			if path != "roles/keep" {
				req.Operation = logical.CreateOperation
			}
			resp, err := e.b.HandleRequest(e.ctx, req)
			if err == logical.ErrUnsupportedPath {
				continue // the name does not match the path pattern: Vault answers 404
			}
			requireNoServerError(t, req, resp, err)
			if path == "roles/keep" && resp != nil && resp.IsError() {
				after := mustHandle(t, e, logical.ReadOperation, "roles/keep", nil).Data
				require.Equal(t, before, after, "a refused update changes nothing")
			}
		}
	})
}

// mustHandle sends a request that must succeed (for fuzz setup, outside a *testing.T helper env).
func mustHandle(tb testing.TB, e *testEnv, op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	tb.Helper()
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage})
	if err != nil || (resp != nil && resp.IsError()) {
		tb.Fatalf("%s %s: %v %v", op, path, err, resp)
	}
	return resp
}
