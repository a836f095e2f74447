package apikey

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

const (
	testDefaultTTL = time.Hour
	testMaxTTL     = 24 * time.Hour
)

// testEnv is one mount of the backend on in-memory storage.
type testEnv struct {
	t       *testing.T
	b       *backend
	storage logical.Storage
	ctx     context.Context
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config.System = testSystemView()
	raw, err := Factory(context.Background(), config)
	require.NoError(t, err)
	return &testEnv{t: t, b: raw.(*backend), storage: config.StorageView, ctx: context.Background()}
}

func testSystemView() *logical.StaticSystemView {
	return &logical.StaticSystemView{
		DefaultLeaseTTLVal: testDefaultTTL,
		MaxLeaseTTLVal:     testMaxTTL,
		PluginEnvironment:  &logical.PluginEnvironment{VaultVersion: "1.21.0"},
	}
}

// do sends a request and fails the test on a Go error (not on an error response).
func (e *testEnv) do(op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	e.t.Helper()
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: op,
		Path:      path,
		Data:      data,
		Storage:   e.storage,
	})
	if err != nil && (resp == nil || !resp.IsError()) {
		require.NoError(e.t, err, "%s %s", op, path)
	}
	return resp
}

// mustOK sends a request and requires a non-error response.
func (e *testEnv) mustOK(op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	e.t.Helper()
	resp := e.do(op, path, data)
	if resp != nil {
		require.False(e.t, resp.IsError(), "%s %s: %v", op, path, resp.Error())
	}
	return resp
}

// mustFail requires a 4xx answer (an error response or a coded error) whose message
// contains want.
func (e *testEnv) mustFail(op logical.Operation, path string, data map[string]interface{}, want string) {
	e.t.Helper()
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage}
	resp, err := e.b.HandleRequest(e.ctx, req)
	if resp != nil && !resp.IsError() {
		require.Failf(e.t, "want an error", "%s %s answered %v", op, path, resp.Data)
	}
	code, respErr := logical.RespondErrorCommon(req, resp, err)
	var coded logical.HTTPCodedError
	if errors.As(err, &coded) {
		code = coded.Code()
	}
	require.True(e.t, code >= 400 && code < 500, "%s %s: status %d (%v)", op, path, code, respErr)
	require.Contains(e.t, respErr.Error(), want)
}

func (e *testEnv) writeRole(name string, data map[string]interface{}) {
	e.t.Helper()
	e.mustOK(logical.CreateOperation, "roles/"+name, data)
}

// issued is a key as the creds path returned it.
type issued struct {
	key    string
	keyID  string
	secret *logical.Secret
	data   map[string]interface{}
}

func (e *testEnv) issue(role string, data map[string]interface{}) issued {
	e.t.Helper()
	var op logical.Operation = logical.ReadOperation
	if data != nil {
		op = logical.UpdateOperation
	}
	resp := e.mustOK(op, "creds/"+role, data)
	require.NotNil(e.t, resp.Secret)
	resp.Secret.IssueTime = time.Now()
	return issued{
		key:    resp.Data["api_key"].(string),
		keyID:  resp.Data["key_id"].(string),
		secret: resp.Secret,
		data:   resp.Data,
	}
}

func (e *testEnv) verify(data map[string]interface{}) map[string]interface{} {
	e.t.Helper()
	return e.mustOK(logical.UpdateOperation, "verify", data).Data
}

func (e *testEnv) verifyCode(key string, scopes ...string) string {
	e.t.Helper()
	data := map[string]interface{}{"api_key": key}
	if len(scopes) > 0 {
		data["scopes"] = scopes
	}
	return e.verify(data)["code"].(string)
}

func (e *testEnv) revoke(k issued) error {
	e.t.Helper()
	_, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: logical.RevokeOperation,
		Path:      "creds/x",
		Secret:    k.secret,
		Storage:   e.storage,
	})
	return err
}

func (e *testEnv) renew(k issued, increment time.Duration) *logical.Response {
	e.t.Helper()
	secret := *k.secret
	secret.Increment = increment
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{
		Operation: logical.RenewOperation,
		Path:      "creds/x",
		Secret:    &secret,
		Storage:   e.storage,
	})
	if resp == nil || !resp.IsError() {
		require.NoError(e.t, err)
	}
	return resp
}

func TestBackendReportsVersionAndSpecialPaths(t *testing.T) {
	e := newTestEnv(t)
	require.Equal(t, Version, e.b.RunningVersion)
	require.Regexp(t, `^v\d+\.\d+\.\d+$`, Version)
	require.Equal(t, []string{"config/secret"}, e.b.PathsSpecial.SealWrapStorage)
	require.Equal(t, []string{"leaked"}, e.b.PathsSpecial.Unauthenticated)
	require.Equal(t, []string{"keys/", "usage/", "anomalies/", "identities/", "imported/"}, e.b.PathsSpecial.LocalStorage)
}

func TestEveryPathHasHelp(t *testing.T) {
	e := newTestEnv(t)
	for _, p := range e.b.Paths {
		require.NotEmpty(t, p.HelpSynopsis, p.Pattern)
		require.NotEmpty(t, p.HelpDescription, p.Pattern)
		require.NotNil(t, p.DisplayAttrs, p.Pattern)
		for name, f := range p.Fields {
			require.NotEmpty(t, f.Description, "%s field %s", p.Pattern, name)
		}
	}
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.HelpOperation, Path: "verify", Storage: e.storage})
	require.NoError(t, err)
	require.Contains(t, resp.Data["help"], "INSUFFICIENT_SCOPE")
}

// failingStorage fails selected operations, standing in for a storage outage.
type failingStorage struct {
	logical.Storage
	failDelete bool
	failGet    bool
	// putLandsButFails makes Put of this key write and then report an error.
	putLandsButFails string
}

func (s *failingStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if err := s.Storage.Put(ctx, entry); err != nil {
		return err
	}
	if entry.Key == s.putLandsButFails {
		return errStorageDown
	}
	return nil
}

func (s *failingStorage) Delete(ctx context.Context, key string) error {
	if s.failDelete {
		return errStorageDown
	}
	return s.Storage.Delete(ctx, key)
}

func (s *failingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if s.failGet {
		return nil, errStorageDown
	}
	return s.Storage.Get(ctx, key)
}

var errStorageDown = errors.New("storage unavailable")

func BenchmarkKeyHash(b *testing.B) {
	secret, err := newHMACKey()
	if err != nil {
		b.Fatal(err)
	}
	key := "vk_4k6B6MooqyHEtOgpNwiONFBSxmE68fysdg5sV2ZjaYURkT7tfs8AochLct2190AZz"
	b.ReportAllocs()
	for b.Loop() {
		keyHash(secret, key)
	}
}

// TestInternalOperationsAreNeverRefusedForSize: Vault sends a lease's stored response
// data back on renew and revoke; refusing it for size would make the key irrevocable.
func TestInternalOperationsAreNeverRefusedForSize(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", map[string]interface{}{"max_ttl": "2h", "ttl": "1h"})
	k := e.issue("svc", nil)
	big := map[string]interface{}{"metadata": map[string]interface{}{"a": strings.Repeat("x", 3*maxFieldBytes)}, "scopes": []interface{}{strings.Repeat("s", 2*maxFieldBytes)}}

	renew := &logical.Request{Operation: logical.RenewOperation, Path: "creds/svc", Secret: k.secret, Storage: e.storage, Data: big}
	resp, err := e.b.HandleRequest(e.ctx, renew)
	require.NoError(t, err)
	require.False(t, resp.IsError(), "%v", resp.Data)

	revoke := &logical.Request{Operation: logical.RevokeOperation, Path: "creds/svc", Secret: k.secret, Storage: e.storage, Data: big}
	resp, err = e.b.HandleRequest(e.ctx, revoke)
	require.NoError(t, err)
	require.False(t, resp != nil && resp.IsError(), "%v", resp)
	require.Equal(t, verifyapi.CodeNotFound, e.verifyCode(k.key))

	// A client request of that size is still refused, naming the field.
	e.mustFail(logical.UpdateOperation, "creds/svc", map[string]interface{}{"name": strings.Repeat("n", maxFieldBytes+1)}, "name: value is too long")
}

// countingStorage counts reads, to show what a request costs in storage.
type countingStorage struct {
	logical.Storage
	gets atomic.Int64
}

func (s *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.gets.Add(1)
	return s.Storage.Get(ctx, key)
}

// TestEveryOperationDocumentsItsResponse: Vault's OpenAPI document comes from the paths'
// Responses; every operation must say what it returns (fields, or nothing).
func TestEveryOperationDocumentsItsResponse(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.HelpOperation, Storage: e.storage})
	require.NoError(t, err)
	doc, ok := resp.Data["openapi"].(*framework.OASDocument)
	require.True(t, ok, "help has no OpenAPI document")
	operations := 0
	for path, item := range doc.Paths {
		for method, op := range map[string]*framework.OASOperation{"get": item.Get, "post": item.Post, "delete": item.Delete} {
			if op == nil {
				continue
			}
			operations++
			if r, ok := op.Responses[204]; ok && r != framework.OASStdRespNoContent {
				continue
			}
			r, ok := op.Responses[200]
			require.True(t, ok, "%s %s documents no 200 or 204 response", method, path)
			require.NotNil(t, r.Content, "%s %s: the 200 response has no schema", method, path)
			content, isJSON := r.Content["application/json"]
			if !isJSON {
				// The metrics path answers a raw body (Prometheus text), not JSON data.
				require.Contains(t, r.Description, "raw body", "%s %s: a raw response says what it is", method, path)
				continue
			}
			schema := content.Schema
			if schema.Ref == "#/components/schemas/StandardListResponse" {
				continue
			}
			name := strings.TrimPrefix(schema.Ref, "#/components/schemas/")
			require.NotEmpty(t, doc.Components.Schemas[name].Properties, "%s %s: empty response schema", method, path)
		}
	}
	require.GreaterOrEqual(t, operations, 14)
}

// TestNestedValuesAreSizeChecked: lists of lists and maps of lists count too, so no
// shape of input gets a megabyte echoed back in an error.
func TestNestedValuesAreSizeChecked(t *testing.T) {
	e := newTestEnv(t)
	e.writeRole("svc", nil)
	huge := strings.Repeat("b", 1<<20)
	for name, data := range map[string]map[string]interface{}{
		"list of lists": {"name": []interface{}{[]interface{}{huge}}},
		"map of lists":  {"metadata": map[string]interface{}{"a": []interface{}{huge}}},
		"long number":   {"ttl": json.Number(strings.Repeat("1", maxFieldBytes+1))},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := e.b.HandleRequest(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "creds/svc", Data: data, Storage: e.storage})
			require.NoError(t, err)
			require.True(t, resp.IsError())
			require.Contains(t, resp.Data["error"], "value is too long")
			require.Less(t, len(resp.Data["error"].(string)), 200)
		})
	}
}
